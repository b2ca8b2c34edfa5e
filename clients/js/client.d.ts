// Types of client.js, the adw-broadcaster browser client. Every channel's data is described in
// docs/protocol.md of the adw-broadcaster repository (and served as JSON Schema at /asyncapi.json).

/** Fields a cluster view adds to the items it serves (README "Several machines"); absent on one node. */
export interface ClusterFields {
  /** The node that holds this item. */
  node?: string;
  /**
   * Set when the item is its node's last known state: "unreachable", the node's record expired;
   * "stale", the node is alive but in trouble (writes refused, record late, two runs under its name).
   */
  node_status?: "unreachable" | "stale";
}

export interface WorkflowExecution extends ClusterFields {
  adw_id: string;
  issue_number: number;
  phase: string;
  github_url: string;
}

export interface Route {
  path: string;
  method: string;
  name: string;
  /** The handler's name (the operationId for routes read from an OpenAPI document). */
  handler: string;
  summary: string;
  description: string;
  tags: string[];
}

export interface WorkflowHistoryAnalytics {
  total_count: number;
  success_rate: number;
  average_duration: number;
  recent_failures: number;
  total_workflows: number;
  completed_workflows: number;
  failed_workflows: number;
  avg_duration_seconds: number;
  success_rate_percent: number;
  workflows_by_model: Record<string, number>;
  workflows_by_template: Record<string, number>;
  workflows_by_status: Record<string, number>;
  avg_cost: number;
  total_cost: number;
  avg_cost_per_completion: number;
  cost_trend_7day: number;
  cost_trend_30day: number;
  avg_tokens: number;
  avg_cache_efficiency: number;
}

/**
 * A `workflow_history` row: every column the table has, its JSON columns parsed. These are the
 * real table's columns; a database with other columns sends those as they are.
 */
export interface WorkflowHistoryItem extends ClusterFields {
  id: number;
  adw_id: string;
  issue_number: number | null;
  nl_input: string | null;
  github_url: string | null;
  workflow_template: string | null;
  model_used: string | null;
  status: "pending" | "running" | "completed" | "failed" | (string & {});
  start_time: string | null;
  end_time: string | null;
  duration_seconds: number | null;
  error_message: string | null;
  phase_count: number | null;
  current_phase: string | null;
  retry_count: number | null;
  input_tokens: number | null;
  output_tokens: number | null;
  cached_tokens: number | null;
  total_tokens: number | null;
  cache_efficiency_percent: number | null;
  estimated_cost_total: number | null;
  actual_cost_total: number | null;
  /** JSON column, parsed (the text as stored when it is not JSON). */
  cost_breakdown: Record<string, unknown> | string | null;
  token_breakdown: Record<string, unknown> | string | null;
  structured_input: Record<string, unknown> | string | null;
  created_at: string | null;
  updated_at: string | null;
  [column: string]: unknown;
}

export interface WorkflowHistory {
  /** The 50 newest rows (newest first). */
  workflows: WorkflowHistoryItem[];
  total_count: number;
  analytics: WorkflowHistoryAnalytics;
}

/** adw_state.json as the agents write it, with adw_id; any other key comes as written. */
export interface AdwState extends ClusterFields {
  adw_id: string;
  issue_number?: string | number;
  status?: string;
  branch_name?: string;
  plan_file?: string;
  issue_class?: string | null;
  worktree_path?: string;
  backend_port?: number;
  frontend_port?: number;
  model_set?: string;
  all_adws?: string[];
  workflow_template?: string;
  model_used?: string;
  start_time?: string;
  nl_input?: string;
  github_url?: string;
  [key: string]: unknown;
}

export type AdwStatus = "running" | "completed" | "failed" | "paused" | "queued";

export interface AdwWorkflowStatus extends ClusterFields {
  adw_id: string;
  issue_number: number | null;
  pr_number: number | null;
  issue_class: string;
  /** nl_input, first 100 characters. */
  title: string;
  status: AdwStatus;
  current_phase: string | null;
  /** 0-100, one decimal. */
  phase_progress: number;
  workflow_template: string;
  start_time: string | null;
  end_time: string | null;
  duration_seconds: number | null;
  github_url: string | null;
  worktree_path: string | null;
  current_cost: number | null;
  estimated_cost_total: number | null;
  error_count: number;
  last_error: string | null;
  /** Whether the last look at the process table found a process of it ([adw] process_scan). */
  is_process_active: boolean;
  /** Up to 5 of its processes' ids. */
  pids: number[];
  /** The newest modification time of its state file, phase directories' files and error.log. */
  last_activity: string | null;
  /** Its state says running, but it has no process and no activity for [adw] stall_after: shown paused. */
  stalled: boolean;
  /** While stalled: seconds since its last activity (a clock value). */
  stalled_seconds: number | null;
  phases_completed: string[];
  total_phases: number;
}

export interface AdwMonitorSummary {
  total: number;
  running: number;
  completed: number;
  failed: number;
  paused: number;
  /** Of the paused ones, those stalled. */
  stalled: number;
}

export interface AdwMonitor {
  workflows: AdwWorkflowStatus[];
  summary: AdwMonitorSummary;
  last_updated: string;
}

/** A phase's `phase_data` column, parsed. */
export interface PhaseData {
  title?: string;
  content?: string;
  externalDocs?: unknown;
  total_phases?: number;
  [key: string]: unknown;
}

export type PhaseStatus = "queued" | "ready" | "running" | "completed" | "blocked" | "failed";

/**
 * A `phase_queue` row: every column of the real table, JSON columns parsed, plus `phase` and
 * `metadata`. Older databases have `parent_issue` and `depends_on_phase`, newer ones
 * `feature_id` and `depends_on_phases`; both names are always sent. A database with other
 * columns sends those as they are.
 */
