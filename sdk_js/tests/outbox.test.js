import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { MAX_ATTEMPTS, attempt, backoff, due, revive, settle } from "../src/outbox.js";

const corpus = JSON.parse(readFileSync(new URL("../../tests/cases/sdk/outbox.json", import.meta.url)));

for (const c of corpus.cases)
  test(`outbox case: ${c.name}`, () => {
    const sent = c.sent.map((x) => ({ e: { event_id: x.id }, n: x.n, a: 0 }));
    const other = { e: { event_id: "not-sent" }, n: 0, a: 0 };
    const left = settle([other, ...sent], sent, c.results);
    assert.deepEqual(left.map((x) => x.e.event_id), ["not-sent", ...c.left]);
  });

test("backoff doubles from 2 s and is capped at 60 s; jitter keeps 50-100 %", () => {
  for (const [n, ms] of Object.entries(corpus.backoff_ms)) if (n !== "about") assert.equal(backoff(+n, 1), ms);
  assert.equal(backoff(1, 0), 1000);
  assert.equal(backoff(10, 0.5), 45000);
});

test("due: events never sent, and retries whose back-off has passed", () => {
  const q = [
    { e: { event_id: "new" }, n: 0, a: 5000 },
    { e: { event_id: "retry-due" }, n: 2, a: 50 },
    { e: { event_id: "retry-later" }, n: 1, a: 500 },
  ];
  assert.deepEqual(q.filter((x) => due(x, 100)).map((x) => x.e.event_id), ["new", "retry-due"]);
  attempt(q.slice(0, 1), 1000, 1);
  assert.deepEqual(q[0], { e: { event_id: "new" }, n: 1, a: 3000 });
  assert.deepEqual(q.filter((x) => due(x, 1000)).map((x) => x.e.event_id), ["retry-due", "retry-later"]);
});

test("revive keeps well-formed entries with attempts left", () => {
  const ok = { e: { event_id: "a" }, n: 3, a: 0 };
  assert.deepEqual(revive([ok, null, { e: {} , n: 0, a: 0 }, { e: { event_id: "b" }, n: MAX_ATTEMPTS, a: 0 }, 7]), [ok]);
  assert.deepEqual(revive(null), []);
  assert.deepEqual(revive({}), []);
});
