import type { Client } from '@temporalio/client';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import type { Pool } from 'pg';
import { createActivities } from './activities';
import type { DeliveryTarget } from './delivery/dispatch';
import { type DispatcherOptions, dispatcherWorkflowId } from './shared/delivery';
import type { webhookDispatcher } from './workflows/dispatcher';

export interface WorkerSetup {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  pool: Pool;
  delivery?: DeliveryTarget;
  /** Directories input files may be read from; default: GOTONG_INPUT_ROOTS, else its documented default. */
  inputRoots?: readonly string[];
  /** A prebuilt bundle (tests build one per suite); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

export async function createWorker(setup: WorkerSetup): Promise<Worker> {
  return Worker.create({
    connection: setup.connection,
    namespace: setup.namespace,
    taskQueue: setup.taskQueue,
    ...(setup.workflowBundle
      ? { workflowBundle: setup.workflowBundle }
      : { workflowsPath: require.resolve('./workflows') }),
    activities: createActivities({ pool: setup.pool, delivery: setup.delivery, inputRoots: setup.inputRoots }),
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
