// Content library (popups, banners, inline blocks, recommendations) with a live preview
// drawn by the browser SDK's own renderer (preview.html in an iframe), and placements.

import { call, canEdit } from "../api.js";
import { announce, confirmDialog, field, h, options, showError, title } from "../dom.js";

const KINDS = ["popup", "banner", "inline", "recommendations"];
const STRATEGIES = ["popular", "popular_in_segment", "recently_viewed"];

export async function render(main, arg, query, screen) {
  if (screen === "placements" && arg) return placementForm(main, arg);
  if (arg) return contentForm(main, arg);
  const [contents, placements] = await Promise.all([call("contents"), call("placements")]);
  const edit = canEdit();
  main.replaceChildren(
    title("Content"),
    h("section", { "aria-labelledby": "lib-title" },
      h("h2", { id: "lib-title" }, "Content library"),
      edit ? h("p", {}, h("a", { class: "button primary", href: "#/content/new" }, "New content")) : null,
      h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Name", "Kind", "Title or strategy", "Version"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, contents.content.map((c) => h("tr", { dataset: { content: c.id } },
          h("td", {}, h("a", { href: `#/content/${encodeURIComponent(c.id)}` }, c.name || c.id), h("div", { class: "muted" }, c.id)),
          h("td", {}, c.kind),
          h("td", {}, c.payload.title || c.payload.strategy || c.payload.body || ""),
          h("td", {}, `v${c.version}`))))))),
    h("section", { "aria-labelledby": "pl-title" },
      h("h2", { id: "pl-title" }, "Placements"),
      edit ? h("p", {}, h("a", { class: "button", href: "#/placements/new" }, "New placement")) : null,
      h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Placement", "Kind", "Interrupts", "Default content"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, placements.placements.map((p) => h("tr", {},
          h("td", {}, h("a", { href: `#/placements/${encodeURIComponent(p.id)}` }, p.name || p.id), h("div", { class: "muted" }, p.id)),
          h("td", {}, p.kind),
          h("td", {}, p.interruptive ? "yes" : "no"),
          h("td", {}, p.default_content || "—"))))))),
  ); // prettier-ignore
}

