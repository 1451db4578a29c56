// Analytics: one segment's size history, members (sample, CSV export, static upload,
// freeze), the overlap heat map of chosen segments and the set-expression tool
// (union, intersection, exclusion) with save-as-static.

import { call, canEdit } from "../api.js";
import { heat, lineChart } from "../charts.js";
import { announce, download, field, h, num, options, showError, title, when } from "../dom.js";

const DAY = 86400;

export async function render(main, sid) {
  const [list, sized, schema] = await Promise.all([call("segments", {}, { query: { per_page: 500, sort: "name" } }), call("sizes", {}, { query: { points: 2 } }), call("schema")]);
  const usable = list.segments.filter((s) => sized.sizes[s.id] && sized.sizes[s.id].size !== null);
  const byId = Object.fromEntries(list.segments.map((s) => [s.id, s]));
  const chosen = sid && byId[sid] ? byId[sid] : usable[0];
  const picker = h("select", { onchange: (e) => (location.hash = `#/analytics/${encodeURIComponent(e.target.value)}`) }, options(usable.map((s) => [s.id, s.name]), chosen && chosen.id));
  main.replaceChildren(
    title("Analytics"),
    h("div", { class: "toolbar" }, field("Segment", picker)),
    chosen ? await segmentPanel(chosen, schema) : h("p", {}, "No segment has stored members yet: activate one."),
    toolsPanel(usable),
  );
}

