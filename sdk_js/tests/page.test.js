import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { pageProps } from "../src/page.js";

const corpus = JSON.parse(readFileSync(new URL("../../tests/cases/sdk/page_view.json", import.meta.url)));

for (const c of corpus.cases)
  test(`page_view case: ${c.name}`, () => {
    const u = new URL(c.location);
    const props = pageProps({ href: c.location, search: u.search }, { referrer: c.referrer, title: c.title }, { userAgent: c.user_agent, language: c.language });
    // JSON drops undefined: compare what goes on the wire.
    assert.deepEqual(JSON.parse(JSON.stringify(props)), c.expect);
  });
