// Small fakes of what the SDK takes from the browser: a DOM just big enough for
// slots and dialogs, storages and a cookie jar that count writes, a network that
// records every request and beacon, and a manual clock. No jsdom: the SDK reads
// nothing but its `env`, so these are all it needs.

import { createSegserver } from "../src/sdk.js";

class Node {
  constructor(doc) {
    this.ownerDocument = doc;
    this.parentNode = null;
    this.childNodes = [];
    this.listeners = {};
  }
  remove() {
    const p = this.parentNode;
    if (p) p.childNodes.splice(p.childNodes.indexOf(this), 1);
    this.parentNode = null;
  }
  addEventListener(type, fn) {
    (this.listeners[type] ||= []).push(fn);
  }
  removeEventListener(type, fn) {
    const l = this.listeners[type] || [];
    if (l.includes(fn)) l.splice(l.indexOf(fn), 1);
  }
  /** Bubbles up to the document, like a real event. */
  dispatchEvent(ev) {
    ev.target ||= this;
    ev.defaultPrevented ||= false;
    ev.preventDefault ||= () => (ev.defaultPrevented = true);
    for (let n = this; n; n = n.parentNode || (n !== n.ownerDocument && n.ownerDocument) || null)
      for (const fn of [...(n.listeners[ev.type] || [])]) fn.call(n, ev);
    return ev;
  }
}

class Text extends Node {
  constructor(doc, text) {
    super(doc);
    this.data = String(text);
  }
  get textContent() {
    return this.data;
  }
}

class Element extends Node {
  constructor(doc, tag) {
    super(doc);
    this.tagName = tag.toUpperCase();
    this.attrs = new Map();
    this.innerHTMLSet = null;
  }
  setAttribute(k, v) {
    this.attrs.set(k, String(v));
  }
  getAttribute(k) {
    return this.attrs.has(k) ? this.attrs.get(k) : null;
  }
  hasAttribute(k) {
    return this.attrs.has(k);
  }
  removeAttribute(k) {
    this.attrs.delete(k);
  }
  get id() {
    return this.getAttribute("id") || "";
  }
  appendChild(n) {
    n.remove();
    n.parentNode = this;
    this.childNodes.push(n);
    return n;
  }
  replaceChildren(...nodes) {
    for (const c of this.childNodes) c.parentNode = null;
    this.childNodes = [];
    for (const n of nodes) this.appendChild(n);
  }
  get children() {
    return this.childNodes.filter((n) => n instanceof Element);
  }
  get textContent() {
    return this.childNodes.map((n) => n.textContent).join("");
  }
  set textContent(t) {
    this.replaceChildren(new Text(this.ownerDocument, t));
  }
  set innerHTML(html) {
    this.replaceChildren();
    this.innerHTMLSet = html;
  }
  contains(n) {
    for (; n; n = n.parentNode) if (n === this) return true;
    return false;
  }
  get isConnected() {
    return this.ownerDocument.documentElement.contains(this);
  }
  focus() {
    const doc = this.ownerDocument;
    doc.activeElement = this;
    this.dispatchEvent({ type: "focusin" });
  }
  click() {
    return this.dispatchEvent({ type: "click" });
  }
  /** Descendants in document order. */
  *walk() {
    for (const c of this.childNodes)
      if (c instanceof Element) {
        yield c;
        yield* c.walk();
      }
  }
  /** Only what the SDK and the tests use: tag, #id, .class, [attr] and [attr="v"]. */
  querySelectorAll(sel) {
    const m = /^\[([\w-]+)(?:="([^"]*)")?\]$/.exec(sel);
    const match = m
      ? (el) => el.hasAttribute(m[1]) && (m[2] === undefined || el.getAttribute(m[1]) === m[2])
      : sel.startsWith("#")
        ? (el) => el.id === sel.slice(1)
        : sel.startsWith(".")
        ? (el) => (el.getAttribute("class") || "").split(" ").includes(sel.slice(1))
        : (el) => el.tagName === sel.toUpperCase();
    return [...this.walk()].filter(match);
  }
  querySelector(sel) {
    return this.querySelectorAll(sel)[0] || null;
  }
}

