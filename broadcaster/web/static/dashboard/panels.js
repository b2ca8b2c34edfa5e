// The smaller panels: header counts, phase queue, workflow history (with its cost chart),
// system status and webhook cards. Each is small enough to redraw whole per message.

import { duration, h, money, setText, statusClass } from "./format.js";

const $ = (id) => document.getElementById(id);

export function drawCounts(monitor) {
  const items = Array.isArray(monitor?.workflows) ? monitor.workflows : [];
  const count = (status) => items.filter((item) => item && item.status === status).length;
  for (const status of ["running", "paused", "queued", "completed", "failed"]) setText($(`count-${status}`), count(status));
  setText($("count-stalled"), items.filter((item) => item && item.stalled === true).length);
  const cost = items.reduce((sum, item) => sum + (typeof item?.current_cost === "number" ? item.current_cost : 0), 0);
  setText($("count-cost"), money(cost));
  setText($("monitor-total"), items.length ? `${items.length} ADWs` : "");
}

export function drawQueue(queue) {
  const phases = Array.isArray(queue?.phases) ? queue.phases : [];
  $("queue-paused").hidden = !queue?.paused;
  $("queue-empty").hidden = phases.length > 0;
  const rows = phases.map((phase) => {
    const issue = phase.parent_issue ?? phase.feature_id ?? phase.issue_number;
    return h(
      "li",
      { "data-queue-id": String(phase.queue_id ?? "") },
      h("span", { className: statusClass(phase.status) }, String(phase.status ?? "unknown")),
      h("span", { className: "grow", title: String(phase.phase ?? "") },
        `${issue !== null && issue !== undefined ? `#${issue} · ` : ""}${phase.phase_number ?? ""} ${phase.phase ?? ""}`),
      phase.adw_id ? h("a", { href: `#/adw/${encodeURIComponent(phase.adw_id)}` }, phase.adw_id) : null,
    );
  });
  $("queue-rows").replaceChildren(...rows);
}

export function drawHistory(history) {
  const analytics = history?.analytics ?? {};
  setText($("history-total"), history?.total_count ?? 0);
  setText($("history-success"), `${Math.round(Number(analytics.success_rate_percent ?? analytics.success_rate ?? 0))}%`);
  setText($("history-duration"), duration(analytics.avg_duration_seconds ?? analytics.average_duration));
  setText($("history-cost"), money(analytics.avg_cost));
  setText($("history-trend"), money(analytics.cost_trend_7day));
  const rows = Array.isArray(history?.workflows) ? history.workflows : [];
  const costs = rows
    .map((row) => Number(row?.actual_cost_total ?? row?.estimated_cost_total))
    .filter((cost) => Number.isFinite(cost))
    .reverse(); // the rows come newest first; the chart reads left to right
  drawChart($("history-chart"), costs);
}

/** A polyline of `values` in the SVG's 300x80 box (a baseline alone with fewer than two). */
function drawChart(svg, values) {
  const title = svg.querySelector("title");
  const ns = "http://www.w3.org/2000/svg";
  const base = document.createElementNS(ns, "line");
  Object.entries({ x1: 0, y1: 78, x2: 300, y2: 78 }).forEach(([k, v]) => base.setAttribute(k, v));
  const parts = [title, base];
  if (values.length >= 2) {
    const top = Math.max(...values) || 1;
    const points = values.map((v, i) => `${((i / (values.length - 1)) * 300).toFixed(1)},${(76 - (v / top) * 70).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    parts.push(line);
  }
  svg.replaceChildren(...parts);
}

export function drawServices(status) {
  const overall = $("system-overall");
  setText(overall, status?.overall_status ?? "");
  overall.className = statusClass(status?.overall_status);
  const services = status?.services && typeof status.services === "object" ? Object.values(status.services) : [];
  $("service-cards").replaceChildren(
    ...services.map((service) =>
      h(
        "li",
        { className: "card", "data-service": String(service?.name ?? "") },
        h("strong", {}, String(service?.name ?? "?"), " ", h("span", { className: statusClass(service?.status) }, String(service?.status ?? ""))),
        h("p", {}, service?.status === "healthy" ? service?.uptime_human ?? "" : service?.message || service?.uptime_human || ""),
      ),
    ),
  );
}

export function drawWebhook(webhook) {
  const stats = webhook?.stats;
  const detail = webhook?.message
    ? webhook.message
    : stats
      ? `${stats.total_received ?? 0} received, ${stats.failed ?? 0} failed (${stats.success_rate ?? "?"}% ok)`
      : "";
  $("webhook-card").replaceChildren(
    h("strong", {}, "webhook ", h("span", { className: statusClass(webhook?.status) }, String(webhook?.status ?? "unknown"))),
    h("p", {}, detail),
  );
}
