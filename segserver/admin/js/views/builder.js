// The segment editor: fields, the rule builder and its text form side by side (either
// can be edited; POST .../rules/check converts and validates), real-time validation
// with the compiler's path errors at their field, a live size preview (debounced
// 300 ms) with its interval when sampled and a sample of matching visitors, save as
// draft, activate, archive, the recompute's progress, and the versions.

import { ApiError, call, canEdit } from "../api.js";
import { announce, clearError, debounce, field, h, num, options, showError, title } from "../dom.js";
import { createRuleEditor } from "../rule_editor.js";
import { errorPath } from "../rules.js";
import { versionsPanel } from "./versions.js";

const slug = (s) => s.toLowerCase().replace(/[^a-z0-9_-]+/g, "_").replace(/^[_-]+|[_-]+$/g, "").slice(0, 64);

export async function render(main, sid, query) {
  const isNew = sid === "new";
  const [schema, seg] = await Promise.all([call("schema"), isNew ? null : call("segment", { segment: sid })]);
  const editable = canEdit();
  let current = seg;

  const name = h("input", { value: seg ? seg.name : "", required: true, dataset: { path: "name" } });
  const id = h("input", { value: seg ? seg.id : "", required: true, pattern: "[a-z0-9][a-z0-9_-]{0,63}", spellcheck: "false", dataset: { path: "id" }, disabled: !isNew });
  const description = h("input", { value: seg ? seg.description : "", dataset: { path: "description" } });
  const tags = h("input", { value: seg ? seg.tags.join(", ") : "", dataset: { path: "tags" } });
  const priority = h("input", { type: "number", step: "1", value: seg ? seg.priority : 0, dataset: { path: "priority" } });
  const type = h("select", { dataset: { path: "type" }, disabled: !isNew }, options(["dynamic", "static"], seg ? seg.type : "dynamic"));
  let idTouched = !isNew;
  id.addEventListener("input", () => (idTouched = true));
  name.addEventListener("input", () => {
    if (!idTouched) id.value = slug(name.value);
  });

  const text = h("textarea", { rows: 8, spellcheck: "false", dataset: { path: "text" } });
  const textField = field("Text form", text, { hint: "Edit either side: the builder and the text follow each other." });
  const editor = createRuleEditor({ schema, selfId: isNew ? null : sid, onChange: ruleChanged });
  editor.set(seg && seg.type === "dynamic" ? structuredClone(seg.rule) : null);

  const count = h("p", { class: "preview-count", id: "preview-count" }, "…");
  const detail = h("p", { class: "muted", id: "preview-detail" });
  const samples = h("ol", { class: "samples", "aria-label": "Matching visitors (sample)" });
  const preview = h("section", { class: "card preview-box", "aria-labelledby": "preview-title" }, h("h2", { id: "preview-title" }, "Who matches now"), count, detail, samples);
  const job = h("p", { class: "muted", role: "status", id: "job-status" });

  const save = (status, label, cls) => h("button", { type: "button", class: cls, disabled: !editable, onclick: () => saveAs(status) }, label);
  const actions = h(
    "div",
    { class: "actions" },
    save(null, "Save draft", ""),
    save("active", seg && seg.status === "active" ? "Save (active)" : "Activate", "primary"),
    seg && seg.status !== "archived" ? save("archived", "Archive", "") : null,
    editable ? null : h("span", { class: "muted" }, "Read only: a viewer token changes nothing."),
  );
  const badge = seg ? h("span", { class: "badge " + seg.status, id: "segment-status" }, seg.status) : null;
  const sizeNow = h("span", { id: "segment-size", class: "muted" });
  const dynamic = () => type.value === "dynamic";
  const ruleBox = h(
    "section",
    { "aria-labelledby": "rule-title" },
    h("h2", { id: "rule-title" }, "Rule"),
    h("div", { class: "split" }, h("div", {}, editor.el), h("div", { class: "stack" }, textField, preview)),
  );
  const staticNote = h("p", { class: "muted" }, "A static segment holds an uploaded or frozen list of visitors: ", seg ? h("a", { href: `#/analytics/${encodeURIComponent(sid)}` }, "upload members in Analytics") : "save it, then upload its members in Analytics", ".");
  const versions = h("div");

  main.replaceChildren(
    title(isNew ? "New segment" : seg.name, " ", badge, seg && seg.type === "static" ? h("span", { class: "lock", role: "img", "aria-label": "static" }, " 🔒") : null),
    h("p", {}, h("a", { href: "#/segments" }, "← All segments"), " ", sizeNow),
    h(
      "form",
      { class: "segment-form", onsubmit: (e) => e.preventDefault() },
      h("div", { class: "row" }, field("Name", name), field("ID", id, { hint: "a-z 0-9 _ -" }), field("Type", type), field("Priority", priority)),
      h("div", { class: "row" }, field("Description", description), field("Tags", tags, { hint: "comma separated" })),
      ruleBox,
      staticNote,
      actions,
      job,
    ),
    versions,
  );
  const showKind = () => {
    ruleBox.hidden = !dynamic();
    staticNote.hidden = dynamic();
  };
  type.addEventListener("change", showKind);
  showKind();

  // --- validation and preview -------------------------------------------------------
  let seqCheck = 0;
  let seqPreview = 0;
  let textSeq = 0;
  const previewSoon = debounce(runPreview, 300);

  function ruleChanged(rule) {
    checkRule({ rule });
    previewSoon(rule);
  }
  async function checkRule(body) {
    const mine = ++seqCheck;
    try {
      const out = await call("checkRule", {}, { body: { ...body, segment: isNew ? undefined : sid } });
      if (mine !== seqCheck) return null;
      editor.clearErrors();
      markText(null);
      if (document.activeElement !== text) text.value = out.text ?? "(this rule has no text form)";
      return out;
    } catch (err) {
      if (mine !== seqCheck) return null;
      if (err instanceof ApiError && err.status === 422) {
        const path = errorPath(err.message) || "";
        if ("text" in body || path.startsWith("text")) markText(err.message);
        else editor.showError(path, err.message);
      } else showError(err);
      return null;
    }
  }
  function markText(message) {
    const errEl = textField.querySelector(".field-error");
    text.toggleAttribute("aria-invalid", !!message);
    errEl.textContent = message || "";
    errEl.hidden = !message;
  }
  text.addEventListener(
    "input",
    debounce(async () => {
      const mine = ++textSeq;
      const out = await checkRule({ text: text.value });
      if (out && mine === textSeq) {
        editor.set(structuredClone(out.rule));
        previewSoon(out.rule);
      }
    }, 300),
  );

  async function runPreview(rule) {
    const mine = ++seqPreview;
    count.setAttribute("aria-busy", "true");
    try {
      const out = await call("preview", {}, { body: { rule } });
      if (mine !== seqPreview) return;
      count.textContent = `${num(out.count)} visitors`;
      detail.textContent = out.exact
        ? `Exact, of ${num(out.population)} visitors (${out.took_ms} ms)`
        : `Estimated from a sample of ${num(out.sample_size)}: between ${num(out.interval[0])} and ${num(out.interval[1])} (95 %), of ${num(out.population)} visitors`;
      samples.replaceChildren(...out.sample.map((v) => h("li", {}, h("a", { href: `#/visitors/${encodeURIComponent(v)}` }, v))));
      announce(`Preview: ${count.textContent}`);
    } catch (err) {
      if (mine !== seqPreview) return;
      count.textContent = "—";
      detail.textContent = err.status === 422 ? "Fix the rule to see who matches." : err.message;
      samples.replaceChildren();
    } finally {
      count.removeAttribute("aria-busy");
    }
  }

  // --- saving -------------------------------------------------------------------------
  async function saveAs(status) {
    clearError();
    editor.clearErrors();
    for (const c of main.querySelectorAll(".segment-form [aria-invalid]")) c.removeAttribute("aria-invalid");
    const body = {
      name: name.value.trim(),
      description: description.value,
      tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean),
      priority: Number(priority.value || 0),
    };
    if (dynamic()) body.rule = editor.get();
    if (status) body.status = status;
    let out;
    try {
      if (isNew) out = await call("createSegment", {}, { body: { ...body, id: id.value.trim(), type: type.value, status: status || "draft" } });
      else out = await call("updateSegment", { segment: sid }, { body: { ...body, version: current.version } });
    } catch (err) {
      return saveFailed(err);
    }
    current = out;
    announce(`Saved ${out.name}: ${out.status}, version ${out.version}`);
    if (isNew) {
      // the edit screen of the new segment follows its recompute, then shows its size
      const follow = new URLSearchParams(out.recompute_job ? { job: out.recompute_job } : {});
      history.replaceState(null, "", `#/segments/${encodeURIComponent(out.id)}${out.recompute_job ? "?" + follow : ""}`);
      return render(main, out.id, follow);
    }
    badge.textContent = out.status;
    badge.className = "badge " + out.status;
    followJob(out.recompute_job, out.id);
    refreshVersions();
  }
  function saveFailed(err) {
    if (err instanceof ApiError && err.status === 422) {
      const target = editor.showError(errorPath(err.message) || "", err.message);
      if (target && target.focus) target.focus();
      return;
    }
    const m = /^([a-z_]+):/.exec(err.message || "");
    const target = m && main.querySelector(`.segment-form [data-path="${m[1]}"]`);
    if (target) {
      target.setAttribute("aria-invalid", "true");
      target.focus();
    }
    showError(err);
  }

  async function followJob(jobId, segId) {
    if (jobId) {
      for (;;) {
        let j;
        try {
          j = await call("job", { job: jobId });
        } catch (err) {
          return showError(err);
        }
        job.textContent =
          j.state === "failed"
            ? `Recomputing membership failed at ${j.percent} %: ${j.error}${j.retry_at ? " (tried again shortly)" : ""}`
            : `Recomputing membership: ${j.percent} % (${num(j.done)} of ${num(j.total)} visitors)`;
        if (j.state === "done" || (j.state === "failed" && !j.retry_at)) break;
        await new Promise((r) => setTimeout(r, 400));
        if (!job.isConnected) return;
      }
    }
    await showSize(segId);
  }
  async function showSize(segId) {
    if (!current || (current.type === "dynamic" && current.status !== "active")) return;
    try {
      const st = await call("stats", { segment: segId });
      sizeNow.textContent = `Size now: ${num(st.size)} visitors`;
      sizeNow.className = "";
      job.textContent = "";
      announce(sizeNow.textContent);
    } catch (err) {
      showError(err);
    }
  }
  async function refreshVersions() {
    if (!isNew) versions.replaceChildren(await versionsPanel(sid, () => render(main, sid)));
  }

  if (dynamic()) ruleChanged(editor.get());
  const following = query && query.get("job");
  if (following) followJob(following, sid); // not awaited: the screen is usable meanwhile
  await Promise.all([refreshVersions(), isNew || following ? null : showSize(sid)]);
  if (isNew) name.focus();
}
