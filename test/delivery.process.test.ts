import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import type { DispatcherStats } from '../src/shared/delivery';
import { dispatcherWorkflowId } from '../src/shared/delivery';
import { TestReceiver } from './helpers/receiver';
import { CLI, getHarness, runCli, resetTables, seedEvents, statusCounts, uniqueTaskQueue, waitFor, type Harness, exited } from './helpers/harness';

const SECRET = 'process-test-secret';

function startWorkerProcess(h: Harness, env: Record<string, string>, dispatchers: number): ChildProcess {
  return spawn(process.execPath, [CLI, 'worker', '--no-migrate', '--dispatchers', String(dispatchers)], {
    env: { ...process.env, TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: h.databaseUrl, WEBHOOK_SECRET: SECRET, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}


describe('delivery with worker processes (SIGKILL, shards)', function () {
  this.timeout(180_000);
  let h: Harness;
  let receiver: TestReceiver;
  const children: ChildProcess[] = [];

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
  });
  afterEach(async () => {
    for (const shard of [0, 1]) {
      await h.env.client.workflow.getHandle(dispatcherWorkflowId(shard)).terminate('test over').catch(() => undefined);
    }
    for (const child of children.splice(0)) {
      child.kill('SIGKILL');
      await exited(child);
    }
    await receiver.stop();
  });

  it('SIGKILL the worker mid-delivery, restart: every event delivered, none left in flight', async () => {
    receiver = await new TestReceiver([SECRET], () => ({ status: 200, delayMs: 100 })).start();
    const ids = await seedEvents(h.pool, 'crash', 600);
    const env = {
      WEBHOOK_URL: receiver.url,
      GOTONG_TASK_QUEUE: uniqueTaskQueue('delivery-crash'),
      WEBHOOK_BATCH_SIZE: '100',
      WEBHOOK_CONCURRENCY: '20',
      WEBHOOK_TIMEOUT_MS: '1000',
    };
    const first = startWorkerProcess(h, env, 1);
    children.push(first);
    await waitFor('deliveries under way', async () => receiver.received.length >= 150, 60_000, 20);
    first.kill('SIGKILL');
    await exited(first);
    const inFlightAtKill = (await statusCounts(h.pool)).in_flight ?? 0;
    assert.ok(inFlightAtKill > 0, 'the kill left claimed events in flight');

    children.push(startWorkerProcess(h, env, 1));
    await waitFor('all delivered', async () => (await statusCounts(h.pool)).delivered === 600, 120_000, 200);
    assert.deepEqual(await statusCounts(h.pool), { delivered: 600 });
    const seen = receiver.idsSeen();
    assert.ok(ids.every((id) => seen.has(id)), 'the receiver saw every event at least once');
    const leases = await h.pool.query('SELECT 1 FROM webhook_outbox WHERE lease_owner IS NOT NULL');
    assert.equal(leases.rowCount, 0);
  });

  it('two dispatcher shards on two worker processes deliver one backlog, no event claimed by both', async () => {
    receiver = await new TestReceiver([SECRET], () => ({ status: 200, delayMs: 5 })).start();
    const ids = await seedEvents(h.pool, 'shards', 3000);
    const env = { WEBHOOK_URL: receiver.url, GOTONG_TASK_QUEUE: uniqueTaskQueue('delivery-shards'), WEBHOOK_BATCH_SIZE: '100' };
    children.push(startWorkerProcess(h, env, 2), startWorkerProcess(h, env, 2));
    await waitFor('all delivered', async () => (await statusCounts(h.pool)).delivered === 3000, 120_000, 200);
    assert.equal(receiver.received.length, 3000, 'each event sent exactly once');
    assert.equal(receiver.idsSeen().size, ids.length);
    assert.equal(receiver.maxConcurrentPerEvent, 1);
    const attempts = await h.pool.query('SELECT DISTINCT event_id FROM webhook_delivery_attempts');
    assert.equal(attempts.rowCount, 3000);
    for (const shard of [0, 1]) {
      const stats = await h.env.client.workflow.getHandle(dispatcherWorkflowId(shard)).query<DispatcherStats>('stats');
      assert.ok(stats.delivered > 0, `shard ${shard} delivered ${stats.delivered}`);
    }

    // The operator's view of the same shards, through the CLI.
    const status = await runCli(['delivery', 'status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const shards = status.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as DispatcherStats & { workflow_id: string });
    assert.deepEqual(shards.map((s) => s.workflow_id), ['webhook-dispatcher/0', 'webhook-dispatcher/1']);
    assert.equal(shards.reduce((sum, s) => sum + s.delivered, 0), 3000);
    const paused = await runCli(['delivery', 'pause']);
    assert.equal(paused.code, 0, paused.stderr);
    assert.equal((paused.stdout.match(/paused \(operator\)/g) ?? []).length, 2, paused.stdout);
    const resumed = await runCli(['delivery', 'resume']);
    assert.equal((resumed.stdout.match(/ running /g) ?? []).length, 2, resumed.stdout);
    const bad = await runCli(['delivery', 'stop']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /use status, pause, resume or configure/);
  });
});
