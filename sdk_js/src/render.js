// Placements on the page: anti-flicker, filling slots, popups as accessible dialogs.
//
// A slot is an element with data-segserver-placement="id". While a page view is
// being decided, only slots without data-segserver-state are hidden (one style rule,
// so slots parsed later are covered too). A slot is revealed when it is filled
// ("cached" or "filled") or, at the hard time-out, with its own original children
// ("default"). After that moment nothing in a slot moves on this page, except when a
// fresh answer comes from a newer catalogue (content may have been withdrawn).
// Server strings only ever reach the page as text, attribute values or through the
// page's own sanitize/template/render functions: never innerHTML on our own.

const ATTR = "data-segserver-placement";
const STATE = "data-segserver-state";
const HIDE = `[${ATTR}]:not([${STATE}]){visibility:hidden}`;
const CSS =
  ".segserver-overlay{position:fixed;top:0;right:0;bottom:0;left:0;background:rgba(0,0,0,.5);display:flex;align-items:center;justify-content:center;z-index:2147483000}" +
  ".segserver-popup{position:relative;background:#fff;color:#222;width:90%;max-width:26rem;padding:1.5rem;border-radius:8px;font:16px/1.4 system-ui,sans-serif}" +
  ".segserver-popup img{max-width:100%}" +
  ".segserver-close{position:absolute;top:.25rem;right:.5rem;border:0;background:none;font-size:1.5rem;cursor:pointer}" +
  ".segserver-cta{display:inline-block;padding:.5rem 1rem;background:#222;color:#fff;border:0;border-radius:4px;text-decoration:none;cursor:pointer}";

/** What identifies a decision's content: equal keys render the same. */
const key = (d) => (d ? [d.campaign, d.variant, d.content && d.content.id].join("/") : "");

/** Is a decision a popup (rendered as a dialog, never into a slot, never cached)? */
export const isPopup = (d) => !!(d && d.content && d.content.kind === "popup");

/**
 * The renderer of one SDK instance. `E` is the environment (document, location,
 * setTimeout...), `o` the init options, `report(type, props)` tracks an event.
 */
