/**
 * Types and limits shared by the backfill workflow, its activities and the CLI.
 * Pure data only: this module is part of the workflow bundle.
 */

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
}

export interface BackfillBatchResult extends BackfillCounters {
  /** Offset just past the last line this batch took; the next batch starts here. */
  endOffset: number;
  /** Physical lines consumed, blank ones included, so line numbers stay those of an editor. */
  linesConsumed: number;
}

export interface BackfillRunState {
  fingerprint: FileFingerprint;
  offset: number;
  nextLine: number;
  batches: number;
  counters: BackfillCounters;
  paused: boolean;
}

export interface BackfillInput {
  runKey: string;
  path: string;
  dryRun: boolean;
  maxAttempts: number;
  batchSize: number;
  /** Batches per workflow run before continuing as new; keeps one run's history well under 5,000 events. */
  batchesPerRun?: number;
  /** Set only when continuing as new. */
  state?: BackfillRunState;
}

export type BackfillPhase = 'starting' | 'running' | 'paused' | 'finishing' | 'done';

export interface BackfillProgress extends BackfillCounters {
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

export const BACKFILL_LIMITS = {
  /** A longer line is recorded as failed and skipped without being held in memory. */
  maxLineBytes: 1024 * 1024,
  /** Longer ids could not be indexed reliably; the outbox table enforces the same cap. */
  maxEventIdBytes: 256,
  /** A batch also stops at this many bytes, so memory stays bounded whatever the lines look like. */
  maxBatchBytes: 32 * 1024 * 1024,
  defaultBatchSize: 10000,
  maxBatchSize: 50000,
  defaultBatchesPerRun: 400,
} as const;
