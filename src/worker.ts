import { NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Pool } from 'pg';
import { createActivities } from './activities';
import type { DeliveryTarget } from './delivery/http';
import type { WorkerMetrics } from './metrics';
import { deliveryTaskQueue, PASS_HEARTBEAT_MS } from './shared/delivery';
import { prebuiltWorkflowBundle, WORKFLOWS_PATH } from './workflow-bundle';

export { ensureDispatchers } from './delivery/fleet';

export interface WorkerSetup {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  pool: Pool;
  delivery?: DeliveryTarget;
  /** Directories input files may be read from; default: GOTONG_INPUT_ROOTS, else its documented default. */
  inputRoots?: readonly string[];
  /** The process's metrics, when it serves them. */
  metrics?: WorkerMetrics;
  /** A bundle to use (tests build one per suite); otherwise the one `npm run build` wrote, if still current. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

/** The bundle `npm run build` wrote while it matches the code; else bundling at start (development), saying why. */
function workflowCode(): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  const prebuilt = prebuiltWorkflowBundle();
  if ('codePath' in prebuilt) return { workflowBundle: prebuilt };
  Runtime.instance().logger.warn(`${prebuilt.stale}: bundling the workflows at start ('npm run build' prebuilds them)`);
  return { workflowsPath: WORKFLOWS_PATH };
}

/** The Temporal workers of one process, run and stopped together. */
export interface GotongWorker {
  run(): Promise<void>;
  /** Runs until `fn` settles, then shuts down (as Worker.runUntil). */
  runUntil<T>(fn: () => Promise<T>): Promise<T>;
  shutdown(): void;
}

/**
 * Workflows and batch activities on `taskQueue`; with a receiver configured, also a second worker on the delivery
 * task queue (`<taskQueue>-delivery`) for delivery passes. Delivery work reaches only processes that can deliver:
 * a worker without WEBHOOK_URL (one that only reads backfill files, say) never polls that queue, so it can neither
 * take a pass it would fail nor stand in the way of the dispatcher.
 */
export async function createWorker(setup: WorkerSetup): Promise<GotongWorker> {
  const { deliverPass, deliverDue, ...batchActivities } = createActivities({
    pool: setup.pool,
    delivery: setup.delivery,
    metrics: setup.metrics,
    inputRoots: setup.inputRoots,
  });
  // Dispatchers started before the delivery queue existed schedule their passes (deliverDue) here, until they
  // continue as new; only a worker that can deliver takes them.
  const activities = setup.delivery ? { ...batchActivities, deliverDue } : batchActivities;
  const workers = [
    await Worker.create({
      connection: setup.connection,
      namespace: setup.namespace,
      taskQueue: setup.taskQueue,
      ...(setup.workflowBundle ? { workflowBundle: setup.workflowBundle } : workflowCode()),
      activities,
      // Batch activities are I/O-bound; each holds at most one database connection at a time.
      maxConcurrentActivityTaskExecutions: 20,
      // Heartbeats reach the server every 3 s (not 80% of the timeout): a run's cancellation reaches its
      // batch within seconds, and a heartbeat is never late because one report waited out the throttle.
      maxHeartbeatThrottleInterval: '3 seconds',
    }),
  ];
  if (setup.delivery) {
    workers.push(
      await Worker.create({
        connection: setup.connection,
        namespace: setup.namespace,
        taskQueue: deliveryTaskQueue(setup.taskQueue),
        activities: { deliverPass },
        maxHeartbeatThrottleInterval: PASS_HEARTBEAT_MS,
        // Each pass holds at most 2 x claimBytes of payload (see ClaimQueue): this bounds a worker's share.
        maxConcurrentActivityTaskExecutions: MAX_PASSES_PER_WORKER,
      }),
    );
  }
  return group(workers);
}

/** Delivery passes one worker process runs at once (up to 3 per shard while a backlog lasts). */
export const MAX_PASSES_PER_WORKER = 8;

function group(workers: Worker[]): GotongWorker {
  return {
    async run() {
      await runAsOne(workers, (w) => w.run());
    },
    async runUntil<T>(fn: () => Promise<T>): Promise<T> {
      // The workers start polling right after `fn` starts, within the same tick.
      const settled = fn();
      let fnFailure: { error: unknown } | undefined;
      void settled.catch((error: unknown) => (fnFailure = { error }));
      // Each worker's runUntil rethrows `fn`'s own rejection: that is the caller's error, not a worker failing.
      const results = await runAsOne(workers, (w) => w.runUntil(settled), (err) => fnFailure !== undefined && err === fnFailure.error);
      return results[0] as T;
    },
    shutdown() {
      // One may have stopped already (it failed, and runAsOne stopped the rest; or a signal stopped them all).
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    },
  };
}

/** What runAsOne needs of a worker (a Temporal Worker; a stand-in in unit tests). */
export interface GroupMember {
  readonly options: { readonly taskQueue: string };
  getState(): string;
  shutdown(): void;
}

/**
 * Runs every worker of a process, and when one stops with an error, shuts the others down and rejects with that
 * error once all have stopped. Otherwise a process whose delivery worker died would go on serving workflows: alive
 * to its supervisor and its health checks, while the passes its dispatchers schedule wait for another process.
 * An error `notWorkerFailure` accepts (the caller's own, which runUntil rethrows) passes through as it is.
 */
export async function runAsOne<W extends GroupMember, T>(
  workers: readonly W[],
  start: (w: W) => Promise<T>,
  notWorkerFailure: (err: unknown) => boolean = () => false,
): Promise<T[]> {
  let failure: { error: unknown } | undefined;
  const outcomes = await Promise.allSettled(
    workers.map((worker) =>
      start(worker).catch((err: unknown) => {
        if (!failure && notWorkerFailure(err)) {
          failure = { error: err };
        } else if (!failure) {
          const reason = err instanceof Error ? err.message : String(err);
          failure = {
            error: new Error(`the worker on task queue '${worker.options.taskQueue}' stopped: ${reason}; stopping this process's other workers`, {
              cause: err,
            }),
          };
          for (const other of workers) if (other !== worker && other.getState() === 'RUNNING') other.shutdown();
        }
        throw err;
      }),
    ),
  );
  if (failure) throw failure.error;
  return outcomes.map((o) => (o as PromiseFulfilledResult<T>).value);
}
