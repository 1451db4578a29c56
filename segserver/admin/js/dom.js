// Small DOM helpers. Server strings reach the page only as text or attribute values
// (h() never sets innerHTML), so nothing a visitor or an editor typed can run here.

let ids = 0;
/** A unique id for label/aria wiring. */
export const uid = (prefix = "f") => `${prefix}-${++ids}`;

/**
 * h("button", {class: "x", onclick: fn, disabled: true}, "text", child, [more])
 * Attributes: `on*` functions become listeners, `dataset` an object, booleans toggle,
 * null/undefined/false are skipped; children: strings (as text), nodes, arrays.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value" && "value" in el) el.value = v;
    else if (k === "checked" || k === "selected") el[k] = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** A labelled form field: the label names the control (for=), a hint and an error slot
 * are tied to it with aria-describedby. Returns the wrapper; `.control` is the input. */
export function field(label, control, { hint, path } = {}) {
  control.id = control.id || uid();
  const errId = uid("err");
  const described = [errId];
  const wrap = h("div", { class: "field" }, h("label", { for: control.id }, label), control);
  if (hint) {
    const hintId = uid("hint");
    described.unshift(hintId);
    wrap.append(h("small", { id: hintId, class: "hint" }, hint));
  }
  wrap.append(h("small", { id: errId, class: "field-error", role: "alert", hidden: true }));
  control.setAttribute("aria-describedby", described.join(" "));
  if (path) control.dataset.path = path;
  wrap.control = control;
  return wrap;
}

/** Options for a <select>: [value, label] pairs or plain values. */
export const options = (items, selected) =>
  items.map((it) => {
    const [value, label] = Array.isArray(it) ? it : [it, it];
    return h("option", { value, selected: String(value) === String(selected) }, label);
  });

/** Run `fn` `ms` after the last call (search boxes, live preview). */
export function debounce(fn, ms) {
  let t;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  d.flush = (...args) => {
    clearTimeout(t);
    fn(...args);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

const nf = new Intl.NumberFormat("en");
export const num = (n) => (n === null || n === undefined ? "—" : nf.format(n));
export const pct = (x, digits = 1) => (x === null || x === undefined ? "—" : `${(100 * x).toFixed(digits)} %`);
/** Epoch seconds → "2026-11-22 12:00 UTC". */
export const when = (t) => (t ? new Date(t * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC" : "—");

const KEPT_MESSAGES = 3;
/** Say `message` in the status region (a screen reader reads each new line). The last
 * few messages stay, so one arriving from a background task does not wipe the answer
 * to what the user just did; `announce("")` clears the region (a new screen). */
export function announce(message) {
  const el = document.getElementById("status");
  if (!message) {
    el.replaceChildren();
    return;
  }
  // a new element after a tick, so that a repeated message is announced again
  setTimeout(() => {
    el.append(h("p", {}, message));
    while (el.childElementCount > KEPT_MESSAGES) el.firstElementChild.remove();
  }, 20);
}

/** Show an error (an ApiError or any Error) in the page's alert region. */
export function showError(err, where) {
  const box = where || document.getElementById("alert");
  box.replaceChildren(
    h("strong", {}, err.code ? `${err.code}: ` : "Error: "),
    err.message || String(err),
    h("button", { type: "button", class: "link", onclick: () => (box.hidden = true), "aria-label": "Dismiss the error" }, "×"),
  );
  box.hidden = false;
}
export function clearError(where) {
  const box = where || document.getElementById("alert");
  box.hidden = true;
  box.replaceChildren();
}

/** Save a Blob as a file (exports): an object URL clicked once. */
export function download(blob, name) {
  const a = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(a.href);
    a.remove();
  }, 1000);
}

/** A confirmation dialog (<dialog>, focus trapped by the browser); resolves true/false. */
export function confirmDialog(title, body, okLabel = "Confirm") {
  return new Promise((resolve) => {
    const ok = h("button", { type: "button", class: "danger" }, okLabel);
    const cancel = h("button", { type: "button" }, "Cancel");
    const titleId = uid("dlg");
    const dlg = h("dialog", { "aria-labelledby": titleId }, h("h2", { id: titleId }, title), h("p", {}, body), h("div", { class: "actions" }, cancel, ok));
    const done = (v) => {
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    ok.addEventListener("click", () => done(true));
    cancel.addEventListener("click", () => done(false));
    dlg.addEventListener("cancel", (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

/** A heading that takes focus when a screen opens (keyboard and screen-reader users
 * land at the top of the new screen). */
export const title = (text, ...extra) => h("h1", { tabindex: "-1", class: "screen-title" }, text, ...extra);
