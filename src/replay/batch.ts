import { createHash } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { ApplicationFailure } from '@temporalio/common';
import { analyzeOutboxStatuses, onceInLedger, readLedger, replaySelectAndReset, replaySelectionKept } from '../db/queries';
import { InputFileError, openInputFile } from '../input-files';
import { replayBatchKey } from '../shared/batch-keys';
import { batchCheckpoints } from '../shared/progress';
import type { ReplayBatchInput, ReplayBatchResult, ReplayFilter } from '../shared/replay';

/** An id list is read whole and sent with every batch's query: beyond this, select by other filters. */
export const MAX_EVENT_IDS_FILE_BYTES = 64 * 1024 * 1024;

/**
 * The --event-ids file is read by the worker, like a backfill file: only below the input roots, only a
 * regular file, checked on the opened handle. Blank lines are ignored. A line names its id with and without the
 * whitespace around it: editors leave trailing blanks, while a backfill keeps ids exactly as the file had them
 * (" evt_1 " is an id of its own), so trimming alone made such an event impossible to replay by id.
 */
export async function loadEventIds(filter: ReplayFilter, roots: readonly string[]): Promise<string[] | null> {
  return (await readEventIds(filter, roots))?.ids ?? null;
}

/** The ids, and the SHA-256 of the bytes they were read from (what a run's later batches compare with). */
async function readEventIds(filter: ReplayFilter, roots: readonly string[]): Promise<{ ids: string[]; sha256: string } | null> {
  if (!filter.eventIdsPath) return null;
  const { handle, info } = await openInputFile(filter.eventIdsPath, roots);
  try {
    if (info.size > MAX_EVENT_IDS_FILE_BYTES) {
      throw new InputFileError(
        `--event-ids file ${filter.eventIdsPath} is ${info.size} bytes, over the ${MAX_EVENT_IDS_FILE_BYTES}-byte limit; ` +
          'split the list into several replays, or select by event type, status code or time instead',
      );
    }
    // Exactly the size it had when opened: a file still being appended to cannot grow the read.
    const buffer = Buffer.alloc(info.size);
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    const bytes = buffer.subarray(0, filled);
    const ids = new Set<string>();
    for (const [n, raw] of bytes.toString('utf8').split(/\r?\n/).entries()) {
      const line = n === 0 ? raw.replace(/^\uFEFF/, '') : raw;
      const trimmed = line.trim();
      if (trimmed.length === 0) continue;
      ids.add(trimmed);
      if (line !== trimmed) ids.add(line);
    }
    return { ids: [...ids], sha256: createHash('sha256').update(bytes).digest('hex') };
  } finally {
    await handle.close();
  }
}

/**
 * Every batch reads the list again (a retry may run on another host), so a list rewritten under a running replay
 * (an operator preparing the next one under the same name) would have its later batches reset ids nobody asked
 * this run for, and skip the rest of the list it started with. The first batch records what it read; later ones
 * must read the same bytes.
 */
async function checkEventIdsUnchanged(pool: Pool, input: ReplayBatchInput, sha256: string | undefined): Promise<void> {
  if (sha256 === undefined || input.batchNumber === 0) return;
  const first = await readLedger<ReplayBatchResult>(pool, input.runKey, replayBatchKey(0));
  // A first batch recorded before lists were fingerprinted has nothing to compare with.
  if (!first?.eventIdsSha256 || first.eventIdsSha256 === sha256) return;
  throw new InputFileError(
    `--event-ids file ${input.filter.eventIdsPath} changed after the replay started; the rows this run reset so far stay ` +
      'reset (webhook_replay_audit names them); start a new replay with the list as it is now',
  );
}

/**
 * A run that resets the rows a dry run kept (the runbook's step 5) and finds none would select nothing and pass on
 * zeros while the dead letters it was approved for wait: the rows were deleted (the runbook finished, by hand) or its
 * dry run ran elsewhere. Every batch not yet in the ledger looks, in its own transaction (kept rows never shrink while
 * their runbook runs, so this cannot fire on a healthy run), and fails instead.
 */
async function checkSelectionKept(client: PoolClient, input: ReplayBatchInput): Promise<void> {
  const keptBy = input.filter.selectedBy;
  if (keptBy === undefined || (await replaySelectionKept(client, keptBy))) return;
  const before = input.batchNumber === 0 ? 'nothing was reset' : `the rows its ${input.batchNumber} earlier batches reset stay reset (webhook_replay_audit)`;
  throw ApplicationFailure.nonRetryable(
    `the rows the dry run ${keptBy} counted are no longer kept (webhook_replay_selection); ${before}: run the dry run ` +
      'again (a new runbook run does) to count the dead letters as they are now',
    'ReplaySelectionGone',
  );
}

/** Resets one batch exactly once: its resets, audit rows and ledger row commit together. */
export async function runReplayBatch(
  pool: Pool,
  input: ReplayBatchInput,
  roots: readonly string[],
  signal?: AbortSignal,
): Promise<ReplayBatchResult> {
  const batchKey = replayBatchKey(input.batchNumber);
  // A batch already done returns its result without needing the id file again.
  const recorded = await readLedger<ReplayBatchResult>(pool, input.runKey, batchKey);
  if (recorded) return recorded;
  const eventIds = await readEventIds(input.filter, roots);
  await checkEventIdsUnchanged(pool, input, eventIds?.sha256);
  // Dead letters pile up while the receiver is down, often faster than autovacuum re-analyzes the
  // outbox; fresh statistics keep every batch's selection on the dead-letter index.
  if (input.batchNumber === 0) await analyzeOutboxStatuses(pool);
  return onceInLedger(
    pool,
    input.runKey,
    batchKey,
    async (client): Promise<ReplayBatchResult> => {
      await checkSelectionKept(client, input);
      const { selected, replayed, skippedOrdinals } = await replaySelectAndReset(client, input.runKey, input.filter, eventIds?.ids ?? null, input.size);
      const result: ReplayBatchResult = { selected, replayed };
      if (eventIds && input.batchNumber === 0) result.eventIdsSha256 = eventIds.sha256;
      if (input.checkpoints) {
        // Outcome of each selected row in selection order: 0 replayed, 1 skipped.
        const outcomes = new Uint8Array(selected);
        for (const ordinal of skippedOrdinals) outcomes[ordinal - 1] = 1;
        result.checkpoints = batchCheckpoints(outcomes, selected, input.checkpoints, 2);
      }
      return result;
    },
    signal,
  );
}
