// React hooks for adw-broadcaster: the reference's eight hooks, on one multiplexed socket.
//
//   import { BroadcasterProvider, useADWMonitorWebSocket } from "adw-broadcaster-client";
//   <BroadcasterProvider url="http://127.0.0.1:8002"> ... </BroadcasterProvider>
//   const { workflows, summary, isConnected, connectionQuality } = useADWMonitorWebSocket();
//
// Every hook under one provider shares its one WebSocket (client.js's Connection: reconnect
// forever with backoff and jitter, resume with since/epoch, the HTTP fallback while the socket
// is down, quality from heartbeats). Without a provider, hooks share one connection to the
// page's own origin (or configureBroadcaster's), opened with the first hook and closed with the
// last. A channel is subscribed while at least one mounted hook uses it, and unsubscribed when
// the last one unmounts.

import { createContext, createElement, useContext, useEffect, useRef, useState } from "react";

import { Connection } from "./client.js";

export { Connection, connect } from "./client.js";

const Context = createContext(undefined);
const PENDING = null; // a provider whose connection is being opened (its first effect has not run)
const OFFLINE = { state: "connecting", quality: "poor", reconnectAttempts: 0, lastMessageAt: null };

/**
 * Give every hook below one connection to the service at `url`.
 * Props: url (default: the page's origin), token, options (see client.d.ts), children.
 */
export function BroadcasterProvider({ url, token = null, options, children }) {
  const [connection, setConnection] = useState(PENDING);
  const latest = useRef(options);
  latest.current = options;
  const key = JSON.stringify(options || {}); // a new socket when the options' values change, not their object
  useEffect(() => {
    const opened = new Connection(url || defaultUrl(), { ...latest.current, token });
    setConnection(opened);
    return () => opened.close();
  }, [url, token, key]);
  return createElement(Context.Provider, { value: connection }, children);
}

let defaults = { url: null, token: null, options: {} };

/**
 * Set where hooks outside any provider connect (default: the page's origin) and with what.
 * Takes effect for the connection they open next (after every such hook has unmounted).
 */
export function configureBroadcaster({ url = null, token = null, options = {} } = {}) {
  defaults = { url, token, options };
}

function defaultUrl() {
  if (defaults.url) return defaults.url;
  return typeof location !== "undefined" ? location.origin : "http://127.0.0.1:8002";
}

// Hooks outside any provider share one connection, held while any of them is mounted.
let shared = null;
let holders = 0;

function holdShared() {
  if (shared === null) shared = new Connection(defaultUrl(), { ...defaults.options, token: defaults.token });
  holders += 1;
  const held = shared;
  return {
    connection: held,
    release() {
      holders -= 1;
      if (holders === 0 && shared === held) {
        shared = null;
        held.close();
      }
    },
  };
}

/**
 * Follow any channel: `{data, isConnected, connectionQuality, lastUpdated, reconnectAttempts}`.
 * `data` is null until the first message (and while `channel` is null); `lastUpdated` is the
 * Date.now() of the last data that came (0 before any).
 */
export function useChannel(channel) {
  const provided = useContext(Context);
  const [status, setStatus] = useState(OFFLINE);
  const [update, setUpdate] = useState({ channel: null, data: null, at: 0 });
  useEffect(() => {
    if (channel === null || channel === undefined || provided === PENDING) return undefined;
    const lease = provided === undefined ? holdShared() : { connection: provided, release() {} };
    const offStatus = lease.connection.onStatus(setStatus);
    const off = lease.connection.subscribe(channel, (message) => {
      setUpdate({ channel, data: message.data, at: Date.now() });
    });
    return () => {
      off();
      offStatus();
      lease.release();
    };
  }, [channel, provided]);
  const current = update.channel === channel ? update : { data: null, at: 0 }; // another channel's data is not this one's
  return {
    data: current.data,
    isConnected: status.state === "open",
    connectionQuality: status.quality,
    lastUpdated: current.at,
    reconnectAttempts: status.reconnectAttempts,
  };
}

function connection(live) {
  return {
    isConnected: live.isConnected,
    connectionQuality: live.connectionQuality,
    lastUpdated: live.lastUpdated,
    reconnectAttempts: live.reconnectAttempts,
  };
}

const list = (value) => (Array.isArray(value) ? value : []);
const object = (value) => (value !== null && typeof value === "object" && !Array.isArray(value) ? value : null);
const EMPTY_SUMMARY = Object.freeze({ total: 0, running: 0, completed: 0, failed: 0, paused: 0 });

/** Active workflows: `{workflows, isConnected, connectionQuality, lastUpdated, reconnectAttempts}`. */
export function useWorkflowsWebSocket() {
  const live = useChannel("workflows");
  return { workflows: list(live.data), ...connection(live) };
}

/** The API's routes: `{routes, ...}`. */
export function useRoutesWebSocket() {
  const live = useChannel("routes");
  return { routes: list(live.data), ...connection(live) };
}

/** Workflow history: `{workflows, totalCount, analytics, ...}` (analytics null until the first message). */
export function useWorkflowHistoryWebSocket() {
  const live = useChannel("workflow-history");
  const data = object(live.data);
  return {
    workflows: list(data && data.workflows),
    totalCount: data && typeof data.total_count === "number" ? data.total_count : 0,
    analytics: data ? object(data.analytics) : null,
    ...connection(live),
  };
}

/** One ADW's state: `{state, ...}`; null until it exists (and for adwId null, which follows nothing). */
export function useADWStateWebSocket(adwId) {
  const live = useChannel(adwId ? `adw-state:${adwId}` : null);
  const state = object(live.data);
  return { state: state && Object.keys(state).length ? state : null, ...connection(live) };
}

/** Every ADW: `{workflows, summary, lastUpdated, ...}`; here `lastUpdated` is the monitor's own ISO time. */
export function useADWMonitorWebSocket() {
  const live = useChannel("adw-monitor");
  const data = object(live.data);
  return {
    workflows: list(data && data.workflows),
    summary: (data && object(data.summary)) || EMPTY_SUMMARY,
    ...connection(live),
    lastUpdated: data && typeof data.last_updated === "string" ? data.last_updated : "",
  };
}

/** The phase queue: `{phases, paused, ...}`. */
export function useQueueWebSocket() {
  const live = useChannel("queue");
  const data = object(live.data);
  return { phases: list(data && data.phases), paused: Boolean(data && data.paused === true), ...connection(live) };
}

/** System status: `{systemStatus, ...}` (null until the first message). */
export function useSystemStatusWebSocket() {
  const live = useChannel("system-status");
  return { systemStatus: object(live.data), ...connection(live) };
}

/** The webhook service's status: `{webhookStatus, ...}` (null until the first message). */
export function useWebhookStatusWebSocket() {
  const live = useChannel("webhook-status");
  return { webhookStatus: object(live.data), ...connection(live) };
}
