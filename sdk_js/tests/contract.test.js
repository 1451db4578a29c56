// The shared case tests/cases/sdk/context_exchange.json: what the SDK sends and how
// it renders the answer, byte for byte of JSON. The server's tests use the same file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Tab, settle, slotOf } from "./fakes.js";

const c = JSON.parse(readFileSync(new URL("../../tests/cases/sdk/context_exchange.json", import.meta.url)));

test("context exchange case: requests and rendering", async () => {
  const tab = new Tab({ url: c.page.url, ua: c.page.user_agent });
  tab.clock.t = c.now * 1000;
  tab.page({ slots: c.page.slots, title: c.page.title, referrer: c.page.referrer });
  tab.env.navigator.language = c.page.language;
  const { createSegserver } = await import("../src/sdk.js");
  const sdk = createSegserver(tab.env).init(c.init);
  await settle();

  const [ctx] = tab.net.calls;
  assert.equal(ctx.init.method, c.context_request.method);
  assert.equal(ctx.url, c.context_request.url);
  assert.equal(ctx.init.headers, undefined, "no header: no CORS preflight");
  assert.equal(ctx.init.body, JSON.stringify(c.context_request.body));
  ctx.reply(c.context_response.status, c.context_response.body);
  await settle();
  for (const [id, text] of Object.entries(c.expect_slots)) assert.equal(slotOf(tab.doc, id).textContent, text);
  assert.equal(tab.doc.querySelector("[role]").getAttribute("role"), "dialog");
  assert.deepEqual(sdk.segments, c.context_response.body.segments);

  tab.clock.advance(500);
  sdk.track("add_to_cart", { product_id: "p7", price: 19.9, quantity: 2 });
  tab.clock.advance(1000);
  const ev = tab.net.calls[1];
  assert.equal(ev.url, c.events_request.url);
  assert.equal(ev.init.body, JSON.stringify(c.events_request.body));
  ev.reply(c.events_response.status, c.events_response.body);
  await settle();
  assert.deepEqual(tab.sessionStorage.json("segserver_q"), []);
});
