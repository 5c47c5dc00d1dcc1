/** Types shared by the replay workflow, its activities and the CLI. Pure data only: part of the workflow bundle. */
import { type Checkpoint, type CheckpointPage, type CheckpointSpec, checkpointEvery } from './progress';

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
  /**
   * Only rows the dry run with this run key counted and kept (ReplayInput.keepSelection): the runbook's step 5 resets
   * what step 4 counted. Workers older than the field ignore it (the `until` beside it still bounds them).
   */
  selectedBy?: string;
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
  /** Record a checkpoint every this many processed rows (coarsened by checkpointEvery); default 1000. */
  progressEvery?: number;
  /** Batches per workflow run before continuing as new; absent in runs started before the client passed it. */
  batchesPerRun?: number;
  /** A dry run keeps the rows it counted under its run key, for an execute's `filter.selectedBy` (the runbook's). */
  keepSelection?: boolean;
  state?: {
    counters: ReplayCounters;
    batches: number;
    paused: boolean;
    /** The newest checkpoints, absolute, so clients polling across continue-as-new miss none. */
    checkpoints?: Checkpoint[];
  };
}

/** Checkpoint step of runs started without one (the runbook tool's default). */
export const REPLAY_DEFAULT_PROGRESS_EVERY = 1000;

/** Batches per run the client asks for (carried in the input; see run-inputs.ts). */
export const REPLAY_DEFAULT_BATCHES_PER_RUN = 400;

/** Rows a batch selects: with a velocity limit a batch is about one second of resets, so the pace stays even. */
export function replayBatchRows(input: Pick<ReplayInput, 'batchSize' | 'ratePerSecond'>): number {
  return input.ratePerSecond > 0 ? Math.max(1, Math.min(input.batchSize, Math.floor(input.ratePerSecond))) : input.batchSize;
}

/** The checkpoint step of a replay run (the CLI computes it too, to say when it coarsens --progress-every). */
export function replayCheckpointEvery(input: Pick<ReplayInput, 'batchSize' | 'ratePerSecond' | 'limit' | 'progressEvery'>): number {
  return checkpointEvery(input.progressEvery ?? REPLAY_DEFAULT_PROGRESS_EVERY, Math.min(replayBatchRows(input), input.limit));
}

/** A replay checkpoint tuple [processed, replayed, skipped] as the counters the CLI prints. */
export function replayCheckpointCounters(c: Checkpoint): ReplayCounters {
  const [processed = 0, replayed = 0, skipped = 0] = c;
  return { processed, replayed, enqueued: replayed, skipped, failed: 0 };
}

export interface ReplayBatchInput {
  runKey: string;
  batchNumber: number;
  filter: ReplayFilter;
  size: number;
  /** Absent in batches scheduled before checkpoints existed: those return none. */
  checkpoints?: CheckpointSpec;
}

export interface ReplayBatchResult {
  /** Rows selected as matching. */
  selected: number;
  /** Of those, reset now; the rest changed between selection and reset and were skipped. */
  replayed: number;
  /** [processed, replayed, skipped] within this batch at each row where the run's processed count reaches a multiple of the step. */
  checkpoints?: Checkpoint[];
  /** The first batch of a replay by --event-ids: the SHA-256 of the list it read, which later batches must match. */
  eventIdsSha256?: string;
}

export interface ReplayPreview {
  matched: number;
  byEventType: Record<string, number>;
  byStatusCode: Record<string, number>;
  sampleIds: string[];
  /**
   * An exclusive bound on updated_at (ISO, milliseconds) that every matched row is under: an execute run given it as
   * `until`, with the same limit, leaves out rows that reach the selection after the preview (but for one written by a
   * transaction that began before it and committed after). Only for dead_letter and delivered selections, whose rows
   * keep their time while they wait; absent when nothing matched, and in previews of workers older than the field.
   */
  changedBefore?: string;
  /** More rows match than the limit let the preview count. Absent in previews of workers older than the field. */
  moreBeyondLimit?: boolean;
  /** The counted rows were kept under the run's key, for an execute's `filter.selectedBy`. */
  selectionKept?: boolean;
}

export interface ReplayProgress extends ReplayCounters, CheckpointPage<ReplayCounters> {
  phase: 'running' | 'paused' | 'done';
  dryRun: boolean;
  batches: number;
  /** At most this many rows are processed (the selection may be smaller): the total of the CLI's bar. */
  limit?: number;
}

export interface ReplaySummary extends ReplayCounters {
  dryRun: boolean;
  runKey: string;
  preview?: ReplayPreview;
}
