// Small formatting helpers and a DOM builder shared by the dashboard's views.

export const PHASES = ["plan", "build", "test", "review", "document", "ship"];

/** Create an element: h("td", {className: "num"}, "text", child, ...). */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "role" || key.startsWith("aria-") || key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** Set text only when it differs (no needless layout work); return whether it changed. */
export function setText(node, text) {
  const value = String(text);
  if (node.textContent === value) return false;
  node.textContent = value;
  return true;
}

export function money(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return `${value < 0 ? "-" : ""}$${Math.abs(value).toFixed(2)}`;
}

export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

export function clock(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? "") : date.toLocaleTimeString();
}

export function stamp(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? "") : date.toLocaleString();
}

export function ago(ms) {
  if (ms === null || ms === undefined) return "";
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s}s ago` : `${duration(s)} ago`;
}

/** A short text of any value, for the state list and the timeline. */
export function brief(value, limit = 120) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text === undefined ? "" : text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

/** A CSS class for a status word (s-running, s-failed, ...). */
export function statusClass(status) {
  return `badge s-${String(status ?? "unknown").toLowerCase().replace(/[^a-z]/g, "")}`;
}
