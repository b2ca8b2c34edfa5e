// adw-broadcaster browser client: one WebSocket for any set of channels.
//
//   import { connect } from "http://127.0.0.1:8002/client.js";
//   const live = connect();                       // the service that served this file
//   const stop = live.subscribe("adw-monitor", (message) => render(message.data));
//   live.onStatus((status) => show(status.quality)); // "good" | "poor"
//
// No build step, no dependency. Every message handed to a listener is whole
// ({type, channel, seq, timestamp, data}): merge patches are applied here. The socket is kept
// forever: reconnects use exponential backoff with full jitter (first retry within 1 s, at most
// 30 s apart), and at once when a hidden tab becomes visible or the browser comes back online;
// each reconnect resumes with since/epoch, so nothing already received comes again. While the
// socket is down, each channel's HTTP fallback is polled with If-None-Match.

const FAMILIES = {
  workflows: { field: null, key: "adw_id" },
  routes: { field: null, key: ["method", "path"] },
  "workflow-history": { field: "workflows", key: "adw_id" },
  "adw-state": null,
  "adw-monitor": { field: "workflows", key: "adw_id" },
  queue: { field: "phases", key: "queue_id" },
  "system-status": null,
  "webhook-status": null,
  alerts: null,
};
const ADW_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/** Return the family of a channel name, or throw if it is not one. */
export function familyOf(channel) {
  const at = channel.indexOf(":");
  const family = at < 0 ? channel : channel.slice(0, at);
  if (!(family in FAMILIES)) throw new Error(`unknown channel ${channel}`);
  if (family === "adw-state") {
    const id = channel.slice(at + 1);
    if (at < 0 || !ADW_ID.test(id) || id === "." || id === "..") throw new Error(`invalid channel ${channel}`);
  } else if (at >= 0) {
    throw new Error(`${family} takes no ':' suffix`);
  }
  return family;
}

/** The pause before reconnect `attempt` (1, 2, ...) in ms: full jitter under a doubling cap. */
export function backoff(attempt, random = Math.random, first = 1000, cap = 30000) {
  return random() * Math.min(cap, first * 2 ** (attempt - 1));
}

function itemId(item, key) {
  if (item === null || typeof item !== "object") return undefined;
  if (typeof key === "string") return typeof item[key] === "string" ? item[key] : undefined;
  const parts = key.map((k) => item[k]);
  return parts.every((p) => typeof p === "string") ? parts.join(" ") : undefined;
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// Ids and member names are data, never object members: `__proto__`, `constructor`, `toString`
// are valid ADW ids. Reads look at own properties only; writes define them (an assignment to
// `__proto__` would set the prototype instead).
const own = (object, key) => (Object.hasOwn(object, key) ? object[key] : undefined);
function put(object, key, value) {
  Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  return object;
}

/** An item without its null members (objects at any depth), and the key paths to them. */
function splitNulls(item) {
  const paths = [];
  const strip = (value, at) => {
    const kept = {};
    for (const [key, member] of Object.entries(value)) {
      if (member === null) paths.push([...at, key]);
      else put(kept, key, isObject(member) ? strip(member, [...at, key]) : member);
    }
    return kept;
  };
  return [isObject(item) ? strip(item, []) : item, paths];
}

/** An item with a null put back at each path (the inverse of splitNulls). */
function withNulls(item, paths) {
  if (!Array.isArray(paths) || paths.length === 0 || !isObject(item)) return item;
  const whole = { ...item };
  for (const path of paths) {
    let node = whole;
    for (const key of path.slice(0, -1)) {
      const inner = own(node, key);
      put(node, key, isObject(inner) ? { ...inner } : {});
      node = node[key];
    }
    put(node, path[path.length - 1], null);
  }
  return whole;
}

/**
 * Channel data -> keyed form {items: {id: item}, order: [id], nulls: {id: [path]}} (null if the
 * list has no usable ids). Items are held without their null members (RFC 7396 cannot set a
 * null); `nulls` says where they were.
 */
export function keyedForm(data, keyed) {
  const list = keyed.field ? data && data[keyed.field] : data;
  if (!Array.isArray(list)) return null;
  const items = {};
  const order = [];
  const nulls = {};
  for (const item of list) {
    const id = itemId(item, keyed.key);
    if (id === undefined || Object.hasOwn(items, id)) return null;
    const [kept, paths] = splitNulls(item);
    put(items, id, kept);
    if (paths.length) put(nulls, id, paths);
    order.push(id);
  }
  const form = { items, order, nulls };
  return keyed.field ? { ...data, [keyed.field]: form } : form;
}

/** Keyed form -> the channel's own shape. */
export function listForm(data, keyed) {
  const form = keyed.field ? data[keyed.field] : data;
  const nulls = form.nulls || {};
  const list = form.order.map((id) => withNulls(own(form.items, id), own(nulls, id)));
  return keyed.field ? { ...data, [keyed.field]: list } : list;
}

/** RFC 7396: `target` with `patch` applied (target is not changed). */
export function applyMergePatch(target, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const result = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else put(result, key, applyMergePatch(own(result, key), value));
  }
  return result;
}

