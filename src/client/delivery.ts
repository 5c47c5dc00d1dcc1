import { type DispatcherStats, dispatcherWorkflowId } from '../shared/delivery';
import { connectClient } from './watch';
import { RunError, type Output } from './errors';

/** `gotong-worker delivery status|pause|resume`: the dispatcher shards' stats query and pause/resume signals. */
export async function runDeliveryControl(action: 'status' | 'pause' | 'resume', opts: { json: boolean }, out: Output): Promise<void> {
  const { client, connection } = await connectClient();
  try {
    let found = 0;
    // Shards are numbered from 0 without gaps; the first one that is not running ends the list.
    for (let shard = 0; ; shard++) {
      const handle = client.workflow.getHandle(dispatcherWorkflowId(shard));
      const running = await handle
        .describe()
        .then((d) => d.status.name === 'RUNNING')
        .catch(() => false);
      if (!running) break;
      found++;
      if (action !== 'status') await handle.signal(action);
      const stats = await handle.query<DispatcherStats>('stats');
      if (opts.json) {
        out.log(JSON.stringify({ workflow_id: dispatcherWorkflowId(shard), ...stats }));
      } else {
        const state = stats.paused ? `paused (${stats.pauseReason})` : 'running';
        out.log(
          `[delivery] ${dispatcherWorkflowId(shard)} ${state} delivered=${stats.delivered} retried=${stats.retried} ` +
            `dead_lettered=${stats.deadLettered} in_flight=${stats.inFlight} backlog=${stats.backlogEstimated ? '~' : ''}${stats.backlog} ` +
            `oldest_due_age_ms=${stats.oldestDueAgeMs}`,
        );
      }
    }
    if (found === 0) {
      throw new RunError("[delivery] no dispatcher is running; start a worker with WEBHOOK_URL set ('gotong-worker worker')");
    }
  } finally {
    await connection.close();
  }
}
