// Visitors: look one up; its profile, segments now, each placement's decision and why
// (the clause that decided each segment with the values compared, every campaign
// considered and why it lost), its membership history; export and erase (GDPR).

import { call, canAdmin } from "../api.js";
import { announce, confirmDialog, download, field, h, num, showError, title, when } from "../dom.js";
import { atPath, clauseText } from "../rules.js";

export async function render(main, vid) {
  const input = h("input", { value: vid || "", spellcheck: "false", autocomplete: "off", required: true });
  const form = h(
    "form",
    { class: "toolbar", role: "search", onsubmit: (e) => (e.preventDefault(), (location.hash = `#/visitors/${encodeURIComponent(input.value.trim())}`)) },
    field("Visitor id", input),
    h("button", { type: "submit", class: "primary" }, "Look up"),
  );
  main.replaceChildren(title(vid ? `Visitor ${vid}` : "Visitors"), form);
  if (!vid) {
    main.append(h("p", { class: "muted" }, "Visitor ids appear in segment previews and member samples; the demo shop keeps its visitor's id in the segserver_vid cookie."));
    return input.focus();
  }
  let profile, why, history, segments;
  try {
    [profile, why, history, segments] = await Promise.all([
      call("visitor", { visitor: vid }),
      call("explain", { visitor: vid }),
      call("visitorHistory", { visitor: vid }),
      call("segments", {}, { query: { per_page: 500 } }),
    ]);
  } catch (err) {
    if (err.status === 404) return main.append(h("p", { id: "visitor-missing" }, `No visitor ${vid} on this site.`));
    throw err;
  }
  const rules = Object.fromEntries(segments.segments.map((s) => [s.id, s]));
  const exportIt = async () => {
    try {
      const everything = await call("exportVisitor", { visitor: vid });
      download(new Blob([JSON.stringify(everything, null, 2)], { type: "application/json" }), `visitor-${vid}.json`);
      announce(`Exported everything stored about ${vid}`);
    } catch (err) {
      showError(err);
    }
  };
  const erase = async () => {
    if (!(await confirmDialog("Erase this visitor?", `Every trace of ${vid} is removed from this site: profile, membership, history, caps. This cannot be undone.`, "Erase"))) return;
    try {
      await call("eraseVisitor", { visitor: vid }, { as: "none" });
      announce(`Visitor ${vid} erased`);
      main.replaceChildren(title(`Visitor ${vid}`), form, h("p", { id: "visitor-erased", class: "ok" }, `Visitor ${vid} was erased.`));
    } catch (err) {
      showError(err);
    }
  };
  main.append(
    h("div", { class: "actions" }, h("button", { type: "button", onclick: exportIt }, "Export (JSON)"), canAdmin() ? h("button", { type: "button", class: "danger", onclick: erase }, "Erase (GDPR)") : null),
    h("div", { class: "split" }, h("div", { class: "stack" }, decisions(why), segmentsNow(why, rules)), h("div", { class: "stack" }, profileCard(profile), historyCard(history))),
  );
}

function decisions(why) {
  return h(
    "section",
    { class: "card", "aria-labelledby": "dec-title", id: "visitor-decisions" },
    h("h2", { id: "dec-title" }, "Decisions now"),
    why.global_holdout ? h("p", {}, "In the site's global holdout: no campaign is shown.") : null,
    Object.entries(why.placements).map(([pid, considered]) => {
      const dec = why.decisions[pid];
      return h(
        "div",
        { dataset: { placement: pid } },
        h("h3", {}, pid, ": ", dec ? h("span", { class: "ok" }, `${dec.campaign} (variant ${dec.variant}, ${dec.content})`) : h("span", { class: "muted" }, "default content")),
        considered.length
          ? h("ul", {}, considered.map((c) => h("li", { dataset: { campaign: c.campaign } }, h("strong", { class: c.won ? "ok" : "" }, c.campaign), ": ", c.won ? "won" : c.reason)))
          : h("p", { class: "muted" }, "No campaign targets this placement."),
      );
    }),
  );
}

function segmentsNow(why, rules) {
  const rows = why.rules.map((r) => {
    const seg = rules[r.segment];
    const d = r.decided_by;
    const clause = d && seg ? atPath(seg.rule, d.path) : null;
    const seen = d ? Object.entries(d).filter(([k]) => !["path", "op", "result"].includes(k)).map(([k, v]) => `${k} ${show(k, v)}`).join(", ") : "";
    return h(
      "tr",
      { dataset: { segment: r.segment } },
      h("th", { scope: "row" }, seg ? seg.name : r.segment),
      h("td", {}, r.matched ? h("span", { class: "ok" }, "in") : h("span", { class: "muted" }, "out")),
      h("td", {}, clause ? h("code", {}, clauseText(clause)) : d ? d.path : "", d ? ` → ${d.result ? "true" : "false"}` : ""),
      h("td", { class: "muted" }, seen),
    );
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "seg-now-title", id: "visitor-segments" },
    h("h2", { id: "seg-now-title" }, "Segments now and why"),
    h("p", {}, why.segments.length ? `In ${why.segments.length}: ${why.segments.join(", ")}` : "In no segment.", h("span", { class: "muted" }, ` (evaluated ${when(why.at)})`)),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Segment", "", "Deciding clause", "Values seen"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows))),
  );
}

/** A compared value as people read it (ages as durations). */
function show(key, v) {
  if (v === null) return "missing";
  if (key === "age" && typeof v === "number") return v >= 86400 ? `${(v / 86400).toFixed(1)} days` : v >= 3600 ? `${(v / 3600).toFixed(1)} hours` : `${Math.round(v)} s`;
  return typeof v === "number" ? String(+v.toFixed(3)) : JSON.stringify(v);
}

function profileCard(p) {
  const attrs = Object.entries(p.attributes || {});
  return h(
    "section",
    { class: "card", "aria-labelledby": "prof-title", id: "visitor-profile" },
    h("h2", { id: "prof-title" }, "Profile"),
    h("dl", { class: "kv" }, attrs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, Array.isArray(v) ? v.join(", ") : typeof v === "number" ? num(v) : String(v))])),
    Object.keys(p.daily || {}).length
      ? h("details", {}, h("summary", {}, "Daily counters"), h("dl", { class: "kv" }, Object.entries(p.daily).map(([k, days]) => [h("dt", {}, k), h("dd", {}, Object.entries(days).map(([d, n]) => `${d}: ${n}`).join(", "))])))
      : null,
  );
}

function historyCard(hist) {
  return h(
    "section",
    { class: "card", "aria-labelledby": "hist-title", id: "visitor-history" },
    h("h2", { id: "hist-title" }, "Membership history"),
    hist.changes.length
      ? h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["When", "Change", "Segment", "Cause"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, [...hist.changes].reverse().map((c) => h("tr", {}, h("td", {}, when(c.time)), h("td", { class: c.change === "entered" ? "ok" : "bad" }, c.change), h("td", {}, c.segment), h("td", {}, c.cause))))))
      : h("p", { class: "muted" }, "No stored change yet."),
    h("p", { class: "muted" }, `Stored membership: ${hist.stored.join(", ") || "none"}`),
  );
}
