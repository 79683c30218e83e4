// The study page: the comparison table of `expdb table`, paged, sorted, filtered, with the invalid
// cards on request (--all) and seeds folded (--over); live runs below.
"use strict";
(() => {
  const { el, get, query, cardLink, statusBadge, clear } = expdb;
  const params = new URLSearchParams(location.search);
  const state = {
    where: params.get("where") || "",
    tag: params.get("tag") || "",
    status: params.get("status") || "",
    sort: params.get("sort") || "",
    baseline: params.get("baseline") || "",
    all: params.get("all") === "1",
    over: params.get("over") || "",
    spread: params.get("spread") || "",
    offset: Number(params.get("offset") || 0),
  };
  const selected = new Set();
  let pageRows = 100;
  let lastLive = "";

  function tableQuery(extra) {
    const { where, tag, status, sort, baseline, all, over, spread } = state;
    return query({ where, tag, status, sort, baseline, all, over, spread: over ? spread : "", ...extra });
  }

  function remember() {
    const search = query({ ...state, offset: state.offset || "" });
    history.replaceState(null, "", search ? "?" + search : location.pathname);
  }

  function sortState(column) {
    const [key, ...rest] = state.sort.split(":");
    const order = rest.length && (rest[rest.length - 1] === "asc" || rest[rest.length - 1] === "desc") ? rest.pop() : "";
    const current = [key, ...rest].join(":");
    return current === column.sort ? order || (column.direction === "higher" ? "desc" : "asc") : "";
  }

  function header(columns) {
    const row = el("tr", {}, el("th", { text: "" }));
    columns.forEach((column, index) => {
      if (column.sort === null) row.append(el("th", { class: column.numeric ? "num" : "", text: column.header }));
      const order = column.sort === null ? "" : sortState(column);
      if (column.sort !== null) row.append(el("th", {
        class: ["sortable", column.numeric ? "num" : "", order ? "sorted-" + order : ""].join(" "),
        text: column.header,
        title: "sort by " + column.header,
        onclick: () => {
          const next = order ? (order === "asc" ? "desc" : "asc") : (column.direction === "higher" ? "desc" : "asc");
          state.sort = column.sort + ":" + next;
          state.offset = 0;
          load();
        },
      }));
      if (index === 0) row.append(el("th", { text: "status" }), el("th", { text: "tags" }));
    });
    row.append(el("th", { text: "note" }), el("th", { text: "" }));
    return row;
  }

  function body(page) {
    return page.rows.map((row) => {
      const name = row.card === null ? row.variant : row.card;  // a card, or a variant of folded cards
      const members = row.card === null ? row.cards : [row.card];
      const check = el("input", { type: "checkbox", checked: members.every((card) => selected.has(card)), "aria-label": "select " + name });
      check.addEventListener("change", () => members.forEach((card) => (check.checked ? selected.add(card) : selected.delete(card))));
      const cells = [el("td", {}, check)];
      row.cells.forEach((cell, index) => {
        const numeric = page.columns[index].numeric;
        const td = el("td", { class: [numeric ? "num" : "", cell.best ? "best" : ""].join(" ") });
        if (index === 0 && row.card !== null) {
          td.append(cardLink(row.card), row.baseline ? el("span", { class: "muted", text: " (baseline)" }) : "");
        } else if (index === 0) {
          td.append(cell.text, el("span", { class: "variant-cards muted" }, "(", members.flatMap((card, at) => [at ? ", " : "", cardLink(card)]), ")"));
        } else td.append(cell.text);
        if (index === 0 && row.invalid) td.append(el("span", { class: "invalid-reason", text: "invalid: " + row.invalid, title: row.invalid }));
        if (cell.delta) td.append(el("span", { class: "delta", text: "(" + cell.delta + ")" }));
        cells.push(td);
        if (index === 0) {
          cells.push(el("td", {}, row.status ? statusBadge(row.status) : ""));
          cells.push(el("td", {}, row.tags.map((tag) => el("span", { class: "chip", text: tag }))));
        }
      });
      cells.push(el("td", { class: "note", text: row.note, title: row.note }));
      cells.push(el("td", {}, el("button", {
        text: row.baseline ? "clear baseline" : "baseline",
        title: row.invalid ? "an invalid card is never the baseline" : "compare every row with " + name,
        disabled: Boolean(row.invalid) && !row.baseline,
        onclick: () => { state.baseline = row.baseline ? "" : name; load(); },
      })));
      const kind = [row.baseline ? "baseline" : "", row.invalid ? "invalid" : ""].join(" ").trim();
      return el("tr", { class: kind, dataset: { card: name } }, cells);
    });
  }

  async function load() {
    remember();
    const error = document.getElementById("where-error");
    let page;
    try {
      page = await get("/api/table?" + tableQuery({ offset: state.offset }));
      error.textContent = "";
    } catch (failure) {
      error.textContent = failure.message;
      return;
    }
    pageRows = page.limit;
    const table = document.getElementById("study");
    clear(table.tHead).append(header(page.columns));
    clear(table.tBodies[0]).append(...body(page));
    // What `expdb table` prints under the table: conditions, what ± means, the tests, the invalid cards' reasons.
    clear(document.getElementById("table-notes")).append(...page.notes.map((note) => el("li", { text: note })));
    const last = Math.min(page.offset + page.limit, page.total);
    document.getElementById("page-info").textContent = `rows ${page.total ? page.offset + 1 : 0}–${last} of ${page.total}`;
    document.getElementById("prev").disabled = page.offset === 0;
    document.getElementById("next").disabled = last >= page.total;
    document.getElementById("baseline-info").textContent = state.baseline ? "baseline: " + state.baseline : "";
    table.dataset.total = page.total;
    table.dataset.loaded = String(Number(table.dataset.loaded || 0) + 1);
    table.dataset.doneAt = String(performance.now());  // for the benchmark: when the rows were shown
  }

  function chip(text, key, holder) {
    const node = el("span", { class: "chip" + (state[key] === text ? " on" : ""), text, role: "button" });
    node.addEventListener("click", () => {
      state[key] = state[key] === text ? "" : text;
      state.offset = 0;
      for (const other of holder.children) other.classList.toggle("on", other.textContent === state[key]);
      load();
    });
    return node;
  }

  async function chips() {
    const found = await get("/api/chips");
    const tags = document.getElementById("tag-chips");
    const statuses = document.getElementById("status-chips");
    tags.append(...found.tags.map((tag) => chip(tag, "tag", tags)));
    statuses.append(...found.statuses.map((status) => chip(status, "status", statuses)));
  }

  async function copy(format) {
    const area = document.getElementById("copied");
    try {
      area.value = await get("/api/table?" + tableQuery({ format }));
    } catch (failure) {
      document.getElementById("where-error").textContent = failure.message;
      return;
    }
    area.hidden = false;
    area.dataset.format = format;
    area.select();
    // The clipboard needs a secure context (loopback is one); the text stays selectable either way.
    if (navigator.clipboard) navigator.clipboard.writeText(area.value).catch(() => {});
  }

  async function live() {
    let found;
    try {
      found = await get("/api/live");
    } catch (failure) {
      return;
    }
    const holder = clear(document.getElementById("live"));
    if (!found.runs.length) holder.append(el("p", { class: "muted", text: "nothing queued or running" }));
    else {
      const rows = found.runs.map((run) => el("tr", {},
        el("td", {}, cardLink(run.card)), el("td", { class: "num", text: run.run }), el("td", {}, statusBadge(run.status)),
        el("td", { text: run.host }), el("td", { text: run.where }), el("td", { text: run.since }),
        el("td", { class: "num", text: run.step === null ? "" : run.step.toLocaleString("en") }),
        el("td", { class: "num", text: run.points === null ? "" : run.points.toLocaleString("en") })));
      const head = el("tr", {}, ["card", "run", "status", "host", "where", "for", "last step", "points"].map((text) => el("th", { text })));
      holder.append(el("table", {}, el("thead", {}, head), el("tbody", {}, rows)));
    }
    // A run that started or ended changes the table: load it again then.
    const now = JSON.stringify(found.runs.map((run) => [run.run, run.status]));
    if (now !== lastLive && lastLive !== "") load();
    lastLive = now;
  }

  const fold = document.getElementById("fold"), over = document.getElementById("over"), spread = document.getElementById("spread");
  const invalid = document.getElementById("invalid");
  invalid.checked = state.all;
  fold.checked = Boolean(state.over);
  over.value = state.over || "seed";
  spread.value = state.spread || "std";
  function refold() {
    state.over = fold.checked ? over.value.trim() : "";
    state.spread = spread.value === "std" ? "" : spread.value;
    state.baseline = "";  // a card's name is no variant's, and back
    state.sort = "";
    state.offset = 0;
    load();
  }
  fold.addEventListener("change", refold);
  over.addEventListener("change", () => { if (fold.checked) refold(); });
  spread.addEventListener("change", () => { if (fold.checked) refold(); });
  invalid.addEventListener("change", () => { state.all = invalid.checked; state.offset = 0; load(); });

  const where = document.getElementById("where");
  where.value = state.where;
  let typing;
  where.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.where = where.value.trim(); state.offset = 0; load(); }, 300);
  });
  document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - pageRows); load(); });
  document.getElementById("next").addEventListener("click", () => { state.offset += pageRows; load(); });
  document.getElementById("copy-md").addEventListener("click", () => copy("md"));
  document.getElementById("copy-latex").addEventListener("click", () => copy("latex"));
  document.getElementById("plot").addEventListener("click", () => {
    const cards = selected.size ? [...selected].join(",") : "";
    const folding = { over: state.over, all: state.all };
    location.href = "/curves?" + query(cards ? { cards, ...folding } : { tag: state.tag, where: state.where, ...folding });
  });
  document.getElementById("parallel").addEventListener("click", () => {
    const cards = selected.size ? [...selected].join(",") : "";
    location.href = "/parallel?" + query(cards ? { cards, all: state.all } : { tag: state.tag, where: state.where, all: state.all });
  });
  chips();
  load();
  live();
  setInterval(live, 2000);
})();
