// The hooks against a real adw-broadcaster process (started here on a free port), in jsdom.
import { act, cleanup, render, waitFor } from "@testing-library/react";
import { useState } from "react";
import { afterEach, beforeEach, describe, expect, test } from "vitest";

import {
  BroadcasterProvider,
  configureBroadcaster,
  useADWMonitorWebSocket,
  useADWStateWebSocket,
  useQueueWebSocket,
  useRoutesWebSocket,
  useSystemStatusWebSocket,
  useWebhookStatusWebSocket,
  useWorkflowHistoryWebSocket,
  useWorkflowsWebSocket,
} from "../index.js";
import { Service, webhookService } from "./service.js";

// Every WebSocket the page opens, to count them.
const sockets = [];
const NativeWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class CountedWebSocket extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    sockets.push(this);
  }
};

let service;
let webhook;

beforeEach(() => {
  sockets.length = 0;
});

afterEach(async () => {
  cleanup();
  if (service) await service.remove();
  if (webhook) webhook.close();
  service = webhook = null;
});

/** Render `element` and keep every value the probe saw, render by render. */
function probe(useIt) {
  const seen = [];
  function Probe() {
    const value = useIt();
    seen.push(value);
    return null;
  }
  return { Probe, seen, last: () => seen[seen.length - 1] };
}

async function started(settings) {
  service = new Service(settings);
  return service;
}

describe("each hook", () => {
  test("receives its channel's data, all on one socket", async () => {
    webhook = await webhookService();
    const s = await started({ webhookUrl: webhook.url });
    s.writeState("a1", { issue_number: "7", status: "running", nl_input: "Build the thing", branch_name: "feat-7" });
    s.createDatabase();
    await s.start();
    const hooks = {
      workflows: probe(useWorkflowsWebSocket),
      routes: probe(useRoutesWebSocket),
      history: probe(useWorkflowHistoryWebSocket),
      state: probe(() => useADWStateWebSocket("a1")),
      monitor: probe(useADWMonitorWebSocket),
      queue: probe(useQueueWebSocket),
      system: probe(useSystemStatusWebSocket),
      webhook: probe(useWebhookStatusWebSocket),
    };
    render(
      <BroadcasterProvider url={s.url}>
        {Object.values(hooks).map(({ Probe }, i) => (
          <Probe key={i} />
        ))}
      </BroadcasterProvider>,
    );
    await waitFor(() => {
      expect(hooks.workflows.last().workflows).toEqual([{ adw_id: "a1", issue_number: 7, phase: "plan", github_url: "" }]);
      expect(hooks.routes.last().routes).toContainEqual(expect.objectContaining({ method: "GET", path: "/api/v1/queue" }));
      expect(hooks.history.last().workflows.map((w) => [w.adw_id, w.status])).toEqual([["a1", "completed"]]);
      expect(hooks.state.last().state).toEqual({
        adw_id: "a1",
        issue_number: "7",
        status: "running",
        nl_input: "Build the thing",
        branch_name: "feat-7",
      });
      expect(hooks.monitor.last().summary).toEqual({ total: 1, running: 1, completed: 0, failed: 0, paused: 0, stalled: 0 });
      expect(hooks.queue.last().phases.map((p) => [p.queue_id, p.phase, p.status])).toEqual([["q1", "Plan the thing", "queued"]]);
      expect(hooks.system.last().systemStatus.services).toHaveProperty("database");
      expect(hooks.webhook.last().webhookStatus).toMatchObject({ status: "healthy", uptime: 120 });
    });
    const history = hooks.history.last();
    expect([history.totalCount, history.analytics.total_count, history.analytics.success_rate]).toEqual([1, 1, 100]);
    expect(hooks.queue.last().paused).toBe(false);
    expect(hooks.monitor.last().lastUpdated).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    for (const { last } of Object.values(hooks)) {
      expect(last()).toMatchObject({ isConnected: true, connectionQuality: "good", reconnectAttempts: 0 });
    }
    expect(hooks.workflows.last().lastUpdated).toBeGreaterThan(Date.now() - 60000);

    // A change reaches the hooks; eight hooks, one socket.
    s.writeState("a1", { issue_number: "7", status: "completed", nl_input: "Build the thing", branch_name: "feat-7" });
    await waitFor(() => expect(hooks.monitor.last().summary.completed).toBe(1));
    expect(hooks.state.last().state.status).toBe("completed");
    expect(sockets.length).toBe(1);
    expect(await s.metric("adw_broadcaster_connections")).toBe(1);
    expect(await s.metric("adw_broadcaster_clients", { channel: "adw-monitor" })).toBe(1);
  });
});

