// The browser environment the SDK runs in. Tests pass their own object of the same
// shape to createSegserver(env); nothing else in the SDK reads a global.

/** 32 random hex digits (visitor and event ids); crypto.getRandomValues works on http pages too. */
const uid = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => (b + 256).toString(16).slice(1)).join("");

export function browserEnv() {
  const w = window;
  return {
    window: w,
    document: w.document,
    location: w.location,
    navigator: w.navigator,
    // Getters: reading window.localStorage itself throws where storage is blocked;
    // the SDK reads them inside try.
    get localStorage() {
      return w.localStorage;
    },
    get sessionStorage() {
      return w.sessionStorage;
    },
    fetch: (u, i) => w.fetch(u, i),
    setTimeout: (f, ms) => w.setTimeout(f, ms),
    clearTimeout: (t) => w.clearTimeout(t),
    now: Date.now,
    random: Math.random,
    uid,
  };
}
