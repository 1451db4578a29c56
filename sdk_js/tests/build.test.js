// The builds as the page gets them: within the size budget, and the classic script
// exposes window.segserver. Built in memory, so the test does not need `npm run build`.
import { test } from "node:test";
import assert from "node:assert/strict";
import vm from "node:vm";
import { build } from "esbuild";
import { BUDGET, builds, common, gzipped } from "../build.mjs";
import { Tab, settle, stored } from "./fakes.js";

const root = new URL("..", import.meta.url).pathname;
const bundle = async (b) => {
  const out = await build({ ...common, ...b, absWorkingDir: root, write: false });
  return out.outputFiles[0].text;
};

for (const b of builds)
  test(`${b.outfile} is at most ${BUDGET} bytes minified and gzipped`, async () => {
    const code = await bundle(b);
    const size = gzipped(code);
    assert.ok(size <= BUDGET, `${size} B > ${BUDGET} B`);
    assert.doesNotMatch(code, /\binnerHTML\s*=\s*(?!\w+\.sanitize)/, "innerHTML only through sanitize");
  });

test("the classic script defines window.segserver and runs in a page", async () => {
  const code = await bundle(builds.find((b) => b.format === "iife"));
  const tab = new Tab();
  tab.net.auto = (c) => [200, stored(c)];
  tab.page({ slots: ["banner"] });
  // The browser environment the bundle builds from globals, made of the same fakes.
  const window = Object.assign(tab.win, {
    document: tab.doc,
    location: tab.env.location,
    navigator: tab.env.navigator,
    localStorage: tab.localStorage,
    sessionStorage: tab.sessionStorage,
    fetch: tab.env.fetch,
    setTimeout: tab.env.setTimeout,
    clearTimeout: tab.env.clearTimeout,
  });
  const context = vm.createContext({ window, crypto: globalThis.crypto, URL, URLSearchParams, JSON, Date, Math, Promise, console });
  vm.runInContext(code, context);
  const sdk = window.segserver;
  assert.deepEqual(Object.keys(sdk).sort(), ["consent", "flush", "init", "page", "segments", "track", "visitorId"]);
  sdk.init({ endpoint: "https://seg.example/", siteKey: "pk" });
  await settle();
  assert.match(sdk.visitorId(), /^[0-9a-f]{32}$/);
  assert.equal(tab.net.calls[0].url, "https://seg.example/v1/context?site_key=pk");
  assert.equal(tab.jar.get("segserver_vid").value, sdk.visitorId());
});
