import { test } from "node:test";
import assert from "node:assert/strict";
import { Tab, settle, stored } from "./fakes.js";

const ctx = (tab) => tab.net.to("/v1/context");
const evs = (tab) => tab.net.to("/v1/events");

test("one round trip per page view: page view, UTM and placements in /v1/context", async () => {
  const tab = new Tab({ url: "https://shop.example/?utm_source=news&utm_campaign=bf" });
  tab.open({ slots: ["banner", "recs", "banner"], referrer: "https://ref.example/" }, { placements: ["popup", "banner"], explain: true });
  await settle();
  assert.equal(tab.net.count, 1);
  const c = ctx(tab)[0];
  assert.equal(c.url, "https://seg.example/v1/context?site_key=pk_test");
  // No custom header and a string body: a CORS simple request, no preflight.
  assert.equal(c.init.headers, undefined);
  assert.equal(typeof c.init.body, "string");
  assert.equal(c.init.keepalive, true);
  assert.equal(c.init.credentials, "omit");
  assert.deepEqual(Object.keys(c.body), ["visitor_id", "events", "placements", "explain"]);
  assert.deepEqual(c.body.placements, ["popup", "banner", "recs"]);
  const [pv] = c.body.events;
  assert.deepEqual(Object.keys(pv), ["type", "ts", "event_id", "properties"]);
  assert.equal(pv.type, "page_view");
  assert.equal(pv.ts, tab.clock.now() / 1000);
  assert.equal(pv.properties.utm_source, "news");
  assert.equal(pv.properties.utm_campaign, "bf");
  assert.equal(pv.properties.referrer, "https://ref.example/");
  assert.equal(pv.properties.url, "https://shop.example/?utm_source=news&utm_campaign=bf");
});

test("while the document is loading without placements given, the request waits for the slots", async () => {
  const tab = new Tab();
  tab.open({ readyState: "loading" });
  await settle();
  assert.equal(tab.net.count, 0);
  tab.doc.slot("late");
  tab.doc.readyState = "interactive";
  tab.doc.dispatchEvent({ type: "DOMContentLoaded" });
  await settle();
  assert.deepEqual(ctx(tab)[0].body.placements, ["late"]);
});

test("track batches events within flushDelay into one /v1/events request", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, stored(c)];
  const sdk = tab.open();
  await settle();
  sdk.track("product_view", { product_id: "p1", category: "shoes", price: 50 });
  tab.clock.advance(500);
  sdk.track("add_to_cart", { product_id: "p1", price: 50, quantity: 1 });
  tab.clock.advance(499);
  assert.equal(evs(tab).length, 0);
  tab.clock.advance(501);
  await settle();
  assert.equal(evs(tab).length, 1);
  const body = evs(tab)[0].body;
  assert.equal(evs(tab)[0].siteKey, "pk_test");
  assert.deepEqual(body.events.map((e) => e.type), ["product_view", "add_to_cart"]);
  for (const e of body.events) {
    assert.equal(e.visitor_id, sdk.visitorId());
    assert.deepEqual(Object.keys(e), ["visitor_id", "type", "ts", "event_id", "properties"]);
  }
  assert.notEqual(body.events[0].event_id, body.events[1].event_id);
  assert.deepEqual(body.events[1].properties, { product_id: "p1", price: 50, quantity: 1 });
  // Confirmed: the outbox is empty and nothing more is sent.
  assert.deepEqual(tab.sessionStorage.json("segserver_q"), []);
  tab.clock.advance(600_000);
  await settle();
  assert.equal(evs(tab).length, 1);
});

test("maxBatch waiting events are sent at once", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, stored(c)];
  const sdk = tab.open({}, { maxBatch: 3 });
  await settle();
  sdk.track("a");
  sdk.track("b");
  assert.equal(evs(tab).length, 0);
  sdk.track("c");
  assert.equal(evs(tab).length, 1);
  assert.equal(evs(tab)[0].body.events.length, 3);
});

test("page hidden: waiting events leave by sendBeacon with the key in the query, once", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, stored(c)];
  const sdk = tab.open();
  await settle();
  sdk.track("add_to_cart", { product_id: "p1" });
  sdk.track("click_thing");
  tab.hide(); // visibilitychange (hidden) and pagehide both fire
  assert.equal(tab.net.beacons.length, 1);
  const b = tab.net.beacons[0];
  assert.equal(b.url, "https://seg.example/v1/events?site_key=pk_test");
  assert.deepEqual(b.body.events.map((e) => e.type), ["add_to_cart", "click_thing"]);
  assert.equal(evs(tab).length, 0);
  // Unconfirmed (a beacon has no answer): kept, and sent again on the next page,
  // where the server answers duplicate.
  const left = tab.sessionStorage.json("segserver_q");
  assert.deepEqual(left.map((x) => [x.e.type, x.n]), [["add_to_cart", 1], ["click_thing", 1]]);
  tab.clock.timers.clear(); // the page is gone
  tab.clock.advance(2000);
  tab.net.auto = (c) => [200, { ...stored(c), events: c.body.events.map((e, index) => ({ index, status: e.type === "page_view" ? "stored" : "duplicate" })) }];
  tab.open({ url: "https://shop.example/cart" });
  await settle();
  assert.deepEqual(ctx(tab).at(-1).body.events.map((e) => e.type), ["add_to_cart", "click_thing", "page_view"]);
  assert.deepEqual(ctx(tab).at(-1).body.events[0].event_id, b.body.events[0].event_id);
  assert.deepEqual(tab.sessionStorage.json("segserver_q"), []);
});

test("a beacon the browser refuses falls back to a keepalive fetch", async () => {
  const tab = new Tab();
  const sdk = tab.open();
  tab.env.navigator.sendBeacon = () => false;
  sdk.track("x");
  tab.hide();
  assert.equal(evs(tab).length, 1);
  assert.equal(evs(tab)[0].init.keepalive, true);
});

test("events beaconed just before a fast navigation are re-sent by the next page after their back-off", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, stored(c)];
  const sdk = tab.open();
  await settle();
  sdk.track("add_to_cart", { product_id: "p1" });
  tab.hide();
  tab.clock.advance(150);
  tab.open({ url: "https://shop.example/cart" });
  await settle();
  assert.deepEqual(ctx(tab).at(-1).body.events.map((e) => e.type), ["page_view"]);
  tab.clock.advance(1850);
  await settle();
  assert.deepEqual(evs(tab).map((c) => c.body.events.map((e) => e.type)), [["add_to_cart"]]);
  assert.equal(evs(tab)[0].body.events[0].event_id, tab.net.beacons[0].body.events[0].event_id);
  assert.deepEqual(tab.sessionStorage.json("segserver_q"), []);
});
