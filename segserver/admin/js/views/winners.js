// Which campaign wins for which segment: per placement, the campaigns in priority
// order with their eligible visitors, wins and who took the rest, and how the members
// of each audience segment split between the winners (GET .../winners).

import { call } from "../api.js";
import { heat } from "../charts.js";
import { h, num, title } from "../dom.js";

export async function render(main) {
  const out = await call("winners");
  const sections = Object.entries(out.placements).map(([pid, p]) => placement(pid, p));
  main.replaceChildren(
    title("Which campaign wins"),
    h("p", { class: "muted" }, "Counted on stored membership by audience and priority. Frequency caps, holdouts and the site's popup limits are applied per visitor when a page is served: see a visitor's explain for those."),
    ...sections,
  );
}

function placement(pid, p) {
  const names = Object.fromEntries(p.campaigns.map((c) => [c.id, c.name || c.id]));
  const camps = h(
    "table",
    {},
    h("caption", { class: "muted", style: "text-align:left" }, "Campaigns, highest priority first"),
    h("thead", {}, h("tr", {}, ["#", "Campaign", "Priority", "Eligible", "Wins", "Lost to"].map((t, i) => h("th", { scope: "col", class: i >= 2 && i <= 4 ? "num" : "" }, t)))),
    h(
      "tbody",
      {},
      p.campaigns.map((c, i) =>
        h(
          "tr",
          { dataset: { campaign: c.id } },
          h("td", {}, i + 1),
          h("td", {}, h("a", { href: `#/campaigns/${encodeURIComponent(c.id)}` }, c.name || c.id), c.group ? h("span", { class: "muted" }, ` · group ${c.group}`) : null),
          h("td", { class: "num" }, c.priority),
          h("td", { class: "num" }, c.countable ? num(c.eligible) : "—"),
          h("td", { class: "num winner" }, c.countable ? num(c.wins) : "—"),
          h("td", {}, c.countable ? Object.entries(c.lost_to).map(([o, n]) => `${names[o] || o}: ${num(n)}`).join(", ") || "—" : h("span", { class: "muted" }, c.why)),
        ),
      ),
    ),
  );
  const cols = [...p.campaigns.filter((c) => c.countable).map((c) => c.id), "(default)"];
  const matrix = p.segments.length
    ? h(
        "table",
        { class: "heat" },
        h("caption", { class: "muted", style: "text-align:left" }, "Members of each segment by the campaign they get (the highest count is in bold)"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Segment"), h("th", { scope: "col", class: "num" }, "Size"), cols.map((c) => h("th", { scope: "col" }, c === "(default)" ? "default content" : names[c])))),
        h(
          "tbody",
          {},
          p.segments.map((s) => {
            const best = Math.max(...cols.map((c) => s.winners[c] || 0));
            return h(
              "tr",
              { dataset: { segment: s.id } },
              h("th", { scope: "row" }, h("a", { href: `#/analytics/${encodeURIComponent(s.id)}` }, s.id)),
              h("td", { class: "num" }, num(s.size)),
              cols.map((c) => {
                const n = s.winners[c] || 0;
                const colour = heat(s.size ? n / s.size : 0);
                return h("td", { class: n && n === best ? "winner" : "", style: `background:${colour.background};color:${colour.color}` }, num(n));
              }),
            );
          }),
        ),
      )
    : h("p", { class: "muted" }, "No campaign with a countable audience.");
  return h("section", { class: "card stack", "aria-labelledby": `w-${pid}` }, h("h2", { id: `w-${pid}` }, `Placement ${pid}`), p.campaigns.length ? h("div", { class: "table-wrap" }, camps) : h("p", { class: "muted" }, "No active campaign."), h("div", { class: "table-wrap" }, matrix));
}