async function contentForm(main, cid) {
  const isNew = cid === "new";
  const [item, segments] = await Promise.all([
    isNew ? { id: "", name: "", kind: "banner", payload: {} } : call("contents").then((all) => all.content.find((c) => c.id === cid)),
    call("segments", {}, { query: { per_page: 500, sort: "name" } }),
  ]);
  if (!item) throw new Error(`content ${cid} does not exist`);
  const p = item.payload;
  const input = (key, attrs = {}) => h("input", { value: p[key] ?? "", dataset: { path: "payload." + key }, ...attrs });
  const f = {
    id: h("input", { value: item.id, disabled: !isNew, spellcheck: "false", dataset: { path: "id" } }),
    name: h("input", { value: item.name, dataset: { path: "name" } }),
    kind: h("select", { dataset: { path: "kind" } }, options(KINDS, item.kind)),
    title: input("title"),
    body: h("textarea", { rows: 3, dataset: { path: "payload.body" } }, p.body || ""),
    image: input("image", { placeholder: "https://… or /path" }),
    cta: input("cta"),
    link: input("link", { placeholder: "https://… or /path" }),
    strategy: h("select", { dataset: { path: "payload.strategy" } }, options(STRATEGIES, p.strategy || "popular")),
    limit: input("limit", { type: "number", min: 1, max: 50 }),
    segment: h("select", { dataset: { path: "payload.segment" } }, options([["", "—"], ...segments.segments.map((s) => [s.id, s.name])], p.segment || "")),
  };
  const texts = h("div", {}, field("Title", f.title), field("Body", f.body), h("div", { class: "row" }, field("Image URL", f.image), field("Button text", f.cta), field("Link", f.link)));
  const recs = h("div", { class: "row" }, field("Strategy", f.strategy), field("How many", f.limit), field("Segment (popular in segment)", f.segment), field("Title", (f.recTitle = input("title"))));
  const frame = h("iframe", { class: "preview-frame", src: "/admin/preview.html", title: "Preview of the content, drawn by the SDK" });
  const body = () => {
    const kind = f.kind.value;
    const payload = {};
    if (kind === "recommendations") {
      payload.strategy = f.strategy.value;
      if (f.limit.value) payload.limit = Number(f.limit.value);
      if (f.strategy.value === "popular_in_segment") payload.segment = f.segment.value;
      if (f.recTitle.value) payload.title = f.recTitle.value;
    } else {
      for (const k of ["title", "body", "image", "cta", "link"]) if (f[k].value.trim()) payload[k] = f[k].value;
    }
    return { id: f.id.value.trim(), name: f.name.value, kind, payload };
  };
  const showKind = () => {
    recs.hidden = f.kind.value !== "recommendations";
    texts.hidden = !recs.hidden;
  };
  let ready = false;
  const update = () => {
    showKind();
    if (ready) frame.contentWindow.postMessage({ type: "segserver-preview", content: body(), placement: "preview_slot" }, location.origin);
  };
  const onReady = (e) => {
    if (e.source === frame.contentWindow && e.data && e.data.type === "segserver-preview-ready") {
      ready = true;
      update();
    }
  };
  window.addEventListener("message", onReady);
  const save = async () => {
    try {
      const out = isNew ? await call("createContent", {}, { body: body() }) : await call("updateContent", { id: cid }, { body: { ...body(), version: item.version } });
      announce(`Saved content ${out.id}, version ${out.version}`);
      location.hash = "#/content";
    } catch (err) {
      markField(main, err);
    }
  };
  const remove = async () => {
    if (!(await confirmDialog("Delete this content?", `${item.name || item.id} will be deleted.`, "Delete"))) return;
    try {
      await call("deleteContent", { id: cid }, { as: "none" });
      location.hash = "#/content";
    } catch (err) {
      showError(err);
    }
  };
  main.replaceChildren(
    title(isNew ? "New content" : item.name || item.id),
    h("p", {}, h("a", { href: "#/content" }, "← Content and placements")),
    h("div", { class: "split" },
      h("form", { class: "content-form", onsubmit: (e) => (e.preventDefault(), save()), oninput: update, onchange: update },
        h("div", { class: "row" }, field("ID", f.id), field("Name", f.name), field("Kind", f.kind)), texts, recs,
        h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", disabled: !canEdit() }, "Save"), !isNew && canEdit() ? h("button", { type: "button", class: "danger", onclick: remove }, "Delete") : null)),
      h("section", { "aria-labelledby": "pv-title" }, h("h2", { id: "pv-title" }, "Preview"), frame, h("p", { class: "muted" }, "Drawn by the SDK's own renderer, as on a site."))),
  ); // prettier-ignore
  showKind();
  return () => window.removeEventListener("message", onReady);
}

/** A 400 names its field ("payload.title: ..."): mark it and show the message. */
export function markField(main, err) {
  const m = /^([a-z_.[\]0-9]+):/.exec(err.message || "");
  const target = m && main.querySelector(`[data-path="${m[1]}"]`);
  for (const c of main.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
  if (target) {
    target.setAttribute("aria-invalid", "true");
    target.focus();
  }
  showError(err);
}

async function placementForm(main, pid) {
  const isNew = pid === "new";
  const [placements, contents] = await Promise.all([call("placements"), call("contents")]);
  const item = isNew ? { id: "", name: "", kind: "banner", interruptive: false, default_content: null } : placements.placements.find((p) => p.id === pid);
  if (!item) throw new Error(`placement ${pid} does not exist`);
  const id = h("input", { value: item.id, disabled: !isNew, dataset: { path: "id" } });
  const name = h("input", { value: item.name, dataset: { path: "name" } });
  const kind = h("select", { dataset: { path: "kind" } }, options(KINDS, item.kind));
  const interruptive = h("input", { type: "checkbox", checked: item.interruptive });
  const def = h("select", { dataset: { path: "default_content" } }, options([["", "none"], ...contents.content.map((c) => [c.id, `${c.name || c.id} (${c.kind})`])], item.default_content || ""));
  const body = () => ({ id: id.value.trim(), name: name.value, kind: kind.value, interruptive: interruptive.checked, default_content: def.value || null });
  const save = async (e) => {
    e.preventDefault();
    try {
      await (isNew ? call("createPlacement", {}, { body: body() }) : call("updatePlacement", { id: pid }, { body: { ...body(), version: item.version } }));
      announce("Placement saved");
      location.hash = "#/content";
    } catch (err) {
      markField(main, err);
    }
  };
  const remove = async () => {
    if (!(await confirmDialog("Delete this placement?", `${item.id} will be deleted.`, "Delete"))) return;
    try {
      await call("deletePlacement", { id: pid }, { as: "none" });
      location.hash = "#/content";
    } catch (err) {
      showError(err);
    }
  };
  main.replaceChildren(
    title(isNew ? "New placement" : item.name || item.id),
    h("p", {}, h("a", { href: "#/content" }, "← Content and placements")),
    h("form", { onsubmit: save },
      h("div", { class: "row" }, field("ID", id), field("Name", name), field("Kind", kind), field("Default content", def)),
      h("div", { class: "field" }, h("label", {}, interruptive, " Interrupts the visitor (counts against the site's popup limits)")),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", disabled: !canEdit() }, "Save"), !isNew && canEdit() ? h("button", { type: "button", class: "danger", onclick: remove }, "Delete") : null)),
  ); // prettier-ignore
}
