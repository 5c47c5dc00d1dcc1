import { createHash, randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import type { webhookBackfill } from '../workflows/backfill';
import { BACKFILL_LIMITS, type BackfillCounters, type BackfillProgress } from '../shared/backfill';
import { temporalTarget, explainTemporalError } from '../temporal';
import { UsageError, RunError, type Output } from './errors';

export interface BackfillCommandOptions {
  file: string;
  dryRun: boolean;
  progressEvery: number;
  maxAttempts: number;
  batchSize: number;
  json: boolean;
  taskQueue: string;
  /** Poll interval for the progress query. */
  pollMs?: number;
}

/** One workflow id per file and mode: starting the same backfill again while it runs attaches to it. */
export function backfillWorkflowId(absPath: string, dryRun: boolean): string {
  const name = basename(absPath).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 60);
  const hash = createHash('sha256').update(absPath).digest('hex').slice(0, 10);
  return `webhook-backfill/${name}-${hash}/${dryRun ? 'dry-run' : 'execute'}`;
}

export function resolveBackfillFile(file: string): string {
  const path = resolve(file);
  let info;
  try {
    info = statSync(path);
  } catch {
    throw new UsageError(`--file ${file}: no such file; pass the path of an NDJSON file`);
  }
  if (!info.isFile()) throw new UsageError(`--file ${file}: not a regular file; pass the path of an NDJSON file`);
  return path;
}

export function formatCounters(c: BackfillCounters): string {
  return `processed=${c.processed} created=${c.created} enqueued=${c.enqueued} duplicates=${c.duplicates} failed=${c.failed}`;
}

export async function runBackfill(opts: BackfillCommandOptions, out: Output): Promise<void> {
  const path = resolveBackfillFile(opts.file);
  if (opts.batchSize > BACKFILL_LIMITS.maxBatchSize) {
    throw new UsageError(`--batch-size must be at most ${BACKFILL_LIMITS.maxBatchSize}`);
  }
  const target = temporalTarget();
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...target.connectionOptions, connectTimeout: '5s' });
  } catch (err) {
    throw new RunError(explainTemporalError(err, target.address));
  }
  try {
    const client = new Client({ connection, namespace: target.namespace });
    const workflowId = backfillWorkflowId(path, opts.dryRun);

    const running = await client.workflow
      .getHandle(workflowId)
      .describe()
      .then((d) => d.status.name === 'RUNNING')
      .catch(() => false);
    const handle = await client.workflow.start<typeof webhookBackfill>('webhookBackfill', {
      taskQueue: opts.taskQueue,
      workflowId,
      args: [
        {
          runKey: `${workflowId}@${randomUUID()}`,
          path,
          dryRun: opts.dryRun,
          maxAttempts: opts.maxAttempts,
          batchSize: opts.batchSize,
        },
      ],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
    out.err(`[webhook-backfill] ${running ? 'attached to running' : 'started'} ${workflowId}`);
    await warnIfNoWorker(client, target.namespace, opts.taskQueue, out);

    let lastPrinted = 0;
    let latest: BackfillProgress | undefined;
    let finished = false;
    const resultPromise = handle.result().finally(() => {
      finished = true;
    });
    const pollMs = opts.pollMs ?? 300;
    const poller = (async () => {
      while (!finished) {
        try {
          latest = await handle.query<BackfillProgress>('progress');
          if (Math.floor(latest.processed / opts.progressEvery) > Math.floor(lastPrinted / opts.progressEvery)) {
            lastPrinted = latest.processed;
            out.log(`[webhook-backfill] progress ${formatCounters(latest)}`);
          }
        } catch {
          // No worker yet, or the run is between continue-as-new runs: try again on the next tick.
        }
        await new Promise((r) => setTimeout(r, pollMs));
      }
    })();

    let summary;
    try {
      summary = await resultPromise;
    } catch (err) {
      const cause = err instanceof WorkflowFailedError ? (err.cause?.message ?? err.message) : (err as Error).message;
      const counters = latest ? ` ${formatCounters(latest)}` : '';
      throw new RunError(`[webhook-backfill] ${workflowId} did not finish: ${cause}${counters}`);
    } finally {
      await poller;
    }
    const dryRun = summary.dryRun;
    out.log(`[webhook-backfill] done ${formatCounters(summary)} dry_run=${dryRun}`);
    if (summary.failed > 0) {
      out.err(`[webhook-backfill] ${summary.failed} failed lines recorded; list them with: gotong-worker failed-lines '${workflowId}'`);
    }
    if (opts.json) {
      out.log(
        JSON.stringify({
          workflow_id: workflowId,
          processed: summary.processed,
          created: summary.created,
          enqueued: summary.enqueued,
          duplicates: summary.duplicates,
          failed: summary.failed,
          dry_run: dryRun,
        }),
      );
    }
  } finally {
    await connection.close();
  }
}

async function warnIfNoWorker(client: Client, namespace: string, taskQueue: string, out: Output): Promise<void> {
  try {
    const response = await client.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: taskQueue },
      taskQueueType: 1, // workflow task queue
    });
    if ((response.pollers ?? []).length === 0) {
      out.err(
        `[webhook-backfill] warning: no worker is polling task queue '${taskQueue}'; ` +
          "the run waits until one starts ('gotong-worker worker')",
      );
    }
  } catch {
    // Only a hint; never fail the command over it.
  }
}