export class Document extends Node {
  constructor({ title = "", referrer = "", readyState = "complete" } = {}) {
    super(null);
    this.ownerDocument = this;
    this.title = title;
    this.referrer = referrer;
    this.readyState = readyState;
    this.visibilityState = "visible";
    this.documentElement = new Element(this, "html");
    this.head = this.documentElement.appendChild(new Element(this, "head"));
    this.body = this.documentElement.appendChild(new Element(this, "body"));
    this.documentElement.parentNode = null;
    this.activeElement = this.body;
    this.jar = new Map();
    this.cookieWrites = [];
  }
  createElement(tag) {
    return new Element(this, tag);
  }
  createTextNode(t) {
    return new Text(this, t);
  }
  querySelectorAll(sel) {
    return this.documentElement.querySelectorAll(sel);
  }
  querySelector(sel) {
    return this.querySelectorAll(sel)[0] || null;
  }
  get cookie() {
    return [...this.jar].map(([k, v]) => `${k}=${v.value}`).join("; ");
  }
  set cookie(s) {
    this.cookieWrites.push(s);
    const [pair, ...attrs] = s.split(";");
    const [k, v] = pair.split("=");
    const age = attrs.map((a) => /^max-age=(-?\d+)$/i.exec(a.trim())).find(Boolean);
    if (age && +age[1] <= 0) this.jar.delete(k.trim());
    else this.jar.set(k.trim(), { value: v, attrs: attrs.map((a) => a.trim()) });
  }
  /** A slot with default children, as a page would have it. */
  slot(id, text = "default " + id) {
    const el = this.body.appendChild(this.createElement("div"));
    el.setAttribute("data-segserver-placement", id);
    el.appendChild(this.createElement("span")).textContent = text;
    return el;
  }
  key(key, shiftKey = false) {
    return (this.activeElement || this.body).dispatchEvent({ type: "keydown", key, shiftKey });
  }
}

