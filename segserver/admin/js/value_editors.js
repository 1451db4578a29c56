// Value editors of the rule builder: numbers, pairs, instants (UTC), durations
// ("within the last 30 days", "more than 2 hours ago"), anniversaries in days, flags,
// strings with the values seen so far, and include/exclude value lists as chips.
// `ctx.changed()` reports an edit at once, `ctx.typing()` after a pause.

import { field, h, options, uid } from "./dom.js";
import { splitDuration, UNITS, valueKind } from "./rules.js";

export function valueEditor(n, kind, path, known, ctx) {
  const vk = valueKind(n.op || "eq", kind);
  const p = path + ".value";
  switch (vk) {
    case "none":
      return h("span", {});
    case "number":
      return numberField(ctx, "value", n, "value", p);
    case "number-pair":
      if (!Array.isArray(n.value)) n.value = [0, 0];
      return h("div", { class: "row" }, numberField(ctx, "from", n.value, 0, p + "[0]"), numberField(ctx, "to", n.value, 1, p + "[1]"));
    case "instant":
      return instantField(ctx, "value (UTC)", n, "value", p, kind);
    case "instant-pair":
      if (!Array.isArray(n.value)) n.value = ["", ""];
      return h("div", { class: "row" }, instantField(ctx, "from (UTC)", n.value, 0, p + "[0]", kind), instantField(ctx, "to (UTC)", n.value, 1, p + "[1]", kind));
    case "duration":
      return durationField(ctx, n, p, n.op === "older_than" ? "ago" : "");
    case "days": {
      const d = splitDuration(n.value);
      const input = h("input", { type: "number", min: "0", max: "366", step: "1", value: d.n });
      input.addEventListener("input", () => ((n.value = `${input.value}d`), ctx.typing()));
      return field("days (year ignored)", input, { path: p });
    }
    case "flag": {
      const sel = h("select", {}, options([["true", "true"], ["false", "false"]], String(n.value)));
      sel.addEventListener("change", () => ((n.value = sel.value === "true"), ctx.changed()));
      return field("value", sel, { path: p });
    }
    case "string-list":
    case "number-list":
    case "instant-list":
      return chips(ctx, n, p, known, vk === "number-list", n.op === "not_in" || n.op === "has_none" ? "exclude values" : "include values");
    default:
      return textField(ctx, "value", n, "value", p, { known });
  }
}

export function numberField(ctx, label, obj, key, path) {
  const input = h("input", { type: "number", step: "any", value: obj[key] ?? "" });
  input.addEventListener("input", () => ((obj[key] = input.value === "" ? "" : Number(input.value)), ctx.typing()));
  return field(label, input, { path });
}

export function textField(ctx, label, obj, key, path, { known = [], optional = false } = {}) {
  const id = known.length ? uid("vals") : null;
  const input = h("input", { value: obj[key] ?? "", list: id, autocomplete: "off" });
  input.addEventListener("input", () => {
    if (optional && input.value === "") delete obj[key];
    else obj[key] = input.value;
    ctx.typing();
  });
  const f = field(label, input, { path });
  if (id) f.append(h("datalist", { id }, known.map((v) => h("option", { value: v }))));
  return f;
}

function instantField(ctx, label, obj, key, path, kind) {
  const isDate = kind === "date";
  const raw = String(obj[key] ?? "");
  const input = h("input", { type: isDate ? "date" : "datetime-local", value: isDate ? raw.slice(0, 10) : raw.replace(/Z$/, "").slice(0, 16) });
  input.addEventListener("input", () => {
    obj[key] = isDate ? input.value : input.value ? `${input.value}:00Z` : "";
    ctx.typing();
  });
  return field(label, input, { path });
}

function durationField(ctx, n, path, suffix) {
  const d = splitDuration(n.value);
  const amount = h("input", { type: "number", min: "0", step: "any", value: d.n });
  const unit = h("select", { "aria-label": "unit" }, options(UNITS, d.unit));
  const update = () => ((n.value = `${amount.value}${unit.value}`), ctx.typing());
  amount.addEventListener("input", update);
  unit.addEventListener("change", update);
  const f = field(n.op === "within" ? "within the last" : "more than", amount, { path });
  f.append(h("div", { class: "row" }, unit, suffix ? h("span", {}, suffix) : null));
  return f;
}

function chips(ctx, n, path, known, numeric, label) {
  if (!Array.isArray(n.value)) n.value = n.value === undefined || n.value === "" ? [] : [n.value];
  const id = known.length ? uid("vals") : null;
  const input = h("input", { list: id, autocomplete: "off", size: 12 });
  const box = h("div", { class: "chips" });
  const draw = () =>
    box.replaceChildren(
      ...n.value.map((v, i) =>
        h("span", { class: "chip" }, String(v), h("button", { type: "button", "aria-label": `Remove ${v}`, onclick: () => (n.value.splice(i, 1), draw(), ctx.changed(), input.focus()) }, "×")),
      ),
    );
  const addValue = () => {
    const text = input.value.trim();
    if (!text) return;
    n.value.push(numeric ? Number(text) : text);
    input.value = "";
    draw();
    ctx.changed();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      addValue();
    }
  });
  draw();
  const f = field(label, input, { path, hint: "Enter adds a value" });
  f.append(h("div", { class: "row" }, h("button", { type: "button", onclick: addValue }, "Add"), box));
  if (id) f.append(h("datalist", { id }, known.map((v) => h("option", { value: v }))));
  return f;
}
