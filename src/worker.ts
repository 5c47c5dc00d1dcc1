import type { Client } from '@temporalio/client';
import { NativeConnection, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Pool } from 'pg';
import { createActivities } from './activities';
import type { DeliveryTarget } from './delivery/dispatch';
import type { WorkerMetrics } from './metrics';
import { type DispatcherOptions, dispatcherWorkflowId } from './shared/delivery';
import type { webhookDispatcher } from './workflows/dispatcher';
import { prebuiltWorkflowBundle, WORKFLOWS_PATH } from './workflow-bundle';

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

export async function createWorker(setup: WorkerSetup): Promise<Worker> {
  return Worker.create({
    connection: setup.connection,
    namespace: setup.namespace,
    taskQueue: setup.taskQueue,
    ...(setup.workflowBundle ? { workflowBundle: setup.workflowBundle } : workflowCode()),
    activities: createActivities({ pool: setup.pool, delivery: setup.delivery, metrics: setup.metrics, inputRoots: setup.inputRoots }),
    // Batch and delivery activities are I/O-bound; each holds at most one database connection at a time.
    maxConcurrentActivityTaskExecutions: 20,
    // Heartbeats reach the server every 3 s (not 80% of the timeout): a run's cancellation reaches its
    // batch within seconds, and a heartbeat is never late because one report waited out the throttle.
    maxHeartbeatThrottleInterval: '3 seconds',
  });
}

/**
 * Makes sure `shards` dispatcher runs exist (`webhook-dispatcher/0..shards-1`). Idempotent: a shard
 * that is already running is left as it is, so every worker can call this at start.
 */
export async function ensureDispatchers(
  client: Client,
  taskQueue: string,
  shards: number,
  options: Partial<DispatcherOptions>,
): Promise<string[]> {
  const ids: string[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const workflowId = dispatcherWorkflowId(shard);
    await client.workflow.start<typeof webhookDispatcher>('webhookDispatcher', {
      taskQueue,
      workflowId,
      args: [{ shard, shards, options }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
    ids.push(workflowId);
  }
  return ids;
}
