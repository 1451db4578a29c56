// Operations: jobs with live progress, webhooks (subscriptions, dead letters and
// redrive), the site's keys and its decision policy.

import { call, canAdmin, canEdit } from "../api.js";
import { announce, confirmDialog, field, h, num, options, showError, title, when } from "../dom.js";

export async function render(main) {
  const [site, jobs, triggers, dead] = await Promise.all([call("site"), call("jobs"), call("triggers"), call("deadLetters", {}, { query: { limit: 100 } })]);
  const jobsBox = h("div", { id: "jobs" });
  main.replaceChildren(
    title("Operations"),
    h("section", { class: "card", "aria-labelledby": "jobs-title" }, h("h2", { id: "jobs-title" }, "Jobs"), canEdit() ? h("button", { type: "button", onclick: recompute }, "Recompute membership now") : null, jobsBox),
    triggersCard(triggers.triggers, dead, triggers.retrying),
    keysCard(site),
    await tokensCard(),
    policyCard(site),
  );
  let timer = null;
  let shown = jobs.jobs;
  const drawJobs = () => jobsBox.replaceChildren(jobTable(shown));
  async function poll() {
    try {
      shown = (await call("jobs")).jobs;
    } catch (err) {
      return showError(err);
    }
    drawJobs();
    schedule();
  }
  function schedule() {
    clearTimeout(timer);
    if (shown.some((j) => j.state !== "done" && j.state !== "failed")) timer = setTimeout(poll, 500);
  }
  async function recompute() {
    try {
      const job = await call("recompute", {}, { body: { kind: "recompute" } });
      announce(`Recompute started (${job.id || "job"})`);
      poll();
    } catch (err) {
      showError(err);
    }
  }
  drawJobs();
  schedule();
  return () => clearTimeout(timer);
}

// "failed" says why, and when a failure on Redis is tried again.
function jobState(j) {
  if (j.state !== "failed") return j.state;
  const again = j.retry_at ? `; tried again at ${when(j.retry_at)}` : "";
  return `failed (${j.error || "unknown error"})${again}`;
}

function jobTable(jobs) {
  if (!jobs.length) return h("p", { class: "muted" }, "No job yet.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["Job", "Cause", "State", "Progress", "Started"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        jobs.map((j) =>
          h(
            "tr",
            {},
            h("td", {}, h("code", {}, j.id || "")),
            h("td", {}, j.cause || j.kind || ""),
            h("td", {}, jobState(j)),
            h("td", {}, h("progress", { class: "progress", max: 100, value: j.percent, "aria-label": `${j.percent} %` }), ` ${j.percent} % · ${num(j.done)} of ${num(j.total)}`),
            h("td", {}, when(Number(j.started_at || j.created_at || 0))),
          ),
        ),
      ),
    ),
  );
}

