// The curves page: /api/curves drawn by expdbChart; a zoom asks the server for that range at full
// resolution; running runs are fetched again every 2 s. Folded over seeds, a variant is its mean curve in a band.
"use strict";
(() => {
  const { get, query } = expdb;
  const params = new URLSearchParams(location.search);
  const field = (id) => document.getElementById(id);
  const number = (text) => (text === null || text === "" ? null : Number(text));
  const state = {
    cards: params.get("cards") || "",
    tag: params.get("tag") || "",
    where: params.get("where") || "",
    metric: params.get("metric") || "loss",
    x: params.get("x") || "step",
    smooth: Number(params.get("smooth") || 0),
    log: params.get("log") === "1",
    x0: number(params.get("x0")),
    x1: number(params.get("x1")),
    mark: number(params.get("mark")),
    over: params.get("over") || "",
    band: params.get("band") || "ci",
    all: params.get("all") === "1",
  };
  let running = new Set();
  let shownRuns = new Set();
  let pending = null;
  let plots = [];
  let generation = 0;

  function fill() {
    field("cards").value = state.cards; field("tag").value = state.tag; field("where").value = state.where;
    field("metrics").value = state.metric; field("x").value = state.x; field("smooth").value = state.smooth;
    field("smooth-value").textContent = state.smooth.toFixed(2); field("log").checked = state.log;
    field("fold").checked = Boolean(state.over); field("over").value = state.over || "seed"; field("band").value = state.band;
  }

  function read() {
    state.cards = field("cards").value.trim(); state.tag = field("tag").value.trim(); state.where = field("where").value.trim();
    state.metric = field("metrics").value.trim() || "loss"; state.x = field("x").value;
    state.smooth = Number(field("smooth").value); state.log = field("log").checked;
    state.over = field("fold").checked ? field("over").value.trim() : ""; state.band = field("band").value;
  }

  async function load(reason) {
    const mine = ++generation;
    const started = performance.now();
    const panels = field("panels");
    const width = Math.max(400, Math.min(panels.clientWidth || 1000, 1600));
    const search = query({
      cards: state.cards, tag: state.tag, where: state.where, metric: state.metric, x: state.x,
      smooth: state.smooth || "", log: state.log, x0: state.x0, x1: state.x1, mark: state.mark,
      over: state.over, band: state.over && state.band !== "ci" ? state.band : "", all: state.all,
    });
    history.replaceState(null, "", "?" + search);
    let payload;
    try {
      payload = await get("/api/curves?" + query({
        cards: state.cards, tag: state.tag, where: state.where, metric: state.metric, x: state.x,
        smooth: state.smooth || "", log: state.log, x0: state.x0, x1: state.x1, width,
        over: state.over, band: state.over ? state.band : "", all: state.all,
      }));
    } catch (failure) {
      if (mine === generation) field("error").textContent = failure.message;
      return;
    }
    if (mine !== generation) return;  // a later request is on its way
    field("error").textContent = "";
    shownRuns = new Set(payload.panels.flatMap((panel) => panel.series.flatMap((series) => series.runs || [series.run])));
    plots = expdbChart.draw(panels, payload, {
      width, x0: state.x0, x1: state.x1, mark: state.mark,
      onZoom: (x0, x1) => zoom(x0, x1),
      onReset: () => zoom(null, null),
    });
    // For the benchmark and the tests: when this drawing was asked for and when it was done.
    const drawn = performance.now();
    panels.dataset.draws = String(Number(panels.dataset.draws || 0) + 1);
    panels.dataset.lastReason = reason;
    panels.dataset.lastMs = String(drawn - started);
    panels.dataset.doneAt = String(drawn);
  }

  // A zoom is fetched at once; while one is on its way, the next waits for it and only the latest range is
  // fetched then (a spun wheel sends one request at a time, and none waits for a timer).
  function zoom(x0, x1) {
    state.x0 = x0; state.x1 = x1;
    if (pending) { pending.again = true; return; }
    pending = { again: false };
    load("zoom").finally(() => {
      const again = pending.again;
      pending = null;
      if (again) zoom(state.x0, state.x1);
    });
  }

  async function live() {
    let found;
    try { found = await get("/api/live"); } catch (failure) { return; }
    const now = new Set(found.runs.filter((run) => run.status === "running").map((run) => run.run));
    const watched = [...shownRuns].some((run) => now.has(run) || running.has(run));
    const newRun = found.runs.some((run) => run.status === "running" && !running.has(run.run));
    running = now;
    if (watched || newRun) load("live");
  }

  async function keys() {
    const found = await get("/api/chips");
    const list = field("curve-keys");
    for (const key of found.curves) { const option = document.createElement("option"); option.value = key; list.append(option); }
  }

  fill();
  field("show").addEventListener("click", () => { read(); state.x0 = state.x1 = null; load("show"); });
  for (const id of ["x", "log", "fold", "band"]) field(id).addEventListener("change", () => { read(); if (id === "x") state.x0 = state.x1 = null; load(id); });
  field("smooth").addEventListener("input", () => { field("smooth-value").textContent = Number(field("smooth").value).toFixed(2); });
  field("smooth").addEventListener("change", () => { read(); load("smooth"); });
  for (const id of ["cards", "tag", "where", "metrics", "over"]) field(id).addEventListener("keydown", (event) => {
    if (event.key === "Enter") { read(); state.x0 = state.x1 = null; load("show"); }
  });
  field("reset").addEventListener("click", () => zoom(null, null));
  function pan(direction) {
    if (!plots.length) return;
    const { min, max } = plots[0].scales.x;
    const shift = ((max - min) / 2) * direction;
    zoom(min + shift, max + shift);
  }
  field("pan-left").addEventListener("click", () => pan(-1));
  field("pan-right").addEventListener("click", () => pan(1));
  keys();
  load("open");
  setInterval(live, 2000);
})();