/** The path the socket URL names the service by ("" or "/prefix", "/api/v1" kept): the fallback shares it. */
function basePath(url) {
  return url.pathname.replace(/\/+$/, "").replace(/\/ws$/, "");
}

function socketUrl(base) {
  const url = new URL(base);
  url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:";
  url.pathname = `${basePath(url)}/ws`;
  url.search = "";
  url.hash = "";
  return url;
}

function fallbackUrl(base, channel) {
  const url = new URL(base);
  url.protocol = url.protocol === "wss:" ? "https:" : url.protocol === "ws:" ? "http:" : url.protocol;
  const family = familyOf(channel);
  const path = family === "adw-state" ? `adw-state/${channel.slice(channel.indexOf(":") + 1)}` : family;
  url.pathname = `${basePath(url).replace(/\/api\/v1$/, "")}/api/v1/${path}`;
  url.search = "";
  url.hash = "";
  return url;
}

class Channel {
  constructor(name) {
    this.name = name;
    const family = familyOf(name);
    this.keyed = FAMILIES[family];
    this.family = family;
    this.listeners = new Set();
    this.seq = null; // last seq received over the socket
    this.held = null; // keyed form of the last data (patch channels)
    this.last = null; // the last whole message, for listeners that join later
    this.etag = null;
  }

  /** Return the whole message, or null for a patch that does not fit what is held (a gap). */
  take(message) {
    let whole = message;
    if ("patch" in message) {
      if (!this.keyed || this.held === null || message.base_seq !== this.seq) return null;
      this.held = applyMergePatch(this.held, message.patch);
      whole = { ...message, data: listForm(this.held, this.keyed) };
      delete whole.patch;
      delete whole.base_seq;
    } else if (this.keyed) {
      this.held = keyedForm(message.data, this.keyed);
    }
    this.seq = whole.seq;
    this.etag = null; // the socket is newer than any answer the fallback had
    this.last = whole;
    return whole;
  }
}

export class Connection {
  /**
   * @param {string} [url] the service (http(s):// or ws(s)://); default: where this file came from
   * @param {object} [options] see client.d.ts
   */
  constructor(url, options = {}) {
    this.url = url || new URL("/", import.meta.url).href;
    this.options = {
      patches: true,
      token: null,
      firstRetry: 1000,
      maxRetry: 30000,
      heartbeatTimeout: 25000, // no message for this long on an open socket: quality "poor"
      fallbackInterval: 5000,
      random: Math.random,
      ...options,
    };
    this.channels = new Map();
    this.statusListeners = new Set();
    this.epoch = null;
    this.ws = null;
    this.state = "connecting"; // connecting | open | reconnecting | closed
    this.reconnectAttempts = 0;
    this.lastMessageAt = null;
    this.retryTimer = null;
    this.fallbackTimer = null;
    this.polling = false; // a fallback poll is under way
    this.opened = 0; // sockets opened so far: a poll begun under another one is stale
    this.qualityTimer = null;
    this.quality = "poor";
    this.closed = false;
    this.wake = () => {
      if (typeof document !== "undefined" && document.visibilityState === "hidden") return;
      if (this.state === "reconnecting") this.open(); // do not wait out the backoff
    };
    if (typeof window !== "undefined") {
      window.addEventListener("online", this.wake);
      if (typeof document !== "undefined") document.addEventListener("visibilitychange", this.wake);
    }
    this.qualityTimer = setInterval(() => this.judge(), 1000);
    this.open();
  }

  /** Follow `channel`; `listener(message)` gets each whole message. Returns the unsubscribe function. */
  subscribe(channel, listener) {
    let held = this.channels.get(channel);
    if (!held) {
      held = new Channel(channel);
      this.channels.set(channel, held);
      this.send({ type: "subscribe", channels: [channel], patches: this.options.patches });
    } else if (held.last) {
      listener(held.last);
    }
    held.listeners.add(listener);
    return () => {
      held.listeners.delete(listener);
      if (held.listeners.size === 0 && this.channels.get(channel) === held) {
        this.channels.delete(channel);
        this.send({ type: "unsubscribe", channels: [channel] });
      }
    };
  }

  /** `listener(status)` on every change of the connection's state or quality; returns the off function. */
  onStatus(listener) {
    this.statusListeners.add(listener);
    listener(this.status);
    return () => this.statusListeners.delete(listener);
  }

  get status() {
    return {
      state: this.state,
      quality: this.quality,
      reconnectAttempts: this.reconnectAttempts,
      lastMessageAt: this.lastMessageAt,
    };
  }

