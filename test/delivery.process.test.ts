import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createPool } from '../src/db/pool';
import { LOST_ATTEMPT_ERROR } from '../src/db/queries';
import { type DispatcherStats, dispatcherWorkflowId, passHeartbeatTimeoutMs, resolveDispatcherOptions } from '../src/shared/delivery';
import { webhookDispatcher } from '../src/workflows/dispatcher';
import { TestReceiver } from './helpers/receiver';
import {
  CLI,
  exited,
  getHarness,
  type Harness,
  resetTables,
  runCli,
  seedEvents,
  statusCounts,
  uniqueTaskQueue,
  waitFor,
  withWorker,
} from './helpers/harness';

const SECRET = 'process-test-secret';

/** A worker process; `dispatchers` undefined leaves the flag out (keep the running count). Its stderr is kept. */
function startWorkerProcess(h: Harness, env: Record<string, string>, dispatchers?: number): ChildProcess & { stderrText: () => string } {
  const args = [CLI, 'worker', '--no-migrate', ...(dispatchers === undefined ? [] : ['--dispatchers', String(dispatchers)])];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: h.databaseUrl, WEBHOOK_SECRET: SECRET, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return Object.assign(child, { stderrText: () => stderr });
}


describe('delivery with worker processes (SIGKILL, shards)', function () {
  this.timeout(180_000);
  let h: Harness;
  let receiver: TestReceiver;
  const children: ChildProcess[] = [];

  before(() => {
    h = getHarness();
  });
  const shardStats = (shard: number) => h.env.client.workflow.getHandle(dispatcherWorkflowId(shard)).query<DispatcherStats>('stats');
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

  it('SIGKILL the worker mid-pass: its events are taken back within about the heartbeat timeout, attempts counted right', async () => {
    // A slow receiver and long passes: 200 events a claim at 5 requests in flight take about 12 s to send, so the
    // killed pass holds many claimed events (and has renewed their leases). Sized for the whole pass, as leases
    // were before, they would have lasted ceil(200/5) x 2 x 2 s + 10 s = 170 s.
    receiver = await new TestReceiver([SECRET], () => ({ status: 200, delayMs: 300 })).start();
    const ids = await seedEvents(h.pool, 'crash', 400);
    const requestTimeoutMs = 2_000;
    const heartbeatTimeoutMs = passHeartbeatTimeoutMs({ requestTimeoutMs });
    const env = {
      WEBHOOK_URL: receiver.url,
      GOTONG_TASK_QUEUE: uniqueTaskQueue('delivery-crash'),
      WEBHOOK_BATCH_SIZE: '200',
      WEBHOOK_CONCURRENCY: '5',
      WEBHOOK_TIMEOUT_MS: String(requestTimeoutMs),
    };
    const first = startWorkerProcess(h, env, 1);
    children.push(first);
    await waitFor('deliveries under way', async () => receiver.received.length >= 60, 60_000, 20);
    // A second worker is up before the kill, so what follows it is the crash being noticed, not a worker starting.
    const second = startWorkerProcess(h, env, 1);
    children.push(second);
    await waitFor('the second worker polls', async () => /polling task queue/.test(second.stderrText()), 60_000, 50);
    await waitFor('more deliveries', async () => receiver.received.length >= 100, 60_000, 20);
    first.kill('SIGKILL');
    await exited(first);
    const killedAt = Date.now();
    const { rows: held } = await h.pool.query<{ n: string; longest_ms: string }>(
      `SELECT count(*) AS n, extract(epoch FROM max(lease_expires_at) - now()) * 1000 AS longest_ms FROM webhook_outbox WHERE status = 'in_flight'`,
    );
    assert.ok(Number(held[0]!.n) > 0, 'the kill left claimed events in flight');
    assert.ok(Number(held[0]!.longest_ms) <= heartbeatTimeoutMs, `a lease runs ${held[0]!.longest_ms} ms more`);

    await waitFor('all delivered', async () => (await statusCounts(h.pool)).delivered === 400, 120_000, 200);
    assert.deepEqual(await statusCounts(h.pool), { delivered: 400 });
    const seen = receiver.idsSeen();
    assert.ok(ids.every((id) => seen.has(id)), 'the receiver saw every event at least once');
    const leases = await h.pool.query('SELECT 1 FROM webhook_outbox WHERE lease_owner IS NOT NULL');
    assert.equal(leases.rowCount, 0);

    // The killed pass's attempts are logged as lost when taken back, so every counted attempt has exactly one row.
    const { rows: lost } = await h.pool.query<{ n: string; first_at: Date }>(
      'SELECT count(*) AS n, min(finished_at) AS first_at FROM webhook_delivery_attempts WHERE error = $1',
      [LOST_ATTEMPT_ERROR],
    );
    assert.ok(Number(lost[0]!.n) > 0, 'some attempts were lost with the worker');
    const takenBackAfterMs = lost[0]!.first_at.getTime() - killedAt;
    // About the heartbeat timeout (13-14 s of 14 s here; a generous margin for a busy machine), far from the 170 s a
    // lease sized for the whole pass lasted.
    assert.ok(takenBackAfterMs <= heartbeatTimeoutMs + 15_000, `taken back ${takenBackAfterMs} ms after the kill`);
    const { rows: mismatched } = await h.pool.query(
      `SELECT o.event_id FROM webhook_outbox o
        LEFT JOIN (SELECT event_id, count(*) AS n, count(DISTINCT attempt_number) AS distinct_n, max(attempt_number) AS top
                     FROM webhook_delivery_attempts GROUP BY event_id) a USING (event_id)
        WHERE a.n IS DISTINCT FROM o.attempts OR a.distinct_n <> a.n OR a.top <> o.attempts`,
    );
    assert.deepEqual(mismatched, [], 'attempts = attempt-log rows, numbered 1..attempts');
  });

  it('a pass that fails does not end the dispatcher: stats and delivery status show the error and when, and it goes on', async () => {
    receiver = await new TestReceiver([SECRET]).start();
    await seedEvents(h.pool, 'recover', 50);
    const taskQueue = uniqueTaskQueue('delivery-errors');
    const missing = new URL(h.databaseUrl);
    missing.pathname = '/gotong_no_such_database';
    const brokenPool = createPool(missing.toString(), 2);
    const delivery = { url: receiver.url, secret: SECRET };
    const stats = () => h.env.client.workflow.getHandle(dispatcherWorkflowId(0)).query<DispatcherStats>('stats');
    try {
      // First, the only worker that can deliver has lost its database.
      await withWorker(
        taskQueue,
        async () => {
          await h.env.client.workflow.start(webhookDispatcher, {
            taskQueue,
            workflowId: dispatcherWorkflowId(0),
            args: [{ shard: 0, shards: 1, options: resolveDispatcherOptions({ maxIdleMs: 200, backoffBaseMs: 50 }).options }],
          });
          await waitFor('two failed passes in a row', async () => ((await stats()).lastError?.inARow ?? 0) >= 2);
          const status = await runCli(['delivery', 'status']);
          assert.equal(status.code, 0, status.stderr);
          assert.match(status.stdout, /webhook-dispatcher\/0 running .* last_error_at=\d{4}-\d\d-\d\dT\S+ failed_passes_in_a_row=\d+ last_error=".*does not exist/);
        },
        delivery,
        { pool: brokenPool },
      );
      // Then one that works: the same run goes on and delivers everything.
      await withWorker(taskQueue, () => waitFor('all delivered', async () => (await statusCounts(h.pool)).delivered === 50, 60_000), delivery);
      const after = await h.env.client.workflow.getHandle(dispatcherWorkflowId(0)).describe();
      assert.equal(after.status.name, 'RUNNING');
      await withWorker(taskQueue, async () => {
        await waitFor('a pass succeeded since', async () => (await stats()).lastError?.inARow === 0);
        const last = await stats();
        assert.equal(last.lastError?.inARow, 0, 'the error stays visible, with no failure since');
        assert.match(last.lastError?.message ?? '', /does not exist/);
      });
    } finally {
      await brokenPool.end();
    }
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
    // The shards' figures arrive as their passes end, just after the outcomes are in the outbox.
    await waitFor('stats caught up', async () => (await shardStats(0)).delivered + (await shardStats(1)).delivered === 3000, 30_000);
    for (const shard of [0, 1]) {
      const stats = await shardStats(shard);
      assert.ok(stats.delivered > 0, `shard ${shard} delivered ${stats.delivered}`);
    }

    // The operator's view of the same shards, through the CLI.
    const status = await runCli(['delivery', 'status', '--json']);
    assert.equal(status.code, 0, status.stderr);
    const shards = status.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as DispatcherStats & { workflow_id: string });
    assert.deepEqual(shards.map((s) => s.workflow_id), ['webhook-dispatcher/0', 'webhook-dispatcher/1']);
    assert.equal(shards.reduce((sum, s) => sum + s.delivered, 0), 3000);
    // The backlog and in-flight figures say when a pass counted them: a paused shard's grow old.
    for (const s of shards) assert.match(String((s as { counts_as_of?: unknown }).counts_as_of), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);
    const paused = await runCli(['delivery', 'pause']);
    assert.equal(paused.code, 0, paused.stderr);
    assert.equal((paused.stdout.match(/paused \(operator\)/g) ?? []).length, 2, paused.stdout);
    assert.equal((paused.stdout.match(/ oldest_due_age_ms=\d+ counts_age_s=\d+ /g) ?? []).length, 2, paused.stdout);
    const resumed = await runCli(['delivery', 'resume']);
    assert.equal((resumed.stdout.match(/ running /g) ?? []).length, 2, resumed.stdout);
    const bad = await runCli(['delivery', 'stop']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /use status, pause, resume or configure/);
  });
  it('delivery configure changes the running dispatchers, a worker names settings that differ, shards change both ways', async () => {
    receiver = await new TestReceiver([SECRET]).start();
    const queue = uniqueTaskQueue('delivery-configure');
    const env = { WEBHOOK_URL: receiver.url, GOTONG_TASK_QUEUE: queue };
    const cli = (args: string[]) => runCli(args, { GOTONG_TASK_QUEUE: queue });
    await seedEvents(h.pool, 'before', 100);
    children.push(startWorkerProcess(h, env));
    await waitFor('delivered', async () => (await statusCounts(h.pool)).delivered === 100, 60_000, 200);

    const configured = await cli(['delivery', 'configure', '--rate', '50', '--timeout', '3s', '--backoff-cap', '30s', '--json']);
    assert.equal(configured.code, 0, configured.stderr);
    const [answer] = configured.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { workflow_id: string; settings: Record<string, number> });
    assert.equal(answer!.workflow_id, 'webhook-dispatcher/0');
    assert.deepEqual(
      [answer!.settings.rate_per_second, answer!.settings.request_timeout_ms, answer!.settings.backoff_cap_ms, answer!.settings.concurrency],
      [50, 3000, 30_000, 64],
    );
    const shown = await cli(['delivery', 'configure']);
    assert.match(shown.stdout, /webhook-dispatcher\/0 settings in force: rate=50 concurrency=64 timeout=3s backoff_base=1s backoff_cap=30s .* shards=1/);

    // Refused before anything changes: one line naming the fix, exit code 2.
    for (const [args, message] of [
      [['--backoff-base', '2m'], /--backoff-base \(120000 ms\) must not exceed --backoff-cap \(30000 ms\).*nothing was changed/],
      [['--rate', 'fast'], /--rate fast: use deliveries per second/],
      [['--concurrency', '0'], /--concurrency must be between 1 and 256/],
      [['--timeout', '30'], /--timeout 30: use a duration such as 90s/],
    ] as const) {
      const refused = await cli(['delivery', 'configure', ...args]);
      assert.equal(refused.code, 2, refused.stdout);
      assert.match(refused.stderr, message);
      assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
    }
    const misplaced = await cli(['delivery', 'status', '--rate', '5']);
    assert.equal(misplaced.code, 2);
    assert.match(misplaced.stderr, /belong to 'delivery configure'/);
    // The Update's validator refuses a bad patch sent by any client, not only this CLI.
    await assert.rejects(
      h.env.client.workflow.getHandle(dispatcherWorkflowId(0)).executeUpdate('configure', { args: [{ concurrency: 0 }] }),
      (err: Error & { cause?: { message?: string } }) => /concurrency must be between 1 and 256/.test(String(err.cause?.message)),
    );
    assert.equal((await shardStats(0)).settings.ratePerSecond, 50, 'nothing changed');

    // A worker whose environment differs says so, and how to apply it; the dispatchers keep their settings.
    const other = startWorkerProcess(h, { ...env, WEBHOOK_RATE_LIMIT: '20', WEBHOOK_CONCURRENCY: '8', WEBHOOK_TIMEOUT_MS: '3000' });
    children.push(other);
    await waitFor('the worker names the differences', async () => /to apply these/.test(other.stderrText()), 60_000, 100);
    assert.match(other.stderrText(), /WEBHOOK_RATE_LIMIT=20 \(running: 50\), WEBHOOK_CONCURRENCY=8 \(running: 64\); to apply these: gotong-worker delivery configure --rate 20 --concurrency 8"/);
    assert.equal((await shardStats(0)).settings.ratePerSecond, 50);

    // Two shards: the new one starts with the settings in force and delivers.
    const grown = await cli(['delivery', 'configure', '--shards', '2', '--rate', '0']);
    assert.equal(grown.code, 0, grown.stderr);
    assert.equal((grown.stdout.match(/settings in force: rate=0 .* shards=2\n/g) ?? []).length, 2, grown.stdout);
    await seedEvents(h.pool, 'after', 2000);
    await waitFor('delivered', async () => (await statusCounts(h.pool)).delivered === 2100, 60_000, 200);
    // A pass's figures reach its shard when the pass ends, just after its outcomes are in the outbox.
    await waitFor('shard 1 reports deliveries', async () => (await shardStats(1)).delivered > 0, 30_000);
    assert.equal((await shardStats(1)).settings.requestTimeoutMs, 3000);

    // Back to one, by a worker started with --dispatchers 1: shard 1 finishes its passes and ends.
    children.push(startWorkerProcess(h, env, 1));
    await waitFor('shard 1 ended', async () => (await h.env.client.workflow.getHandle(dispatcherWorkflowId(1)).describe()).status.name === 'COMPLETED', 60_000, 200);
    assert.equal((await shardStats(0)).shards, 1);
    const status = await cli(['delivery', 'status', '--json']);
    assert.deepEqual(status.stdout.trimEnd().split('\n').map((l) => (JSON.parse(l) as { workflow_id: string }).workflow_id), ['webhook-dispatcher/0']);
  });
  it('a second worker without WEBHOOK_URL on the same task queue during delivery: nothing fails, all delivered', async () => {
    receiver = await new TestReceiver([SECRET], () => ({ status: 200, delayMs: 2 })).start();
    const queue = uniqueTaskQueue('delivery-fleet');
    await seedEvents(h.pool, 'fleet', 3000);
    // A host that only reads backfill files: no receiver. It polls the task queue (and may run the dispatcher's
    // workflow tasks), but never the delivery queue.
    const reader = startWorkerProcess(h, { GOTONG_TASK_QUEUE: queue, WEBHOOK_URL: '', WEBHOOK_SECRET: '' });
    children.push(reader);
    await waitFor('the reader says it does not deliver', async () => /delivery is off on this worker/.test(reader.stderrText()), 60_000, 100);
    children.push(startWorkerProcess(h, { GOTONG_TASK_QUEUE: queue, WEBHOOK_URL: receiver.url, WEBHOOK_BATCH_SIZE: '100' }, 1));
    await waitFor('all delivered', async () => (await statusCounts(h.pool)).delivered === 3000, 120_000, 200);
    assert.deepEqual(await statusCounts(h.pool), { delivered: 3000 });
    await waitFor('stats caught up', async () => (await shardStats(0)).delivered === 3000, 30_000);
    const stats = await shardStats(0);
    assert.equal(stats.lastError, null, JSON.stringify(stats.lastError));
    assert.equal((await h.env.client.workflow.getHandle(dispatcherWorkflowId(0)).describe()).status.name, 'RUNNING');
    // Only the delivering worker polls the delivery queue.
    const pollers = await h.env.client.workflowService.describeTaskQueue({
      namespace: h.env.namespace ?? 'default',
      taskQueue: { name: `${queue}-delivery` },
      taskQueueType: 2, // activity task queue
    });
    assert.equal(new Set((pollers.pollers ?? []).map((p) => p.identity)).size, 1);
  });
  it('dispatcher settings out of bounds in the environment are refused at start, one line naming the variable', async () => {
    receiver = await new TestReceiver([SECRET]).start();
    for (const [env, message] of [
      [{ WEBHOOK_CONCURRENCY: '0' }, /^error: WEBHOOK_CONCURRENCY must be between 1 and 256, not 0$/],
      [{ WEBHOOK_RATE_LIMIT: 'fast' }, /^error: WEBHOOK_RATE_LIMIT must be a number of deliveries per second \(0: no limit\), not 'fast'$/],
      [{ WEBHOOK_BACKOFF_BASE_MS: '90000' }, /^error: WEBHOOK_BACKOFF_BASE_MS \(90000 ms\) must not exceed WEBHOOK_BACKOFF_CAP_MS \(60000 ms\)$/],
      [{ WEBHOOK_CLAIM_BYTES: '256' }, /^error: WEBHOOK_CLAIM_BYTES must be between 64KiB and 256MiB, not 256$/],
    ] as const) {
      const result = await runCli(['worker', '--no-migrate'], { ...env, WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: SECRET }, 30_000);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr.trim(), message);
    }
  });
});
