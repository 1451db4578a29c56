// The SDK: consent, the visitor id, the page view with its decisions in one round
// trip, event batching with beacon flushes and retries, the decision cache.
//
// Everything the browser provides comes through `env` (see env.js), so the tests
// run it on node with small fakes. Storage and network go through `put` and `post`,
// which do nothing until consent is given: the consent tests count on that.

import { attempt, due, revive, settle } from "./outbox.js";
import { pageProps } from "./page.js";
import { isPopup, renderer } from "./render.js";
import { browserEnv } from "./env.js";

const VID = "segserver_vid"; // cookie or localStorage: the visitor id
const CACHE = "segserver_dc"; // localStorage: {u: visitor, v: catalogue_version, d: {placement: {d, t}}}
const QUEUE = "segserver_q"; // sessionStorage: the outbox
const ID_RE = /^[\w.:@+=-]{1,128}$/; // the server's visitor id syntax
const BATCH = 50; // events per request: well under the 64 KB of a keepalive fetch or beacon
const YEAR = 31536000;

export const DEFAULTS = {
  consent: "granted", // "required": nothing is stored or sent until consent(true)
  idStorage: "cookie", // or "localStorage"
  placements: [], // placement ids asked for besides the slots on the page (e.g. popups)
  timeout: 300, // ms: slots show their default content after this, whatever happens
  cacheTtl: 600, // s: how long a cached decision may be shown at once on the next page
  flushDelay: 1000, // ms: events tracked within this window go in one request
  maxBatch: 20, // this many waiting events are sent at once, without waiting
};