export function renderer(E, o, report) {
  const doc = E.document;
  const shown = new Map(); // slot -> {o: original children, k: key, d: decision}
  let hider, timer, settled = true, dialog, seq = 0;

  const make = (tag, attrs, text) => {
    const el = doc.createElement(tag);
    for (const k in attrs) if (attrs[k] != null) el.setAttribute(k, attrs[k]);
    if (text != null) el.textContent = text;
    return el;
  };
  const style = (css) => doc.head.appendChild(make("style", { nonce: o.nonce }, css));
  const ready = (fn) =>
    doc.readyState === "loading" ? doc.addEventListener("DOMContentLoaded", () => fn()) : fn();
  const slots = () => Array.from(doc.querySelectorAll(`[${ATTR}]`));
  const idOf = (el) => el.getAttribute(ATTR);
  // Only http(s) and relative links: a server string never becomes javascript: or data:.
  const safe = (url) => {
    try {
      return url && /^https?:$/.test(new URL(url, E.location.href).protocol) ? url : null;
    } catch (_) {
      return null;
    }
  };
  const impress = (d, id) => report("impression", { token: d.token, placement: id });

  /** Default recommendations template: the title and a list of product ids, as text. */
  const list = (products, p) => {
    const box = make("div", { class: "segserver-recommendations" });
    if (p.title) box.appendChild(make("strong", {}, p.title));
    const ul = box.appendChild(make("ul"));
    for (const id of products) ul.appendChild(make("li", { "data-product-id": id }, id));
    return box;
  };

  function content(slot, d) {
    const c = d.content || {};
    const p = c.payload || {};
    if (o.render && o.render(slot, d)) return;
    let node;
    if (c.kind === "recommendations") {
      node = (o.template || list)(c.products || p.products || [], p, doc);
      if (!node || typeof node !== "object") node = doc.createTextNode(node == null ? "" : String(node));
    } else {
      node = make("div", { class: "segserver-" + (c.kind || "content") });
      if (p.html && o.sanitize) node.innerHTML = o.sanitize(p.html);
      else {
        if (p.title) node.appendChild(make("strong", { class: "segserver-title" }, p.title));
        if (safe(p.image)) node.appendChild(make("img", { src: p.image, alt: p.alt || "" }));
        if (p.body) node.appendChild(make("p", {}, p.body));
        const href = safe(p.link);
        if (href) node.appendChild(make("a", { class: "segserver-cta", href }, p.cta || p.title || href));
      }
    }
    slot.replaceChildren(node);
  }

  /** Put decision `d` (null: the default) in a slot; true when its content changed. */
  function put(slot, d, state) {
    let s = shown.get(slot);
    if (!s) {
      shown.set(slot, (s = { o: Array.from(slot.childNodes) }));
      // One listener per slot: a click on a link or button of decided content.
      slot.addEventListener("click", (e) => {
        for (let n = e.target; n && n !== slot; n = n.parentNode)
          if (/^(A|BUTTON)$/.test(n.tagName || "") && s.d)
            return report("click", { token: s.d.token, placement: idOf(slot) });
      });
    }
    const k = key(d);
    const changed = s.k !== k;
    if (changed) {
      s.k = k;
      s.d = d;
      if (d) content(slot, d);
      else slot.replaceChildren(...s.o);
    }
    slot.setAttribute(STATE, d ? state : "default");
    return changed;
  }

  /** Fill the slots that `decisions` names (popups aside); the slots that changed. */
  const fill = (decisions, state) =>
    slots().filter((el) => {
      const d = decisions[idOf(el)];
      return d !== undefined && !isPopup(d) && put(el, d, state);
    });

  /** The time-out or the answer: reveal every slot; report what is shown. */
  function settle() {
    if (settled) return;
    settled = true;
    E.clearTimeout(timer);
    for (const el of slots()) {
      if (!el.hasAttribute(STATE)) el.setAttribute(STATE, "default");
      const s = shown.get(el);
      if (s && s.d) impress(s.d, idOf(el));
    }
    if (hider) hider.remove();
    hider = null;
  }

  /** A page view starts deciding: hide the slots, start the clock, show cached decisions. */
  function begin(cached) {
    settled = false;
    hider = hider || style(HIDE);
    timer = E.setTimeout(settle, o.timeout);
    if (cached) ready(() => settled || fill(cached, "cached"));
  }

  /** The fresh answer. `newer`: it comes from another catalogue than the cache shown. */
  function apply(res, newer) {
    ready(() => {
      const ds = res.decisions || {};
      if (!settled) {
        fill(ds, "filled");
        settle();
      } else if (newer) for (const el of fill(ds, "filled")) if (shown.get(el).d) impress(shown.get(el).d, idOf(el));
      for (const id in ds) if (isPopup(ds[id])) return popup(ds[id], id);
    });
  }

  /** An accessible dialog: focus moves in and is trapped; Escape, the close button and the backdrop dismiss. */
  function popup(d, id) {
    if (dialog) return;
    if (!seq && o.styles !== false) style(CSS);
    const p = d.content.payload || {};
    const prev = doc.activeElement;
    const n = ++seq;
    const overlay = make("div", { class: "segserver-overlay" });
    const box = overlay.appendChild(
      make("div", {
        class: "segserver-popup",
        role: "dialog",
        "aria-modal": "true",
        "aria-labelledby": p.title ? "segserver-t" + n : null,
        "aria-label": p.title ? null : o.popupLabel || "Offer",
        "aria-describedby": p.body ? "segserver-b" + n : null,
      }),
    );
    const close = box.appendChild(make("button", { type: "button", class: "segserver-close", "aria-label": o.closeLabel || "Close" }, "\u00d7"));
    if (p.title) box.appendChild(make("h2", { id: "segserver-t" + n }, p.title));
    if (safe(p.image)) box.appendChild(make("img", { src: p.image, alt: p.alt || "" }));
    if (p.body) box.appendChild(make("p", { id: "segserver-b" + n }, p.body));
    const href = safe(p.link);
    const cta = href || p.cta ? box.appendChild(make(href ? "a" : "button", { class: "segserver-cta", href, type: href ? null : "button" }, p.cta || href)) : null;
    const focusable = cta ? [close, cta] : [close];
    const props = { token: d.token, placement: id };

    const end = (type) => {
      overlay.remove();
      doc.removeEventListener("keydown", onKey, true);
      doc.removeEventListener("focusin", onFocus, true);
      dialog = null;
      report(type, props);
      if (prev && prev.focus) prev.focus();
    };
    const onKey = (e) => {
      if (e.key === "Escape" || e.key === "Esc") {
        e.preventDefault();
        end("dismiss");
      } else if (e.key === "Tab") {
        const i = focusable.indexOf(doc.activeElement);
        const last = focusable.length - 1;
        if (e.shiftKey ? i <= 0 : i < 0 || i === last) {
          e.preventDefault();
          focusable[e.shiftKey ? last : 0].focus();
        }
      }
    };
    const onFocus = (e) => box.contains(e.target) || focusable[0].focus();
    close.addEventListener("click", () => end("dismiss"));
    if (cta) cta.addEventListener("click", () => end("click"));
    overlay.addEventListener("click", (e) => e.target === overlay && end("dismiss"));
    doc.addEventListener("keydown", onKey, true);
    doc.addEventListener("focusin", onFocus, true);
    doc.body.appendChild(overlay);
    dialog = { end };
    report("impression", props);
    close.focus();
  }

  return { begin, apply, settle, slots: () => slots().map(idOf), popup, close: () => dialog && dialog.end("dismiss") };
}
