// A campaign's results: per arm exposures, impressions, clicks, conversions, rates;
// per variant the lift over the holdout with its 95 % interval; as charts and a table.

import { call } from "../api.js";
import { intervalBars } from "../charts.js";
import { h, num, pct, title } from "../dom.js";

/** 95 % Wilson interval of c successes in n (the conversion rate's bars). */
export function wilson(c, n) {
  if (!n) return [null, null];
  const z = 1.959964;
  const p = c / n;
  const d = 1 + (z * z) / n;
  const centre = (p + (z * z) / (2 * n)) / d;
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / d;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

export async function render(main, cid) {
  const [r, campaign] = await Promise.all([call("results", { id: cid }), call("campaign", { id: cid })]);
  const arms = [...r.variants.map((v) => ({ ...v, label: `variant ${v.id}` })), { ...r.holdout, id: "holdout", label: "holdout", kind: "holdout" }];
  const rates = arms.map((a) => {
    const [lo, hi] = wilson(a.conversions, a.exposed);
    return { label: a.label, value: a.conversion_rate, lo, hi, kind: a.kind };
  });
  const lifts = r.variants.map((v) => ({
    label: `variant ${v.id}`,
    value: v.lift.available ? v.lift.absolute : null,
    lo: v.lift.available ? v.lift.ci95[0] : null,
    hi: v.lift.available ? v.lift.ci95[1] : null,
    note: v.lift.available ? null : v.lift.reason,
  }));
  const cols = ["Arm", "Exposed", "Impressions", "Clicks", "Dismisses", "Conversions", "Conversion rate", "Click rate", "Value", "Lift (95 % interval)", "p-value"];
  const liftText = (v) => (!v.lift ? "" : v.lift.available ? `${pct(v.lift.absolute, 2)} [${pct(v.lift.ci95[0], 2)}, ${pct(v.lift.ci95[1], 2)}]` : v.lift.reason);
  main.replaceChildren(
    title(`Results: ${campaign.name || cid}`),
    h("p", {}, h("a", { href: "#/campaigns" }, "← All campaigns"), " · ", h("a", { href: `#/campaigns/${encodeURIComponent(cid)}` }, "Edit the campaign"), ` · goals: ${r.goals.join(", ") || "none"} · holdout ${r.holdout_percent} %`),
    h("section", { class: "card" }, h("h2", {}, "Conversion rate by arm"), intervalBars(rates, { label: "Conversion rate per arm with 95 % intervals", format: (v) => pct(v, 2) })),
    h("section", { class: "card" }, h("h2", {}, "Lift over the holdout"), intervalBars(lifts, { label: "Absolute lift of each variant over the holdout with its 95 % interval", format: (v) => pct(v, 2) })),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { id: "results-table" },
        h("thead", {}, h("tr", {}, cols.map((c, i) => h("th", { scope: "col", class: i && i < 9 ? "num" : "" }, c)))),
        h(
          "tbody",
          {},
          arms.map((a) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, a.label),
              [a.exposed, a.impressions, a.clicks, a.dismisses, a.conversions].map((n) => h("td", { class: "num" }, num(n))),
              h("td", { class: "num" }, pct(a.conversion_rate, 2)),
              h("td", { class: "num" }, pct(a.click_rate, 2)),
              h("td", { class: "num" }, num(a.value)),
              h("td", {}, liftText(a)),
              h("td", {}, a.lift && a.lift.available ? a.lift.p_value.toFixed(3) : ""),
            ),
          ),
        ),
      ),
    ),
  );
}