/** A Storage that counts writes. */
export class Storage {
  constructor(data = {}) {
    this.map = new Map(Object.entries(data));
    this.writes = 0;
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.writes++;
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
  json(k) {
    return JSON.parse(this.getItem(k));
  }
}

/** A manual clock with setTimeout. */
export class Clock {
  constructor(t = Date.UTC(2026, 10, 22, 9, 0, 0)) {
    this.t = t;
    this.timers = new Map();
    this.seq = 0;
  }
  now = () => this.t;
  setTimeout = (fn, ms) => {
    this.timers.set(++this.seq, { at: this.t + Math.max(0, ms || 0), fn });
    return this.seq;
  };
  clearTimeout = (id) => this.timers.delete(id);
  /** Run the timers due within `ms`, in order, moving the clock to each. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, x] of this.timers) if (x.at <= end && (!next || x.at < next[1].at)) next = [id, x];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

/** Records requests; each waits for a reply unless `auto` answers it. */
export class Network {
  constructor() {
    this.calls = [];
    this.beacons = [];
    this.auto = null;
  }
  fetch = (url, init) =>
    new Promise((resolve, reject) => {
      const u = new URL(url);
      const call = {
        url,
        path: u.pathname,
        siteKey: u.searchParams.get("site_key"),
        init,
        body: JSON.parse(init.body),
        reply: (status, json) =>
          resolve({ ok: status >= 200 && status < 300, status, json: async () => (json === undefined ? Promise.reject(new Error("no json")) : json) }),
        fail: () => reject(new TypeError("Failed to fetch")),
      };
      this.calls.push(call);
      if (this.auto) {
        const r = this.auto(call);
        if (r) call.reply(...r);
      }
    });
  sendBeacon = (url, body) => {
    const u = new URL(url);
    this.beacons.push({ url, path: u.pathname, siteKey: u.searchParams.get("site_key"), body: JSON.parse(body) });
    return true;
  };
  get count() {
    return this.calls.length + this.beacons.length;
  }
  to(path) {
    return this.calls.filter((c) => c.path === path);
  }
}

/** Stored for every event of a request. */
export const stored = (call) => ({
  visitor_id: call.body.visitor_id,
  segments: [],
  decisions: {},
  events: call.body.events.map((_, index) => ({ index, status: "stored" })),
  results: call.body.events.map((_, index) => ({ index, status: "stored" })),
  degraded: false,
  catalogue_version: "1",
});

/**
 * One browser tab: document, storages, network and clock, kept across "pages";
 * `page(opts)` makes a new document (same storages, cookies, network, clock) and an
 * SDK instance on it, like a navigation.
 */
export class Tab {
  constructor({ url = "https://shop.example/", ua = "Mozilla/5.0 (X11; Linux x86_64)" } = {}) {
    this.url = url;
    this.ua = ua;
    this.clock = new Clock();
    this.net = new Network();
    this.localStorage = new Storage();
    this.sessionStorage = new Storage();
    this.jar = new Map();
    this.cookieWrites = [];
    this.ids = 0;
  }
  page({ url = this.url, slots = [], readyState = "complete", title = "Shop", referrer = "" } = {}) {
    this.clock.timers.clear(); // the previous page's timers die with it
    const doc = new Document({ title, referrer, readyState });
    doc.jar = this.jar;
    doc.cookieWrites = this.cookieWrites;
    for (const s of slots) doc.slot(s);
    const win = new Node(null);
    const loc = new URL(url);
    this.doc = doc;
    this.win = win;
    this.env = {
      window: win,
      document: doc,
      location: { href: loc.href, search: loc.search, protocol: loc.protocol },
      navigator: { userAgent: this.ua, language: "de-DE", sendBeacon: this.net.sendBeacon },
      localStorage: this.localStorage,
      sessionStorage: this.sessionStorage,
      fetch: this.net.fetch,
      setTimeout: this.clock.setTimeout,
      clearTimeout: this.clock.clearTimeout,
      now: this.clock.now,
      random: () => 1, // no jitter: back-off is exactly 2^n s
      uid: () => "id" + ++this.ids,
    };
    return this;
  }
  /** page() then init(). */
  open(pageOpts = {}, initOpts = {}) {
    this.page(pageOpts);
    this.sdk = createSegserver(this.env);
    this.sdk.init({ endpoint: "https://seg.example", siteKey: "pk_test", ...initOpts });
    return this.sdk;
  }
  get writes() {
    return this.localStorage.writes + this.sessionStorage.writes + this.cookieWrites.length;
  }
  hide() {
    this.doc.visibilityState = "hidden";
    this.doc.dispatchEvent({ type: "visibilitychange" });
    this.win.dispatchEvent({ type: "pagehide" });
  }
}

/** Let pending promise callbacks run. */
export const settle = async () => {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
};

/** A decision as /v1/context answers it (recommendations carry `content.products`). */
export const decision = (campaign, kind, payload, token = "tok-" + campaign, products) => ({
  campaign,
  variant: "a",
  content: { id: campaign + "-content", kind, payload, ...(products ? { products } : {}) },
  token,
});

/** An answer to a /v1/context call with these decisions. */
export const answer = (call, decisions, extra = {}) => ({ ...stored(call), decisions, ...extra });

/** The slot of a placement and its state. */
export const slotOf = (doc, id) => doc.querySelector(`[data-segserver-placement="${id}"]`);
export const stateOf = (doc, id) => slotOf(doc, id).getAttribute("data-segserver-state");
/** Is the anti-flicker rule on the page? */
export const hiding = (doc) => doc.head.childNodes.some((n) => n.textContent.includes("visibility:hidden"));
