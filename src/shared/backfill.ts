/**
 * Types and limits shared by the backfill workflow, its activities and the CLI.
 * Pure data only: this module is part of the workflow bundle.
 */
import type { Checkpoint, CheckpointPage, CheckpointSpec } from './progress';

/** The counters the runbook prints, in its order. */
export interface BackfillCounters {
  processed: number;
  created: number;
  enqueued: number;
  duplicates: number;
  failed: number;
}

export const ZERO_COUNTERS: BackfillCounters = { processed: 0, created: 0, enqueued: 0, duplicates: 0, failed: 0 };

export function addCounters(a: BackfillCounters, b: BackfillCounters): BackfillCounters {
  return {
    processed: a.processed + b.processed,
    created: a.created + b.created,
    enqueued: a.enqueued + b.enqueued,
    duplicates: a.duplicates + b.duplicates,
    failed: a.failed + b.failed,
  };
}

/** Identifies the file a run was started on; a batch refuses to read a file that no longer matches. */
export interface FileFingerprint {
  size: number;
  mtimeMs: number;
  /** Device and inode (decimal strings: they can exceed 2^53) on `host`, the worker that took the fingerprint. */
  dev?: string;
  ino?: string;
  host?: string;
}

export interface BackfillBatchInput {
  /** Stable across retries, continue-as-new and workflow reset: the ledger key of the run. */
  runKey: string;
  workflowId: string;
  path: string;
  fingerprint: FileFingerprint;
  startOffset: number;
  /** 1-based number of the physical line that starts at startOffset. */
  startLine: number;
  batchSize: number;
  dryRun: boolean;
  maxAttempts: number;
  /** Absent in batches scheduled before checkpoints existed: those return none. */
  checkpoints?: CheckpointSpec;
}

/** Outcome of one processed line, the index of its count in a backfill checkpoint after `processed`. */
export const LINE_OUTCOME = { created: 0, duplicate: 1, failed: 2 } as const;

export interface BackfillBatchResult extends BackfillCounters {
  /** Offset just past the last line this batch took; the next batch starts here. */
  endOffset: number;
  /** Physical lines consumed, blank ones included, so line numbers stay those of an editor. */
  linesConsumed: number;
  /**
   * [processed, created, duplicates, failed] within this batch at each line where the run's processed
   * count reaches a multiple of the checkpoint step, in file order.
   */
  checkpoints?: Checkpoint[];
}

export interface BackfillRunState {
  fingerprint: FileFingerprint;
  offset: number;
  nextLine: number;
  batches: number;
  counters: BackfillCounters;
  paused: boolean;
  /** The newest checkpoints, absolute, so clients polling across continue-as-new miss none. */
  checkpoints?: Checkpoint[];
}

export interface BackfillInput {
  runKey: string;
  path: string;
  dryRun: boolean;
  maxAttempts: number;
  batchSize: number;
  /** Record a checkpoint every this many processed lines (coarsened by checkpointEvery); default 1000. */
  progressEvery?: number;
  /** Batches per workflow run before continuing as new; keeps one run's history well under 5,000 events. */
  batchesPerRun?: number;
  /** Set only when continuing as new. */
  state?: BackfillRunState;
}

export type BackfillPhase = 'starting' | 'running' | 'paused' | 'finishing' | 'done';

export interface BackfillProgress extends BackfillCounters, CheckpointPage<BackfillCounters> {
  phase: BackfillPhase;
  dryRun: boolean;
  bytesDone: number;
  bytesTotal: number;
  batches: number;
  runKey: string;
}

export interface BackfillSummary extends BackfillCounters {
  dryRun: boolean;
  runKey: string;
  batches: number;
}

/** A backfill checkpoint tuple as the counters the CLI prints. */
export function backfillCheckpointCounters(c: Checkpoint): BackfillCounters {
  const [processed = 0, created = 0, duplicates = 0, failed = 0] = c;
  return { processed, created, enqueued: created, duplicates, failed };
}

export const BACKFILL_LIMITS = {
  /** A longer line is recorded as failed and skipped without being held in memory. */
  maxLineBytes: 1024 * 1024,
  /** Longer ids could not be indexed reliably; the outbox table enforces the same cap. */
  maxEventIdBytes: 256,
  /** A batch also stops at this many bytes, so memory stays bounded whatever the lines look like. */
  maxBatchBytes: 32 * 1024 * 1024,
  defaultBatchSize: 10000,
  maxBatchSize: 50000,
  /** Batches per run the client asks for (carried in the input; see run-inputs.ts). */
  defaultBatchesPerRun: 400,
  /** Checkpoint step of runs started without one (the runbook tool's default). */
  defaultProgressEvery: 1000,
} as const;
