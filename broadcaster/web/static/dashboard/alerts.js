// The bell and the alerts panel: open alerts newest first (acknowledged ones dimmed and out of the
// bell's count), resolved ones fading; acknowledge one or all (POST /api/v1/alerts/.../ack, an
// event every dashboard sees); opt-in browser notifications for alerts that open while the tab
// is in the background.

import { ago, h, setText } from "./format.js";

const $ = (id) => document.getElementById(id);
const FADE_MS = 10 * 60 * 1000; // a resolved alert fades over ten minutes...
const GONE_MS = 60 * 60 * 1000; // ...and leaves the panel after an hour

/** The dashboard's own link for an alert: the ADW's detail, else the overview (system status). */
function localLink(alert) {
  return alert.adw_id ? `#/adw/${encodeURIComponent(alert.adw_id)}` : "#/";
}

export class AlertsPanel {
  constructor(record) {
    this.known = null; // ids open at the last draw (null: no data yet, so nothing is "new")
    this.record = record; // what the page notified, for tests
    $("bell").addEventListener("click", () => this.toggle());
    $("alerts-ack-all").addEventListener("click", () => this.ack(null));
    const ask = $("alerts-notify");
    if (typeof Notification === "undefined") ask.hidden = true;
    ask.addEventListener("click", async () => {
      await Notification.requestPermission();
      this.drawNotify();
    });
    this.drawNotify();
  }

  toggle(open) {
    const panel = $("alerts-panel");
    panel.hidden = open === undefined ? !panel.hidden : !open;
    $("bell").setAttribute("aria-expanded", String(!panel.hidden));
  }

  async ack(alertId) {
    const path = alertId === null ? "/api/v1/alerts/ack" : `/api/v1/alerts/${encodeURIComponent(alertId)}/ack`;
    await fetch(path, { method: "POST", credentials: "same-origin" });
  }

  draw(data) {
    const open = Array.isArray(data?.open) ? data.open : [];
    const recent = Array.isArray(data?.recent) ? data.recent : [];
    const waiting = open.filter((alert) => !alert.acknowledged).length;
    setText($("bell-count"), waiting);
    $("bell").classList.toggle("ringing", waiting > 0);
    $("bell").setAttribute("aria-label", waiting === 1 ? "1 alert needs you" : `${waiting} alerts need you`);
    $("alerts-ack-all").hidden = waiting === 0;
    $("alerts-empty").hidden = open.length + recent.length > 0;
    $("alerts-rows").replaceChildren(...open.map((alert) => this.row(alert)), ...recent.map((alert) => this.row(alert)));
    this.fade();
    if (this.known !== null) for (const alert of open) if (!this.known.has(alert.id)) this.notify(alert);
    this.known = new Set(open.map((alert) => alert.id));
  }

  row(alert) {
    const resolved = alert.resolved_at !== null && alert.resolved_at !== undefined;
    const state = resolved ? "resolved" : alert.acknowledged ? "acknowledged" : alert.severity;
    return h(
      "li",
      { className: `alert ${state}`, "data-alert-id": String(alert.id), "data-resolved-at": resolved ? alert.resolved_at : null },
      h("span", { className: `badge sev-${resolved ? "resolved" : alert.severity}` }, resolved ? "resolved" : alert.severity),
      h(
        "span",
        { className: "grow" },
        h("a", { href: localLink(alert), className: "alert-title" }, String(alert.title ?? alert.id)),
        h("span", { className: "alert-text" }, String(alert.text ?? "")),
      ),
      h("span", { className: "muted", title: String(alert.opened_at) }, ago(Date.now() - Date.parse(alert.opened_at))),
      resolved || alert.acknowledged
        ? null
        : h("button", { type: "button", className: "ack", onclick: () => this.ack(alert.id) }, "acknowledge"),
    );
  }

  /** Fade resolved alerts with their age (called on each draw and every second). */
  fade() {
    for (const row of $("alerts-rows").querySelectorAll("li.resolved")) {
      const age = Date.now() - Date.parse(row.dataset.resolvedAt);
      row.hidden = age > GONE_MS;
      row.style.opacity = String(Math.max(0.35, 1 - Math.max(0, age) / FADE_MS));
    }
  }

  drawNotify() {
    const ask = $("alerts-notify");
    if (typeof Notification === "undefined") return;
    const granted = Notification.permission === "granted";
    ask.disabled = granted || Notification.permission === "denied";
    setText(ask, granted ? "notifications on" : Notification.permission === "denied" ? "notifications blocked" : "notify me");
  }

  notify(alert) {
    if (typeof Notification === "undefined" || Notification.permission !== "granted" || !document.hidden) return;
    const note = new Notification(String(alert.title), { body: String(alert.text ?? ""), tag: String(alert.id) });
    note.onclick = () => {
      window.focus();
      location.hash = localLink(alert);
    };
    this.record.push(alert.id);
  }
}
