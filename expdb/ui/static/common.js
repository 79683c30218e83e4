// Shared by the pages of expdb ui. Every user string is put in the page as text (textContent),
// never as HTML; the server's Content-Security-Policy forbids inline script besides.
"use strict";

const expdb = (() => {
  // matplotlib's tab10, the colours of `expdb plot`: a card has the same colour in both.
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function get(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) throw new Error(body && body.error ? body.error : String(body));
    return body;
  }

  async function post(url, body) {
    const csrf = document.querySelector('meta[name="expdb-csrf"]').content;
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-expdb-csrf": csrf },
      body: JSON.stringify(body),
    });
    const found = await response.json();
    if (!response.ok) throw new Error(found.error || response.statusText);
    return found;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value === undefined || value === null || value === "" || value === false) continue;
      search.set(key, value === true ? "1" : String(value));
    }
    return search.toString();
  }

  function cardLink(name) {
    return el("a", { href: "/card/" + encodeURIComponent(name), text: name });
  }

  function statusBadge(status) {
    return el("span", { class: "status status-" + status, text: status });
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  return { COLOURS, el, get, post, query, cardLink, statusBadge, clear };
})();
