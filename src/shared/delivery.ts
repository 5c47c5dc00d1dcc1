/** Dispatcher settings, counters and stats: pure data shared by the workflow, its activity and the CLI. */

export interface DispatcherOptions {
  /** Events claimed per pass (one activity). */
  batchSize: number;
  /** Requests in flight at once within a pass. */
  concurrency: number;
  /** Deliveries started per second by this dispatcher; 0 means no limit. */
  ratePerSecond: number;
  requestTimeoutMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** Consecutive failed deliveries (receiver down) after which the dispatcher pauses itself. */
  autoPauseAfter: number;
  autoPauseCooldownMs: number;
  /** Passes in flight at once while a backlog lasts (1 when rate-limited). */
  parallelPasses: number;
  /** Longest idle sleep, so events made due by someone who does not send `wake` still go out soon. */
  maxIdleMs: number;
}

export const DEFAULT_DISPATCHER_OPTIONS: DispatcherOptions = {
  batchSize: 1000,
  concurrency: 64,
  ratePerSecond: 0,
  requestTimeoutMs: 10_000,
  backoffBaseMs: 1_000,
  backoffCapMs: 60_000,
  autoPauseAfter: 50,
  autoPauseCooldownMs: 60_000,
  maxIdleMs: 5_000,
  parallelPasses: 3,
};

export interface DeliverPassInput {
  options: DispatcherOptions;
  leaseSeconds: number;
  /** Also count the backlog for `stats` (a few index scans; not needed on every pass). */
  wantSnapshot: boolean;
  /** Keep claiming further batches for about this long (0 or absent: one batch). */
  streamMs?: number;
}

export interface OutboxCounts {
  backlog: number;
  /** `backlog` is PostgreSQL's estimate (more than 10,000 due), not a count. Absent in older results: a count. */
  backlogEstimated?: boolean;
  inFlight: number;
  oldestDueMs: number;
}

export interface DeliverPassResult {
  claimed: number;
  /** Every claim came back full: more is probably due. Absent in results of passes before streaming. */
  full?: boolean;
  delivered: number;
  retried: number;
  deadLettered: number;
  /** Claimed but not sent (the pass stopped early); handed back with their attempt uncounted. */
  released: number;
  /** Failed deliveries at the end of the pass with no success after them. */
  trailingFailures: number;
  anySuccess: boolean;
  snapshot: OutboxCounts | null;
  /** Only known after a pass that found less than a full batch; then 0 means "due now". */
  nextDueInMs: number | null;
}

export interface DispatcherCounters {
  delivered: number;
  retried: number;
  deadLettered: number;
  passes: number;
}

export interface DispatcherStats extends DispatcherCounters {
  shard: number;
  paused: boolean;
  pauseReason: 'operator' | 'receiver-failing' | null;
  consecutiveFailures: number;
  inFlight: number;
  backlog: number;
  /** True when `backlog` is an estimate (more than 10,000 events due); every other figure is exact. */
  backlogEstimated: boolean;
  oldestDueAgeMs: number;
}

export interface DispatcherInput {
  shard: number;
  shards: number;
  options?: Partial<DispatcherOptions>;
  /** Set only when continuing as new. */
  carried?: { counters: DispatcherCounters; paused: boolean; pauseReason: DispatcherStats['pauseReason']; consecutiveFailures: number };
}

export const dispatcherWorkflowId = (shard: number) => `webhook-dispatcher/${shard}`;
