import { test } from "node:test";
import assert from "node:assert/strict";
import { Tab, answer, decision, hiding, settle, slotOf, stateOf } from "./fakes.js";

const banner = decision("summer", "banner", { title: "Summer sale", body: "-20 %", link: "/sale", cta: "Shop now" });

test("only marked slots are hidden while deciding; the answer fills and reveals them", async () => {
  const tab = new Tab();
  tab.open({ slots: ["banner", "other"] });
  assert.ok(hiding(tab.doc));
  const rule = tab.doc.head.childNodes[0].textContent;
  assert.equal(rule, "[data-segserver-placement]:not([data-segserver-state]){visibility:hidden}");
  assert.equal(stateOf(tab.doc, "banner"), null);
  await settle();
  tab.clock.advance(100);
  tab.net.to("/v1/context")[0].reply(200, answer(tab.net.calls[0], { banner, other: null }));
  await settle();
  assert.equal(hiding(tab.doc), false);
  assert.equal(stateOf(tab.doc, "banner"), "filled");
  assert.equal(slotOf(tab.doc, "banner").textContent, "Summer sale-20 %Shop now");
  assert.equal(stateOf(tab.doc, "other"), "default");
  assert.equal(slotOf(tab.doc, "other").textContent, "default other");
});

test("hard time-out: after 300 ms slots show their own original children, and a late answer changes nothing", async () => {
  const tab = new Tab();
  tab.open({ slots: ["banner"] });
  const original = slotOf(tab.doc, "banner").childNodes[0];
  await settle();
  tab.clock.advance(299);
  assert.ok(hiding(tab.doc));
  tab.clock.advance(1);
  assert.equal(hiding(tab.doc), false);
  assert.equal(stateOf(tab.doc, "banner"), "default");
  assert.equal(slotOf(tab.doc, "banner").childNodes[0], original);
  tab.net.calls[0].reply(200, answer(tab.net.calls[0], { banner }));
  await settle();
  assert.equal(slotOf(tab.doc, "banner").textContent, "default banner");
  assert.equal(stateOf(tab.doc, "banner"), "default");
  // ...but it is cached for the next page.
  assert.ok(tab.localStorage.json("segserver_dc").d.banner);
});

test("the time-out is an option", async () => {
  const tab = new Tab();
  tab.open({ slots: ["banner"] }, { timeout: 1000 });
  tab.clock.advance(999);
  assert.ok(hiding(tab.doc));
  tab.clock.advance(1);
  assert.equal(hiding(tab.doc), false);
});

test("server unreachable: the defaults show at once, not after the time-out", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => c.fail();
  tab.open({ slots: ["banner"] });
  await settle(); // no clock advance: well before the 300 ms
  assert.equal(hiding(tab.doc), false);
  assert.equal(stateOf(tab.doc, "banner"), "default");
  assert.equal(slotOf(tab.doc, "banner").textContent, "default banner");
});

test("an error answer (4xx/5xx) also shows the defaults at once", async () => {
  const tab = new Tab();
  tab.net.auto = () => [503, { error: { code: "unavailable", message: "down" } }];
  tab.open({ slots: ["banner"] });
  await settle();
  assert.equal(stateOf(tab.doc, "banner"), "default");
});

test("a slot that appears after the time-out is not hidden", async () => {
  const tab = new Tab();
  tab.open({ slots: [] });
  tab.clock.advance(300);
  assert.equal(hiding(tab.doc), false);
});