function triggersCard(triggers, dead, retrying) {
  const url = h("input", { type: "url", placeholder: "https://example.com/hook", dataset: { path: "url" } });
  const segs = h("input", { placeholder: "all segments", dataset: { path: "segments" } });
  const changes = h("select", {}, options(["both", "entered", "exited"], "both"));
  const made = h("p", { role: "status" });
  const create = async (e) => {
    e.preventDefault();
    try {
      const out = await call("createTrigger", {}, { body: { url: url.value.trim(), segments: segs.value.split(",").map((s) => s.trim()).filter(Boolean), changes: changes.value } });
      made.replaceChildren("Created. Its signing secret, shown this once: ", h("code", {}, out.secret));
      list.append(triggerRow(out));
    } catch (err) {
      showError(err);
    }
  };
  const list = h("tbody", {}, triggers.map(triggerRow));
  const picks = dead.dead_letters.map((d) => h("input", { type: "checkbox", value: d.id, "aria-label": `Select dead letter ${d.id}` }));
  const redrive = async (all) => {
    const ids = picks.filter((p) => p.checked).map((p) => p.value);
    if (!all && !ids.length) return showError(new Error("Select dead letters to redrive, or redrive all."));
    try {
      const out = await call("redrive", {}, { body: all ? {} : { ids } });
      announce(`${out.redriven} deliveries scheduled again`);
    } catch (err) {
      showError(err);
    }
  };
  return h(
    "section",
    { class: "card", "aria-labelledby": "hooks-title" },
    h("h2", { id: "hooks-title" }, "Webhooks"),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["URL", "Segments", "Changes", "Active", "Deliveries", ""].map((t) => h("th", { scope: "col" }, t)))), list)),
    canEdit() ? h("form", { class: "toolbar", onsubmit: create }, field("URL", url), field("Segments", segs, { hint: "comma separated; empty: all" }), field("Changes", changes), h("button", { type: "submit" }, "Add webhook")) : null,
    made,
    h("p", { class: "muted" }, retrying ? `${num(retrying)} deliveries waiting for a retry now.` : "No delivery is waiting for a retry."),
    h("h3", {}, `Dead letters (${num(dead.total)})`),
    dead.dead_letters.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            {},
            h("thead", {}, h("tr", {}, ["", "Visitor", "Segment", "Change", "Attempts", "Last error"].map((t) => h("th", { scope: "col" }, t)))),
            h("tbody", {}, dead.dead_letters.map((d, i) => h("tr", {}, h("td", {}, picks[i]), h("td", {}, d.visitor_id || ""), h("td", {}, d.segment || ""), h("td", {}, d.change || ""), h("td", {}, d.attempts ?? ""), h("td", {}, d.last_error || "")))),
          ),
        )
      : h("p", { class: "muted" }, "None: every delivery arrived or is still being retried."),
    dead.dead_letters.length && canEdit() ? h("div", { class: "actions" }, h("button", { type: "button", onclick: () => redrive(false) }, "Redrive selected"), h("button", { type: "button", onclick: () => redrive(true) }, "Redrive all")) : null,
  );
}

/** "12 delivered, 3 failed; last: failed <time>" (attempts; each retry counts). */
function deliveries(d) {
  if (!d || (!d.delivered && !d.failed)) return "none yet";
  const last = d.last_at ? `; last: ${d.last} ${when(d.last_at)}` : "";
  return `${num(d.delivered)} delivered, ${num(d.failed)} failed${last}`;
}

function triggerRow(t) {
  const tr = h("tr", {});
  const toggle = async () => {
    try {
      const out = await call("updateTrigger", { id: t.id }, { body: { active: !t.active, version: t.version } });
      tr.replaceWith(triggerRow({ ...out, deliveries: t.deliveries }));
    } catch (err) {
      showError(err);
    }
  };
  const remove = async () => {
    if (!(await confirmDialog("Delete this webhook?", t.url, "Delete"))) return;
    try {
      await call("deleteTrigger", { id: t.id }, { as: "none" });
      tr.remove();
    } catch (err) {
      showError(err);
    }
  };
  tr.append(
    h("td", {}, h("code", {}, t.url)),
    h("td", {}, t.segments.join(", ") || "all"),
    h("td", {}, t.changes),
    h("td", {}, t.active ? "yes" : "paused"),
    h("td", {}, deliveries(t.deliveries)),
    h("td", {}, canEdit() ? [h("button", { type: "button", onclick: toggle }, t.active ? "Pause" : "Resume"), " ", h("button", { type: "button", class: "danger", onclick: remove }, "Delete")] : null),
  );
  return tr;
}

function keysCard(site) {
  const key = h("code", { id: "site-key" }, site.site_key);
  const secret = h("p", { role: "status", id: "server-key-shown" });
  const rotate = (name, title, body) => async () => {
    if (!(await confirmDialog(title, body, "Rotate"))) return;
    try {
      const out = await call(name);
      if (name === "rotateKey") key.textContent = out.site_key;
      else secret.replaceChildren("The new server key, shown this once (put it in the shop's back end): ", h("code", {}, out.server_key));
      announce("Key rotated");
    } catch (err) {
      showError(err);
    }
  };
  return h(
    "section",
    { class: "card", "aria-labelledby": "keys-title" },
    h("h2", { id: "keys-title" }, "Keys"),
    h(
      "dl",
      { class: "kv" },
      h("dt", {}, "Site"),
      h("dd", {}, `${site.name} (${site.id})`),
      h("dt", {}, "Public site key"),
      h("dd", {}, key),
      h("dt", {}, "Server key"),
      h("dd", {}, site.has_server_key ? "set (secret: shown only when made)" : "none"),
      h("dt", {}, "Allowed origins"),
      h("dd", {}, site.origins.join(", ") || "none"),
    ),
    canAdmin()
      ? h(
          "div",
          { class: "actions" },
          h("button", { type: "button", onclick: rotate("rotateKey", "Rotate the public site key?", "Pages that still use the old key stop getting decisions until they use the new one.") }, "Rotate the site key"),
          h("button", { type: "button", onclick: rotate("rotateServerKey", "Rotate the server key?", "The shop's back end must use the new key: the old one stops working at once.") }, "Rotate the server key"),
        )
      : null,
    secret,
  );
}

