// Plain SVG charts (no library): a size sparkline, a size-history line chart and bars
// with interval whiskers. Each chart has a text alternative (role="img" + aria-label,
// or a <title>); the numbers are also in a table next to it where they matter.

const NS = "http://www.w3.org/2000/svg";
const s = (tag, attrs = {}, ...kids) => {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
};

function scale(values, lo, hi) {
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = max - min || 1;
  return (v) => hi - ((v - min) / span) * (hi - lo);
}

/** A 96×24 sparkline of [[t, n], ...]; grey when the segment is not active. */
export function sparkline(points, { grey = false, label = "" } = {}) {
  const w = 96;
  const hgt = 24;
  const svg = s("svg", { width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}`, class: "spark" + (grey ? " grey" : ""), role: "img", "aria-label": label });
  if (!points || points.length === 0) {
    svg.append(s("line", { x1: 0, x2: w, y1: hgt - 2, y2: hgt - 2, class: "none" }));
    return svg;
  }
  const ts = points.map((p) => p[0]);
  const ns = points.map((p) => p[1]);
  const x = (t) => (ts.length === 1 ? w - 2 : 2 + ((t - ts[0]) / (ts[ts.length - 1] - ts[0] || 1)) * (w - 4));
  const y = scale(ns, 3, hgt - 3);
  const d = points.map(([t, n]) => `${x(t).toFixed(1)},${y(n).toFixed(1)}`).join(" ");
  if (points.length === 1) svg.append(s("circle", { cx: x(ts[0]), cy: y(ns[0]), r: 2 }));
  else svg.append(s("polyline", { points: d }));
  return svg;
}

/** A line chart of size history with axes (min/max, first/last date). */
export function lineChart(points, { label = "Size over time", width = 640, height = 220 } = {}) {
  const pad = { l: 56, r: 12, t: 12, b: 28 };
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label, preserveAspectRatio: "xMidYMid meet" });
  if (!points || points.length === 0) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "No history yet (a snapshot is taken every few minutes)"));
    return svg;
  }
  const ts = points.map((p) => p[0]);
  const ns = points.map((p) => p[1]);
  const lo = Math.min(...ns);
  const hi = Math.max(...ns);
  const x = (t) => pad.l + ((t - ts[0]) / (ts[ts.length - 1] - ts[0] || 1)) * (width - pad.l - pad.r);
  const y = (n) => height - pad.b - ((n - lo) / (hi - lo || 1)) * (height - pad.t - pad.b);
  svg.append(
    s("line", { x1: pad.l, x2: pad.l, y1: pad.t, y2: height - pad.b, class: "axis" }),
    s("line", { x1: pad.l, x2: width - pad.r, y1: height - pad.b, y2: height - pad.b, class: "axis" }),
    s("text", { x: pad.l - 6, y: y(hi) + 4, "text-anchor": "end" }, hi.toLocaleString("en")),
    s("text", { x: pad.l - 6, y: y(lo) + 4, "text-anchor": "end" }, lo.toLocaleString("en")),
    s("text", { x: pad.l, y: height - 8 }, new Date(ts[0] * 1000).toISOString().slice(0, 16).replace("T", " ")),
    s("text", { x: width - pad.r, y: height - 8, "text-anchor": "end" }, new Date(ts[ts.length - 1] * 1000).toISOString().slice(0, 16).replace("T", " ")),
  );
  const d = points.map(([t, n]) => `${x(t).toFixed(1)},${y(n).toFixed(1)}`).join(" ");
  svg.append(s("polyline", { points: d, class: "line" }));
  for (const [t, n] of points.length <= 60 ? points : []) svg.append(s("circle", { cx: x(t), cy: y(n), r: 2.5, class: "dot" }, s("title", {}, `${new Date(t * 1000).toISOString()}: ${n}`)));
  return svg;
}

/**
 * Horizontal bars with whiskers: rows [{label, value, lo, hi, kind}] on a scale from
 * min(0, lowest) to the highest value or bound (a lift may be negative). Used for
 * conversion rates per arm and lifts with their 95 % intervals.
 */
export function intervalBars(rows, { label = "", width = 640, format = (v) => v } = {}) {
  const rowH = 34;
  const pad = { l: 150, r: 80, t: 8, b: 8 };
  const height = pad.t + pad.b + rowH * rows.length;
  const vals = rows.flatMap((r) => [r.value, r.lo, r.hi]).filter((v) => typeof v === "number");
  const lo = Math.min(0, ...vals);
  const hi = Math.max(1e-9, ...vals);
  const x = (v) => pad.l + ((v - lo) / (hi - lo)) * (width - pad.l - pad.r);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart bars", role: "img", "aria-label": label });
  svg.append(s("line", { x1: x(0), x2: x(0), y1: pad.t, y2: height - pad.b, class: "axis" }));
  rows.forEach((r, i) => {
    const y = pad.t + i * rowH;
    svg.append(s("text", { x: pad.l - 8, y: y + rowH / 2 + 4, "text-anchor": "end" }, r.label));
    if (typeof r.value !== "number") {
      svg.append(s("text", { x: x(0) + 4, y: y + rowH / 2 + 4, class: "muted" }, r.note || "no data"));
      return;
    }
    const [a, b] = [Math.min(x(0), x(r.value)), Math.max(x(0), x(r.value))];
    svg.append(s("rect", { x: a, y: y + 8, width: Math.max(1, b - a), height: rowH - 16, class: "bar" + (r.kind ? " " + r.kind : "") }));
    if (typeof r.lo === "number" && typeof r.hi === "number") {
      const cy = y + rowH / 2;
      svg.append(
        s("line", { x1: x(r.lo), x2: x(r.hi), y1: cy, y2: cy, class: "whisker" }),
        s("line", { x1: x(r.lo), x2: x(r.lo), y1: cy - 6, y2: cy + 6, class: "whisker" }),
        s("line", { x1: x(r.hi), x2: x(r.hi), y1: cy - 6, y2: cy + 6, class: "whisker" }),
      );
    }
    svg.append(s("text", { x: width - pad.r + 6, y: y + rowH / 2 + 4 }, format(r.value)));
  });
  return svg;
}

/** A colour for a heat-map cell: white → blue by share (0..1). The darkest blue keeps
 * black text above 4.5:1 (lightness 62 %: ~7:1), so the text colour never changes. */
export function heat(share) {
  const v = Math.max(0, Math.min(1, share || 0));
  return { background: `hsl(215 75% ${(97 - 35 * v).toFixed(1)}%)`, color: "#111" };
}
