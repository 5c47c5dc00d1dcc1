import { Client, Connection, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { explainTemporalError, temporalTarget, type TemporalTarget } from '../temporal';
import { RunError, type Output } from './errors';

/** A client for operator commands; an unreachable server becomes one line naming the fix (exit 1). */
export async function connectClient(namespace?: string): Promise<{ client: Client; connection: Connection; target: TemporalTarget }> {
  const target = { ...temporalTarget(), ...(namespace ? { namespace } : {}) };
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...target.connectionOptions, connectTimeout: '5s' });
  } catch (err) {
    throw new RunError(explainTemporalError(err, target.address));
  }
  return { client: new Client({ connection, namespace: target.namespace }), connection, target };
}

/**
 * Starts a run, or attaches to it when the same workflow id is already running (one run per id), says
 * which on stderr, and warns when no worker polls its task queue.
 */
export async function startOrAttach(
  client: Client,
  namespace: string,
  run: { label: string; workflowType: string; workflowId: string; args: unknown[]; taskQueue: string },
  out: Output,
): Promise<WorkflowHandle> {
  const running = await client.workflow
    .getHandle(run.workflowId)
    .describe()
    .then((d) => d.status.name === 'RUNNING')
    .catch(() => false);
  const handle = await client.workflow.start(run.workflowType, {
    taskQueue: run.taskQueue,
    workflowId: run.workflowId,
    args: run.args,
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
  });
  out.err(`[${run.label}] ${running ? 'attached to running' : 'started'} ${run.workflowId}`);
  await warnIfNoWorker(client, namespace, run.taskQueue, run.label, out);
  return handle;
}

export interface WatchedRun<Progress extends { processed: number }, Summary> {
  /** Prefix of every line, e.g. "webhook-backfill". */
  label: string;
  workflowType: string;
  workflowId: string;
  args: unknown[];
  taskQueue: string;
  progressEvery: number;
  /** The counters part of a progress or done line, in the runbook's order. */
  formatCounters(counters: Progress | Summary): string;
  pollMs?: number;
}

/**
 * Starts a run, or attaches to it when the same workflow id is already running, then prints a progress
 * line each time another `progressEvery` items are processed (read through the `progress` query) and
 * returns the run's result. Every operator command that starts a durable run goes through here.
 */
export async function startAndWatch<Progress extends { processed: number }, Summary>(
  run: WatchedRun<Progress, Summary>,
  out: Output,
): Promise<Summary> {
  const { client, connection, target } = await connectClient();
  try {
    const handle = await startOrAttach(client, target.namespace, run, out);

    let lastPrinted = 0;
    let latest: Progress | undefined;
    let finished = false;
    const resultPromise = (handle.result() as Promise<Summary>).finally(() => {
      finished = true;
    });
    const poller = (async () => {
      while (!finished) {
        try {
          latest = await handle.query<Progress>('progress');
          if (Math.floor(latest.processed / run.progressEvery) > Math.floor(lastPrinted / run.progressEvery)) {
            lastPrinted = latest.processed;
            out.log(`[${run.label}] progress ${run.formatCounters(latest)}`);
          }
        } catch {
          // No worker yet, or the run is between continue-as-new runs: try again on the next tick.
        }
        await new Promise((r) => setTimeout(r, run.pollMs ?? 300));
      }
    })();

    try {
      return await resultPromise;
    } catch (err) {
      const cause = err instanceof WorkflowFailedError ? (err.cause?.message ?? err.message) : (err as Error).message;
      const counters = latest ? ` ${run.formatCounters(latest)}` : '';
      throw new RunError(`[${run.label}] ${run.workflowId} did not finish: ${cause}${counters}`);
    } finally {
      await poller;
    }
  } finally {
    await connection.close();
  }
}

async function warnIfNoWorker(client: Client, namespace: string, taskQueue: string, label: string, out: Output): Promise<void> {
  try {
    const response = await client.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: taskQueue },
      taskQueueType: 1, // workflow task queue
    });
    if ((response.pollers ?? []).length === 0) {
      out.err(
        `[${label}] warning: no worker is polling task queue '${taskQueue}'; ` +
          "the run waits until one starts ('gotong-worker worker')",
      );
    }
  } catch {
    // Only a hint; never fail the command over it.
  }
}