/** Per-site admin tokens (admin role): who may read or change this site. */
async function tokensCard() {
  const box = h("section", { class: "card", "aria-labelledby": "tokens-title" }, h("h2", { id: "tokens-title" }, "Admin tokens"));
  if (!canAdmin()) return box.append(h("p", { class: "muted" }, "Tokens are managed with the admin role.")), box;
  const rows = h("tbody");
  const row = (t) => {
    const tr = h("tr", { dataset: { token: t.id } }, h("td", {}, t.name), h("td", {}, t.role), h("td", {}, when(t.created_at)));
    const revoke = async () => {
      if (!(await confirmDialog("Revoke this token?", `${t.name} (${t.role}) stops working at once.`, "Revoke"))) return;
      try {
        await call("revokeToken", { id: t.id }, { as: "none" });
        tr.remove();
      } catch (err) {
        showError(err);
      }
    };
    tr.append(h("td", {}, h("button", { type: "button", class: "danger", onclick: revoke }, "Revoke")));
    return tr;
  };
  try {
    rows.append(...(await call("tokens")).tokens.map(row));
  } catch (err) {
    showError(err);
  }
  const name = h("input", { required: true, dataset: { path: "name" } });
  const role = h("select", { dataset: { path: "role" } }, options([["viewer", "viewer: reads everything, changes nothing"], ["editor", "editor: changes the catalogue"], ["admin", "admin: also keys, tokens, erasure"]], "viewer"));
  const made = h("p", { role: "status", id: "token-made" });
  const create = async (e) => {
    e.preventDefault();
    try {
      const t = await call("createToken", {}, { body: { name: name.value.trim(), role: role.value } });
      made.replaceChildren(`Token for ${t.name} (${t.role}), shown this once: `, h("code", {}, t.token));
      rows.append(row(t));
    } catch (err) {
      showError(err);
    }
  };
  box.append(
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Role", "Created", ""].map((t) => h("th", { scope: "col" }, t)))), rows)),
    h("form", { class: "toolbar", onsubmit: create }, field("Name", name), field("Role", role), h("button", { type: "submit" }, "Create token")),
    made,
  );
  return box;
}

function policyCard(site) {
  const p = (site.options && site.options.policy) || {};
  const perSession = h("input", { type: "number", min: 0, step: 1, value: p.interruptive_per_session ?? "", dataset: { path: "interruptive_per_session" } });
  const perDay = h("input", { type: "number", min: 0, step: 1, value: p.interruptive_per_day ?? "", dataset: { path: "interruptive_per_day" } });
  const holdout = h("input", { type: "number", min: 0, max: 100, step: "any", value: p.holdout ?? 0, dataset: { path: "holdout" } });
  const save = async (e) => {
    e.preventDefault();
    const body = { holdout: Number(holdout.value || 0) };
    if (perSession.value !== "") body.interruptive_per_session = Number(perSession.value);
    if (perDay.value !== "") body.interruptive_per_day = Number(perDay.value);
    try {
      await call("policy", {}, { body });
      announce("Policy saved");
    } catch (err) {
      showError(err);
    }
  };
  return h(
    "section",
    { class: "card", "aria-labelledby": "policy-title" },
    h("h2", { id: "policy-title" }, "Decision policy"),
    h(
      "form",
      { onsubmit: save },
      h("div", { class: "row" }, field("Popups per session", perSession, { hint: "empty: no limit" }), field("Popups per day", perDay, { hint: "empty: no limit" }), field("Global holdout %", holdout)),
      h("button", { type: "submit", disabled: !canEdit() }, "Save policy"),
    ),
  );
}
