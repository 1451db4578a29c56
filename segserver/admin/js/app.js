// The page's shell: sign-in, the site and role, the hash router and the screens.
// Screens are ES modules loaded on first use (views/*.js); each exports
// render(main, arg, query) and may return a function that stops its timers.

import { ApiError, call, configure, session, whoami } from "./api.js";
import { announce, clearError, field, h, options, showError, title } from "./dom.js";

const SCREENS = {
  segments: "./views/segments.js",
  analytics: "./views/analytics.js",
  content: "./views/content.js",
  placements: "./views/content.js",
  campaigns: "./views/campaigns.js",
  results: "./views/results.js",
  winners: "./views/winners.js",
  visitors: "./views/visitors.js",
  ops: "./views/ops.js",
};
const KEY = "segserver-admin";
const main = document.getElementById("main");
let stop = null;
let first = true;

function saved() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || {};
  } catch (_) {
    return {};
  }
}
const save = (s) => sessionStorage.setItem(KEY, JSON.stringify(s));

/** The token from the URL's fragment (`/admin/#token=...`, as `segserver serve` prints
 * it): kept for this tab only and removed from the address bar at once. */
function tokenFromUrl() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!m) return null;
  history.replaceState(null, "", location.pathname + "#/segments");
  return decodeURIComponent(m[1]);
}

async function signIn(token, preferredSite) {
  const who = await whoami(token);
  let sites = [];
  if (who.site) sites = [who.site];
  else sites = (await call("sites")).sites || [];
  const site = who.site || (sites.includes(preferredSite) ? preferredSite : sites.includes("demo") ? "demo" : sites[0]);
  configure({ token, role: who.role, site: site || "" });
  save({ token, site });
  showWho(sites);
  return site;
}

function showWho(sites) {
  const { site, role } = session();
  const who = document.getElementById("who");
  const picker = h("select", { id: "site-picker", "aria-label": "Site", onchange: (e) => switchSite(e.target.value) }, options(sites, site));
  who.replaceChildren(
    sites.length > 1 ? picker : h("span", {}, "Site ", h("strong", {}, site || "none")),
    h("span", { class: "role role-" + role, title: role === "viewer" ? "A viewer sees everything and changes nothing" : "" }, role),
    h("button", { type: "button", class: "link", onclick: signOut }, "Sign out"),
  );
  who.hidden = false;
  document.getElementById("nav").hidden = false;
  document.body.classList.toggle("read-only", role === "viewer");
}

function switchSite(site) {
  configure({ site });
  save({ ...saved(), site });
  route();
}

function signOut() {
  sessionStorage.removeItem(KEY);
  configure({ token: "", site: "", role: "root" });
  document.getElementById("who").hidden = true;
  document.getElementById("nav").hidden = true;
  location.hash = "#/signin";
  renderSignIn();
}

function renderSignIn(message) {
  if (stop) stop();
  stop = null;
  const token = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true, spellcheck: "false" });
  const err = h("p", { class: "field-error", role: "alert", hidden: !message }, message || "");
  const form = h(
    "form",
    { class: "signin card", onsubmit: submit },
    title("Sign in"),
    h("p", {}, "Use the root admin token, or a per-site token (viewer, editor or admin). It is kept for this tab only."),
    field("Admin token", token),
    err,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  async function submit(e) {
    e.preventDefault();
    err.hidden = true;
    try {
      await signIn(token.value.trim());
      go("#/segments");
    } catch (ex) {
      err.textContent = ex instanceof ApiError && ex.status === 401 ? "This token is not valid." : ex.message;
      err.hidden = false;
      token.focus();
    }
  }
  main.replaceChildren(form);
  token.focus();
}

/** Open a screen: by the hash (the router runs on hashchange), or now if it is the same. */
export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  const [screen, ...rest] = path.split("/");
  return { screen: screen || "segments", arg: rest.map(decodeURIComponent).join("/") || null, query: new URLSearchParams(qs || "") };
}

async function route() {
  const { screen, arg, query } = parseHash();
  if (!session().token) return renderSignIn();
  if (screen === "signin") return renderSignIn();
  const module = SCREENS[screen];
  if (!module) {
    location.hash = "#/segments";
    return;
  }
  for (const a of document.querySelectorAll("#nav a")) {
    const on = a.getAttribute("href") === "#/" + (screen === "placements" ? "content" : screen === "results" ? "campaigns" : screen);
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (stop) stop();
  stop = null;
  clearError();
  announce("");
  delete main.dataset.rendered;
  try {
    const view = await import(module);
    const started = performance.now();
    stop = (await view.render(main, arg, query, screen)) || null;
    performance.measure(`admin:screen:${screen}`, { start: started }); // incl. its API calls
    main.dataset.rendered = screen; // the screen and its first API answers are shown
  } catch (err) {
    main.replaceChildren(title("Something went wrong"));
    main.dataset.rendered = screen;
    showError(err);
    if (err instanceof ApiError && err.status === 401) return renderSignIn("The token is no longer valid; sign in again.");
  }
  scrollers();
  // Move focus to the new screen's heading, except on the very first view (the
  // browser's own focus start is right then) and when the screen focused a control.
  const heading = main.querySelector(".screen-title");
  if (!first && heading && !main.contains(document.activeElement)) heading.focus();
  first = false;
  document.title = `${heading ? heading.textContent : "segserver"} · segserver admin`;
}

async function boot() {
  const fromUrl = tokenFromUrl();
  const { token, site } = saved();
  const use = fromUrl || token;
  if (!use) return renderSignIn();
  try {
    await signIn(use, site);
  } catch (err) {
    sessionStorage.removeItem(KEY);
    return renderSignIn(err instanceof ApiError && err.status === 401 ? "This token is not valid." : err.message);
  }
  if (!location.hash || location.hash === "#/signin") history.replaceState(null, "", "#/segments");
  await route();
  performance.mark("admin:first-view");
}

/** Tables wider than the screen scroll sideways in their .table-wrap: those that do
 * become focusable regions, so a keyboard can scroll them (WCAG 2.1.1). */
function scrollers() {
  for (const wrap of main.querySelectorAll(".table-wrap")) {
    const scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
    const heading = wrap.closest("section")?.querySelector("h2");
    wrap.toggleAttribute("tabindex", scrolls);
    if (scrolls) {
      wrap.setAttribute("tabindex", "0");
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", `${heading ? heading.textContent : "Table"} (scrolls sideways)`);
    } else {
      wrap.removeAttribute("role");
      wrap.removeAttribute("aria-label");
    }
  }
}

let resizing;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(scrollers, 150);
});
window.addEventListener("hashchange", route);
boot();