async function segmentPanel(seg, schema) {
  const now = Date.now() / 1000;
  const [stats, members] = await Promise.all([
    call("stats", { segment: seg.id }, { query: { since: Math.floor(now - 90 * DAY) } }),
    call("query", {}, { body: { expression: seg.id } }),
  ]);
  const points = stats.history.map((p) => [p.t, p.size]);
  const table = h(
    "details",
    {},
    h("summary", {}, "Size history as a table"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time"), h("th", { scope: "col", class: "num" }, "Size"))), h("tbody", {}, points.slice(-50).map(([t, n]) => h("tr", {}, h("td", {}, when(t)), h("td", { class: "num" }, num(n)))))),
  );
  const box = h(
    "section",
    { class: "card stack", "aria-labelledby": "seg-title" },
    h("h2", { id: "seg-title" }, seg.name, " ", h("span", { class: "badge " + seg.status }, seg.status), seg.type === "static" ? h("span", { class: "lock", role: "img", "aria-label": "static" }, " 🔒") : null),
    h("p", {}, h("span", { class: "preview-count", id: "members-count" }, num(stats.size)), " members now · ", h("a", { href: `#/segments/${encodeURIComponent(seg.id)}` }, "edit the segment")),
    lineChart(points, { label: `Size of ${seg.name} over the last 90 days: from ${num(points.length ? points[0][1] : 0)} to ${num(stats.size)}` }),
    table,
    h("h3", {}, "Members (sample)"),
    h("ol", { class: "samples" }, members.sample.map((v) => h("li", {}, h("a", { href: `#/visitors/${encodeURIComponent(v)}` }, v)))),
    exportForm(seg, schema),
  );
  if (canEdit() && seg.type === "static") box.append(uploadForm(seg));
  if (canEdit() && seg.type === "dynamic") box.append(freezeForm(seg));
  return box;
}

function exportForm(seg, schema) {
  const attrs = h("input", { list: "export-attrs", placeholder: "e.g. country, total_spent", autocomplete: "off" });
  const run = async () => {
    try {
      const blob = await call("members", { segment: seg.id }, { query: { attrs: attrs.value.split(",").map((a) => a.trim()).filter(Boolean).join(",") }, as: "blob" });
      download(blob, `${seg.id}.csv`);
      announce(`Exported the members of ${seg.name}`);
    } catch (err) {
      showError(err);
    }
  };
  return h(
    "div",
    { class: "toolbar" },
    field("Attributes to export", attrs, { hint: "comma separated, optional" }),
    h("datalist", { id: "export-attrs" }, schema.attributes.map((a) => h("option", { value: a.name }))),
    h("button", { type: "button", onclick: run }, "Export members (CSV)"),
  );
}

function uploadForm(seg) {
  const file = h("input", { type: "file", accept: ".csv,text/csv,text/plain" });
  const ids = h("textarea", { rows: 3, placeholder: "visitor ids, one per line" });
  const mode = h("select", {}, options([["replace", "replace the members"], ["add", "add to the members"]], "replace"));
  const result = h("p", { role: "status" });
  const send = async () => {
    try {
      const csv = file.files.length ? await file.files[0].text() : ids.value;
      const out = await call("uploadMembers", { segment: seg.id }, { csv, query: { mode: mode.value } });
      result.textContent = `${num(out.added)} added, ${num(out.unknown_count)} without a profile; size now ${num(out.size)}`;
      document.getElementById("members-count").textContent = num(out.size);
    } catch (err) {
      showError(err);
    }
  };
  return h("section", { "aria-labelledby": "upload-title" }, h("h3", { id: "upload-title" }, "Upload members"), h("div", { class: "row" }, field("CSV file", file), field("or visitor ids", ids), field("Mode", mode)), h("button", { type: "button", onclick: send }, "Upload"), result);
}

function freezeForm(seg) {
  const id = h("input", { value: `${seg.id}_frozen`, spellcheck: "false" });
  const result = h("p", { role: "status" });
  const run = async () => {
    try {
      const out = await call("freeze", { segment: seg.id }, { body: { id: id.value.trim(), name: `${seg.name} (frozen)` } });
      result.replaceChildren("Frozen: ", h("a", { href: `#/analytics/${encodeURIComponent(out.id)}` }, out.id), ` with ${num(out.size)} members`);
    } catch (err) {
      showError(err);
    }
  };
  return h("section", { "aria-labelledby": "freeze-title" }, h("h3", { id: "freeze-title" }, "Freeze into a static segment"), h("div", { class: "toolbar" }, field("New segment id", id), h("button", { type: "button", onclick: run }, "Freeze members now")), result);
}

function toolsPanel(usable) {
  const picks = usable.map((s) => h("input", { type: "checkbox", value: s.id, "aria-label": s.name }));
  const list = h("fieldset", { class: "chips" }, h("legend", {}, "Segments to combine"), picks.map((c, i) => h("label", { class: "chip" }, c, " ", usable[i].name)));
  const selected = () => picks.filter((c) => c.checked).map((c) => c.value);
  const nameOf = Object.fromEntries(usable.map((s) => [s.id, s.name]));
  const heatBox = h("div", { class: "table-wrap" });
  const op = h("select", {}, options([["or", "union: in any of them"], ["and", "intersection: in all of them"], ["exclude", "exclusion: in the first, in none of the others"]], "or"));
  const exprText = h("textarea", { rows: 3, spellcheck: "false" });
  const exprResult = h("div", { role: "status" });
  const saveId = h("input", { spellcheck: "false", placeholder: "new_static_segment" });

  const expression = () => {
    const ids = selected();
    if (op.value === "exclude") return ids.length > 1 ? { and: [ids[0], { not: { or: ids.slice(1) } }] } : ids[0];
    return ids.length === 1 ? ids[0] : { [op.value]: ids };
  };
  const syncExpr = () => (exprText.value = selected().length ? JSON.stringify(expression()) : "");
  for (const c of picks) c.addEventListener("change", syncExpr);
  op.addEventListener("change", syncExpr);

  async function overlap() {
    const ids = selected();
    if (ids.length < 2) return showError(new Error("Choose at least two segments to compare."));
    try {
      const out = await call("overlap", {}, { body: { ids } });
      heatBox.replaceChildren(heatmap(out.ids, out.matrix, nameOf));
      announce(`Overlap of ${ids.length} segments`);
    } catch (err) {
      showError(err);
    }
  }
  async function run(saveAs) {
    let expr;
    try {
      expr = JSON.parse(exprText.value);
    } catch (_) {
      return showError(new Error("The expression is not valid JSON."));
    }
    const body = { expression: expr };
    if (saveAs) body.save_as = { id: saveId.value.trim(), name: saveId.value.trim() };
    try {
      const out = await call("query", {}, { body });
      exprResult.replaceChildren(
        h("p", {}, h("span", { class: "preview-count", id: "expression-count" }, num(out.count)), ` visitors (${out.took_ms} ms)`),
        out.saved ? h("p", {}, "Saved as the static segment ", h("a", { href: `#/analytics/${encodeURIComponent(out.saved.id)}` }, out.saved.id)) : null,
        h("p", { class: "muted" }, "Sample: ", out.sample.slice(0, 10).join(", ")),
      );
      announce(`${num(out.count)} visitors`);
    } catch (err) {
      showError(err);
    }
  }
  return h(
    "section",
    { class: "card stack", "aria-labelledby": "tools-title" },
    h("h2", { id: "tools-title" }, "Overlap and set expressions"),
    list,
    h("div", { class: "actions" }, h("button", { type: "button", onclick: overlap }, "Show overlap")),
    heatBox,
    h("h3", {}, "Set expression"),
    h("div", { class: "row" }, field("Operation", op), field("Expression (JSON)", exprText, { hint: 'segment ids combined with {"or": [...]}, {"and": [..., {"not": ...}]}' })),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: () => run(false) }, "Count")),
    canEdit() ? h("div", { class: "toolbar" }, field("Save the result as a static segment", saveId), h("button", { type: "button", onclick: () => run(true) }, "Save as static")) : null,
    exprResult,
  );
}

function heatmap(ids, matrix, nameOf) {
  const head = h("tr", {}, h("td", {}), ids.map((id) => h("th", { scope: "col" }, nameOf[id] || id)));
  const rows = ids.map((id, i) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, nameOf[id] || id),
      ids.map((other, j) => {
        const share = matrix[i][i] ? matrix[i][j] / matrix[i][i] : 0;
        const c = heat(share);
        return h("td", { style: `background:${c.background};color:${c.color}`, title: `${(100 * share).toFixed(0)} % of ${nameOf[id] || id}` }, num(matrix[i][j]));
      }),
    ),
  );
  return h("table", { class: "heat" }, h("caption", { class: "muted", style: "text-align:left" }, "Visitors in both; the colour is the share of the row's segment"), h("thead", {}, head), h("tbody", {}, rows));
}
