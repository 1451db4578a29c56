import { test } from "node:test";
import assert from "node:assert/strict";
import { Tab, settle, stored } from "./fakes.js";

const ctx = (tab) => tab.net.to("/v1/context");
const evs = (tab) => tab.net.to("/v1/events");
const degraded = (c) => ({
  ...stored(c),
  degraded: true,
  events: c.body.events.map((_, index) => ({ index, status: "not_stored" })),
  results: c.body.events.map((_, index) => ({ index, status: "not_stored" })),
});
const queue = (tab) => tab.sessionStorage.json("segserver_q").map((x) => [x.e.type, x.n, x.a - tab.clock.now()]);

test("not_stored events are retried with back-off until stored", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, degraded(c)];
  const sdk = tab.open();
  await settle();
  // The page view was not stored: kept for 2 s (first back-off).
  assert.deepEqual(queue(tab), [["page_view", 1, 2000]]);
  sdk.track("add_to_cart", { product_id: "p1" });
  tab.clock.advance(1000); // the batch window: add_to_cart goes, the page view is not due yet
  await settle();
  assert.deepEqual(evs(tab).map((c) => c.body.events.map((e) => e.type)), [["add_to_cart"]]);
  tab.clock.advance(1000); // page view due (2 s)
  await settle();
  assert.deepEqual(evs(tab).at(-1).body.events.map((e) => e.type), ["page_view"]);
  assert.deepEqual(queue(tab), [["page_view", 2, 4000], ["add_to_cart", 1, 1000]]);
  tab.net.auto = (c) => [202, stored(c)]; // the server is back
  tab.clock.advance(1000); // add_to_cart's second attempt
  await settle();
  tab.clock.advance(3000); // page view's third attempt
  await settle();
  assert.deepEqual(tab.sessionStorage.json("segserver_q"), []);
  const pv = evs(tab).filter((c) => c.body.events.some((e) => e.type === "page_view"));
  assert.equal(pv.length, 2);
  // Same event, same event_id and ts on every attempt: the server deduplicates.
  assert.equal(new Set([ctx(tab)[0].body.events[0].event_id, ...pv.map((c) => c.body.events[0].event_id)]).size, 1);
  assert.equal(new Set([ctx(tab)[0].body.events[0].ts, ...pv.map((c) => c.body.events[0].ts)]).size, 1);
  tab.clock.advance(600_000);
  await settle();
  assert.equal(evs(tab).length, 4);
});

test("not_stored events survive a page change and ride with the next page view", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, degraded(c)];
  const first = tab.open();
  await settle();
  first.track("product_view", { product_id: "p9" });
  tab.clock.advance(1000);
  await settle();
  assert.deepEqual(queue(tab).map((x) => x[0]), ["page_view", "product_view"]);
  const ids = tab.sessionStorage.json("segserver_q").map((x) => x.e.event_id);
  tab.clock.timers.clear(); // the user navigates away before the retries; 5 s later the next page
  tab.clock.advance(5000);
  tab.net.auto = (c) => [200, stored(c)];
  tab.open({ url: "https://shop.example/next" });
  await settle();
  const body = ctx(tab).at(-1).body;
  assert.deepEqual(body.events.map((e) => e.type), ["page_view", "product_view", "page_view"]);
  assert.deepEqual(body.events.slice(0, 2).map((e) => e.event_id), ids);
  assert.deepEqual(tab.sessionStorage.json("segserver_q"), []);
});

test("network errors and 5xx are retried; 408 and 429 too", async () => {
  for (const fail of [(c) => c.fail(), (c) => c.reply(503, { error: { code: "unavailable", message: "x" } }), (c) => c.reply(429, {}), (c) => c.reply(500)]) {
    const tab = new Tab();
    tab.net.auto = (c) => (c.path === "/v1/context" ? [200, stored(c)] : fail(c));
    const sdk = tab.open();
    await settle();
    sdk.track("x");
    tab.clock.advance(1000);
    await settle();
    assert.deepEqual(queue(tab), [["x", 1, 2000]]);
    tab.net.auto = (c) => [202, stored(c)];
    tab.clock.advance(2000);
    await settle();
    assert.equal(evs(tab).length, 2);
    assert.deepEqual(tab.sessionStorage.json("segserver_q"), []);
  }
});

test("a 4xx other than 408/429 drops the batch: retrying would fail the same way", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => (c.path === "/v1/context" ? [200, stored(c)] : [401, { error: { code: "bad_key", message: "unknown site key" } }]);
  const sdk = tab.open();
  await settle();
  sdk.track("x");
  tab.clock.advance(1000);
  await settle();
  assert.deepEqual(tab.sessionStorage.json("segserver_q"), []);
});

test("rejected events are not retried", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [202, { results: c.body.events.map((_, index) => ({ index, status: "rejected", error: { code: "unknown_event_type", message: "no" } })) }];
  const warn = console.warn;
  const warned = [];
  console.warn = (...a) => warned.push(a);
  try {
    const sdk = tab.open();
    await settle();
    sdk.track("typo_event");
    tab.clock.advance(1000);
    await settle();
  } finally {
    console.warn = warn;
  }
  assert.deepEqual(tab.sessionStorage.json("segserver_q"), []);
  assert.equal(warned.length, 2); // the page view and the typo
});

test("after 12 attempts an event is given up", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, degraded(c)];
  tab.open();
  await settle();
  for (let i = 0; i < 30; i++) {
    tab.clock.advance(60_000);
    await settle();
  }
  assert.deepEqual(tab.sessionStorage.json("segserver_q"), []);
  assert.equal(ctx(tab).length + evs(tab).length, 12);
});