  /** Close for good. */
  close() {
    this.closed = true;
    this.setState("closed");
    clearTimeout(this.retryTimer);
    clearInterval(this.qualityTimer);
    this.stopFallback();
    if (typeof window !== "undefined") {
      window.removeEventListener("online", this.wake);
      if (typeof document !== "undefined") document.removeEventListener("visibilitychange", this.wake);
    }
    if (this.ws) this.ws.close(1000);
  }

  open() {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
    }
    const url = socketUrl(this.url);
    if (this.options.token) url.searchParams.set("token", this.options.token);
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.opened += 1;
      this.reconnectAttempts = 0;
      this.lastMessageAt = Date.now();
      this.stopFallback();
      this.setState("open");
      const names = [...this.channels.keys()];
      if (names.length === 0) return;
      const since = {};
      for (const [name, held] of this.channels) if (held.seq !== null) since[name] = held.seq;
      const message = { type: "subscribe", channels: names, patches: this.options.patches };
      if (this.epoch !== null && Object.keys(since).length) Object.assign(message, { since, epoch: this.epoch });
      ws.send(JSON.stringify(message));
    };
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.retry();
    };
  }

  retry() {
    if (this.closed) return;
    this.reconnectAttempts += 1;
    this.setState("reconnecting");
    this.startFallback();
    const { random, firstRetry, maxRetry } = this.options;
    this.retryTimer = setTimeout(() => this.open(), backoff(this.reconnectAttempts, random, firstRetry, maxRetry));
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  receive(text) {
    this.lastMessageAt = Date.now();
    this.judge();
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return; // "pong" to a bare ping
    }
    if (message.type === "subscribed") {
      this.epoch = message.epoch;
      return;
    }
    if (message.type === "error") {
      console.warn("adw-broadcaster:", message.channel || "", message.detail);
      return;
    }
    const held = message.channel && this.channels.get(message.channel);
    if (!held) return; // heartbeats, pongs, a channel unsubscribed a moment ago
    if (message.epoch) this.epoch = message.epoch;
    const whole = held.take(message);
    if (whole === null) {
      this.send({ type: "subscribe", channels: [held.name], patches: this.options.patches }); // a gap
      return;
    }
    for (const listener of [...held.listeners]) listener(whole);
  }

  judge() {
    const quiet = this.lastMessageAt === null ? Infinity : Date.now() - this.lastMessageAt;
    const quality = this.state === "open" && quiet < this.options.heartbeatTimeout ? "good" : "poor";
    if (quality !== this.quality) {
      this.quality = quality;
      this.emit();
    }
  }

  setState(state) {
    this.state = state;
    this.quality = state === "open" ? "good" : "poor";
    this.emit();
  }

  emit() {
    const status = this.status;
    for (const listener of [...this.statusListeners]) listener(status);
  }

  startFallback() {
    if (this.fallbackTimer !== null || this.closed) return;
    this.fallbackTimer = setInterval(() => this.poll(), this.options.fallbackInterval);
    this.poll();
  }

  stopFallback() {
    clearInterval(this.fallbackTimer);
    this.fallbackTimer = null;
  }

  /**
   * Fetch each channel's HTTP fallback once (while the socket is down). One poll at a time, each
   * request bounded by fallbackInterval; an answer that arrives after the socket reopened is
   * dropped (the socket is newer). A poll never touches the patch base (`held.held`, the data
   * at `held.seq`): patches after a reconnect apply to what the socket last gave.
   */
  async poll() {
    if (this.polling) return;
    this.polling = true;
    const opened = this.opened;
    const stale = () => this.closed || this.state === "open" || this.opened !== opened;
    try {
      for (const held of [...this.channels.values()]) {
        if (stale()) return;
        const whole = await this.fetchFallback(held);
        if (whole === null || stale() || this.channels.get(held.name) !== held) continue;
        held.last = whole;
        for (const listener of [...held.listeners]) listener(whole);
      }
    } finally {
      this.polling = false;
    }
  }

  /** One channel's fallback answer as a whole message, or null (unchanged, failed, timed out). */
  async fetchFallback(held) {
    const headers = {};
    if (held.etag) headers["If-None-Match"] = held.etag;
    if (this.options.token) headers.Authorization = `Bearer ${this.options.token}`;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.options.fallbackInterval);
    try {
      const response = await fetch(fallbackUrl(this.url, held.name), {
        headers,
        cache: "no-store",
        signal: abort.signal,
      });
      if (response.status !== 200) return null;
      let data = await response.json();
      if (held.family === "routes" && data && Array.isArray(data.routes)) data = data.routes;
      held.etag = response.headers.get("ETag");
      return { type: `${held.family.replace(/-/g, "_")}_update`, channel: held.name, data, fallback: true };
    } catch {
      return null; // the service is down too, or too slow: the next poll will tell
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Open a connection to the service at `url` (default: the one that served this file). */
export function connect(url, options) {
  return new Connection(url, options);
}
