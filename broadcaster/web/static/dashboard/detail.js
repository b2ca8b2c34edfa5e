// The ADW detail view: its live state, and the timeline of its run from the event log, scrubbable.

import { brief, clock, h, money, setText, stamp } from "./format.js";

const $ = (id) => document.getElementById(id);
const WATCHED = [
  ["current_phase", "phase"],
  ["status", "status"],
  ["current_cost", "cost"],
  ["last_error", "error"],
];
const PAGE = 1000;
/** A state's member (own only: a member named `constructor` is data, not Object's). */
const own = (state, key) => (Object.hasOwn(state, key) ? state[key] : undefined);

/** What changed from `before` to `after` (two states), as short phrases; the watched keys first. */
export function changes(before, after) {
  if (!before) return ["first state recorded"];
  const out = [];
  for (const [key, label] of WATCHED) {
    if (JSON.stringify(own(before, key)) !== JSON.stringify(own(after, key))) {
      const show = (v) => (key === "current_cost" ? money(v) : v === null || v === undefined ? "–" : brief(v, 60));
      out.push(`${label} ${show(own(before, key))} → ${show(own(after, key))}`);
    }
  }
  const others = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter(
    (key) => !WATCHED.some(([k]) => k === key) && JSON.stringify(own(before, key)) !== JSON.stringify(own(after, key)),
  );
  if (others.length) out.push(`${others.length === 1 ? others[0] : `${others.length} other fields`} changed`);
  return out.length ? out : ["no visible change"];
}

/** An event's identity: its seq within its epoch (a new epoch starts seq over). */
const eventKey = (event) => `${event.epoch}/${event.seq}`;
/** Oldest first: by time, then by seq (seqs of different epochs do not compare). */
const byTime = (a, b) => String(a.timestamp).localeCompare(String(b.timestamp)) || a.seq - b.seq;

export class Detail {
  constructor(live) {
    this.live = live;
    this.adwId = null;
    this.events = []; // {epoch, seq, timestamp, data}: an event is its (epoch, seq); seq restarts with an epoch
    this.at = null; // index shown while scrubbing; null: follow live
    this.stop = null;
    this.token = 0;
    $("timeline-scrub").addEventListener("input", (event) => this.show(Number(event.target.value)));
  }

  async open(adwId) {
    this.close();
    const token = ++this.token;
    this.adwId = adwId;
    this.events = [];
    this.at = null;
    setText($("detail-title"), `ADW ${adwId}`);
    $("detail-state").replaceChildren();
    this.drawTimeline();
    this.stop = this.live.subscribe(`adw-state:${adwId}`, (message) => this.receive(message));
    const stored = await this.history(adwId);
    if (token !== this.token) return; // another ADW was opened meanwhile
    const known = new Set(stored.map(eventKey));
    this.events = [...stored, ...this.events.filter((e) => !known.has(eventKey(e)))].sort(byTime);
    this.drawTimeline();
  }

  close() {
    if (this.stop) this.stop();
    this.stop = null;
    this.adwId = null;
  }

  /** Every stored event of the ADW's state channel, oldest first (paged through the events API). */
  async history(adwId) {
    const found = [];
    let since = 0;
    for (;;) {
      const url = `/api/v1/events?channel=${encodeURIComponent(`adw-state:${adwId}`)}&since=${since}&limit=${PAGE}`;
      let page;
      try {
        const response = await fetch(url, { cache: "no-store" });
        if (!response.ok) break;
        page = await response.json();
      } catch {
        break; // offline: the live events still come when the socket is back
      }
      for (const event of page.events) {
        found.push({ epoch: page.epoch, seq: event.seq, timestamp: event.timestamp, data: event.data });
      }
      if (page.events.length < PAGE) break;
      since = page.next;
    }
    return found;
  }

  receive(message) {
    if (message.fallback) {
      if (this.at === null) this.drawState(message.data);
      return;
    }
    const data = message.data;
    const event = { epoch: message.epoch ?? this.live.epoch, seq: message.seq, timestamp: message.timestamp, data };
    if (data && Object.keys(data).length && !this.events.some((e) => eventKey(e) === eventKey(event))) {
      this.events.push(event);
      this.events.sort(byTime);
      this.drawTimeline();
    } else if (this.at === null) {
      this.drawState(data);
    }
  }

  drawState(data) {
    const rows = [];
    for (const [key, value] of Object.entries(data || {})) {
      rows.push(h("dt", {}, key), h("dd", {}, value === null ? "–" : brief(value, 400)));
    }
    $("detail-state").replaceChildren(...rows);
  }

  drawTimeline() {
    const events = this.events;
    $("timeline-empty").hidden = events.length > 0;
    setText($("timeline-count"), events.length ? `${events.length} recorded changes` : "");
    const scrub = $("timeline-scrub");
    scrub.max = String(Math.max(0, events.length - 1));
    scrub.disabled = events.length < 2;
    $("timeline-rows").replaceChildren(
      ...events.map((event, index) =>
        h(
          "li",
          { "data-seq": String(event.seq) },
          h("time", { dateTime: event.timestamp, title: stamp(event.timestamp) }, clock(event.timestamp)),
          h("button", { type: "button", onclick: () => this.show(index) }, changes(events[index - 1]?.data, event.data).join("; ")),
        ),
      ),
    );
    this.show(this.at === null ? events.length - 1 : Math.min(this.at, events.length - 1), this.at === null);
  }

  /** Show the state as of event `index` (replay); at the last one, follow live changes again. */
  show(index, live = false) {
    const events = this.events;
    if (index < 0 || !events.length) {
      setText($("timeline-at"), "");
      return;
    }
    this.at = live || index === events.length - 1 ? null : index;
    $("timeline-scrub").value = String(index);
    setText($("timeline-at"), `${index + 1} / ${events.length} · ${stamp(events[index].timestamp)}`);
    [...$("timeline-rows").children].forEach((li, i) => {
      if (i === index) li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
      li.classList.toggle("after", i > index);
    });
    this.drawState(events[index].data);
  }
}
