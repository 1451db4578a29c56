// The form-based rule builder: nested all/any groups (negated: "none of", "not all
// of"), conditions on attributes with auto-complete from the site's schema, the
// operators each kind allows, value lists, relative dates, anniversaries, windows and
// trends, ratios, buckets and references to other segments. Every control carries the
// JSON path it edits (data-path), so a compiler error lands at its field.

import { debounce, field, h, options, uid } from "./dom.js";
import { OP_LABELS, covers, defaultValue, newGroup, newLeaf, nodeType, valueKind } from "./rules.js";
import { numberField, textField, valueEditor } from "./value_editors.js";

const WINDOWS = [["", "all time"], ["1d", "today"], ["7d", "last 7 days"], ["14d", "last 14 days"], ["30d", "last 30 days"], ["35d", "last 35 days"]];
const OFFSETS = [["", "ending today"], ["7d", "ending 7 days ago"], ["14d", "ending 14 days ago"], ["28d", "ending 28 days ago"]];
const TYPES = [["attr", "Attribute"], ["segment", "Segment"], ["ratio", "Ratio"], ["bucket", "Bucket %"], ["const", "Everyone / no one"]];

export function createRuleEditor({ schema, selfId, onChange }) {
  const attrs = Object.fromEntries(schema.attributes.map((a) => [a.name, a]));
  const listId = uid("attrs");
  const datalist = h("datalist", { id: listId }, schema.attributes.map((a) => h("option", { value: a.name, label: `${a.kind}${a.window ? " · daily window" : ""} · ${a.source}` })));
  const segmentIds = schema.segments.filter((s) => s.id !== selfId && s.status !== "archived").map((s) => [s.id, `${s.name} (${s.status})`]);
  const rootError = h("p", { class: "field-error", role: "alert", hidden: true });
  const tree = h("div", { class: "rule-tree" });
  const el = h("div", { class: "rule-editor" }, datalist, rootError, tree);
  let model = { rule: newGroup("all") };
  const changed = () => onChange(model.rule);
  const typing = debounce(changed, 150);
  const io = { changed, typing };

  /** Show `rule`; the top is always a group (a single condition becomes all(condition),
   * which matches the same visitors) so that conditions can be added next to it. */
  function set(rule) {
    let top = rule && typeof rule === "object" && Object.keys(rule).length ? rule : newGroup("all");
    const t = nodeType(top);
    const negatedGroup = t === "not" && ["all", "any"].includes(nodeType(top.not));
    if (t !== "all" && t !== "any" && !negatedGroup) top = { all: [top] };
    model = { rule: top };
    redraw();
  }
  function redraw(focusPath) {
    tree.replaceChildren(node(model.rule, "rule", (n) => (model.rule = n), true));
    if (focusPath) {
      const target = tree.querySelector(`[data-path="${CSS.escape(focusPath)}"]`) || tree.querySelector(`[data-focus="${CSS.escape(focusPath)}"]`);
      if (target) target.focus();
    }
  }
  /** A structural edit: redraw, keep focus near the edit, report the change. */
  function structural(focusPath) {
    redraw(focusPath);
    changed();
  }

  function node(n, path, replace, isRoot) {
    const t = nodeType(n);
    if (t === "all" || t === "any") return group(n, path, replace, false, isRoot);
    if (t === "not") {
      const inner = n.not;
      const it = nodeType(inner);
      if (it === "all" || it === "any") return group(inner, path + ".not", (x) => (n.not = x), true, isRoot, replace);
      if (it === "not") return h("div", { class: "group negated" }, h("strong", {}, "not"), node(inner, path + ".not", (x) => (n.not = x)));
      return clause(inner, path + ".not", replace, true, n);
    }
    return clause(n, path, replace, false, null);
  }

  function group(g, path, replace, negated, isRoot, replaceOuter) {
    const kind = "all" in g ? "all" : "any";
    const mode = (negated ? "not-" : "") + kind;
    const outerPath = negated ? path.replace(/\.not$/, "") : path;
    const setOuter = replaceOuter || replace;
    const modeSel = h("select", { dataset: { focus: outerPath + "#mode" } }, options([["all", "all of"], ["any", "any of"], ["not-any", "none of"], ["not-all", "not all of"]], mode));
    modeSel.addEventListener("change", () => {
      const [neg, k] = modeSel.value.startsWith("not-") ? [true, modeSel.value.slice(4)] : [false, modeSel.value];
      const fresh = { [k]: g[kind] };
      setOuter(neg ? { not: fresh } : fresh);
      structural(outerPath + "#mode");
    });
    const children = g[kind];
    const add = (fresh) => () => {
      children.push(fresh());
      structural(`${path}.${kind}[${children.length - 1}]#type`);
    };
    const head = h(
      "div",
      { class: "group-head" },
      field("Match", modeSel),
      h("button", { type: "button", onclick: add(newLeaf) }, "+ Condition"),
      h("button", { type: "button", onclick: add(() => newGroup("any")) }, "+ Group"),
      isRoot ? null : h("button", { type: "button", class: "icon remove", "aria-label": "Remove this group", onclick: () => removeAt(outerPath) }, "Remove group"),
    );
    const list = h("div", { class: "children" }, children.map((c, i) => node(c, `${path}.${kind}[${i}]`, (x) => (children[i] = x))));
    return h("fieldset", { class: "group" + (negated ? " negated" : ""), dataset: { path: path + "." + kind } }, h("legend", { class: "muted" }, isRoot ? "Rule" : "Group"), head, list);
  }

  /** Remove the node at `path` from its parent list (the last child of the root stays). */
  function removeAt(path) {
    const m = /^(.*)\.(all|any)\[(\d+)\]$/.exec(path);
    if (!m) return;
    const parent = m[1] === "rule" ? model.rule : lookup(m[1]);
    const list = parent[m[2]];
    list.splice(Number(m[3]), 1);
    if (list.length === 0) list.push(newLeaf());
    structural(`${m[1].replace(/\.not$/, "")}#mode`);
  }
  function lookup(path) {
    let cur = model;
    for (const part of path.match(/[A-Za-z_]+|\[\d+\]/g)) cur = part.startsWith("[") ? cur[Number(part.slice(1, -1))] : cur[part];
    return cur;
  }

  function clause(n, path, replace, negated, notWrapper) {
    const box = h("div", { class: "clause", role: "group", "aria-label": "Condition" });
    const outerPath = negated ? path.replace(/\.not$/, "") : path;
    const type = nodeType(n);
    const typeSel = h("select", { dataset: { focus: outerPath + "#type", path } }, options(TYPES, type));
    typeSel.addEventListener("change", () => {
      const fresh = { attr: newLeaf(), segment: { segment: segmentIds.length ? segmentIds[0][0] : "" }, ratio: { ratio: ["", ""], op: "gte", value: 0.5 }, bucket: { bucket: [0, 10] }, const: { const: true } }[typeSel.value];
      if (notWrapper) notWrapper.not = fresh;
      else replace(fresh);
      structural(outerPath + "#type");
    });
    const not = h("input", { type: "checkbox", checked: negated, dataset: { focus: outerPath + "#not" } });
    not.addEventListener("change", () => {
      if (negated) replace(n);
      else replace({ not: n });
      structural(outerPath + "#not");
    });
    const remove = h("button", { type: "button", class: "icon remove", "aria-label": "Remove this condition", onclick: () => removeAt(outerPath) }, "×");
    box.append(field("Condition", typeSel), h("div", { class: "field" }, h("label", {}, not, " not")));
    if (type === "segment") {
      const sel = h("select", {}, options([["", "choose…"], ...segmentIds], n.segment));
      sel.addEventListener("change", () => ((n.segment = sel.value), changed()));
      box.append(field("in segment", sel, { path: path + ".segment" }));
    } else if (type === "const") {
      const sel = h("select", {}, options([["true", "everyone"], ["false", "no one"]], String(n.const)));
      sel.addEventListener("change", () => ((n.const = sel.value === "true"), changed()));
      box.append(field("matches", sel, { path: path + ".const" }));
    } else if (type === "bucket") {
      box.append(numberField(io, "from %", n.bucket, 0, path + ".bucket[0]"), numberField(io, "to %", n.bucket, 1, path + ".bucket[1]"), textField(io, "salt (optional)", n, "salt", path + ".salt", { optional: true }));
    } else if (type === "ratio") {
      box.append(attrInput("numerator", n.ratio, 0, path + ".ratio[0]"), h("span", { class: "muted", style: "align-self:center" }, "/"), attrInput("denominator", n.ratio, 1, path + ".ratio[1]"));
      const tail = h("div", { class: "row" });
      const drawTail = () => keepFocus(() => tail.replaceChildren(opSelect(n, "number", path, drawTail), valueEditor(n, "number", path, [], io)));
      drawTail();
      box.append(tail);
    } else {
      const tail = h("div", { class: "row" });
      const drawTail = () => keepFocus(() => {
        const a = attrs[n.attr];
        const kind = n.window ? "number" : a ? a.kind : "number";
        const parts = [];
        if (a && a.window) parts.push(windowSelect(n, path, drawTail));
        parts.push(opSelect(n, kind, path, drawTail));
        if (["eq", "ne", "gt", "gte", "lt", "lte"].includes(n.op) && kind !== "flag" && kind !== "category") parts.push(modeSelect(n, a, path, drawTail));
        parts.push("ref" in n ? refEditor(n, a, path) : valueEditor(n, kind, path, (attrs[n.attr] || {}).values || [], io));
        tail.replaceChildren(...parts);
      });
      box.append(attrInput("attribute", n, "attr", path + ".attr", drawTail));
      drawTail();
      box.append(tail);
    }
    box.append(remove);
    return box;
  }

  /** Redraw part of a clause without losing the keyboard user's place. */
  function keepFocus(draw) {
    const f = document.activeElement;
    const key = f && f.dataset ? f.dataset.focus || f.dataset.path : null;
    draw();
    if (key && !f.isConnected) {
      const again = tree.querySelector(`[data-focus="${CSS.escape(key)}"]`) || tree.querySelector(`[data-path="${CSS.escape(key)}"]`);
      if (again) again.focus();
    }
  }

  function attrInput(label, obj, key, path, redrawTail) {
    const input = h("input", { class: "attr-input", list: listId, value: obj[key] || "", autocomplete: "off", spellcheck: "false" });
    let kindBefore = (attrs[obj[key]] || {}).kind;
    input.addEventListener("input", () => {
      obj[key] = input.value.trim();
      const a = attrs[obj[key]];
      if (redrawTail && a && a.kind !== kindBefore) {
        kindBefore = a.kind;
        if (!a.window) delete obj.window, delete obj.offset;
        if (!a.operators.includes(obj.op)) obj.op = a.operators[0];
        delete obj.ref, delete obj.factor;
        obj.value = defaultValue(obj.op, a.kind);
        if (obj.value === undefined) delete obj.value;
        redrawTail();
      }
      typing();
    });
    const a = attrs[obj[key]];
    return field(label, input, { path, hint: a ? `${a.kind}${a.window ? ", daily window" : ""}` : "type to search the schema" });
  }

  function windowSelect(n, path, redrawTail) {
    const sel = h("select", {}, options(WINDOWS, n.window || ""));
    const off = h("select", {}, options(OFFSETS, n.offset || ""));
    sel.addEventListener("change", () => {
      if (sel.value) n.window = sel.value;
      else delete n.window, delete n.offset;
      if (n.window && !["eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in"].includes(n.op)) (n.op = "gte"), (n.value = 1);
      redrawTail();
      changed();
    });
    off.addEventListener("change", () => {
      if (off.value) n.offset = off.value;
      else delete n.offset;
      changed();
    });
    return h("div", { class: "row" }, field("counted over", sel, { path: path + ".window" }), n.window ? field("window", off, { path: path + ".offset" }) : null);
  }

  function opSelect(n, kind, path, redrawTail) {
    const a = attrs[n.attr];
    let ops = n.window || n.ratio ? ["eq", "ne", "gt", "gte", "lt", "lte", "between"] : a ? a.operators : Object.keys(OP_LABELS);
    if (n.op && !ops.includes(n.op)) ops = [...ops, n.op];
    const sel = h("select", {}, options(ops.map((o) => [o, OP_LABELS[o] || o]), n.op));
    sel.addEventListener("change", () => {
      const before = valueKind(n.op || "eq", kind);
      n.op = sel.value;
      if (valueKind(n.op, kind) !== before || "ref" in n) {
        delete n.ref, delete n.factor;
        const v = defaultValue(n.op, kind);
        if (v === undefined) delete n.value;
        else n.value = v;
      }
      redrawTail();
      changed();
    });
    return field("operator", sel, { path: path + ".op" });
  }

  function modeSelect(n, a, path, redrawTail) {
    const modes = [["value", "a value"], ["ref", "another attribute"]];
    if (n.window) modes.push(["trend", "an earlier window"]);
    const cur = !("ref" in n) ? "value" : typeof n.ref === "object" ? "trend" : "ref";
    const sel = h("select", { dataset: { focus: path + "#cmp" } }, options(modes, cur));
    sel.addEventListener("change", () => {
      delete n.factor;
      if (sel.value === "value") delete n.ref, (n.value = defaultValue(n.op, n.window ? "number" : a ? a.kind : "number"));
      else if (sel.value === "ref") delete n.value, (n.ref = "");
      else delete n.value, (n.ref = { attr: n.attr, window: n.window, offset: n.window }), (n.factor = 1);
      redrawTail();
      changed();
    });
    return field("compared with", sel);
  }

  function refEditor(n, a, path) {
    const parts = [];
    const factor = h("input", { type: "number", step: "any", value: n.factor ?? "", placeholder: "1" });
    factor.addEventListener("input", () => {
      if (factor.value === "") delete n.factor;
      else n.factor = Number(factor.value);
      typing();
    });
    parts.push(field("× factor", factor, { path: path + ".factor" }));
    if (typeof n.ref === "object") {
      const off = h("select", {}, options(OFFSETS.slice(1), n.ref.offset));
      off.addEventListener("change", () => ((n.ref.offset = off.value), changed()));
      const win = h("select", {}, options(WINDOWS.slice(1), n.ref.window));
      win.addEventListener("change", () => ((n.ref.window = win.value), changed()));
      parts.push(field("of the window", win, { path: path + ".ref.window" }), field("", off, { path: path + ".ref.offset" }));
    } else {
      const holder = { ref: n.ref };
      const input = attrInput("other attribute", holder, "ref", path + ".ref");
      input.control.addEventListener("input", () => (n.ref = holder.ref));
      parts.push(input);
    }
    return h("div", { class: "row" }, parts);
  }

  /** Mark the field a compiler error names (the longest data-path covering it). */
  function showError(path, message) {
    clearErrors();
    let best = null;
    for (const c of tree.querySelectorAll("[data-path]")) {
      if (covers(c.dataset.path, path) && (!best || c.dataset.path.length > best.dataset.path.length)) best = c;
    }
    if (!best || best.tagName === "FIELDSET") {
      rootError.textContent = message;
      rootError.hidden = false;
      return rootError;
    }
    best.setAttribute("aria-invalid", "true");
    const errEl = document.getElementById((best.getAttribute("aria-describedby") || "").split(" ").pop());
    if (errEl) {
      errEl.textContent = message;
      errEl.hidden = false;
    }
    return best;
  }
  function clearErrors() {
    rootError.hidden = true;
    for (const c of tree.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
    for (const e of tree.querySelectorAll(".field-error")) e.hidden = true;
  }

  redraw();
  return { el, set, get: () => model.rule, showError, clearErrors };
}
