import { test } from "node:test";
import assert from "node:assert/strict";
import { Tab, answer, decision, settle, stored } from "./fakes.js";

const welcome = decision("welcome", "popup", { title: "Welcome!", body: "10 % off your first order", image: "/img/w.png", cta: "Shop now", link: "/new" }, "tok-w");

/** A page with a focused search field, whose answer opens the popup. */
async function open(payload) {
  const tab = new Tab();
  tab.page();
  const input = tab.doc.body.appendChild(tab.doc.createElement("input"));
  input.focus();
  tab.net.auto = (c) => (c.path === "/v1/context" ? [200, answer(c, { home_popup: payload ? { ...welcome, content: { ...welcome.content, payload } } : welcome })] : [202, stored(c)]);
  const { createSegserver } = await import("../src/sdk.js");
  tab.sdk = createSegserver(tab.env).init({ endpoint: "https://seg.example", siteKey: "pk", placements: ["home_popup"] });
  await settle();
  const dialog = tab.doc.querySelector("[role]");
  return { tab, input, dialog, doc: tab.doc };
}
const sentEvents = async (tab) => {
  tab.clock.advance(1000);
  await settle();
  return tab.net.to("/v1/events").flatMap((c) => c.body.events.map((e) => [e.type, e.properties.token, e.properties.placement]));
};

test("a popup is an accessible dialog: role, aria-modal, labelled and described", async () => {
  const { dialog, doc } = await open();
  assert.equal(dialog.getAttribute("role"), "dialog");
  assert.equal(dialog.getAttribute("aria-modal"), "true");
  const title = doc.querySelector("#" + dialog.getAttribute("aria-labelledby"));
  assert.equal(title.tagName, "H2");
  assert.equal(title.textContent, "Welcome!");
  assert.equal(doc.querySelector("#" + dialog.getAttribute("aria-describedby")).textContent, "10 % off your first order");
  const close = dialog.querySelector("button");
  assert.equal(close.getAttribute("aria-label"), "Close");
  assert.equal(dialog.querySelector("a").getAttribute("href"), "/new");
  assert.equal(dialog.querySelector("img").getAttribute("alt"), "");
  assert.ok(dialog.parentNode.parentNode === doc.body, "an overlay in the body");
});

test("without a title the dialog is labelled by aria-label", async () => {
  const { dialog } = await open({ body: "Hello" });
  assert.equal(dialog.getAttribute("aria-labelledby"), null);
  assert.equal(dialog.getAttribute("aria-label"), "Offer");
});

test("focus moves into the dialog and is trapped there", async () => {
  const { dialog, doc } = await open();
  const close = dialog.querySelector("button");
  const cta = dialog.querySelector("a");
  assert.equal(doc.activeElement, close);
  // Tab from the last element wraps to the first, Shift+Tab from the first to the last.
  cta.focus();
  assert.equal(doc.key("Tab").defaultPrevented, true);
  assert.equal(doc.activeElement, close);
  assert.equal(doc.key("Tab", true).defaultPrevented, true);
  assert.equal(doc.activeElement, cta);
  // Tab between inner elements is left to the browser.
  close.focus();
  assert.equal(doc.key("Tab").defaultPrevented, false);
  // Focus that lands outside (a script, a click) is brought back in.
  doc.body.appendChild(doc.createElement("button")).focus();
  assert.equal(doc.activeElement, close);
});

test("Escape dismisses: the dialog goes, focus returns, dismiss carries the token", async () => {
  const { tab, input, doc } = await open();
  const e = doc.key("Escape");
  assert.equal(e.defaultPrevented, true);
  assert.equal(doc.querySelector("[role]"), null);
  assert.equal(doc.activeElement, input);
  // Keys after closing are not ours any more.
  assert.equal(doc.key("Tab").defaultPrevented, false);
  assert.deepEqual(await sentEvents(tab), [["impression", "tok-w", "home_popup"], ["dismiss", "tok-w", "home_popup"]]);
});

test("the close button and the backdrop dismiss", async () => {
  for (const target of ["close", "backdrop"]) {
    const { tab, input, dialog, doc } = await open();
    if (target === "close") dialog.querySelector("button").click();
    else dialog.parentNode.click();
    assert.equal(doc.querySelector("[role]"), null, target);
    assert.equal(doc.activeElement, input, target);
    assert.deepEqual((await sentEvents(tab)).map((x) => x[0]), ["impression", "dismiss"], target);
  }
});

test("a click inside the dialog is not a backdrop click", async () => {
  const { dialog, doc } = await open();
  dialog.querySelector("h2").click();
  assert.ok(doc.querySelector("[role]"));
});

test("the call to action reports a click with the token (not a dismiss) and closes", async () => {
  const { tab, dialog, doc } = await open();
  dialog.querySelector("a").click();
  assert.equal(doc.querySelector("[role]"), null);
  assert.deepEqual(await sentEvents(tab), [["impression", "tok-w", "home_popup"], ["click", "tok-w", "home_popup"]]);
});

test("a call to action without a link is a button", async () => {
  const { dialog } = await open({ title: "Hi", cta: "OK" });
  const [close, cta] = dialog.querySelectorAll("button");
  assert.equal(close.getAttribute("class"), "segserver-close");
  assert.equal(cta.textContent, "OK");
  assert.equal(cta.getAttribute("type"), "button");
});

test("server strings are text, and javascript: links and images are dropped", async () => {
  const { dialog, doc } = await open({ title: "<img src=x onerror=alert(1)>", body: "<b>hi</b>", link: "javascript:alert(1)", image: "javascript:alert(2)", cta: "Go" });
  assert.equal(dialog.querySelector("h2").textContent, "<img src=x onerror=alert(1)>");
  assert.equal(dialog.querySelector("h2").children.length, 0);
  assert.equal(dialog.querySelector("a"), null);
  assert.equal(dialog.querySelector("img"), null);
  assert.equal(doc.querySelectorAll("script").length, 0);
});

test("one popup at a time; its default styles are added once", async () => {
  const { tab, doc } = await open();
  assert.equal(doc.querySelectorAll("[role]").length, 1);
  assert.ok(doc.head.childNodes.some((n) => n.textContent.includes(".segserver-popup")));
  tab.sdk.page();
  await settle();
  assert.equal(doc.querySelectorAll("[role]").length, 1);
});
