import { test } from "node:test";
import assert from "node:assert/strict";
import { Tab, answer, decision, settle, slotOf, stored } from "./fakes.js";

const ctx = (tab) => tab.net.to("/v1/context");

/** A page with these slots; the answer carries `decisions`. */
async function show(decisions, init = {}, slots = Object.keys(decisions)) {
  const tab = new Tab();
  tab.net.auto = (c) => (c.path === "/v1/context" ? [200, answer(c, decisions)] : [202, stored(c)]);
  tab.open({ slots }, init);
  await settle();
  return tab;
}
const events = async (tab) => {
  tab.clock.advance(1000);
  await settle();
  return tab.net.to("/v1/events").flatMap((c) => c.body.events.map((e) => [e.type, e.properties.token, e.properties.placement]));
};

test("a banner is built from text nodes: title, image, body, link", async () => {
  const tab = await show({ top: decision("c", "banner", { title: "<b>Big</b>", body: "Body & more", image: "https://cdn.example/b.png", alt: "Shoes", link: "https://shop.example/sale", cta: "Go" }) });
  const box = slotOf(tab.doc, "top").childNodes[0];
  assert.equal(box.getAttribute("class"), "segserver-banner");
  assert.deepEqual(box.children.map((n) => n.tagName), ["STRONG", "IMG", "P", "A"]);
  assert.equal(box.children[0].textContent, "<b>Big</b>");
  assert.equal(box.children[0].children.length, 0);
  assert.equal(box.children[1].getAttribute("alt"), "Shoes");
  assert.equal(box.children[3].getAttribute("href"), "https://shop.example/sale");
  assert.equal(box.innerHTMLSet, null);
});

test("payload html goes in only through the page's sanitize function", async () => {
  const payload = { title: "Fallback title", html: "<p onclick=x>Hi</p>" };
  const plain = await show({ top: decision("c", "inline", payload) });
  const box = slotOf(plain.doc, "top").childNodes[0];
  assert.equal(box.innerHTMLSet, null);
  assert.equal(box.textContent, "Fallback title");
  const seen = [];
  const clean = await show({ top: decision("c", "inline", payload) }, { sanitize: (h) => (seen.push(h), "<p>Hi</p>") });
  assert.deepEqual(seen, ["<p onclick=x>Hi</p>"]);
  assert.equal(slotOf(clean.doc, "top").childNodes[0].innerHTMLSet, "<p>Hi</p>");
});

test("recommendations: the default template is a titled list of product ids, as text", async () => {
  const tab = await show({ recs: decision("r", "recommendations", { strategy: "popular", title: "Popular" }, undefined, ["p1", "<p2>"]) });
  const box = slotOf(tab.doc, "recs").childNodes[0];
  assert.equal(box.getAttribute("class"), "segserver-recommendations");
  assert.equal(box.children[0].textContent, "Popular");
  const items = box.querySelectorAll("li");
  assert.deepEqual(items.map((li) => li.textContent), ["p1", "<p2>"]);
  assert.deepEqual(items.map((li) => li.getAttribute("data-product-id")), ["p1", "<p2>"]);
});

test("recommendations: the page's template renders the product ids", async () => {
  const calls = [];
  const template = (products, payload, doc) => {
    calls.push([products, payload.strategy]);
    const ul = doc.createElement("ul");
    for (const id of products) ul.appendChild(doc.createElement("li")).textContent = "Product " + id;
    return ul;
  };
  const tab = await show({ recs: decision("r", "recommendations", { strategy: "popular_in_segment" }, undefined, ["a", "b"]) }, { template });
  assert.deepEqual(calls, [[["a", "b"], "popular_in_segment"]]);
  assert.equal(slotOf(tab.doc, "recs").textContent, "Product aProduct b");
  // A template returning a string gets text, never HTML.
  const text = await show({ recs: decision("r", "recommendations", { products: ["a"] }) }, { template: () => "<li>a</li>" });
  assert.equal(slotOf(text.doc, "recs").textContent, "<li>a</li>");
  assert.equal(slotOf(text.doc, "recs").children.length, 0);
});

test("render lets the page draw any content itself", async () => {
  const tab = await show({ top: decision("c", "banner", { title: "T" }) }, { render: (el, d) => ((el.textContent = "custom " + d.campaign), true) });
  assert.equal(slotOf(tab.doc, "top").textContent, "custom c");
});

test("impressions carry the decision token; clicks on links and buttons in a slot too", async () => {
  const tab = await show({ top: decision("c", "banner", { title: "T", link: "/x", cta: "Go" }, "tok-top"), none: null });
  const slot = slotOf(tab.doc, "top");
  slot.querySelector("strong").click(); // not a link: no click event
  slot.querySelector("a").click();
  slotOf(tab.doc, "none").querySelector("span").click(); // default content: not ours
  assert.deepEqual(await events(tab), [["impression", "tok-top", "top"], ["click", "tok-top", "top"]]);
});

test("a click on an element inside a link counts", async () => {
  const template = (products, p, doc) => {
    const a = doc.createElement("a");
    a.setAttribute("href", "/p/" + products[0]);
    a.appendChild(doc.createElement("img"));
    return a;
  };
  const tab = await show({ recs: decision("r", "recommendations", { products: ["p1"] }, "tok-r") }, { template });
  slotOf(tab.doc, "recs").querySelector("img").click();
  assert.deepEqual((await events(tab)).slice(1), [["click", "tok-r", "recs"]]);
});

test("content shown from the cache reports its impression at the time-out, with the cached token", async () => {
  const tab = await show({ top: decision("c", "banner", { title: "T" }, "tok-cached") });
  tab.net.auto = null; // the fresh answer does not come
  tab.open({ slots: ["top"] });
  tab.clock.advance(300);
  tab.clock.advance(1000);
  await settle();
  const last = tab.net.to("/v1/events").at(-1).body.events;
  assert.deepEqual(last.filter((e) => e.type === "impression").map((e) => e.properties.token), ["tok-cached"]);
});

test("style elements carry the page's CSP nonce; styles: false leaves popups unstyled", async () => {
  const tab = await show({ pop: decision("p", "popup", { title: "T" }) }, { nonce: "n0nce", placements: ["pop"], styles: false }, []);
  assert.ok(tab.doc.head.childNodes.every((n) => n.getAttribute("nonce") === "n0nce"));
  assert.ok(!tab.doc.head.childNodes.some((n) => n.textContent.includes(".segserver-popup")));
  assert.ok(tab.doc.querySelector("[role]"));
  assert.equal(ctx(tab)[0].body.placements[0], "pop");
});
