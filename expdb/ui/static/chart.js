// Panels of curves drawn with uPlot: one panel per metric, one colour per card, the raw curve
// faint under its smoothed one, divergences as crosses, learning-rate drops as dotted lines. Folded
// over seeds, a variant's mean curve is drawn in its band, its diverged seeds dotted, invalid ones grey.
// Used by the curves page (which refetches on zoom) and by the HTML report (which embeds its data).
"use strict";
const expdbChart = (() => {
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const DASHES = [[], [8, 4], [8, 3, 2, 3], [2, 3]];

  function node(tag, className, text) {
    const made = document.createElement(tag);
    if (className) made.className = className;
    if (text !== undefined) made.textContent = text;
    return made;
  }

  // A card's curve comes as base64 of little-endian float64s (nothing to print or parse; a folded
  // variant's mean and band as lists of numbers); NaN and infinities are gaps, which uPlot draws for null.
  function unpack(text) {
    const bytes = atob(text);
    const view = new DataView(new ArrayBuffer(bytes.length));
    for (let i = 0; i < bytes.length; i++) view.setUint8(i, bytes.charCodeAt(i));
    const out = new Array(bytes.length / 8);
    for (let i = 0; i < out.length; i++) {
      const value = view.getFloat64(8 * i, true);
      out[i] = Number.isFinite(value) ? value : null;
    }
    return out;
  }

  function unpackSeries(item) {
    const numbers = (found) => (typeof found === "string" ? unpack(found) : found);
    item.x = numbers(item.x); item.y = numbers(item.y);
    if (item.smooth !== null) { item.smooth.x = numbers(item.smooth.x); item.smooth.y = numbers(item.smooth.y); }
  }

  const INVALID = "#a6a6a6";  // an invalid variant, as `expdb plot --all` greys it
  function colour(index) { return COLOURS[index % 10]; }
  function colourOf(item) { return item.invalid ? INVALID : colour(item.index); }
  // "#1f77b4" at this opacity: a band's fill.
  function faint(hex, alpha) {
    const [r, g, b] = [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }
  function dash(index) { return DASHES[Math.floor(index / 10) % 4]; }

  function nearest(xs, x) {
    let low = 0, high = xs.length - 1;
    if (high < 0) return -1;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (xs[mid] < x) low = mid + 1; else high = mid;
    }
    if (low > 0 && Math.abs(xs[low - 1] - x) < Math.abs(xs[low] - x)) low -= 1;
    return low;
  }

  function format(value) {
    if (value === null || value === undefined) return "–";
    const magnitude = Math.abs(value);
    return magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3) ? value.toExponential(3) : value.toPrecision(4);
  }

  // An axis tick with the digits that tell it from its neighbours (uPlot's default rounds 0.0025 to 0.003).
  function tick(value) {
    if (value === null || value === undefined) return "";
    const magnitude = Math.abs(value);
    return magnitude !== 0 && (magnitude >= 1e6 || magnitude < 1e-4) ? value.toExponential(2) : String(Number(value.toPrecision(6)));
  }

  // The y range: the values that may set it (the server leaves out what came after a divergence).
  function yRange(panel, log) {
    let low = Infinity, high = -Infinity;
    for (const series of panel.series) {
      if (!series.scale) continue;
      low = Math.min(low, series.scale[0]);
      high = Math.max(high, series.scale[1]);
    }
    if (!isFinite(low)) return null;
    // Whole decades on a log axis, as its ticks are.
    if (log) return [Math.pow(10, Math.floor(Math.log10(low))), Math.pow(10, Math.ceil(Math.log10(high)))];
    const pad = (high - low) * 0.05 || Math.abs(high) * 0.05 || 1;
    return [low - pad, high + pad];
  }

  function drawEvents(u, panel, mark) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    for (const series of panel.series) {
      ctx.strokeStyle = colourOf(series);
      ctx.globalAlpha = 0.45;
      ctx.setLineDash([2, 4]);
      ctx.lineWidth = 1;
      for (const x of series.lr_drops) {
        const at = u.valToPos(x, "x", true);
        ctx.beginPath(); ctx.moveTo(at, top); ctx.lineTo(at, top + height); ctx.stroke();
      }
      ctx.globalAlpha = 1;
      ctx.setLineDash([]);
      ctx.lineWidth = 2.5;
      for (const point of series.divergences) {
        const px = u.valToPos(point.x, "x", true);
        // A diverged value far off the scale is marked at the edge.
        const py = Math.min(Math.max(u.valToPos(point.y, "y", true), top + 6), top + height - 6);
        ctx.beginPath();
        ctx.moveTo(px - 6, py - 6); ctx.lineTo(px + 6, py + 6);
        ctx.moveTo(px + 6, py - 6); ctx.lineTo(px - 6, py + 6);
        ctx.stroke();
      }
    }
    if (mark !== null && mark !== undefined) {
      const at = u.valToPos(mark, "x", true);
      ctx.strokeStyle = "#000"; ctx.globalAlpha = 0.6; ctx.setLineDash([6, 3]); ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(at, top); ctx.lineTo(at, top + height); ctx.stroke();
    }
    ctx.restore();
  }

  function legend(panel) {
    const holder = node("div", "legend");
    for (const series of panel.series) {
      const item = node("span");
      const swatch = node("span", "swatch");
      swatch.style.background = colourOf(series);
      item.append(swatch, series.label || series.card);
      item.title = series.variant
        ? `${series.card}: mean of ${series.cards.join(", ")}; ${series.points.toLocaleString("en")} points`
        : `${series.card}: run ${series.run}, ${series.points.toLocaleString("en")} points`;
      holder.append(item);
    }
    if (panel.series.some((series) => series.divergences.length)) holder.append(node("span", "", "✕ divergence"));
    if (panel.series.some((series) => series.lr_drops.length)) holder.append(node("span", "", "┆ lr drop"));
    return holder;
  }

  // Draws `payload` (the JSON of /api/curves) into `container`; returns the uPlot instances.
  function draw(container, payload, options) {
    const { width, x0, x1, onZoom, onReset, mark } = options;
    const plots = [];
    while (container.firstChild) container.removeChild(container.firstChild);
    for (const panel of payload.panels) {
      panel.series.forEach(unpackSeries);
      const box = node("div", "panel");
      box.dataset.metric = panel.metric;
      box.dataset.series = String(panel.series.length);
      box.dataset.points = String(panel.series.reduce((sum, series) => sum + series.shown, 0));
      box.dataset.drawn = String(panel.series.reduce((sum, series) => sum + series.x.length, 0));
      box.append(node("h3", "", panel.label));
      if (payload.folded) {  // as `expdb plot --over` titles its panels
        const band = payload.folded.band === "ci" ? "95% CI of the mean" : "± one std";
        box.append(node("p", "muted folded", `mean over ${payload.folded.over.join(", ")}; band: ${band}`));
      }
      container.append(box);
      if (!panel.series.length) {
        box.append(node("p", "muted", `no selected card has a ${panel.metric} curve`));
        continue;
      }
      const tables = [];
      const series = [{ label: payload.x_label }];
      const bands = [];
      for (const item of panel.series) {
        const smoothed = item.smooth !== null;
        const stroke = colourOf(item), lineDash = item.dotted ? [2, 3] : dash(item.index);
        if (item.band) {  // under the curves: its low and high edges, the fill between them
          tables.push([item.band.x, item.band.low], [item.band.x, item.band.high]);
          series.push({ label: item.card + " (band low)", stroke, width: 0, points: { show: false } });
          series.push({ label: item.card + " (band high)", stroke, width: 0, points: { show: false } });
          bands.push({ series: [series.length - 1, series.length - 2], fill: faint(stroke, 0.2) });
        }
        tables.push([item.x, item.y]);
        series.push({
          label: item.card, stroke, dash: lineDash,
          width: smoothed ? 1 : 1.25, alpha: smoothed ? 0.25 : item.dotted ? 0.7 : 1, points: { show: false },
        });
        if (smoothed) {
          tables.push([item.smooth.x, item.smooth.y]);
          series.push({ label: item.card + " (smoothed)", stroke, dash: lineDash, width: 1.6, points: { show: false } });
        }
      }
      box.dataset.bands = String(bands.length);
      const data = uPlot.join(tables);
      const auto = yRange(panel, payload.log_y);
      const limits = payload.ylim || [null, null];  // the report's --ylim: either side may be left out
      const range = auto ? [limits[0] ?? auto[0], limits[1] ?? auto[1]] : null;
      const readout = node("div", "readout");
      const plot = new uPlot({
        width, height: 300,
        legend: { show: false },
        cursor: {
          drag: { x: true, y: false, setScale: false },
          // The page fetches the full range again; the report's plots keep uPlot's own reset.
          ...(onReset ? { bind: { dblclick: () => () => { onReset(); return null; } } } : {}),
        },
        scales: {
          x: { time: false, ...(x0 !== null && x0 !== undefined ? { min: x0, max: x1 } : {}) },
          y: { distr: payload.log_y ? 3 : 1, ...(range ? { range: () => range } : {}) },
        },
        axes: [{ label: payload.x_label }, { size: 70, values: (u, splits) => splits.map(tick) }],
        series,
        bands,
        hooks: {
          draw: [(u) => drawEvents(u, panel, mark)],
          // A dragged range: the page fetches it at full resolution; the report zooms into what it has.
          setSelect: [(u) => {
            if (u.select.width < 2) return;
            const low = u.posToVal(u.select.left, "x"), high = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            if (onZoom) onZoom(low, high); else u.setScale("x", { min: low, max: high });
          }],
          setCursor: [(u) => {
            if (u.cursor.idx === null || u.cursor.idx === undefined) { readout.textContent = ""; return; }
            const x = u.posToVal(u.cursor.left, "x");
            const parts = panel.series.map((item) => {
              const line = item.smooth || item;
              const at = nearest(line.x, x);
              return `${item.card}: ${at < 0 ? "–" : format(line.y[at])}`;
            });
            readout.textContent = `${payload.x_label} ${format(x)} · ${parts.join(" · ")}`;
          }],
        },
      }, data, box);
      box.append(readout, legend(panel));
      plot.over.addEventListener("wheel", (event) => {
        if (!onZoom) return;
        event.preventDefault();
        const at = plot.posToVal(event.offsetX, "x");
        const factor = event.deltaY < 0 ? 0.75 : 1 / 0.75;
        const { min, max } = plot.scales.x;
        onZoom(at - (at - min) * factor, at + (max - at) * factor);
      }, { passive: false });
      plots.push(plot);
    }
    return plots;
  }

  return { draw };
})();
