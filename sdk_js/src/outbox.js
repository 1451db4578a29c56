// The outbox: every event waits here (mirrored to sessionStorage, so it survives a
// page change) until a server answer says stored, duplicate or rejected. Sending is
// at-least-once: an event whose answer never came (page closed mid-request, or sent
// by a beacon, which has no answer) is sent again; its event_id makes that harmless.
//
// An entry is {e: event, n: attempts so far, a: not before (epoch ms)}. Pure
// functions of (entries, now, random): the SDK and the tests share them.

/** Attempts before an event is given up: 211-422 s of back-off in all (2+4+...+32+6*60 s, jittered). */
export const MAX_ATTEMPTS = 12;

/** Back-off after the n-th attempt (n >= 1), in ms: 2^n s capped at 60 s, jittered to 50-100 %. */
export const backoff = (n, random) => Math.min(1000 * 2 ** n, 60000) * (0.5 + random / 2);

/**
 * Does an entry go in a request made at `now`? Retries once their back-off has
 * passed, and every event not sent yet: the first one tracked opens the batching
 * window, the others ride along.
 */
export const due = (x, now) => !x.n || x.a <= now;

/** Count one attempt for each sent entry and hold it back until its back-off has passed. */
export function attempt(sent, now, random) {
  for (const x of sent) x.a = now + backoff(++x.n, random);
}

/**
 * The entries left after an answer to `sent`: `results` name their event by `index`
 * into `sent`; stored, duplicate and rejected events leave, not_stored ones stay.
 * `results` null means every sent event is done with (a 2xx without results, or a
 * 4xx that retrying cannot fix); [] that none is (no answer, 5xx). Entries out of
 * attempts leave too.
 */
export function settle(entries, sent, results) {
  const done = new Set(results ? [] : sent);
  for (const r of results || []) {
    const x = sent[r.index];
    if (x && r.status !== "not_stored") done.add(x);
  }
  return entries.filter((x) => !done.has(x) && x.n < MAX_ATTEMPTS);
}

/** Entries read back from storage: anything malformed is dropped. */
export const revive = (raw) =>
  Array.isArray(raw) ? raw.filter((x) => x && x.e && x.e.event_id && x.n < MAX_ATTEMPTS) : [];
