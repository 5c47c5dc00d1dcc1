import { WorkflowNotFoundError } from '@temporalio/client';
import type { AppConfig } from '../config';
import { createPool, explainDatabaseError } from '../db/pool';
import { backfillRunRecorded, backfillRunsRecordedUnder, listFailedLines } from '../db/queries';
import { runbookChildId } from '../shared/runbook';
import { RunError, UsageError, type Output } from './errors';
import { kindOf } from './status';
import { printable } from './text';
import { connectClient } from './watch';

export interface FailedLinesOptions {
  workflowId: string;
  runKey?: string;
  limit: number;
  json: boolean;
}

/** A runbook's own id (webhook-runbook/<file>-<hash>), not one of its children's (…/step-N-…). */
const RUNBOOK_ID = /^webhook-runbook\/[^/]+$/;

/**
 * `failed-lines`: the failed lines of a backfill's newest run (or of one run key). No lines is an answer only
 * for a run that is known to exist; an id or run key nobody recorded is exit 1, so a typo never reads as "clean".
 */
export async function runFailedLines(config: AppConfig, opts: FailedLinesOptions, out: Output): Promise<void> {
  if (RUNBOOK_ID.test(opts.workflowId)) {
    // The runbook records no lines itself: its backfills are its children, under ids of their own.
    const [dry, execute] = [runbookChildId(opts.workflowId, 1), runbookChildId(opts.workflowId, 2)];
    throw new UsageError(
      `${printable(opts.workflowId)} is a runbook; its backfills are its children: ` +
        `gotong-worker failed-lines '${printable(dry)}' (step 1) or '${printable(execute)}' (step 2)`,
    );
  }
  const pool = createPool(config.databaseUrl, 1);
  try {
    const database = (err: unknown) => {
      throw new RunError(`[failed-lines] ${explainDatabaseError(err, config.databaseUrl)}`);
    };
    const rows = await listFailedLines(pool, { workflowId: opts.workflowId, runKey: opts.runKey }, opts.limit).catch(database);
    if (rows.length === 0) {
      if (opts.runKey !== undefined) {
        if (!(await backfillRunRecorded(pool, opts.runKey).catch(database))) {
          throw new RunError(
            `[failed-lines] no backfill run with run key '${printable(opts.runKey)}' has recorded a batch; ` +
              `leave out --run-key for the newest run of ${printable(opts.workflowId)}`,
          );
        }
        out.err(`[failed-lines] none: run ${printable(opts.runKey)} recorded no failed lines`);
        return;
      }
      // A backfill the CLI started keys its batches `<workflow id>@...`: its ledger answers even after Temporal dropped it.
      if (await backfillRunsRecordedUnder(pool, opts.workflowId).catch(database)) {
        out.err(`[failed-lines] none: no run of ${printable(opts.workflowId)} has recorded a failed line`);
        return;
      }
      out.err(`[failed-lines] ${await noLinesRecorded(opts.workflowId)}`);
      return;
    }
    const total = Number(rows[0]!.total);
    for (const row of rows) {
      if (opts.json) {
        out.log(
          JSON.stringify({
            run_key: row.run_key,
            line: Number(row.line_number),
            byte_offset: Number(row.byte_offset),
            reason: row.reason,
            excerpt: row.excerpt,
            total,
          }),
        );
      } else {
        // Reasons and excerpts quote the file: a hostile line must not drive the operator's terminal.
        out.log(`line ${row.line_number} (byte ${row.byte_offset}): ${printable(row.reason)}\n    ${printable(row.excerpt)}`);
      }
    }
    if (total > rows.length) {
      const more = `... and ${total - rows.length} more (raise --limit)`;
      // --json keeps stdout one failed line per line; the total is in each of them.
      if (opts.json) out.err(`[failed-lines] ${more}`);
      else out.log(more);
    }
  } finally {
    await pool.end();
  }
}

/**
 * No failed lines are recorded under this workflow id: whether that means "none" depends on whether Temporal
 * knows a backfill by that id (its history may be gone while its lines are kept, but then there would be lines).
 */
async function noLinesRecorded(workflowId: string): Promise<string> {
  const id = printable(workflowId);
  const { client, connection, target } = await connectClient();
  try {
    const info = await client.workflow.getHandle(workflowId).describe();
    const kind = kindOf(info.type);
    if (kind !== 'backfill') {
      throw new RunError(`[failed-lines] ${id} is a ${kind === 'other' ? info.type : kind} run; failed-lines reads a backfill's`);
    }
    const running = info.status.name === 'RUNNING' ? ' so far (it is still running)' : '';
    return `none: no run of ${id} has recorded a failed line${running}`;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) {
      throw new RunError(
        `[failed-lines] no run with workflow id '${id}' in namespace ${target.namespace} and no failed lines recorded for it; ` +
          "list recent backfills with 'gotong-worker list --kind backfill'",
      );
    }
    if (err instanceof RunError) throw err;
    throw new RunError(`[failed-lines] cannot describe '${id}': ${(err as Error).message}`);
  } finally {
    await connection.close();
  }
}
