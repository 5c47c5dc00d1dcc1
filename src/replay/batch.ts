import { readFile } from 'node:fs/promises';
import type { Pool } from 'pg';
import { lockBatch, readLedger, replaySelectAndReset, writeLedger } from '../db/queries';
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
  const batchKey = `replay:${input.batchNumber}`;
  const recorded = await readLedger<ReplayBatchResult>(pool, input.runKey, batchKey);
  if (recorded) return recorded;
  const eventIds = await loadEventIds(input.filter);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await lockBatch(client, input.runKey, batchKey);
    const raced = await readLedger<ReplayBatchResult>(client, input.runKey, batchKey);
    if (raced) {
      await client.query('COMMIT');
      return raced;
    }
    const result = await replaySelectAndReset(client, input.runKey, input.filter, eventIds, input.size);
    await writeLedger(client, input.runKey, batchKey, result);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
