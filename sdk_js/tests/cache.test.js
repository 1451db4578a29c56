import { test } from "node:test";
import assert from "node:assert/strict";
import { Tab, answer, decision, hiding, settle, slotOf, stateOf } from "./fakes.js";

const summer = decision("summer", "banner", { title: "Summer sale" });
const winter = decision("winter", "banner", { title: "Winter sale" });
const popup = decision("welcome", "popup", { title: "Welcome" });
const ctx = (tab) => tab.net.to("/v1/context");

/** First page: answer with `decisions` from catalogue `version`. */
async function visit(tab, decisions, version = "v1", extra = {}) {
  tab.open({ slots: ["banner"] }, { placements: ["popup"] });
  await settle();
  ctx(tab).at(-1).reply(200, answer(ctx(tab).at(-1), decisions, { catalogue_version: version, ...extra }));
  await settle();
}

test("decisions are cached with the catalogue version and a time; popups are not", async () => {
  const tab = new Tab();
  await visit(tab, { banner: summer, popup });
  const c = tab.localStorage.json("segserver_dc");
  assert.equal(c.v, "v1");
  assert.equal(c.u, tab.sdk.visitorId());
  assert.deepEqual(Object.keys(c.d), ["banner"]);
  assert.deepEqual(c.d.banner, { d: summer, t: tab.clock.now() });
});

test("stale-while-revalidate: the next page shows the cached decision at once, then takes the fresh one", async () => {
  const tab = new Tab();
  await visit(tab, { banner: summer });
  tab.clock.advance(60_000);
  tab.open({ slots: ["banner"] });
  // Before any answer: shown from the cache, not hidden.
  assert.equal(stateOf(tab.doc, "banner"), "cached");
  assert.equal(slotOf(tab.doc, "banner").textContent, "Summer sale");
  assert.equal(ctx(tab).length, 2, "fresh decisions are still fetched");
  // Fresh answer within the time-out, different: it replaces the cached one.
  tab.clock.advance(50);
  ctx(tab).at(-1).reply(200, answer(ctx(tab).at(-1), { banner: winter }, { catalogue_version: "v1" }));
  await settle();
  assert.equal(stateOf(tab.doc, "banner"), "filled");
  assert.equal(slotOf(tab.doc, "banner").textContent, "Winter sale");
  assert.equal(tab.localStorage.json("segserver_dc").d.banner.d.campaign, "winter");
});

test("an equal fresh decision leaves the cached rendering in place (no re-render)", async () => {
  const tab = new Tab();
  await visit(tab, { banner: summer });
  tab.open({ slots: ["banner"] });
  const rendered = slotOf(tab.doc, "banner").childNodes[0];
  ctx(tab).at(-1).reply(200, answer(ctx(tab).at(-1), { banner: { ...summer, token: "new-token" } }, { catalogue_version: "v1" }));
  await settle();
  assert.equal(slotOf(tab.doc, "banner").childNodes[0], rendered);
});

test("a fresh 'nothing for you' restores the slot's original children", async () => {
  const tab = new Tab();
  await visit(tab, { banner: summer });
  tab.open({ slots: ["banner"] });
  assert.equal(slotOf(tab.doc, "banner").textContent, "Summer sale");
  ctx(tab).at(-1).reply(200, answer(ctx(tab).at(-1), { banner: null }, { catalogue_version: "v1" }));
  await settle();
  assert.equal(stateOf(tab.doc, "banner"), "default");
  assert.equal(slotOf(tab.doc, "banner").textContent, "default banner");
});

test("after the time-out a different fresh decision waits for the next page, unless the catalogue changed", async () => {
  for (const [version, expect] of [["v1", "Summer sale"], ["v2", "Winter sale"]]) {
    const tab = new Tab();
    await visit(tab, { banner: summer });
    tab.open({ slots: ["banner"] });
    tab.clock.advance(300);
    ctx(tab).at(-1).reply(200, answer(ctx(tab).at(-1), { banner: winter }, { catalogue_version: version }));
    await settle();
    assert.equal(slotOf(tab.doc, "banner").textContent, expect, "catalogue " + version);
    assert.equal(tab.localStorage.json("segserver_dc").d.banner.d.campaign, "winter");
  }
});

test("expired entries (cacheTtl) are not shown: the slot is hidden until the answer", async () => {
  const tab = new Tab();
  await visit(tab, { banner: summer });
  tab.clock.advance(600_000);
  tab.open({ slots: ["banner"] });
  assert.equal(stateOf(tab.doc, "banner"), null);
  assert.ok(hiding(tab.doc));
  tab.clock.advance(300);
  assert.equal(slotOf(tab.doc, "banner").textContent, "default banner");
});

test("cacheTtl is an option, in seconds", async () => {
  const tab = new Tab();
  await visit(tab, { banner: summer });
  tab.clock.advance(5_000);
  tab.open({ slots: ["banner"] }, { cacheTtl: 5 });
  assert.equal(stateOf(tab.doc, "banner"), null);
});

test("another catalogue version replaces the whole cache; the same version merges placements", async () => {
  const tab = new Tab();
  await visit(tab, { banner: summer });
  tab.open({ slots: ["recs"] });
  ctx(tab).at(-1).reply(200, answer(ctx(tab).at(-1), { recs: null }, { catalogue_version: "v1" }));
  await settle();
  assert.deepEqual(Object.keys(tab.localStorage.json("segserver_dc").d), ["banner", "recs"]);
  tab.open({ slots: ["recs"] });
  ctx(tab).at(-1).reply(200, answer(ctx(tab).at(-1), { recs: null }, { catalogue_version: "v2" }));
  await settle();
  const c = tab.localStorage.json("segserver_dc");
  assert.equal(c.v, "v2");
  assert.deepEqual(Object.keys(c.d), ["recs"]);
});

test("degraded answers are shown but not cached", async () => {
  const tab = new Tab();
  await visit(tab, { banner: summer });
  tab.open({ slots: ["banner"] });
  ctx(tab).at(-1).reply(200, answer(ctx(tab).at(-1), { banner: winter }, { catalogue_version: "v1", degraded: true }));
  await settle();
  assert.equal(slotOf(tab.doc, "banner").textContent, "Winter sale");
  assert.equal(tab.localStorage.json("segserver_dc").d.banner.d.campaign, "summer");
});

test("a cache of another visitor is ignored", async () => {
  const tab = new Tab();
  await visit(tab, { banner: summer });
  tab.jar.clear();
  tab.open({ slots: ["banner"] });
  assert.equal(stateOf(tab.doc, "banner"), null);
});

test("a cached popup is never shown: popups come from fresh answers only", async () => {
  const tab = new Tab();
  await visit(tab, { banner: summer, popup });
  tab.doc.key("Escape");
  tab.open({ slots: ["banner"] }, { placements: ["popup"] });
  assert.equal(tab.doc.querySelector("[role]"), null);
});
