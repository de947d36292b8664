// Small helpers shared by the peer and coordinator pages (formatting,
// bars, the invite QR code). Everything else is computed in wasm.
export const $ = (sel) => document.querySelector(sel);

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function bytes(n) {
  if (n == null) return "–";
  const u = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : n) + " " + u[i];
}

export function ms(v, digits = 1) {
  return v == null || !isFinite(v) ? "–" : v.toFixed(digits) + " ms";
}

export function num(v, digits = 1) {
  return v == null || !isFinite(v) ? "–" : Number(v).toFixed(digits);
}

export function bar(frac, cls = "") {
  const p = Math.max(0, Math.min(1, frac || 0)) * 100;
  return `<div class="bar ${cls}"><span style="width:${p.toFixed(1)}%"></span></div>`;
}

// Stable colours per device index.
const PALETTE = ["#2f6fed", "#1f9d55", "#d97706", "#9333ea", "#db2777", "#0891b2", "#65a30d", "#dc2626", "#4b5563", "#0d9488"];
export const colour = (i) => PALETTE[i % PALETTE.length];

// The room's peer join URL (this page's URL without role and page name).
export function joinUrl() {
  const q = new URLSearchParams(location.search);
  const u = new URL("/", location.origin);
  u.searchParams.set("room", q.get("room") || "");
  u.searchParams.set("token", q.get("token") || "");
  return u.toString();
}

export function coordinatorUrl() {
  const u = new URL(joinUrl());
  u.searchParams.set("role", "coordinator");
  return u.toString();
}

// A line chart of `points` ([t, v]) as SVG markup.
export function sparkline(points, { width = 600, height = 120, label = "" } = {}) {
  if (points.length < 2) return `<svg class="chart" viewBox="0 0 ${width} ${height}"><text x="8" y="20" fill="#667080" font-size="13">${esc(label)} (waiting for data)</text></svg>`;
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const vmax = Math.max(1e-9, ...points.map((p) => p[1])) * 1.1;
  const x = (t) => 30 + ((t - t0) / Math.max(1e-9, t1 - t0)) * (width - 40);
  const y = (v) => height - 18 - (v / vmax) * (height - 30);
  const d = points.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join("");
  return `<svg class="chart" viewBox="0 0 ${width} ${height}">
    <line x1="30" y1="${height - 18}" x2="${width - 10}" y2="${height - 18}" stroke="#dfe3e8"/>
    <text x="2" y="${y(vmax / 1.1) + 4}" font-size="11" fill="#667080">${num(vmax / 1.1, vmax < 10 ? 1 : 0)}</text>
    <text x="2" y="${height - 14}" font-size="11" fill="#667080">0</text>
    <text x="${width - 10}" y="${height - 2}" font-size="11" fill="#667080" text-anchor="end">${num((t1 - t0) / 1000, 0)} s</text>
    <text x="36" y="14" font-size="12" fill="#667080">${esc(label)}</text>
    <path d="${d}" fill="none" stroke="#2f6fed" stroke-width="2"/></svg>`;
}
