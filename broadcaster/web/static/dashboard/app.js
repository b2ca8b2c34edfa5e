// The dashboard: every channel on one socket (/client.js), the overview and an ADW's detail view.

import { connect } from "/client.js";
import { AlertsPanel } from "./alerts.js";
import { Detail } from "./detail.js";
import { ago, setText } from "./format.js";
import { MonitorTable } from "./monitor.js";
import { drawCounts, drawHistory, drawQueue, drawServices, drawWebhook } from "./panels.js";

const $ = (id) => document.getElementById(id);

// What the page measured, for tests and the benchmark (bench/dashboard.py): per monitor message,
// the script time of drawing it (`ms`) and the time until the next frame was painted (`painted`).
const stats = { draws: [], messages: 0, last: null, notified: [] };
window.dashboard = stats;

const live = connect(undefined, { patches: true });
const table = new MonitorTable($("monitor-rows"), $("monitor-empty"), (adwId) => {
  location.hash = `#/adw/${encodeURIComponent(adwId)}`;
});
const detail = new Detail(live);

function count(draw) {
  return (message) => {
    stats.messages += 1;
    draw(message.data);
  };
}

live.subscribe("adw-monitor", (message) => {
  stats.messages += 1;
  const started = performance.now();
  const items = Array.isArray(message.data?.workflows) ? message.data.workflows : [];
  table.update(items);
  drawCounts(message.data);
  const draw = { seq: message.seq ?? null, ms: performance.now() - started, painted: null, items: items.length };
  requestAnimationFrame(() => setTimeout(() => (draw.painted = performance.now() - started)));
  stats.draws.push(draw);
  stats.last = message.data;
  if (stats.draws.length > 1000) stats.draws.splice(0, 500);
});
live.subscribe("queue", count(drawQueue));
live.subscribe("workflow-history", count(drawHistory));
live.subscribe("system-status", count(drawServices));
live.subscribe("webhook-status", count(drawWebhook));
const alerts = new AlertsPanel(stats.notified);
live.subscribe("alerts", count((data) => alerts.draw(data)));

// The connection indicator: Live / Reconnecting / Offline, and the time since the last message.
let status = live.status;
function drawConnection() {
  const offline = typeof navigator !== "undefined" && navigator.onLine === false;
  const word = offline ? "Offline" : status.state === "open" && status.quality === "good" ? "Live" : "Reconnecting";
  setText($("connection-state"), word);
  $("connection-dot").className = `dot ${word.toLowerCase()}`;
  const since = status.lastMessageAt === null ? null : Date.now() - status.lastMessageAt;
  setText($("connection-age"), since === null ? "" : `· last message ${ago(since)}`);
}
live.onStatus((next) => {
  status = next;
  drawConnection();
});
window.addEventListener("online", drawConnection);
window.addEventListener("offline", drawConnection);
setInterval(() => {
  status = live.status;
  drawConnection();
  table.tick();
  alerts.fade();
}, 1000);

// Routing: #/ is the overview, #/adw/{adw_id} an ADW's detail.
function route() {
  const match = /^#\/adw\/([^/]+)$/.exec(location.hash);
  const adwId = match ? decodeURIComponent(match[1]) : null;
  $("overview").hidden = adwId !== null;
  $("detail").hidden = adwId === null;
  if (adwId === null) {
    detail.close();
    document.title = "ADW dashboard";
  } else if (adwId !== detail.adwId) {
    document.title = `ADW ${adwId}`;
    detail.open(adwId);
    $("detail-title").focus?.();
  }
}
window.addEventListener("hashchange", route);
route();
