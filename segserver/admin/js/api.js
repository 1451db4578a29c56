// The page's only door to the server. Every request the page makes goes through
// `call(name, ...)` and is listed in ROUTES as [method, path template], spelled as in
// /openapi.json; tests/http/test_console_routes.py checks that each is an operation
// of the spec and the e2e tests check every request the browser actually sends.
// Errors come back as ApiError from {"error": {"code", "message"}}.

export const ROUTES = {
  whoami: ["GET", "/v1/admin/whoami"],
  sites: ["GET", "/v1/admin/sites"],
  site: ["GET", "/v1/admin/sites/{site}"],
  rotateKey: ["POST", "/v1/admin/sites/{site}/rotate-key"],
  rotateServerKey: ["POST", "/v1/admin/sites/{site}/rotate-server-key"],
  tokens: ["GET", "/v1/admin/sites/{site}/tokens"],
  createToken: ["POST", "/v1/admin/sites/{site}/tokens"],
  revokeToken: ["DELETE", "/v1/admin/sites/{site}/tokens/{id}"],
  policy: ["PUT", "/v1/admin/sites/{site}/policy"],
  schema: ["GET", "/v1/admin/sites/{site}/schema"],
  sizes: ["GET", "/v1/admin/sites/{site}/sizes"],
  checkRule: ["POST", "/v1/admin/sites/{site}/rules/check"],
  winners: ["GET", "/v1/admin/sites/{site}/winners"],
  segments: ["GET", "/v1/admin/sites/{site}/segments"],
  createSegment: ["POST", "/v1/admin/sites/{site}/segments"],
  segment: ["GET", "/v1/admin/sites/{site}/segments/{segment}"],
  updateSegment: ["PUT", "/v1/admin/sites/{site}/segments/{segment}"],
  deleteSegment: ["DELETE", "/v1/admin/sites/{site}/segments/{segment}"],
  segmentVersions: ["GET", "/v1/admin/sites/{site}/segments/{segment}/versions"],
  rollbackSegment: ["POST", "/v1/admin/sites/{site}/segments/{segment}/rollback"],
  stats: ["GET", "/v1/admin/sites/{site}/segments/{segment}/stats"],
  members: ["GET", "/v1/admin/sites/{site}/segments/{segment}/members.csv"],
  uploadMembers: ["POST", "/v1/admin/sites/{site}/segments/{segment}/members"],
  freeze: ["POST", "/v1/admin/sites/{site}/segments/{segment}/freeze"],
  preview: ["POST", "/v1/admin/sites/{site}/segments/preview"],
  query: ["POST", "/v1/admin/sites/{site}/segments/query"],
  overlap: ["POST", "/v1/admin/sites/{site}/segments/overlap"],
  placements: ["GET", "/v1/admin/sites/{site}/placements"],
  createPlacement: ["POST", "/v1/admin/sites/{site}/placements"],
  updatePlacement: ["PUT", "/v1/admin/sites/{site}/placements/{id}"],
  deletePlacement: ["DELETE", "/v1/admin/sites/{site}/placements/{id}"],
  contents: ["GET", "/v1/admin/sites/{site}/content"],
  createContent: ["POST", "/v1/admin/sites/{site}/content"],
  updateContent: ["PUT", "/v1/admin/sites/{site}/content/{id}"],
  deleteContent: ["DELETE", "/v1/admin/sites/{site}/content/{id}"],
  campaigns: ["GET", "/v1/admin/sites/{site}/campaigns"],
  createCampaign: ["POST", "/v1/admin/sites/{site}/campaigns"],
  campaign: ["GET", "/v1/admin/sites/{site}/campaigns/{id}"],
  updateCampaign: ["PUT", "/v1/admin/sites/{site}/campaigns/{id}"],
  patchCampaign: ["PATCH", "/v1/admin/sites/{site}/campaigns/{id}"],
  deleteCampaign: ["DELETE", "/v1/admin/sites/{site}/campaigns/{id}"],
  results: ["GET", "/v1/admin/sites/{site}/campaigns/{id}/results"],
  jobs: ["GET", "/v1/admin/sites/{site}/jobs"],
  job: ["GET", "/v1/admin/sites/{site}/jobs/{job}"],
  recompute: ["POST", "/v1/admin/sites/{site}/jobs"],
  triggers: ["GET", "/v1/admin/sites/{site}/triggers"],
  createTrigger: ["POST", "/v1/admin/sites/{site}/triggers"],
  updateTrigger: ["PATCH", "/v1/admin/sites/{site}/triggers/{id}"],
  deleteTrigger: ["DELETE", "/v1/admin/sites/{site}/triggers/{id}"],
  deadLetters: ["GET", "/v1/admin/sites/{site}/triggers/dead-letters"],
  redrive: ["POST", "/v1/admin/sites/{site}/triggers/dead-letters/redrive"],
  visitor: ["GET", "/v1/admin/sites/{site}/visitors/{visitor}"],
  eraseVisitor: ["DELETE", "/v1/admin/sites/{site}/visitors/{visitor}"],
  exportVisitor: ["GET", "/v1/admin/sites/{site}/visitors/{visitor}/export"],
  explain: ["GET", "/v1/admin/sites/{site}/visitors/{visitor}/explain"],
  visitorHistory: ["GET", "/v1/admin/sites/{site}/visitors/{visitor}/history"],
};

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const state = { token: "", site: "", role: "root" };

/** Who is signed in, on which site, with which role (viewer, editor, admin or root). */
export const session = () => ({ ...state });
export function configure(changes) {
  Object.assign(state, changes);
}

/** May the signed-in token change the catalogue (editor and up)? Keys, tokens and
 * erasure (admin and up)? The server enforces it; the page only follows. */
export const canEdit = () => state.role !== "viewer";
export const canAdmin = () => state.role === "admin" || state.role === "root";
function url(name, params, query) {
  const [, template] = ROUTES[name];
  const path = template.replace(/\{(\w+)\}/g, (_, k) => {
    const v = k === "site" && params.site === undefined ? state.site : params[k];
    if (v === undefined || v === null || v === "") throw new Error(`api: ${name} needs ${k}`);
    return encodeURIComponent(v);
  });
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const qs = q.toString();
  return qs ? `${path}?${qs}` : path;
}

/**
 * One request. `params` fill the path; options: `query` (object), `body` (JSON),
 * `csv` (a text/csv body), `as` ("json" default, "blob", "none").
 */
export async function call(name, params = {}, { query, body, csv, as = "json" } = {}) {
  const [method] = ROUTES[name];
  const headers = { Authorization: `Bearer ${state.token}` };
  const init = { method, headers };
  if (csv !== undefined) {
    headers["Content-Type"] = "text/csv";
    init.body = csv;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url(name, params, query), init);
  } catch (err) {
    throw new ApiError(0, "network", "The server cannot be reached: " + err.message);
  }
  if (!res.ok) {
    let error = {};
    try {
      error = (await res.json()).error || {};
    } catch (_) {}
    throw new ApiError(res.status, error.code || "http_" + res.status, error.message || `HTTP ${res.status}`, error.details);
  }
  if (as === "none" || res.status === 204) return null;
  if (as === "blob") return res.blob();
  return res.json();
}

/** Sign in: who the token is (role and site). A token the server refuses throws. */
export async function whoami(token) {
  configure({ token });
  const who = await call("whoami");
  return { role: who.role, site: who.site || null };
}
