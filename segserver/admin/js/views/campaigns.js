// Campaigns by placement in priority order. The order is changed by drag and drop or
// with the Move buttons (keyboard), then saved as priorities (one PATCH per campaign
// whose priority changed, each with the version it edits); a priority can also be
// typed in the campaign's form.

import { call, canEdit } from "../api.js";
import { announce, h, showError, title } from "../dom.js";

export async function render(main, arg) {
  if (arg) return (await import("./campaign_form.js")).render(main, arg);
  const [campaigns, placements] = await Promise.all([call("campaigns"), call("placements")]);
  const byPlacement = new Map(placements.placements.map((p) => [p.id, []]));
  for (const c of campaigns.campaigns) {
    if (!byPlacement.has(c.placement)) byPlacement.set(c.placement, []);
    byPlacement.get(c.placement).push(c);
  }
  const sections = [...byPlacement.entries()].map(([pid, list]) => placementList(pid, list.sort((a, b) => b.priority - a.priority || (a.id < b.id ? -1 : 1))));
  main.replaceChildren(
    title("Campaigns"),
    h("p", {}, canEdit() ? h("a", { class: "button primary", href: "#/campaigns/new" }, "New campaign") : null, " ", h("a", { href: "#/winners" }, "Which campaign wins for which segment")),
    h("p", { class: "muted", id: "order-help" }, "Highest priority first: for each placement the first eligible campaign wins. Drag a campaign, or use its Move buttons, then save the order."),
    ...sections,
  );
}

function placementList(pid, campaigns) {
  const list = h("ol", { class: "drag-list", "aria-describedby": "order-help", dataset: { placement: pid } });
  const save = h("button", { type: "button", class: "primary", hidden: true, onclick: saveOrder }, "Save order");
  const undo = h("button", { type: "button", hidden: true, onclick: () => draw(original) }, "Undo");
  const original = [...campaigns];
  let order = [...campaigns];
  let dragged = null;

  function draw(next, focusId, focusWhich) {
    order = [...next];
    list.replaceChildren(...order.map((c, i) => row(c, i)));
    const changed = order.some((c, i) => c !== original[i]);
    save.hidden = undo.hidden = !changed || !canEdit();
    if (focusId) {
      const li = list.querySelector(`li[data-campaign="${CSS.escape(focusId)}"]`);
      const btn = li.querySelector(`.${focusWhich}:not(:disabled)`) || li.querySelector("button:not(:disabled)");
      if (btn) btn.focus();
    }
  }
  function move(i, by) {
    const j = i + by;
    if (j < 0 || j >= order.length) return;
    const next = [...order];
    [next[i], next[j]] = [next[j], next[i]];
    draw(next, order[i].id, by < 0 ? "up" : "down");
    announce(`${order[j].name || order[j].id} moved to position ${j + 1} of ${order.length}`);
  }
  function row(c, i) {
    const li = h(
      "li",
      { draggable: canEdit() ? "true" : "false", dataset: { campaign: c.id } },
      h("span", { class: "handle", "aria-hidden": "true" }, "⋮⋮"),
      h("span", { class: "badge" }, `#${i + 1}`),
      h("a", { class: "grow", href: `#/campaigns/${encodeURIComponent(c.id)}` }, c.name || c.id),
      h("span", { class: "badge " + c.status }, c.status),
      h("span", { class: "muted" }, `priority ${c.priority}`),
      c.group ? h("span", { class: "badge", title: "exclusive group" }, `group ${c.group}`) : null,
      h("span", { class: "muted" }, `→ ${c.audience.include.join(c.audience.match === "all" ? " + " : " | ") || "everyone"}${c.audience.exclude.length ? " − " + c.audience.exclude.join(", ") : ""}`),
      canEdit() ? h("button", { type: "button", class: "icon up", disabled: i === 0, "aria-label": `Move ${c.name || c.id} up`, onclick: () => move(i, -1) }, "↑") : null,
      canEdit() ? h("button", { type: "button", class: "icon down", disabled: i === order.length - 1, "aria-label": `Move ${c.name || c.id} down`, onclick: () => move(i, 1) }, "↓") : null,
      h("a", { href: `#/results/${encodeURIComponent(c.id)}` }, "Results"),
    );
    li.addEventListener("dragstart", (e) => {
      dragged = c;
      li.classList.add("dragging");
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", c.id);
    });
    li.addEventListener("dragend", () => li.classList.remove("dragging"));
    li.addEventListener("dragover", (e) => {
      if (!dragged || dragged === c) return;
      e.preventDefault();
      li.classList.add("over");
    });
    li.addEventListener("dragleave", () => li.classList.remove("over"));
    li.addEventListener("drop", (e) => {
      e.preventDefault();
      li.classList.remove("over");
      if (!dragged || dragged === c) return;
      const next = order.filter((x) => x !== dragged);
      next.splice(next.indexOf(c) + (order.indexOf(dragged) < order.indexOf(c) ? 1 : 0), 0, dragged);
      const who = dragged;
      dragged = null;
      draw(next);
      announce(`${who.name || who.id} moved to position ${next.indexOf(who) + 1}`);
    });
    return li;
  }
  /** New priorities keep the list's order: 10 apart from the bottom (10, 20, ...). */
  async function saveOrder() {
    const n = order.length;
    try {
      for (const [i, c] of order.entries()) {
        const priority = (n - i) * 10;
        if (c.priority === priority) continue;
        const out = await call("patchCampaign", { id: c.id }, { body: { priority, version: c.version } });
        Object.assign(c, out);
      }
    } catch (err) {
      return showError(err);
    }
    original.splice(0, original.length, ...order);
    draw(order);
    announce(`Order of ${pid} saved`);
  }
  draw(order);
  return h("section", { class: "card", "aria-labelledby": `pl-${pid}` }, h("h2", { id: `pl-${pid}` }, `Placement ${pid}`), campaigns.length ? list : h("p", { class: "muted" }, "No campaign yet."), h("div", { class: "actions" }, save, undo));
}