test("ids that name object members are data: whole messages and patches rebuild every item", async () => {
  const ids = ["__proto__", "constructor", "toString", "hasOwnProperty"];
  const s = await started();
  ids.forEach((id, n) => s.writeState(id, { issue_number: String(n + 1), status: "running", current_phase: "plan" }));
  await s.start();
  const monitor = probe(useADWMonitorWebSocket);
  const workflows = probe(useWorkflowsWebSocket);
  const proto = probe(() => useADWStateWebSocket("__proto__"));
  render(
    <BroadcasterProvider url={s.url}>
      <monitor.Probe />
      <workflows.Probe />
      <proto.Probe />
    </BroadcasterProvider>,
  );
  const served = async (path) => (await fetch(`${s.url}/api/v1/${path}`)).json();
  const same = async () => {
    const [monitorData, workflowsData] = await Promise.all([served("adw-monitor"), served("workflows")]);
    expect(monitor.last().workflows).toEqual(monitorData.workflows);
    expect(workflows.last().workflows).toEqual(workflowsData);
  };
  await waitFor(() => expect(monitor.last().workflows.map((w) => w.adw_id).sort()).toEqual([...ids].sort()));
  await same();
  // Changes come as patches keyed by these ids: each one lands on its own item.
  for (const [n, phase] of ["build", "test", "review"].entries()) {
    const id = ids[n % ids.length];
    s.writeState(id, { issue_number: String((n % ids.length) + 1), status: "running", current_phase: phase });
    await waitFor(() => expect(monitor.last().workflows.find((w) => w.adw_id === id)?.current_phase).toBe(phase));
    await same();
  }
  s.writeState("__proto__", { issue_number: "1", status: "failed", current_phase: "ship", error_count: 2 });
  await waitFor(() => expect(proto.last().state?.status).toBe("failed"));
  expect(Object.getPrototypeOf(proto.last().state)).toBe(Object.prototype);
  expect(Object.keys(proto.last().state)).toContain("adw_id");
  await waitFor(() => expect(monitor.last().summary.failed).toBe(1));
  await same();
});

test("two hooks on the same channel share one subscription; unmounting the last unsubscribes", async () => {
  const s = await started();
  s.writeState("a1", { issue_number: "7" });
  s.createDatabase();
  await s.start();
  const queueA = probe(useQueueWebSocket);
  const queueB = probe(useQueueWebSocket);
  const workflows = probe(useWorkflowsWebSocket);
  const routes = probe(useRoutesWebSocket); // mounted later: its subscribe follows anything sent before it
  let setShown;
  function Page() {
    const [shown, set] = useState({ a: true, b: true, routes: false });
    setShown = set;
    return (
      <BroadcasterProvider url={s.url}>
        {shown.a && <queueA.Probe />}
        {shown.b && <queueB.Probe />}
        {shown.routes && <routes.Probe />}
        <workflows.Probe />
      </BroadcasterProvider>
    );
  }
  const page = render(<Page />);
  await waitFor(() => {
    expect(queueA.last().phases).toHaveLength(1);
    expect(queueB.last().phases).toHaveLength(1);
    expect(workflows.last().workflows).toHaveLength(1);
  });
  expect(await s.metric("adw_broadcaster_clients", { channel: "queue" })).toBe(1);

  act(() => setShown({ a: false, b: true, routes: true }));
  // One socket, in order: once the routes subscribe has arrived, an unsubscribe of queue sent before it has too.
  await waitFor(async () => expect(await s.metric("adw_broadcaster_clients", { channel: "routes" })).toBe(1));
  expect(await s.metric("adw_broadcaster_clients", { channel: "queue" })).toBe(1); // b still follows it

  act(() => setShown({ a: false, b: false, routes: true }));
  await waitFor(async () => expect(await s.metric("adw_broadcaster_clients", { channel: "queue" })).toBe(0));
  expect(await s.metric("adw_broadcaster_clients", { channel: "workflows" })).toBe(1);
  expect(await s.metric("adw_broadcaster_connections")).toBe(1);

  page.unmount(); // no orphan socket: the provider's closes, and nothing reopens one
  await waitFor(async () => expect(await s.metric("adw_broadcaster_connections")).toBe(0));
  await new Promise((done) => setTimeout(done, 1500)); // past the first reconnect a leaked socket would make
  expect(sockets.map((ws) => ws.readyState)).toEqual([WebSocket.CLOSED]);
  expect(await s.metric("adw_broadcaster_connections")).toBe(0);
});

