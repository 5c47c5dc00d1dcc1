import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { resolveDispatcherOptions } from '../src/shared/delivery';
import { configureUpdate, webhookDispatcher } from '../src/workflows/dispatcher';
import { TestReceiver } from './helpers/receiver';
import { FIXTURES, getHarness, resetTables, seedEvents, statusCounts, uniqueTaskQueue, waitFor, withWorker } from './helpers/harness';

const SECRET = 'replay-test-secret';

describe('webhookDispatcher histories replay on the current workflow code', function () {
  this.timeout(120_000);

  it('a run begun by the loop before dispatcher-v2 (history recorded from that code) replays without nondeterminism', async () => {
    // Recorded from commit 3348d5c: 50 passes, an idle sleep, pause, resume and wake signals. Read with the proto
    // package's own decoder: historyFromJSON in this SDK version trips over two copies of protobufjs.
    const json: unknown = JSON.parse(readFileSync(join(FIXTURES, 'dispatcher-before-v2.history.json'), 'utf8'));
    const history = temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);
    await Worker.runReplayHistory({ workflowBundle: getHarness().workflowBundle }, history, 'webhook-dispatcher/0');
  });

  it('a run of the current loop replays: passes, pause and resume, a configure update, an auto-pause and its probe', async () => {
    const h = getHarness();
    await resetTables(h.pool);
    const taskQueue = uniqueTaskQueue('replay');
    let healthy = false;
    const receiver = await new TestReceiver([SECRET], () => (healthy ? { status: 200 } : { status: 503 })).start();
    try {
      await seedEvents(h.pool, 'replay', 60, 50);
      const history = await withWorker(
        taskQueue,
        async () => {
          const options = resolveDispatcherOptions({ batchSize: 10, concurrency: 2, backoffBaseMs: 20, backoffCapMs: 50, maxIdleMs: 200, autoPauseAfter: 5, autoPauseCooldownMs: 300 }).options;
          const handle = await h.env.client.workflow.start(webhookDispatcher, {
            taskQueue,
            workflowId: `webhook-dispatcher/replay-${randomUUID()}`,
            args: [{ shard: 0, shards: 1, options }],
          });
          await waitFor('auto-paused', async () => (await handle.query<{ autoPauses: number }>('stats')).autoPauses === 1);
          healthy = true;
          await waitFor('delivered', async () => (await statusCounts(h.pool)).delivered === 60);
          await handle.signal('pause');
          await handle.executeUpdate(configureUpdate, { args: [{ concurrency: 3 }] });
          await handle.signal('resume');
          await handle.signal('wake');
          await seedEvents(h.pool, 'replay_more', 10);
          await waitFor('delivered', async () => (await statusCounts(h.pool)).delivered === 70);
          const recorded = await handle.fetchHistory();
          await handle.terminate('recorded');
          return recorded;
        },
        { url: receiver.url, secret: SECRET },
      );
      assert.ok((history.events ?? []).length > 20);
      await Worker.runReplayHistory({ workflowBundle: h.workflowBundle }, history);
    } finally {
      await receiver.stop();
    }
  });
  it('a dispatcher started with some settings fixes all of them in its input at once, so later defaults never reach it', async () => {
    const h = getHarness();
    const taskQueue = uniqueTaskQueue('pin');
    await withWorker(taskQueue, async () => {
      const handle = await h.env.client.workflow.start(webhookDispatcher, {
        taskQueue,
        workflowId: `webhook-dispatcher/pin-${randomUUID()}`,
        args: [{ shard: 0, shards: 1, options: { batchSize: 7 } }],
      });
      await waitFor('continued as new', async () => (await handle.describe()).runId !== handle.firstExecutionRunId);
      const history = await handle.fetchHistory();
      const started = history.events![0]!.workflowExecutionStartedEventAttributes!;
      const input = JSON.parse(Buffer.from(started.input!.payloads![0]!.data!).toString()) as { options: Record<string, number> };
      assert.deepEqual(input.options, resolveDispatcherOptions({ batchSize: 7 }).options);
      await handle.terminate('test over');
    });
  });
});
