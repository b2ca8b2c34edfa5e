// The ADW monitor table: one row per ADW, updated in place (a change touches its own cells only).

import { PHASES, duration, h, money, setText, statusClass } from "./format.js";

const FLASH_MS = 1200;

function phaseBar() {
  return h("div", { className: "phases", "aria-hidden": "true" }, ...PHASES.map(() => h("span")));
}

class Row {
  constructor(adwId, open) {
    this.id = adwId;
    this.status = h("span");
    this.issue = h("a", { target: "_blank", rel: "noopener" });
    this.title = h("span", { className: "title" });
    this.phase = h("span", { className: "phase-name" });
    this.bar = phaseBar();
    this.duration = h("td", { className: "num" });
    this.cost = h("td", { className: "num" });
    this.error = h("span", { className: "error" });
    this.signature = "";
    this.seconds = null; // duration at `at` (ms), ticking while running
    this.at = 0;
    this.quiet = null; // seconds without activity at `at`, ticking while stalled
    this.stalled = false;
    this.node = h(
      "tr",
      { tabIndex: 0, "data-adw-id": adwId, "aria-label": `ADW ${adwId}` },
      h("td", {}, this.status),
      h("td", {}, this.issue, this.title),
      h("td", {}, this.phase, this.bar),
      this.duration,
      this.cost,
      h("td", {}, this.error),
    );
    this.node.addEventListener("click", (event) => {
      if (!(event.target instanceof HTMLAnchorElement)) open(adwId);
    });
    this.node.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && event.target === this.node) open(adwId);
    });
  }

  /** Draw `item`; return whether anything but the clock moved. */
  update(item, now) {
    this.seconds = typeof item.duration_seconds === "number" ? item.duration_seconds : null;
    this.at = now;
    this.running = item.status === "running" && !item.end_time;
    // Stalled: the state says running, but no process and no file activity for [adw] stall_after.
    this.stalled = item.stalled === true;
    this.quiet = this.stalled && typeof item.stalled_seconds === "number" ? item.stalled_seconds : null;
    const signature = JSON.stringify([
      item.status, item.stalled, item.issue_number, item.title, item.github_url, item.current_phase,
      item.phases_completed, item.current_cost, item.estimated_cost_total, item.last_error,
    ]);
    if (signature === this.signature) return false;
    this.signature = signature;
    this.node.classList.toggle("stalled", this.stalled);
    if (!this.stalled) {
      setText(this.status, item.status ?? "unknown");
      this.status.title = "";
    }
    this.status.className = this.stalled ? "badge s-stalled" : statusClass(item.status);
    setText(this.issue, item.issue_number === null || item.issue_number === undefined ? item.adw_id : `#${item.issue_number}`);
    // The URL comes from an agent's state file: only http(s) links, never javascript: or data:.
    if (typeof item.github_url === "string" && /^https?:\/\//i.test(item.github_url)) this.issue.href = item.github_url;
    else this.issue.removeAttribute("href");
    setText(this.title, item.title || item.adw_id);
    this.title.title = item.title || "";
    const phase = item.current_phase || "–";
    setText(this.phase, phase);
    const done = new Set(item.phases_completed || []);
    [...this.bar.children].forEach((segment, i) => {
      const name = PHASES[i];
      segment.className = done.has(name) ? "done" : name === item.current_phase ? "now" : "";
    });
    this.bar.title = `${Math.round(item.phase_progress ?? 0)}% of ${PHASES.length} phases`;
    setText(this.cost, `${money(item.current_cost)} / ${money(item.estimated_cost_total)}`);
    setText(this.error, item.last_error || "");
    this.error.title = item.last_error || "";
    return true;
  }

  tick(now) {
    const extra = this.running && this.seconds !== null ? (now - this.at) / 1000 : 0;
    setText(this.duration, duration(this.seconds === null ? null : this.seconds + extra));
    if (this.stalled) {
      const quiet = this.quiet === null ? null : this.quiet + (now - this.at) / 1000;
      setText(this.status, quiet === null ? "stalled" : `stalled ${duration(quiet)}`);
      this.status.title = "Says running, but no process and no file activity";
    }
  }

  flash() {
    this.node.classList.remove("flash");
    void this.node.offsetWidth; // restart the animation
    this.node.classList.add("flash");
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => this.node.classList.remove("flash"), FLASH_MS);
  }
}

export class MonitorTable {
  constructor(tbody, empty, open) {
    this.tbody = tbody;
    this.empty = empty;
    this.open = open;
    this.rows = new Map();
    this.drawn = false;
  }

  /** Draw the monitor's items: new rows made, changed cells written, order fixed, gone rows removed. */
  update(items) {
    const now = Date.now();
    const seen = new Set();
    items.forEach((item, index) => {
      if (!item || typeof item.adw_id !== "string" || seen.has(item.adw_id)) return;
      seen.add(item.adw_id);
      let row = this.rows.get(item.adw_id);
      const fresh = row === undefined;
      if (fresh) {
        row = new Row(item.adw_id, this.open);
        this.rows.set(item.adw_id, row);
      }
      const moved = row.update(item, now);
      row.tick(now);
      const there = this.tbody.children[index];
      if (there !== row.node) this.tbody.insertBefore(row.node, there || null);
      if (moved && this.drawn) row.flash();
    });
    for (const [adwId, row] of this.rows) {
      if (!seen.has(adwId)) {
        row.node.remove();
        this.rows.delete(adwId);
      }
    }
    this.empty.hidden = this.rows.size > 0;
    this.drawn = true;
  }

  /** Move the running ADWs' durations and the stalled ones' quiet time on (called every second). */
  tick() {
    const now = Date.now();
    for (const row of this.rows.values()) if (row.running || row.stalled) row.tick(now);
  }
}
