// A segment's versions: the list, a line diff between any two, and rollback (the old
// definition becomes the newest version; history is never rewritten).

import { call, canEdit } from "../api.js";
import { announce, h, showError, when } from "../dom.js";

const FIELDS = ["name", "description", "tags", "type", "status", "priority", "rule", "salt"];

/** Lines of a version as compared: its editable fields, pretty-printed. */
const lines = (v) => JSON.stringify(Object.fromEntries(FIELDS.map((k) => [k, v[k]])), null, 2).split("\n");

/** A line diff (longest common subsequence): [["same"|"add"|"del", line], ...]. */
export function diff(a, b) {
  const n = a.length;
  const m = b.length;
  const L = Array.from({ length: n + 1 }, () => new Int32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) out.push(["same", a[i++]]), j++;
    else if (L[i + 1][j] >= L[i][j + 1]) out.push(["del", a[i++]]);
    else out.push(["add", b[j++]]);
  }
  while (i < n) out.push(["del", a[i++]]);
  while (j < m) out.push(["add", b[j++]]);
  return out;
}

export async function versionsPanel(sid, onRolledBack) {
  const box = h("section", { class: "card", "aria-labelledby": "versions-title" }, h("h2", { id: "versions-title" }, "Versions"));
  let versions;
  try {
    versions = (await call("segmentVersions", { segment: sid })).versions;
  } catch (err) {
    showError(err);
    return box;
  }
  const current = versions[0];
  let older = versions[1] || versions[0];
  let newer = current;
  const out = h("div", { class: "diff", role: "region", "aria-label": "Differences", tabindex: "0" });
  const caption = h("p", { class: "muted" });
  const draw = () => {
    caption.textContent = `Changes from version ${older.version} to version ${newer.version} (− removed, + added)`;
    out.replaceChildren(...diff(lines(older), lines(newer)).map(([k, line]) => h("span", { class: k }, (k === "add" ? "+ " : k === "del" ? "− " : "  ") + line)));
  };
  const radio = (name, v, checked, pick) =>
    h("input", { type: "radio", name, value: v.version, checked, "aria-label": `${name === "from" ? "Compare from" : "Compare to"} version ${v.version}`, onchange: () => (pick(v), draw()) });
  const rows = versions.map((v) =>
    h(
      "tr",
      {},
      h("td", {}, `v${v.version}`, v === current ? " (current)" : ""),
      h("td", {}, when(v.updated_at)),
      h("td", {}, h("span", { class: "badge " + v.status }, v.status)),
      h("td", {}, radio("from", v, v === older, (x) => (older = x))),
      h("td", {}, radio("to", v, v === newer, (x) => (newer = x))),
      h("td", {}, v !== current && canEdit() ? h("button", { type: "button", onclick: () => rollback(v) }, `Roll back to v${v.version}`) : null),
    ),
  );
  async function rollback(v) {
    try {
      await call("rollbackSegment", { segment: sid }, { body: { to: v.version, version: current.version } });
      announce(`Rolled back to version ${v.version}`);
      onRolledBack();
    } catch (err) {
      showError(err);
    }
  }
  box.append(
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Version", "Saved", "Status", "From", "To", ""].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))),
    caption,
    out,
  );
  draw();
  return box;
}
