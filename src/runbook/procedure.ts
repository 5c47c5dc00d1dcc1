import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import type { Pool } from 'pg';
import {
  countDeadLetters,
  findRunbookRun,
  insertRunbookRun,
  latestRunbookRun,
  lockRunbookProcedure,
  type RunbookRunRow,
  setRunbookRunId,
} from '../db/queries';
import type { FileFingerprint } from '../shared/backfill';
import type { BeginRunbookInput, EarlierRun, RunbookProcedure, StepNumber } from '../shared/runbook';

/**
 * The procedure of a file at one content: its path, size and modification time. The same bytes under the
 * same path are the same backfill, whichever run of the runbook executes it and on whichever worker host:
 * device, inode and host name are left out, since each host that mounts a shared file sees its own.
 */
export function procedureKey(path: string, fingerprint: FileFingerprint): string {
  const name = basename(path).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 60);
  const content = [path, { size: fingerprint.size, mtimeMs: fingerprint.mtimeMs }];
  const hash = createHash('sha256').update(JSON.stringify(content)).digest('hex').slice(0, 16);
  return `runbook/${name}-${hash}`;
}

/**
 * Records a run of the runbook and finds what it continues, in one transaction under the procedure's lock:
 * the newest earlier run on the same procedure, unless it completed. Its baseline carries over unless one
 * is given; a procedure's first run counts the dead letters now. Idempotent per run key (retries, resets).
 */
export async function beginProcedure(pool: Pool, input: BeginRunbookInput): Promise<RunbookProcedure> {
  const key = procedureKey(input.path, input.fingerprint);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await lockRunbookProcedure(client, key);
    let row = await findRunbookRun(client, input.runKey);
    if (row) {
      await setRunbookRunId(client, input.runKey, input.runId);
    } else {
      const latest = await latestRunbookRun(client, key);
      const earlier = latest && latest.outcome !== 'completed' ? latest : null;
      const [baseline, from] =
        input.baseline !== undefined
          ? [input.baseline, 'option' as const]
          : earlier
            ? [Number(earlier.baseline), 'earlier-run' as const]
            : [await countDeadLetters(client), 'measured' as const];
      await insertRunbookRun(client, {
        run_key: input.runKey,
        procedure_key: key,
        workflow_id: input.workflowId,
        workflow_run_id: input.runId,
        baseline,
        baseline_from: from,
        continues: earlier?.run_key ?? null,
      });
      row = (await findRunbookRun(client, input.runKey))!;
    }
    const continued = row.continues ? await findRunbookRun(client, row.continues) : null;
    await client.query('COMMIT');
    return { key, baseline: Number(row.baseline), baselineFrom: row.baseline_from, continues: continued && earlierRun(continued) };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

function earlierRun(row: RunbookRunRow): EarlierRun {
  return {
    runKey: row.run_key,
    workflowId: row.workflow_id,
    runId: row.workflow_run_id,
    // Still 'running' in the record while a newer run begins: it ended without reporting (terminated, timed out).
    outcome: row.outcome === 'running' ? 'unfinished' : row.outcome,
    stoppedAt: row.stopped_at as StepNumber | null,
    reason: row.reason,
    startedAt: row.started_at.toISOString(),
  };
}
