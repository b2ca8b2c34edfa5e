// Types of the adw-broadcaster React hooks. The data shapes are in client.d.ts; the protocol they
// ride on is docs/protocol.md of the adw-broadcaster repository.
import type { ReactNode } from "react";

import type {
  AdwMonitorSummary,
  AdwState,
  AdwWorkflowStatus,
  ChannelData,
  ChannelName,
  FamilyOf,
  Options,
  PhaseQueueItem,
  Route,
  SystemStatus,
  WebhookStatus,
  WorkflowExecution,
  WorkflowHistoryAnalytics,
  WorkflowHistoryItem,
} from "./client.js";

export * from "./client.js";

export type ConnectionQuality = "good" | "poor";

/** What every hook returns besides its data. */
export interface ConnectionInfo {
  /** The socket is open (data may still come from the HTTP fallback while it is not). */
  isConnected: boolean;
  /** "good": open and a message (a heartbeat at least) came lately; "poor": late, or reconnecting. */
  connectionQuality: ConnectionQuality;
  /** Date.now() of the last data that came for this hook's channel (0 before any). */
  lastUpdated: number;
  /** Reconnects in the current streak (0 while connected). */
  reconnectAttempts: number;
}

export interface ProviderProps {
  /** The service, http(s):// or ws(s)://; default: the page's origin. */
  url?: string;
  /** Sent as ?token= on the socket and as a Bearer header on the HTTP fallback. */
  token?: string | null;
  options?: Omit<Options, "token">;
  children?: ReactNode;
}

/** Where hooks outside any provider connect (default: the page's origin); for the next connection they open. */
export function configureBroadcaster(defaults?: { url?: string | null; token?: string | null; options?: Omit<Options, "token"> }): void;

/** Every hook below shares one multiplexed socket to `url`. */
export function BroadcasterProvider(props: ProviderProps): ReactNode;

export interface ChannelResult<C extends ChannelName> extends ConnectionInfo {
  /** The channel's data; null until the first message, and while the channel is null. */
  data: ChannelData[FamilyOf<C>] | null;
}

/** Follow any channel (`"queue"`, `"adw-state:77c90e61"`, ...); null follows nothing. */
export function useChannel<C extends ChannelName>(channel: C | null): ChannelResult<C>;

export interface WorkflowsResult extends ConnectionInfo {
  workflows: WorkflowExecution[];
}
export function useWorkflowsWebSocket(): WorkflowsResult;

export interface RoutesResult extends ConnectionInfo {
  routes: Route[];
}
export function useRoutesWebSocket(): RoutesResult;

export type HistoryAnalytics = WorkflowHistoryAnalytics;
export interface WorkflowHistoryResult extends ConnectionInfo {
  workflows: WorkflowHistoryItem[];
  totalCount: number;
  analytics: HistoryAnalytics | null;
}
export function useWorkflowHistoryWebSocket(): WorkflowHistoryResult;

export interface ADWStateResult extends ConnectionInfo {
  /** The ADW's adw_state.json with adw_id; null until it exists. */
  state: AdwState | null;
}
/** One ADW's state; pass null to follow nothing. */
export function useADWStateWebSocket(adwId: string | null): ADWStateResult;

export interface ADWMonitorResult extends Omit<ConnectionInfo, "lastUpdated"> {
  workflows: AdwWorkflowStatus[];
  summary: AdwMonitorSummary;
  /** The monitor's own last_updated (ISO time); "" before the first message. */
  lastUpdated: string;
}
export function useADWMonitorWebSocket(): ADWMonitorResult;

export interface QueueResult extends ConnectionInfo {
  phases: PhaseQueueItem[];
  paused: boolean;
}
export function useQueueWebSocket(): QueueResult;

export interface SystemStatusResult extends ConnectionInfo {
  systemStatus: SystemStatus | null;
}
export function useSystemStatusWebSocket(): SystemStatusResult;

export interface WebhookStatusResult extends ConnectionInfo {
  webhookStatus: WebhookStatus | null;
}
export function useWebhookStatusWebSocket(): WebhookStatusResult;