/** A new SDK instance; `env` defaults to the browser's (window, document, fetch...). */
export function createSegserver(env) {
  let E, o, R, granted, vid, cacheV, timer, early;
  let q = [];
  const api = { segments: [] };

  // --- storage (all of it behind consent) -----------------------------------------
  const get = (area, k) => {
    try {
      return JSON.parse(E[area].getItem(k));
    } catch (_) {
      return null;
    }
  };
  const put = (area, k, v) => {
    try {
      if (granted) E[area].setItem(k, JSON.stringify(v));
    } catch (_) {}
  };
  const del = (area, k) => {
    try {
      E[area].removeItem(k);
    } catch (_) {}
  };
  const cookie = (v, age) => {
    if (granted || !age)
      E.document.cookie =
        `${VID}=${v};path=/;max-age=${age};samesite=lax` +
        (o.cookieDomain ? ";domain=" + o.cookieDomain : "") +
        (E.location.protocol === "https:" ? ";secure" : "");
  };
  const save = () => put("sessionStorage", QUEUE, q);

  function loadId() {
    const m = /(?:^|;\s*)segserver_vid=([^;]+)/.exec(E.document.cookie || "");
    let id = o.idStorage === "localStorage" ? get("localStorage", VID) : m && m[1];
    if (typeof id !== "string" || !ID_RE.test(id)) id = E.uid();
    if (o.idStorage === "localStorage") put("localStorage", VID, id);
    else cookie(id, YEAR); // written on every page: the year counts from the last visit
    return id;
  }

  // --- network (all of it behind consent) -----------------------------------------
  // No custom header and a text/plain body: a CORS "simple request", so no preflight
  // and one round trip per page view. The key goes in the query, as for beacons.
  const url = (path) => `${o.endpoint}${path}?site_key=${encodeURIComponent(o.siteKey)}`;

  /** POST `body` carrying the outbox entries `sent`; the answer settles them. */
  function post(path, body, sent) {
    if (!granted) return Promise.reject(new Error("no consent"));
    attempt(sent, E.now(), E.random());
    save();
    return E.fetch(url(path), { method: "POST", body: JSON.stringify(body), keepalive: true, credentials: "omit" }).then(
      (res) =>
        res
          .json()
          .catch(() => ({}))
          .then((j) => {
            // 408, 429 and 5xx are worth retrying; another 4xx would fail the same way again.
            const s = res.status;
            const retry = !res.ok && (s >= 500 || s === 408 || s === 429 || s < 400);
            done(sent, retry ? [] : (res.ok && (j.results || j.events)) || null);
            if (!res.ok) throw new Error((j.error && j.error.message) || "HTTP " + s);
            return j;
          }),
      (err) => {
        done(sent, []);
        throw err;
      },
    );
  }
  function done(sent, results) {
    for (const r of results || []) if (r.status === "rejected" && typeof console !== "undefined") console.warn("segserver: event rejected", sent[r.index] && sent[r.index].e.type, r.error);
    q = settle(q, sent, results);
    save();
    schedule();
  }

  /** Send waiting events now with fetch (the timer's work). */
  function flush() {
    E.clearTimeout(timer);
    timer = null;
    const sent = q.filter((x) => due(x, E.now())).slice(0, BATCH);
    if (sent.length) post("/v1/events", { events: sent.map((x) => x.e) }, sent).catch(() => {});
    schedule();
  }

  /** Page hidden: new and due events leave with sendBeacon; they stay in the outbox until confirmed. */
  function beacon() {
    if (!granted) return;
    const t = E.now();
    const sent = q.filter((x) => due(x, t));
    for (let i = 0; i < sent.length; i += BATCH) {
      const body = JSON.stringify({ events: sent.slice(i, i + BATCH).map((x) => x.e) });
      const nav = E.navigator;
      if (!(nav.sendBeacon && nav.sendBeacon(url("/v1/events"), body)))
        E.fetch(url("/v1/events"), { method: "POST", body, keepalive: true, credentials: "omit" }).catch(() => {});
    }
    attempt(sent, t, E.random());
    save();
  }

  function schedule() {
    E.clearTimeout(timer);
    timer = null;
    if (granted && q.length) {
      const next = Math.min(...q.map((x) => x.a));
      timer = E.setTimeout(flush, Math.max(0, next - E.now()));
    }
  }

  const event = (type, properties) => ({
    visitor_id: vid,
    type,
    ts: E.now() / 1000,
    event_id: E.uid(),
    properties: properties || {},
  });

  function track(type, properties) {
    if (!granted || !vid) return false;
    q.push({ e: event(type, properties), n: 0, a: E.now() + o.flushDelay });
    save();
    if (q.filter((x) => !x.n).length >= o.maxBatch) flush();
    else schedule();
    return true;
  }

  // --- the page view --------------------------------------------------------------
  /** Page view, cached decisions at once, fresh ones from /v1/context. */
  function page() {
    if (!granted) return Promise.resolve(null);
    if (!vid) {
      // First page view of this page (or since consent came back): the id and the outbox.
      vid = loadId();
      q = revive(get("sessionStorage", QUEUE));
    }
    q.push({ e: event("page_view", pageProps(E.location, E.document, E.navigator)), n: 0, a: 0 });
    save();

    const c = get("localStorage", CACHE);
    const cached = {};
    const t = E.now();
    cacheV = null;
    if (c && c.u === vid && c.d) {
      for (const id in c.d) if (t - c.d[id].t < o.cacheTtl * 1000) cached[id] = c.d[id].d;
      cacheV = c.v;
    }
    R.begin(cached);

    return new Promise((resolve) => {
      const go = () => {
        const ids = [...new Set([...o.placements, ...R.slots()])];
        const sent = q.filter((x) => due(x, E.now()) && x.e.visitor_id === vid).slice(0, BATCH);
        const body = { visitor_id: vid, events: sent.map(({ e }) => ({ type: e.type, ts: e.ts, event_id: e.event_id, properties: e.properties })), placements: ids };
        if (o.explain) body.explain = true;
        post("/v1/context", body, sent).then(
          (res) => {
            answer(res, c);
            resolve(res);
          },
          () => {
            R.settle(); // no answer: the defaults at once, not after the time-out
            resolve(null);
          },
        );
        schedule();
      };
      // Without placements given, wait for the slots to be parsed to know which to ask for.
      if (!o.placements.length && E.document.readyState === "loading") E.document.addEventListener("DOMContentLoaded", go);
      else go();
    });
  }

  function answer(res, c) {
    api.segments = res.segments || [];
    const v = res.catalogue_version;
    R.apply(res, cacheV != null && v !== cacheV);
    // Degraded answers are the server's fallback, not the visitor's decisions: not cached.
    // Popups are never cached: a dismissed popup must not come back from the cache.
    if (!res.degraded) {
      const t = E.now();
      const d = {};
      if (c && c.u === vid && c.v === v) for (const id in c.d) if (t - c.d[id].t < o.cacheTtl * 1000) d[id] = c.d[id];
      for (const id in res.decisions || {}) if (!isPopup(res.decisions[id])) d[id] = { d: res.decisions[id], t };
      put("localStorage", CACHE, { u: vid, v, d });
    }
    if (o.onDecisions) o.onDecisions(res);
  }

  // --- public API -----------------------------------------------------------------
  /** Start: options as in DEFAULTS plus endpoint, siteKey, template, render, sanitize, onDecisions. */
  api.init = (opts) => {
    if (o) return api;
    E = env || browserEnv();
    o = { ...DEFAULTS, ...opts };
    o.endpoint = String(o.endpoint || "").replace(/\/+$/, "");
    // A consent(...) call made before init wins over the option.
    granted = early !== undefined ? early : o.consent === "granted" || o.consent === true;
    R = renderer(E, o, track);
    const hidden = () => E.document.visibilityState === "hidden" && beacon();
    E.document.addEventListener("visibilitychange", hidden);
    E.window.addEventListener("pagehide", beacon);
    return granted ? (page(), api) : api;
  };

  /** Give (true) or withdraw (false) consent. Withdrawing erases what the SDK stored. */
  api.consent = (yes) => {
    if (!o) early = !!yes;
    if (!o || !!yes === granted) return;
    granted = !!yes;
    if (granted) return page();
    E.clearTimeout(timer);
    q = [];
    vid = null;
    cookie("", 0);
    del("localStorage", VID);
    del("localStorage", CACHE);
    del("sessionStorage", QUEUE);
  };

  api.track = track;
  api.flush = flush;
  api.page = page;
  api.visitorId = () => vid || null;
  return api;
}
