// Segments: the list with debounced search over name and description, status, type
// and tag filters, a cards view and a list view with sortable columns, each segment's
// size (a link to its members) and size sparkline, a lock on static segments.

import { call, canEdit } from "../api.js";
import { sparkline } from "../charts.js";
import { announce, debounce, field, h, num, options, showError, title, when } from "../dom.js";

const PER_PAGE = 50;
const COLUMNS = [
  ["name", "Name", true],
  ["status", "Status", true],
  ["type", "Type", false],
  ["priority", "Priority", true],
  ["size", "Size", true],
  ["trend", "Last 30 days", false],
  ["updated_at", "Updated", true],
];
const state = { q: "", status: "", type: "", tag: "", sort: "name", page: 1, view: localStorage.getItem("segserver-admin-view") || "list" };
const tags = new Set();

export async function render(main, arg, query) {
  if (arg) return (await import("./builder.js")).render(main, arg, query);
  const search = h("input", { type: "search", value: state.q, placeholder: "Name or description", autocomplete: "off" });
  const status = h("select", {}, options([["", "All"], "active", "draft", "archived"], state.status));
  const type = h("select", {}, options([["", "All"], "dynamic", "static"], state.type));
  const tag = h("select", {}, options([["", "All"], ...tags], state.tag));
  const listBtn = h("button", { type: "button", "aria-pressed": String(state.view === "list") }, "List");
  const cardsBtn = h("button", { type: "button", "aria-pressed": String(state.view === "cards") }, "Cards");
  const results = h("div", { id: "segment-results" });
  const count = h("p", { class: "muted", id: "segment-count" });
  let sizes = {};

  const newBtn = h("a", { class: "button primary editor-only", href: "#/segments/new" }, "New segment");
  main.replaceChildren(
    title("Segments"),
    h(
      "div",
      { class: "toolbar", role: "search" },
      field("Search", search),
      field("Status", status),
      field("Type", type),
      field("Tag", tag),
      h("div", { class: "field" }, h("span", { class: "label", id: "view-label" }, "View"), h("div", { role: "group", "aria-labelledby": "view-label", class: "row" }, listBtn, cardsBtn)),
      canEdit() ? newBtn : null,
    ),
    count,
    results,
  );

  let seq = 0;
  async function load() {
    const mine = ++seq;
    const sortKey = state.sort.replace(/^-/, "");
    const serverSort = sortKey === "size" ? "name" : state.sort;
    let page;
    try {
      const [found, sized] = await Promise.all([
        call("segments", {}, { query: { q: state.q, status: state.status, type: state.type, tag: state.tag, sort: serverSort, page: state.page, per_page: PER_PAGE } }),
        Object.keys(sizes).length ? Promise.resolve(null) : call("sizes", {}, { query: { points: 30 } }),
      ]);
      if (sized) sizes = sized.sizes;
      page = found;
    } catch (err) {
      return showError(err);
    }
    if (mine !== seq) return; // a newer search answered first
    const drawn = performance.now(); // the page's own work from here (measured by the e2e tests)
    for (const s of page.segments) for (const t of s.tags) tags.add(t);
    if (tag.options.length !== tags.size + 1) tag.replaceChildren(...options([["", "All"], ...[...tags].sort()], state.tag));
    let rows = page.segments;
    if (sortKey === "size") {
      const dir = state.sort.startsWith("-") ? -1 : 1;
      rows = [...rows].sort((a, b) => dir * (((sizes[a.id] || {}).size ?? -1) - ((sizes[b.id] || {}).size ?? -1)));
    }
    const pages = Math.max(1, Math.ceil(page.total / PER_PAGE));
    count.textContent = `${num(page.total)} segment${page.total === 1 ? "" : "s"}` + (pages > 1 ? ` · page ${state.page} of ${pages}` : "");
    results.replaceChildren(state.view === "cards" ? cards(rows, sizes) : table(rows, sizes, resort), pager(pages));
    performance.measure("admin:segments:draw", { start: drawn });
    announce(count.textContent);
  }

  function resort(key) {
    state.sort = state.sort === key ? "-" + key : key;
    load();
  }

  function pager(pages) {
    if (pages <= 1) return "";
    const go = (p) => () => {
      state.page = p;
      load();
    };
    return h(
      "nav",
      { class: "pager", "aria-label": "Pages" },
      h("button", { type: "button", disabled: state.page <= 1, onclick: go(state.page - 1) }, "Previous"),
      h("span", {}, `Page ${state.page} of ${pages}`),
      h("button", { type: "button", disabled: state.page >= pages, onclick: go(state.page + 1) }, "Next"),
    );
  }

  const reload = () => {
    state.page = 1;
    load();
  };
  const typed = debounce(() => {
    state.q = search.value.trim();
    reload();
  }, 250);
  search.addEventListener("input", typed);
  status.addEventListener("change", () => ((state.status = status.value), reload()));
  type.addEventListener("change", () => ((state.type = type.value), reload()));
  tag.addEventListener("change", () => ((state.tag = tag.value), reload()));
  const setView = (v) => () => {
    state.view = v;
    localStorage.setItem("segserver-admin-view", v);
    listBtn.setAttribute("aria-pressed", String(v === "list"));
    cardsBtn.setAttribute("aria-pressed", String(v === "cards"));
    load();
  };
  listBtn.addEventListener("click", setView("list"));
  cardsBtn.addEventListener("click", setView("cards"));
  await load();
  return () => typed.cancel();
}

