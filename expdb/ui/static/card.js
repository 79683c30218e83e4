// A card: parameters beside its parent's, lineage, runs, notes (automatic ones link to their point
// of the curve), profile with its conditions, attachments. Notes and tags can be added.
"use strict";
(() => {
  const { el, get, post, query, cardLink, statusBadge, clear } = expdb;
  const name = decodeURIComponent(location.pathname.replace(/^\/card\//, ""));
  const api = "/api/card/" + encodeURIComponent(name);

  function tree(node) {
    const label = node.name === name ? el("span", { class: "current", text: node.name }) : cardLink(node.name);
    const item = el("li", {}, label);
    if (node.children.length) item.append(el("ul", { class: "tree" }, node.children.map(tree)));
    return item;
  }

  function table(holder, head, rows) {
    clear(holder).append(el("thead", {}, el("tr", {}, head.map((text) => el("th", { text })))), el("tbody", {}, rows));
  }

  function render(card) {
    document.title = "expdb · " + card.name;
    clear(document.getElementById("title")).append(card.name, " ", statusBadge(card.status));
    const summary = clear(document.getElementById("summary"));
    summary.append(`created ${card.created}`, card.runner ? ` · runner ${card.runner}` : "");
    if (card.parent) summary.append(" · forked from ", cardLink(card.parent));
    if (card.invalid) {  // as `expdb show` says it
      summary.append(el("div", { class: "invalid-reason", id: "invalid" }, `invalid: ${card.invalid}`,
        el("span", { class: "muted", text: " (left out of tables, plots and reports; `expdb validate` to undo)" })));
    }

    const tags = clear(document.getElementById("tags"));
    for (const tag of card.tags) {
      tags.append(el("span", { class: "chip" }, tag, " ", el("a", {
        href: "#", text: "×", title: "remove the tag " + tag,
        onclick: (event) => { event.preventDefault(); change("/tags", { remove: [tag] }); },
      })));
    }

    document.getElementById("params-vs").textContent = card.parent ? `(beside ${card.parent}'s)` : "";
    table(document.getElementById("params"), card.parent ? ["parameter", "value", card.parent, ""] : ["parameter", "value"],
      card.params.map((param) => el("tr", { class: param.kind }, el("td", { text: param.key }), el("td", { text: param.value }),
        card.parent ? [el("td", { text: param.parent }), el("td", { class: "muted", text: param.kind })] : [])));

    const lineage = clear(document.getElementById("lineage"));
    if (card.lineage.ancestors.length) {
      lineage.append(el("div", {}, "ancestors: ", ...card.lineage.ancestors.flatMap((ancestor, index) => [index ? " → " : "", cardLink(ancestor)])));
    }
    lineage.append(el("ul", { class: "tree" }, tree(card.lineage.tree)));
    if (card.lineage.cut) lineage.append(el("p", { class: "muted", text: "more forks not shown" }));

    table(document.getElementById("runs"), ["run", "status", "started", "duration", "exit reason", "environment", "metrics"],
      card.runs.map((run) => el("tr", {},
        el("td", { class: "num", text: run.id }), el("td", {}, statusBadge(run.status)), el("td", { text: run.started }),
        el("td", { text: run.duration }), el("td", { text: run.exit_reason }),
        el("td", { class: "wrap" }, Object.entries(run.environment).map(([key, value]) => `${key}=${value}`).join(", "),
          Object.entries(run.environment_long).map(([key, text]) => el("details", {},
            el("summary", { text: `${key.replace("_", " ")} (${text.split("\n").length} lines)` }), el("pre", { text })))),
        el("td", { class: "wrap", text: run.metrics.map((metric) => `${metric.label} ${metric.value}`).join(", ") }))));

    const curve = card.curves.includes("loss") ? "loss" : card.curves[0];
    clear(document.getElementById("notes")).append(...card.notes.map((note) => {
      const item = el("li", {}, el("span", { class: "muted", text: note.created + " " }), note.text);
      if (note.automatic && note.step !== null && curve) {
        const span = Math.max(10, Math.round(note.step * 0.1));
        item.append(" ", el("a", {
          href: "/curves?" + query({ cards: card.name, metric: curve, x0: note.step - span, x1: note.step + span, mark: note.step }),
          text: `(step ${note.step.toLocaleString("en")} on the ${curve} curve)`,
        }));
      }
      return item;
    }));

    const profile = clear(document.getElementById("profile"));
    if (!card.profile) profile.append(el("p", { class: "muted", text: "not profiled" }));
    else {
      const rows = Object.entries(card.profile).filter(([key]) => key !== "details")
        .map(([key, value]) => el("tr", {}, el("td", { text: key }), el("td", { text: value })));
      const details = Object.entries(card.profile.details || {})
        .map(([key, value]) => el("tr", {}, el("td", { text: key }), el("td", { text: typeof value === "string" ? value : JSON.stringify(value) })));
      profile.append(el("table", {}, el("tbody", {}, rows, details)));
    }

    const curves = clear(document.getElementById("curves"));
    if (!card.curves.length) curves.append(el("p", { class: "muted", text: "no curves logged" }));
    for (const key of card.curves) curves.append(el("a", { href: "/curves?" + query({ cards: card.name, metric: key }), text: key }), " ");

    // Images shown; every file listed with its size and note, and a link that downloads it.
    const attachments = clear(document.getElementById("attachments"));
    if (!card.attachments.length) attachments.append(el("p", { class: "muted", text: "no attachments (expdb attach)" }));
    else {
      const figures = card.attachments.filter((file) => file.image).map((file) => el("figure", {},
        el("a", { href: file.url, title: "open " + file.name }, el("img", { src: file.url, alt: file.name })),
        el("figcaption", { text: file.note ? `${file.name}: ${file.note}` : file.name })));
      if (figures.length) attachments.append(el("div", { class: "figures" }, figures));
      table(attachments.appendChild(el("table", { id: "attachment-list" })), ["file", "size", "run", "note"],
        card.attachments.map((file) => el("tr", {},
          el("td", {}, el("a", { href: file.url, download: file.name, text: file.name })),
          el("td", { class: "num", text: file.size }), el("td", { class: "num", text: file.run === null ? "" : file.run }),
          el("td", { class: "wrap", text: file.note }))));
    }
  }

  async function load() {
    try {
      render(await get(api));
    } catch (failure) {
      document.getElementById("error").textContent = failure.message;
    }
  }

  async function change(path, body) {
    try {
      await post(api + path, body);
      document.getElementById("error").textContent = "";
    } catch (failure) {
      document.getElementById("error").textContent = failure.message;
    }
    load();
  }

  document.getElementById("add-note").addEventListener("click", () => {
    const input = document.getElementById("new-note");
    change("/notes", { text: input.value }).then(() => { input.value = ""; });
  });
  document.getElementById("add-tag").addEventListener("click", () => {
    const input = document.getElementById("new-tag");
    change("/tags", { add: [input.value.trim()] }).then(() => { input.value = ""; });
  });
  load();
})();
