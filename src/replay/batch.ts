import { readFile } from 'node:fs/promises';
import type { Pool } from 'pg';
import { analyzeOutbox, onceInLedger, replaySelectAndReset } from '../db/queries';
import { batchCheckpoints } from '../shared/progress';
import type { ReplayBatchInput, ReplayBatchResult, ReplayFilter } from '../shared/replay';

/** The --event-ids file is read by the worker, like a backfill file; blank lines are ignored. */
export async function loadEventIds(filter: ReplayFilter): Promise<string[] | null> {
  if (!filter.eventIdsPath) return null;
  const text = await readFile(filter.eventIdsPath, 'utf8');
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
}

/** Resets one batch exactly once: its resets, audit rows and ledger row commit together. */
export async function runReplayBatch(pool: Pool, input: ReplayBatchInput): Promise<ReplayBatchResult> {
  const eventIds = await loadEventIds(input.filter);
  // Dead letters pile up while the receiver is down, often faster than autovacuum re-analyzes the
  // outbox; fresh statistics keep every batch's selection on the dead-letter index.
  if (input.batchNumber === 0) await analyzeOutbox(pool);
  return onceInLedger(pool, input.runKey, `replay:${input.batchNumber}`, async (client): Promise<ReplayBatchResult> => {
    const { selected, replayed, skippedOrdinals } = await replaySelectAndReset(client, input.runKey, input.filter, eventIds, input.size);
    const result: ReplayBatchResult = { selected, replayed };
    if (input.checkpoints) {
      // Outcome of each selected row in selection order: 0 replayed, 1 skipped.
      const outcomes = new Uint8Array(selected);
      for (const ordinal of skippedOrdinals) outcomes[ordinal - 1] = 1;
      result.checkpoints = batchCheckpoints(outcomes, selected, input.checkpoints, 2);
    }
    return result;
  });
}