function sizeLink(seg, sizes) {
  const s = sizes[seg.id];
  if (!s || s.size === null || s.size === undefined) return h("span", { class: "muted", title: "Drafts and archived segments have no stored members" }, "—");
  return h("a", { href: `#/analytics/${encodeURIComponent(seg.id)}`, "aria-label": `${num(s.size)} members of ${seg.name}` }, num(s.size));
}

const lock = (seg) => (seg.type === "static" ? h("span", { class: "lock", role: "img", "aria-label": "static (members uploaded or frozen)", title: "Static segment" }, "🔒") : null);
const spark = (seg, sizes) => sparkline((sizes[seg.id] || {}).history, { grey: seg.status !== "active", label: `Size of ${seg.name} over the last 30 days` });

function table(rows, sizes, resort) {
  const state_ = (key) => {
    const cur = state.sort.replace(/^-/, "");
    if (cur !== key) return "none";
    return state.sort.startsWith("-") ? "descending" : "ascending";
  };
  const head = h(
    "tr",
    {},
    COLUMNS.map(([key, label, sortable]) =>
      h("th", { scope: "col", class: key === "size" ? "num" : key === "trend" ? "hide-narrow" : "", "aria-sort": sortable ? state_(key) : null }, sortable ? h("button", { type: "button", class: "sort", onclick: () => resort(key) }, label, state_(key) === "ascending" ? " ▲" : state_(key) === "descending" ? " ▼" : "") : label),
    ),
  );
  const body = rows.map((seg) =>
    h(
      "tr",
      { dataset: { segment: seg.id } },
      h("td", {}, h("a", { href: `#/segments/${encodeURIComponent(seg.id)}` }, seg.name), " ", lock(seg), seg.description ? h("div", { class: "muted" }, seg.description) : null),
      h("td", {}, h("span", { class: "badge " + seg.status }, seg.status)),
      h("td", {}, seg.type),
      h("td", { class: "num" }, seg.priority),
      h("td", { class: "num" }, sizeLink(seg, sizes)),
      h("td", { class: "hide-narrow" }, spark(seg, sizes)),
      h("td", {}, when(seg.updated_at)),
    ),
  );
  return h("div", { class: "table-wrap" }, h("table", { class: "segments" }, h("caption", { class: "muted", style: "text-align:left" }, "Segments; choose a column heading to sort"), h("thead", {}, head), h("tbody", {}, body)));
}

function cards(rows, sizes) {
  return h(
    "ul",
    { class: "cards" },
    rows.map((seg) =>
      h(
        "li",
        { class: "card", dataset: { segment: seg.id } },
        h("h2", { style: "margin:0;font-size:1.05rem" }, h("a", { href: `#/segments/${encodeURIComponent(seg.id)}` }, seg.name), " ", lock(seg)),
        h("div", { class: "row" }, h("span", { class: "badge " + seg.status }, seg.status), h("span", { class: "badge" }, seg.type), ...seg.tags.map((t) => h("span", { class: "badge" }, "#" + t))),
        h("div", { class: "row" }, h("span", { class: "size" }, sizeLink(seg, sizes)), spark(seg, sizes)),
        seg.description ? h("p", { class: "muted", style: "margin:0" }, seg.description) : null,
      ),
    ),
  );
}
