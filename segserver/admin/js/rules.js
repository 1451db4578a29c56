// The rule JSON (docs/rules.md) as the builder edits it: operator names people read,
// the kinds of value each operator takes, new leaves, JSON paths, and a short text of
// one clause (the server's text form is authoritative: POST .../rules/check).

export const OP_LABELS = {
  eq: "is", ne: "is not", gt: "is more than", gte: "is at least", lt: "is less than", lte: "is at most",
  between: "is between", in: "is one of", not_in: "is none of", exists: "has a value", missing: "has no value",
  ieq: "is (any case)", starts_with: "starts with", ends_with: "ends with", contains: "contains",
  has_any: "has any of", has_all: "has all of", has_none: "has none of",
  within: "within the last", older_than: "more than … ago", anniversary_within: "anniversary in the next",
};

/** What value an operator takes on an attribute of `kind` (the value editor to show). */
export function valueKind(op, kind) {
  if (op === "exists" || op === "missing") return "none";
  if (op === "within" || op === "older_than") return "duration";
  if (op === "anniversary_within") return "days";
  if (op === "between") return kind === "number" ? "number-pair" : "instant-pair";
  if (op === "in" || op === "not_in" || op.startsWith("has_")) return kind === "number" ? "number-list" : kind === "timestamp" || kind === "date" ? "instant-list" : "string-list";
  if (kind === "flag") return "flag";
  if (kind === "number") return "number";
  if (kind === "timestamp" || kind === "date") return "instant";
  return "string";
}

/** A sensible value when the operator changes to `op` (so the rule stays close to valid). */
export function defaultValue(op, kind) {
  switch (valueKind(op, kind)) {
    case "none": return undefined;
    case "duration": return "30d";
    case "days": return "7d";
    case "number-pair": return [0, 100];
    case "instant-pair": return [isoDay(-30), isoDay(0)];
    case "number-list": case "string-list": case "instant-list": return [];
    case "flag": return true;
    case "number": return 0;
    case "instant": return isoDay(0);
    default: return "";
  }
}

export const isoDay = (days) => new Date(Date.now() + days * 86400000).toISOString().slice(0, 10) + "T00:00:00Z";

export const newLeaf = () => ({ attr: "", op: "gt", value: 0 });
export const newGroup = (kind = "all") => ({ [kind]: [newLeaf()] });

/** The kind of a rule node. */
export function nodeType(node) {
  for (const k of ["all", "any", "not", "const", "segment", "bucket", "ratio", "attr"]) if (node && k in node) return k;
  return "attr";
}

/** "30d" ↔ {n: 30, unit: "d"}. */
export function splitDuration(text) {
  const m = /^([0-9]+(?:\.[0-9]+)?)([smhdw])$/.exec(String(text || ""));
  return m ? { n: m[1], unit: m[2] } : { n: "", unit: "d" };
}
export const UNITS = [["m", "minutes"], ["h", "hours"], ["d", "days"], ["w", "weeks"], ["s", "seconds"]];

/** JSON path ↔ node: "rule.all[1].any[0]" addresses a node inside `rule`. */
export function atPath(rule, path) {
  let node = { rule };
  for (const part of path.match(/[A-Za-z_]+|\[\d+\]/g) || []) {
    if (node === undefined || node === null) return undefined;
    node = part.startsWith("[") ? node[Number(part.slice(1, -1))] : node[part];
  }
  return node;
}

/** Does an error path (from the compiler) concern the field at `fieldPath`? The longest
 * field path that prefixes the error path wins (builder.js picks it). */
export const covers = (fieldPath, errorPath) =>
  errorPath === fieldPath || errorPath.startsWith(fieldPath + ".") || errorPath.startsWith(fieldPath + "[");

/** The path at the start of a compiler message: "rule.all[2].value: ..." → "rule.all[2].value". */
export function errorPath(message) {
  const m = /^((?:rule|text)(?:\.[A-Za-z_]+|\[\d+\])*)(?::|\s)/.exec(message || "");
  return m ? m[1] : null;
}

const v = (x) => JSON.stringify(x);
/** One clause as short text, for explanations (groups are summarised). */
export function clauseText(node) {
  const t = nodeType(node);
  if (t === "all" || t === "any") return `${t}(${node[t].length} conditions)`;
  if (t === "not") return `not ${clauseText(node.not)}`;
  if (t === "const") return node.const ? "true" : "false";
  if (t === "segment") return `segment ${node.segment}`;
  if (t === "bucket") return `bucket [${node.bucket.join(", ")}]`;
  const left = t === "ratio" ? `${node.ratio[0]} / ${node.ratio[1]}` : node.attr + (node.window ? `[${node.window}${node.offset ? " offset " + node.offset : ""}]` : "");
  const op = node.op;
  if (op === "exists" || op === "missing") return `${left} ${op}`;
  if ("ref" in node) {
    const ref = typeof node.ref === "string" ? node.ref : `${node.ref.attr}[${node.ref.window}${node.ref.offset ? " offset " + node.ref.offset : ""}]`;
    return `${left} ${op} ${node.factor !== undefined ? node.factor + " * " : ""}${ref}`;
  }
  if (op === "between") return `${left} between ${v(node.value[0])} and ${v(node.value[1])}`;
  if (op === "within" || op === "older_than" || op === "anniversary_within") return `${left} ${op} ${node.value}`;
  return `${left} ${OP_LABELS[op] || op} ${Array.isArray(node.value) ? "[" + node.value.map(v).join(", ") + "]" : v(node.value)}`;
}
