// One campaign: placement, status, priority, audience (include any/all, exclude),
// exclusive group, schedule, variants and weights, holdout, caps and goals.

import { call, canEdit } from "../api.js";
import { announce, confirmDialog, field, h, options, showError, title, uid } from "../dom.js";
import { markField } from "./content.js";

const STATUSES = ["draft", "active", "paused", "archived"];
const PERIODS = ["session", "day", "week", "lifetime"];
const GOALS = ["purchase", "signup", "add_to_cart", "checkout_start", "login"];

const isoLocal = (t) => (t ? new Date(t * 1000).toISOString().slice(0, 16) : "");

export async function render(main, cid) {
  const isNew = cid === "new";
  const [campaign, placements, contents, segments] = await Promise.all([
    isNew ? null : call("campaign", { id: cid }),
    call("placements"),
    call("contents"),
    call("segments", {}, { query: { per_page: 500, sort: "name" } }),
  ]);
  const c = campaign || { id: "", name: "", placement: placements.placements[0]?.id || "", status: "draft", priority: 10, audience: { include: [], match: "any", exclude: [] }, schedule: { start: null, end: null }, variants: [{ id: "a", content: contents.content[0]?.id || "", weight: 1 }], holdout: 0, group: null, caps: [], goals: ["purchase"] };
  const segs = segments.segments.filter((s) => s.status !== "archived");

  const id = h("input", { value: c.id, disabled: !isNew, spellcheck: "false", dataset: { path: "id" } });
  const name = h("input", { value: c.name, dataset: { path: "name" } });
  const placement = h("select", { dataset: { path: "placement" } }, options(placements.placements.map((p) => [p.id, `${p.name || p.id} (${p.kind})`]), c.placement));
  const status = h("select", { dataset: { path: "status" } }, options(STATUSES, c.status));
  const priority = h("input", { type: "number", step: "1", value: c.priority, dataset: { path: "priority" } });
  const group = h("input", { value: c.group || "", placeholder: "none", dataset: { path: "group" } });
  const holdout = h("input", { type: "number", min: 0, max: 100, step: "any", value: c.holdout, dataset: { path: "holdout" } });
  const start = h("input", { type: "datetime-local", value: isoLocal(c.schedule.start), dataset: { path: "schedule.start" } });
  const end = h("input", { type: "datetime-local", value: isoLocal(c.schedule.end), dataset: { path: "schedule.end" } });
  const goals = h("input", { value: c.goals.join(", "), list: "goal-types", dataset: { path: "goals" } });
  const match = (v) => h("input", { type: "radio", name: "match", value: v, checked: c.audience.match === v });
  const matchAny = match("any");
  const matchAll = match("all");

  const picker = (legend, chosen, path) => {
    const boxes = segs.map((s) => h("input", { type: "checkbox", value: s.id, checked: chosen.includes(s.id) }));
    const el = h("fieldset", { class: "chips", dataset: { path } }, h("legend", {}, legend), boxes.map((b, i) => h("label", { class: "chip" }, b, " ", segs[i].name, segs[i].status !== "active" ? ` (${segs[i].status})` : "")));
    el.values = () => boxes.filter((b) => b.checked).map((b) => b.value);
    return el;
  };
  const include = picker("Include visitors in", c.audience.include, "audience.include");
  const exclude = picker("Exclude visitors in", c.audience.exclude, "audience.exclude");

  const variantRows = h("tbody");
  const addVariant = (v) => {
    const vid = h("input", { value: v.id, size: 6, "aria-label": "Variant id" });
    const content = h("select", { "aria-label": "Content" }, options(contents.content.map((x) => [x.id, `${x.name || x.id} (${x.kind})`]), v.content));
    const weight = h("input", { type: "number", min: 0, step: "any", value: v.weight, "aria-label": "Weight" });
    const tr = h("tr", {}, h("td", {}, vid), h("td", {}, content), h("td", {}, weight), h("td", {}, h("button", { type: "button", "aria-label": "Remove this variant", onclick: () => tr.remove() }, "×")));
    tr.value = () => ({ id: vid.value.trim(), content: content.value, weight: Number(weight.value) });
    variantRows.append(tr);
    return vid;
  };
  c.variants.forEach(addVariant);
  const capRows = h("div");
  const addCap = (cap) => {
    const per = h("select", { "aria-label": "Per" }, options(PERIODS, cap.per));
    const max = h("input", { type: "number", min: 1, step: 1, value: cap.max, "aria-label": "At most" });
    const row = h("div", { class: "row" }, h("span", {}, "at most"), max, h("span", {}, "per"), per, h("button", { type: "button", "aria-label": "Remove this cap", onclick: () => row.remove() }, "×"));
    row.value = () => ({ per: per.value, max: Number(max.value) });
    capRows.append(row);
    return max;
  };
  c.caps.forEach(addCap);

  const body = () => ({
    id: id.value.trim(),
    name: name.value,
    placement: placement.value,
    status: status.value,
    priority: Number(priority.value || 0),
    audience: { include: include.values(), match: matchAll.checked ? "all" : "any", exclude: exclude.values() },
    schedule: { start: start.value ? `${start.value}:00Z` : null, end: end.value ? `${end.value}:00Z` : null },
    variants: [...variantRows.children].map((tr) => tr.value()),
    holdout: Number(holdout.value || 0),
    group: group.value.trim() || null,
    caps: [...capRows.children].map((r) => r.value()),
    goals: goals.value.split(",").map((g) => g.trim()).filter(Boolean),
  });
  const save = async (e) => {
    e.preventDefault();
    try {
      const out = isNew ? await call("createCampaign", {}, { body: body() }) : await call("updateCampaign", { id: cid }, { body: { ...body(), version: c.version } });
      announce(`Saved campaign ${out.id}, version ${out.version}`);
      location.hash = "#/campaigns";
    } catch (err) {
      markField(main, err);
    }
  };
  const remove = async () => {
    if (!(await confirmDialog("Delete this campaign?", `${c.name || c.id} will be deleted; its results stay readable until then only.`, "Delete"))) return;
    try {
      await call("deleteCampaign", { id: cid }, { as: "none" });
      location.hash = "#/campaigns";
    } catch (err) {
      showError(err);
    }
  };
  const matchId = uid("match");
  main.replaceChildren(
    title(isNew ? "New campaign" : c.name || c.id),
    h("p", {}, h("a", { href: "#/campaigns" }, "← All campaigns"), isNew ? null : [" · ", h("a", { href: `#/results/${encodeURIComponent(c.id)}` }, "Results")]),
    h("form", { class: "campaign-form stack", onsubmit: save },
      h("div", { class: "row" }, field("ID", id), field("Name", name), field("Placement", placement), field("Status", status)),
      h("div", { class: "row" }, field("Priority", priority, { hint: "higher wins" }), field("Exclusive group", group, { hint: "one campaign of a group per page view" }), field("Holdout %", holdout, { hint: "kept from the campaign to measure lift" })),
      h("section", { class: "card", "aria-labelledby": "aud-title" }, h("h2", { id: "aud-title" }, "Audience"),
        include,
        h("div", { role: "radiogroup", "aria-labelledby": matchId, class: "row" }, h("span", { id: matchId }, "Visitors must be in"), h("label", {}, matchAny, " any of them"), h("label", {}, matchAll, " all of them")),
        exclude),
      h("div", { class: "row" }, field("Starts (UTC)", start, { hint: "empty: now" }), field("Ends (UTC)", end, { hint: "empty: never" })),
      h("section", { "aria-labelledby": "var-title" }, h("h2", { id: "var-title" }, "Variants"),
        h("div", { class: "table-wrap" }, h("table", { dataset: { path: "variants" } }, h("thead", {}, h("tr", {}, ["Variant", "Content", "Weight", ""].map((t) => h("th", { scope: "col" }, t)))), variantRows)),
        h("button", { type: "button", onclick: () => addVariant({ id: String.fromCharCode(97 + variantRows.children.length), content: contents.content[0]?.id, weight: 1 }).focus() }, "+ Variant")),
      h("section", { "aria-labelledby": "cap-title" }, h("h2", { id: "cap-title" }, "Frequency caps"), capRows,
        h("button", { type: "button", onclick: () => addCap({ per: "session", max: 1 }).focus() }, "+ Cap")),
      field("Goals", goals, { hint: "event types that count as a conversion" }),
      h("datalist", { id: "goal-types" }, GOALS.map((g) => h("option", { value: g }))),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", disabled: !canEdit() }, "Save campaign"), !isNew && canEdit() ? h("button", { type: "button", class: "danger", onclick: remove }, "Delete") : null)),
  ); // prettier-ignore
  if (isNew) id.focus();
}