export interface PhaseQueueItem extends ClusterFields {
  queue_id: string;
  /** phase_data's title, else phase_number as text. */
  phase: string;
  status: PhaseStatus | (string & {});
  /** phase_data parsed ({} when it is empty or not JSON). */
  metadata: PhaseData;
  phase_data: PhaseData | string | null;
  parent_issue: number | null;
  feature_id?: number | null;
  phase_number: number;
  issue_number: number | null;
  depends_on_phase: number | null;
  depends_on_phases: number[];
  created_at: string | null;
  updated_at: string | null;
  error_message: string | null;
  adw_id: string | null;
  pr_number: number | null;
  priority: number | null;
  queue_position: number | null;
  ready_timestamp: string | null;
  started_timestamp: string | null;
  [column: string]: unknown;
}

export interface Queue {
  phases: PhaseQueueItem[];
  total: number;
  paused: boolean;
}

export type HealthStatus = "healthy" | "degraded" | "error";

export interface ServiceHealth {
  name: string;
  status: HealthStatus;
  uptime_seconds: number;
  uptime_human: string;
  message: string | null;
  details: Record<string, unknown> | null;
}

export interface SystemStatus {
  overall_status: HealthStatus;
  timestamp: string;
  services: Record<string, ServiceHealth>;
  summary: { healthy_services: number; total_services: number; health_percentage: number };
}

export interface WebhookStats {
  total_received: number;
  successful: number;
  failed: number;
  success_rate: number;
}

/**
 * The webhook service's own JSON, as it answers; `{status: "error", message}` while it cannot be
 * read (`"unknown"` before the first poll).
 */
export interface WebhookStatus {
  status: string;
  message?: string;
  uptime?: number | string;
  stats?: WebhookStats;
  recent_failures?: unknown[];
  last_successful?: string | null;
  [key: string]: unknown;
}

/** One alert (`id` is `rule:subject`); `resolved_at` is null while it is open. */
export interface Alert {
  id: string;
  rule: "adw_failed" | "adw_stalled" | "adw_over_budget" | "service_error" | "queue_blocked";
  subject: string;
  severity: "error" | "warning";
  title: string;
  text: string;
  opened_at: string;
  resolved_at: string | null;
  adw_id: string | null;
  github_url: string | null;
  /** The dashboard: `#/adw/{adw_id}`, or `#/` for system status. */
  link: string;
  /** Open, but out of the bell's count. */
  acknowledged: boolean;
}

export interface Alerts {
  open: Alert[];
  recent: Alert[];
}

/** The data of each channel family. */
export interface ChannelData {
  workflows: WorkflowExecution[];
  routes: Route[];
  "workflow-history": WorkflowHistory;
  "adw-state": AdwState;
  "adw-monitor": AdwMonitor;
  queue: Queue;
  "system-status": SystemStatus;
  "webhook-status": WebhookStatus;
  alerts: Alerts;
}

export type Family = keyof ChannelData;
export type ChannelName = Exclude<Family, "adw-state"> | `adw-state:${string}`;
export type FamilyOf<C extends string> = C extends `adw-state:${string}` ? "adw-state" : C & Family;

/** A whole channel message, as every listener gets it (patches are applied before). */
export interface Message<C extends ChannelName = ChannelName> {
  type: string;
  channel: C;
  /** Absent on data polled from the HTTP fallback while the socket is down. */
  seq?: number;
  timestamp?: string;
  data: ChannelData[FamilyOf<C>];
  /** On the first message after a resume: true if only what was missed came. */
  recovered?: boolean;
  epoch?: string;
  adw_id?: string;
  /** True for data polled from the HTTP fallback. */
  fallback?: boolean;
}

export interface Status {
  state: "connecting" | "open" | "reconnecting" | "closed";
  /** "good": open and a message (a heartbeat at least) came lately; else "poor". */
  quality: "good" | "poor";
  /** Reconnects in the current streak (0 while open). */
  reconnectAttempts: number;
  /** Date.now() of the last message, null before the first. */
  lastMessageAt: number | null;
}

export interface Options {
  /** Ask for merge patches on list channels (default true; listeners see whole data either way). */
  patches?: boolean;
  /** Sent as ?token= (browsers cannot set headers on a WebSocket). */
  token?: string | null;
  /** ms; the first reconnect comes within this (default 1000). */
  firstRetry?: number;
  /** ms; reconnects are never further apart (default 30000). */
  maxRetry?: number;
  /** ms without any message on an open socket before quality is "poor" (default 25000). */
  heartbeatTimeout?: number;
  /**
   * ms between polls of the HTTP fallback while the socket is down (default 5000); also the
   * longest a poll may take. Polls go to `{base path}/api/v1/...` under the URL given to connect.
   */
  fallbackInterval?: number;
  /** Random source for the backoff jitter (default Math.random). */
  random?: () => number;
}

export class Connection {
  constructor(url?: string, options?: Options);
  readonly status: Status;
  subscribe<C extends ChannelName>(channel: C, listener: (message: Message<C>) => void): () => void;
  onStatus(listener: (status: Status) => void): () => void;
  close(): void;
}

export function connect(url?: string, options?: Options): Connection;
export function familyOf(channel: string): Family;
export function backoff(attempt: number, random?: () => number, first?: number, cap?: number): number;
export function keyedForm(data: unknown, keyed: { field: string | null; key: string | string[] }): unknown;
export function listForm(data: unknown, keyed: { field: string | null; key: string | string[] }): unknown;
export function applyMergePatch(target: unknown, patch: unknown): unknown;