test("without a provider, hooks share one connection that lives while any of them is mounted", async () => {
  const s = await started();
  s.writeState("a1", { issue_number: "7", status: "running" });
  await s.start();
  configureBroadcaster({ url: s.url });
  const monitor = probe(useADWMonitorWebSocket);
  const state = probe(() => useADWStateWebSocket("a1"));
  const page = render(
    <>
      <monitor.Probe />
      <state.Probe />
    </>,
  );
  await waitFor(() => {
    expect(monitor.last().summary.running).toBe(1);
    expect(state.last().state).toEqual({ adw_id: "a1", issue_number: "7", status: "running" });
  });
  expect(sockets.length).toBe(1);
  page.unmount();
  await waitFor(async () => expect(await s.metric("adw_broadcaster_connections")).toBe(0));
  expect(sockets[0].readyState).toBe(WebSocket.CLOSED);
});

test("a service restart: isConnected false, then true with reconnectAttempts 0, and nothing replayed", async () => {
  const s = await started();
  s.writeState("a1", { issue_number: "7", status: "running" });
  await s.start();
  const monitor = probe(useADWMonitorWebSocket);
  const workflows = probe(useWorkflowsWebSocket);
  render(
    // No fallback polls in this test: the data must stay the socket's.
    <BroadcasterProvider url={s.url} options={{ fallbackInterval: 3600000, firstRetry: 200, maxRetry: 1000 }}>
      <monitor.Probe />
      <workflows.Probe />
    </BroadcasterProvider>,
  );
  await waitFor(() => expect(workflows.last().workflows).toHaveLength(1));
  const before = workflows.last();

  await s.stop();
  await waitFor(() => expect(workflows.last().isConnected).toBe(false));
  expect(workflows.last()).toMatchObject({ connectionQuality: "poor" });
  await waitFor(() => expect(workflows.last().reconnectAttempts).toBeGreaterThan(0));
  await s.start();
  await waitFor(() => expect(workflows.last().isConnected).toBe(true), { timeout: 10000 });
  const after = workflows.last();
  expect(after).toMatchObject({ reconnectAttempts: 0, connectionQuality: "good" });
  expect(after.workflows).toBe(before.workflows); // the same object: no message for it came again
  expect(after.lastUpdated).toBe(before.lastUpdated);

  s.writeState("a2", { issue_number: "8", status: "running" }); // and it is live again
  await waitFor(() => expect(workflows.last().workflows).toHaveLength(2));
  expect(monitor.last().summary.total).toBe(2);
});

test("while the socket is refused, the HTTP fallback keeps the data coming", async () => {
  const s = await started({ maxConnections: 1 });
  s.createDatabase();
  await s.start();
  const blocker = new NativeWebSocket(`ws://127.0.0.1:${s.port}/ws/queue`); // takes the only socket there is
  await new Promise((done) => blocker.addEventListener("message", done, { once: true }));
  const queue = probe(useQueueWebSocket);
  render(
    <BroadcasterProvider url={s.url} options={{ fallbackInterval: 200, firstRetry: 200, maxRetry: 400 }}>
      <queue.Probe />
    </BroadcasterProvider>,
  );
  await waitFor(() => expect(queue.last().phases.map((p) => p.queue_id)).toEqual(["q1"]));
  expect(queue.last()).toMatchObject({ isConnected: false, connectionQuality: "poor" });
  expect(queue.last().reconnectAttempts).toBeGreaterThan(0);
  blocker.close();
  await waitFor(() => expect(queue.last()).toMatchObject({ isConnected: true, reconnectAttempts: 0 }), { timeout: 5000 });
});

test("an idle minute with heartbeats stays good", { timeout: 90000 }, async () => {
  const s = await started({ heartbeat: 2 });
  s.writeState("a1", { issue_number: "7" });
  await s.start();
  const monitor = probe(useADWMonitorWebSocket);
  render(
    <BroadcasterProvider url={s.url}>
      <monitor.Probe />
    </BroadcasterProvider>,
  );
  await waitFor(() => expect(monitor.last().isConnected).toBe(true));
  const from = monitor.seen.length;
  const quiet = Date.now();
  await new Promise((done) => setTimeout(done, 60000)); // the minute the test is about: nothing changes
  const during = monitor.seen.slice(from);
  expect(Date.now() - quiet).toBeGreaterThanOrEqual(60000);
  expect(during.filter((v) => !v.isConnected || v.connectionQuality !== "good")).toEqual([]); // never, not even briefly
  expect(monitor.last()).toMatchObject({ isConnected: true, connectionQuality: "good", reconnectAttempts: 0 });
  expect(sockets.length).toBe(1);
});
