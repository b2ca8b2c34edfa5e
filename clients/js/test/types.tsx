// Compiled by `npm test` (tsc --noEmit): the hooks' declared names, arguments and return fields.
import {
  BroadcasterProvider,
  useADWMonitorWebSocket,
  useADWStateWebSocket,
  useChannel,
  useQueueWebSocket,
  useRoutesWebSocket,
  useSystemStatusWebSocket,
  useWebhookStatusWebSocket,
  useWorkflowHistoryWebSocket,
  useWorkflowsWebSocket,
} from "../index.js";

export function Everything({ adwId }: { adwId: string | null }) {
  const { workflows, isConnected, connectionQuality, lastUpdated, reconnectAttempts } = useWorkflowsWebSocket();
  const issue: number = workflows[0].issue_number;
  const quality: "good" | "poor" = connectionQuality;
  const when: number = lastUpdated;
  const tries: number = reconnectAttempts;
  const { routes } = useRoutesWebSocket();
  const method: string = routes[0].method;
  const history = useWorkflowHistoryWebSocket();
  const rate: number | undefined = history.analytics?.success_rate;
  const total: number = history.totalCount;
  const { state } = useADWStateWebSocket(adwId);
  const id: string | undefined = state?.adw_id;
  const monitor = useADWMonitorWebSocket();
  const running: number = monitor.summary.running;
  const stamp: string = monitor.lastUpdated;
  const status: string = monitor.workflows[0].status;
  const { phases, paused } = useQueueWebSocket();
  const queueId: string = phases[0].queue_id;
  const { systemStatus } = useSystemStatusWebSocket();
  const overall: "healthy" | "degraded" | "error" | undefined = systemStatus?.overall_status;
  const { webhookStatus } = useWebhookStatusWebSocket();
  const hook: string | undefined = webhookStatus?.status;
  const queue = useChannel("queue");
  const total2: number | undefined = queue.data?.total;
  const one = useChannel(`adw-state:${adwId ?? "x"}`);
  const adw: string | undefined = one.data?.adw_id;
  // @ts-expect-error: not a channel
  useChannel("nope");
  const reference = state ? (
    <div>
      <div>Status: {state.status}</div>
      <div>Branch: {state.branch_name}</div>
      <div>Issue: {state.issue_number}</div>
    </div>
  ) : null;
  return (
    <BroadcasterProvider url="http://127.0.0.1:8002" token={null} options={{ patches: true }}>
      {reference}
      {[isConnected, quality, when, tries, issue, method, rate, total, id, running, stamp, status, paused, queueId, overall, hook, total2, adw].join()}
    </BroadcasterProvider>
  );
}
