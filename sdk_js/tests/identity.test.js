import { test } from "node:test";
import assert from "node:assert/strict";
import { Tab, settle, stored } from "./fakes.js";

test("cookie id: created once, kept across pages, refreshed for a year, secure on https", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, stored(c)];
  const first = tab.open();
  await settle();
  const id = first.visitorId();
  assert.match(id, /^[\w.:@+=-]{1,128}$/);
  assert.equal(tab.jar.get("segserver_vid").value, id);
  assert.deepEqual(tab.jar.get("segserver_vid").attrs, ["path=/", "max-age=31536000", "samesite=lax", "secure"]);
  for (let i = 0; i < 3; i++) {
    const next = tab.open({ url: "https://shop.example/p/" + i });
    await settle();
    assert.equal(next.visitorId(), id);
  }
  assert.deepEqual(new Set(tab.net.to("/v1/context").map((c) => c.body.visitor_id)), new Set([id]));
  assert.equal(tab.localStorage.getItem("segserver_vid"), null);
});

test("cookieDomain is written; http pages get no secure flag", async () => {
  const tab = new Tab({ url: "http://shop.example/" });
  tab.open({}, { cookieDomain: "shop.example" });
  assert.deepEqual(tab.jar.get("segserver_vid").attrs, ["path=/", "max-age=31536000", "samesite=lax", "domain=shop.example"]);
});

test("localStorage id: created once and kept, no cookie", async () => {
  const tab = new Tab();
  tab.net.auto = (c) => [200, stored(c)];
  const id = tab.open({}, { idStorage: "localStorage" }).visitorId();
  assert.equal(tab.localStorage.json("segserver_vid"), id);
  assert.equal(tab.open({}, { idStorage: "localStorage" }).visitorId(), id);
  assert.equal(tab.cookieWrites.length, 0);
});

test("a malformed stored id is replaced by a new one", () => {
  const tab = new Tab();
  tab.jar.set("segserver_vid", { value: "{bad id}", attrs: [] });
  const id = tab.open().visitorId();
  assert.notEqual(id, "{bad id}");
  assert.equal(tab.jar.get("segserver_vid").value, id);
  tab.localStorage.setItem("segserver_vid", "not json");
  assert.notEqual(tab.open({}, { idStorage: "localStorage" }).visitorId(), "not json");
});

test("storage that throws (blocked) does not break the page", async () => {
  const tab = new Tab();
  tab.page({ slots: ["banner"] });
  const boom = {
    getItem() {
      throw new Error("SecurityError");
    },
    setItem() {
      throw new Error("SecurityError");
    },
    removeItem() {
      throw new Error("SecurityError");
    },
  };
  tab.env.localStorage = boom;
  tab.env.sessionStorage = boom;
  const { createSegserver } = await import("../src/sdk.js");
  const sdk = createSegserver(tab.env).init({ endpoint: "https://seg.example", siteKey: "k", idStorage: "localStorage" });
  await settle();
  assert.ok(sdk.visitorId());
  assert.equal(tab.net.to("/v1/context").length, 1);
  assert.ok(sdk.track("custom_thing", { a: 1 }));
});
