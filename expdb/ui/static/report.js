// The HTML report's plots: the data embedded in the file, drawn by expdbChart; zoom stays in that data.
"use strict";
(() => {
  const payloads = JSON.parse(document.getElementById("expdb-curves").textContent);
  for (const holder of document.querySelectorAll("div.curves")) {
    const width = Math.max(400, Math.min(holder.clientWidth || 1100, 1200));
    expdbChart.draw(holder, payloads[Number(holder.dataset.index)], { width, x0: null, x1: null, mark: null });
  }
})();
