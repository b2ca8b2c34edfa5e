// The hooks' examples of the WebSocket API reference, as they are written there, except for the
// changes the repository README lists under "Differences from the reference" (marked "changed").
import {
  BroadcasterProvider,
  useADWMonitorWebSocket,
  useADWStateWebSocket,
  useQueueWebSocket,
  useRoutesWebSocket,
  useSystemStatusWebSocket,
  useWebhookStatusWebSocket,
  useWorkflowHistoryWebSocket,
  useWorkflowsWebSocket,
  type WorkflowHistoryItem,
} from 'adw-broadcaster-client'; // changed: the package, not '../hooks/useWebSocket'

// 1. useWorkflowsWebSocket()
const MyComponent = () => {
  const {
    workflows,          // WorkflowExecution[]
    isConnected,        // boolean
    connectionQuality,  // 'good' | 'poor'
    lastUpdated,       // number (timestamp)
    reconnectAttempts  // number
  } = useWorkflowsWebSocket();

  return (
    <div>
      {workflows.map(workflow => (
        // changed: a WorkflowExecution has adw_id and phase, not id and name
        <div key={workflow.adw_id}>{workflow.adw_id} {workflow.phase}</div>
      ))}
    </div>
  );
};

// 2. useRoutesWebSocket()
const RoutesView = () => {
  const {
    routes,
    isConnected,
    connectionQuality,
    lastUpdated,
    reconnectAttempts
  } = useRoutesWebSocket();

  if (!isConnected) {
    return <div>Connecting...</div>;
  }

  return (
    <div>
      {routes.map(route => (
        <div key={route.path}>{route.method} {route.path}</div>
      ))}
    </div>
  );
};

// changed: the reference uses a WorkflowCard of the app's own; this is one
const WorkflowCard = ({ workflow }: { workflow: WorkflowHistoryItem }) => (
  <div>{workflow.adw_id}: {workflow.status}</div>
);

// 3. useWorkflowHistoryWebSocket()
const HistoryView = () => {
  const {
    workflows,          // WorkflowHistoryItem[]
    totalCount,         // number
    analytics,          // HistoryAnalytics
    isConnected,
    connectionQuality,
    lastUpdated,
    reconnectAttempts
  } = useWorkflowHistoryWebSocket();

  return (
    <div>
      <div>Total: {totalCount}</div>
      <div>Success Rate: {analytics?.success_rate}%</div>
      {workflows.map(workflow => (
        <WorkflowCard key={workflow.id} workflow={workflow} />
      ))}
    </div>
  );
};

// 4. useADWStateWebSocket()
const ADWDetailView = ({ adwId }: { adwId: string }) => {
  const {
    state,              // ADW state object or null
    isConnected,
    connectionQuality,
    lastUpdated,
    reconnectAttempts
  } = useADWStateWebSocket(adwId);

  if (!state) {
    return <div>No state data</div>;
  }

  return (
    <div>
      <div>Status: {state.status}</div>
      <div>Branch: {state.branch_name}</div>
      <div>Issue: {state.issue_number}</div>
    </div>
  );
};

// 5. useADWMonitorWebSocket()
const ADWMonitorCard = () => {
  const {
    workflows,          // AdwWorkflowStatus[]
    summary,            // AdwMonitorSummary
    lastUpdated,        // string
    isConnected,
    connectionQuality,
    reconnectAttempts
  } = useADWMonitorWebSocket();

  return (
    <div>
      <div>Total: {summary.total}</div>
      <div>Running: {summary.running}</div>
      <div>Completed: {summary.completed}</div>
      <div>Failed: {summary.failed}</div>

      {workflows.map(workflow => (
        <div key={workflow.adw_id}>{workflow.status}</div>
      ))}
    </div>
  );
};

// 6. useQueueWebSocket()
const ZteHopperQueueCard = () => {
  const {
    phases,             // PhaseQueueItem[]
    paused,             // boolean
    isConnected,
    connectionQuality,
    reconnectAttempts
  } = useQueueWebSocket();

  return (
    <div>
      <div>Queue {paused ? 'Paused' : 'Active'}</div>
      {phases.map(phase => (
        <div key={phase.queue_id}>
          {phase.issue_number} - {phase.status}
        </div>
      ))}
    </div>
  );
};

// 7. useSystemStatusWebSocket()
const SystemStatusPanel = () => {
  const {
    systemStatus,
    isConnected,
    connectionQuality,
    lastUpdated,
    reconnectAttempts
  } = useSystemStatusWebSocket();

  if (!systemStatus) {
    return <div>Loading status...</div>;
  }

  return (
    <div>
      <div>Overall: {systemStatus.overall_status}</div>
      {/* Display other status fields */}
    </div>
  );
};

// 8. useWebhookStatusWebSocket()
const WebhookStatusPanel = () => {
  const {
    webhookStatus,
    isConnected,
    connectionQuality,
    lastUpdated,
    reconnectAttempts
  } = useWebhookStatusWebSocket();

  if (!webhookStatus) {
    return <div>Loading webhook status...</div>;
  }

  return (
    <div>
      <div>Status: {webhookStatus.status}</div>
      {/* Display other webhook fields */}
    </div>
  );
};

// changed: the hooks share one socket to the service their provider names
export default function App() {
  return (
    <BroadcasterProvider url={import.meta.env.VITE_BROADCASTER_URL}>
      <section id="workflows"><MyComponent /></section>
      <section id="routes"><RoutesView /></section>
      <section id="history"><HistoryView /></section>
      <section id="adw-state"><ADWDetailView adwId="a1b2c3d4" /></section>
      <section id="monitor"><ADWMonitorCard /></section>
      <section id="queue"><ZteHopperQueueCard /></section>
      <section id="system-status"><SystemStatusPanel /></section>
      <section id="webhook-status"><WebhookStatusPanel /></section>
    </BroadcasterProvider>
  );
}
