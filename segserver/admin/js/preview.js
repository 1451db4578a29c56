// The content preview inside an <iframe>: the browser SDK's own renderer draws the
// content exactly as a site would show it. The SDK runs with a fake network (its
// /v1/context answer is the content being edited, its beacon goes nowhere) and
// in-memory storage, so the preview sends nothing and leaves no cookie or storage behind.

import { createSegserver } from "/sdk/segserver.esm.js";

// The SDK moves focus into a popup when it opens it (right on a site). Here the popup
// is redrawn while the editor types in the parent page: focus moves only while this
// frame has it, so the preview never takes the keyboard away from the form.
const focus = HTMLElement.prototype.focus;
HTMLElement.prototype.focus = function (...args) {
  if (document.hasFocus()) focus.apply(this, args);
};

const memory = () => {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
};

function show({ content, placement }) {
  // close the previous popup through its own button (the SDK then drops its listeners)
  document.querySelectorAll(".segserver-overlay .segserver-close").forEach((b) => b.click());
  const holder = document.getElementById("slot-holder");
  holder.replaceChildren();
  const isPopup = content.kind === "popup";
  if (!isPopup) {
    const slot = document.createElement("div");
    slot.setAttribute("data-segserver-placement", placement);
    slot.textContent = "(the placement's default content)";
    holder.append(slot);
  }
  if (content.kind === "recommendations") content = { ...content, products: ["p1", "p2", "p3", "p4"].slice(0, content.payload.limit || 4) };
  const answer = {
    visitor_id: "preview", segments: [], degraded: false, catalogue_version: "preview", events: [],
    decisions: { [placement]: { campaign: "preview", variant: "a", content, token: null } },
  };
  const w = window;
  const sdk = createSegserver({
    window: w, document: w.document, location: w.location,
    // the SDK beacons its outbox when the page hides: here the beacon goes nowhere
    navigator: { userAgent: w.navigator.userAgent, language: w.navigator.language, sendBeacon: () => true },
    localStorage: memory(), sessionStorage: memory(),
    fetch: (url) => Promise.resolve(new Response(JSON.stringify(url.includes("/v1/context") ? answer : { results: [] }), { status: url.includes("/v1/context") ? 200 : 202, headers: { "Content-Type": "application/json" } })),
    setTimeout: (f, ms) => w.setTimeout(f, ms), clearTimeout: (t) => w.clearTimeout(t),
    now: Date.now, random: Math.random, uid: () => "preview",
  });
  sdk.init({ endpoint: location.origin, siteKey: "sk_preview_00000000000000000000000000000000", idStorage: "localStorage", placements: [placement], cacheTtl: 0 });
}

window.addEventListener("message", (e) => {
  if (e.origin !== location.origin || !e.data || e.data.type !== "segserver-preview") return;
  show(e.data);
});
window.parent.postMessage({ type: "segserver-preview-ready" }, location.origin);
