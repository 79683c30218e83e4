// Parallel coordinates of the cards picked on the study page (or by tag or filter): one axis per
// parameter that differs and one for the metric; a line per card,
// coloured by the metric. Drawn as SVG, every label set as text.
"use strict";
(() => {
  const { get, query, clear } = expdb;
  const SVG = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(location.search);
  const field = (id) => document.getElementById(id);

  function svg(tag, attrs, text) {
    const made = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) made.setAttribute(key, String(value));
    if (text !== undefined) made.textContent = text;
    return made;
  }

  function axis(values) {
    const numbers = values.filter((value) => value !== "" && value !== "-" && !isNaN(Number(value)));
    if (numbers.length === values.filter((value) => value !== "" && value !== "-").length && numbers.length) {
      const list = numbers.map(Number);
      const low = Math.min(...list), high = Math.max(...list);
      return { at: (value) => (value === "" || value === "-" ? null : high === low ? 0.5 : (Number(value) - low) / (high - low)), ticks: [[0, low], [1, high]] };
    }
    const levels = [...new Set(values.filter((value) => value !== "" && value !== "-"))].sort();
    const at = (value) => (levels.indexOf(value) < 0 ? null : levels.length === 1 ? 0.5 : levels.indexOf(value) / (levels.length - 1));
    return { at, ticks: levels.map((level) => [at(level), level]) };
  }

  async function load() {
    const state = {
      cards: field("cards").value.trim(), tag: field("tag").value.trim(), where: field("where").value.trim(),
      metric: field("metric").value.trim(), all: params.get("all") === "1",  // the invalid cards, as the study page showed them
    };
    history.replaceState(null, "", "?" + query(state));
    let page;
    try {
      page = await get("/api/table?" + query({ ...state, limit: 100000 }));
      field("error").textContent = "";
    } catch (failure) {
      field("error").textContent = failure.message;
      return;
    }
    // The card column, the parameters that differ, then the metric's column (the first metric column).
    const paramCount = page.columns.findIndex((column, index) => index > 0 && column.numeric) - 1;
    const keys = page.columns.slice(1, 1 + Math.max(0, paramCount)).map((column, index) => ({ label: column.header, index: index + 1 }));
    const metricIndex = 1 + Math.max(0, paramCount);
    const metric = page.columns[metricIndex];
    if (metric) keys.push({ label: metric.header, index: metricIndex, metric: true });
    const width = Math.max(600, Math.min(1400, 160 * keys.length)), height = 420, top = 40, bottom = 40, side = 60;
    const chart = clear(field("chart"));
    const drawing = svg("svg", { width, height, role: "img" });
    drawing.dataset.lines = String(page.rows.length);
    drawing.dataset.axes = String(keys.length);
    chart.append(drawing);
    if (!keys.length) return;
    const step = keys.length > 1 ? (width - 2 * side) / (keys.length - 1) : 0;
    const axes = keys.map((key) => axis(page.rows.map((row) => row.cells[key.index].text)));
    const scaleMetric = axes[axes.length - 1];
    page.rows.forEach((row) => {
      const points = keys.map((key, index) => {
        const at = axes[index].at(row.cells[key.index].text);
        return at === null ? null : [side + index * step, top + (1 - at) * (height - top - bottom)];
      }).filter((point) => point !== null);
      const shade = metric ? scaleMetric.at(row.cells[metricIndex].text) : null;
      const hue = shade === null ? 0 : 240 - 240 * shade;
      const line = svg("polyline", {
        points: points.map((point) => point.join(",")).join(" "), fill: "none",
        stroke: shade === null ? "#bbb" : `hsl(${hue}, 70%, 45%)`, "stroke-width": 1.5, opacity: 0.8,
      });
      line.append(svg("title", {}, row.card));
      drawing.append(line);
    });
    keys.forEach((key, index) => {
      const x = side + index * step;
      drawing.append(svg("line", { x1: x, x2: x, y1: top, y2: height - bottom, stroke: "#333" }));
      drawing.append(svg("text", { x, y: top - 18, "text-anchor": "middle", "font-weight": key.metric ? "bold" : "normal" }, key.label));
      for (const [at, label] of axes[index].ticks) {
        drawing.append(svg("text", { x: x + 4, y: top + (1 - at) * (height - top - bottom) + 4 }, String(label)));
      }
    });
  }

  field("cards").value = params.get("cards") || "";
  field("tag").value = params.get("tag") || "";
  field("where").value = params.get("where") || "";
  field("metric").value = params.get("metric") || "";
  field("show").addEventListener("click", load);
  load();
})();
