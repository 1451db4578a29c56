import { test } from "node:test";
import assert from "node:assert/strict";
import { Tab, settle, stored } from "./fakes.js";

const required = { consent: "required" };

test("consent required and not given: nothing stored, nothing sent, slots untouched", async () => {
  const tab = new Tab();
  tab.sessionStorage.setItem("segserver_q", JSON.stringify([{ e: { event_id: "old", visitor_id: "v", type: "x" }, n: 1, a: 0 }]));
  tab.sessionStorage.writes = 0;
  const sdk = tab.open({ slots: ["banner"] }, { ...required, placements: ["popup"] });
  assert.equal(sdk.track("product_view", { product_id: "p1" }), false);
  sdk.flush();
  tab.clock.advance(60_000);
  tab.hide();
  await settle();
  assert.equal(tab.net.count, 0, "no request, no beacon");
  assert.equal(tab.writes, 0, "no cookie, localStorage or sessionStorage write");
  assert.equal(tab.jar.size, 0);
  assert.equal(sdk.visitorId(), null);
  // The slot shows its default content at once: nothing is hidden.
  const slot = tab.doc.querySelector("[data-segserver-placement]");
  assert.equal(tab.doc.head.childNodes.length, 0);
  assert.equal(slot.textContent, "default banner");
});

test("consent 'denied' behaves like required", async () => {
  const tab = new Tab();
  const sdk = tab.open({}, { consent: "denied" });
  sdk.track("x");
  tab.hide();
  await settle();
  assert.equal(tab.net.count + tab.writes, 0);
});

test("consent(true) starts tracking: id, page view with decisions, events", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, stored(c)];
  const sdk = tab.open({ slots: ["banner"] }, required);
  await settle();
  assert.equal(tab.net.count, 0);
  await sdk.consent(true);
  assert.equal(tab.net.to("/v1/context").length, 1);
  const body = tab.net.to("/v1/context")[0].body;
  assert.equal(body.events[0].type, "page_view");
  assert.deepEqual(body.placements, ["banner"]);
  assert.equal(tab.jar.get("segserver_vid").value, sdk.visitorId());
  assert.ok(sdk.track("add_to_cart", { product_id: "p1", price: 10, quantity: 1 }));
  sdk.consent(true); // again: no second page view
  assert.equal(tab.net.to("/v1/context").length, 1);
});

test("consent(false) erases what was stored and stops sending", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, { ...stored(c), decisions: { banner: null } }];
  const sdk = tab.open({ slots: ["banner"] });
  await settle();
  sdk.track("custom");
  assert.ok(tab.jar.has("segserver_vid"));
  assert.ok(tab.localStorage.getItem("segserver_dc"));
  assert.ok(tab.sessionStorage.getItem("segserver_q"));
  sdk.consent(false);
  assert.equal(tab.jar.size, 0);
  assert.equal(tab.localStorage.map.size, 0);
  assert.equal(tab.sessionStorage.map.size, 0);
  const before = { count: tab.net.count, writes: tab.writes };
  assert.equal(sdk.track("custom"), false);
  tab.clock.advance(120_000);
  tab.hide();
  await settle();
  assert.deepEqual({ count: tab.net.count, writes: tab.writes }, before);
  assert.equal(sdk.visitorId(), null);
});

test("consent given before init counts", async () => {
  const tab = new Tab();
  tab.page();
  const { createSegserver } = await import("../src/sdk.js");
  const sdk = createSegserver(tab.env);
  sdk.consent(true);
  sdk.init({ endpoint: "https://seg.example", siteKey: "k", consent: "required" });
  await settle();
  assert.equal(tab.net.to("/v1/context").length, 1);
  const other = createSegserver(tab.env);
  other.consent(false);
  other.init({ endpoint: "https://seg.example", siteKey: "k", consent: "granted" });
  await settle();
  assert.equal(tab.net.to("/v1/context").length, 1);
});
