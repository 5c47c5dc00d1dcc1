/** Types shared by the replay workflow, its activities and the CLI. Pure data only: part of the workflow bundle. */

export const OUTBOX_STATUSES = ['pending', 'in_flight', 'delivered', 'retrying', 'dead_letter'] as const;
export type OutboxStatus = (typeof OUTBOX_STATUSES)[number];

/** Which outbox rows a replay resets. Every field narrows the selection. */
export interface ReplayFilter {
  status: OutboxStatus;
  eventTypes: string[];
  /** ISO timestamps on when the row last changed (updated_at), inclusive since, exclusive until. */
  since?: string;
  until?: string;
  /** An exact last status code, or a class: 5 for 5xx. */
  statusCode?: number;
  statusClass?: number;
  /** A file of event ids, one a line, read by the worker. */
  eventIdsPath?: string;
}

export interface ReplayCounters {
  processed: number;
  replayed: number;
  enqueued: number;
  skipped: number;
  failed: number;
}

export const ZERO_REPLAY: ReplayCounters = { processed: 0, replayed: 0, enqueued: 0, skipped: 0, failed: 0 };

export interface ReplayInput {
  /** Stable across retries, continue-as-new and reset: the ledger and audit key of the run. */
  runKey: string;
  filter: ReplayFilter;
  limit: number;
  dryRun: boolean;
  batchSize: number;
  /** Rows reset per second; 0: no limit. */
  ratePerSecond: number;
  batchesPerRun?: number;
  state?: { counters: ReplayCounters; batches: number; paused: boolean };
}

export interface ReplayBatchInput {
  runKey: string;
  batchNumber: number;
  filter: ReplayFilter;
  size: number;
}

export interface ReplayBatchResult {
  /** Rows selected as matching. */
  selected: number;
  /** Of those, reset now; the rest changed between selection and reset and were skipped. */
  replayed: number;
}

export interface ReplayPreview {
  matched: number;
  byEventType: Record<string, number>;
  byStatusCode: Record<string, number>;
  sampleIds: string[];
}

export interface ReplayProgress extends ReplayCounters {
  phase: 'running' | 'paused' | 'done';
  dryRun: boolean;
  batches: number;
}

export interface ReplaySummary extends ReplayCounters {
  dryRun: boolean;
  runKey: string;
  preview?: ReplayPreview;
}
