import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dispatcherWorkflowId } from '../src/shared/delivery';
import { alive, spawnCli, type Proc } from './helpers/cli-process';
import { generatedFile } from './helpers/files';
import { exited, getHarness, type Harness, resetTables, runCli, seedEvents, statusCounts, uniqueTaskQueue, waitFor } from './helpers/harness';
import { TestReceiver } from './helpers/receiver';

const SECRET = 'lifecycle-secret';

function startWorker(h: Harness, env: Record<string, string>, args: string[] = []): Proc {
  return spawnCli(['worker', '--no-migrate', ...args], {
    TEMPORAL_ADDRESS: h.env.address,
    DATABASE_URL: h.databaseUrl,
    WEBHOOK_SECRET: SECRET,
    GOTONG_LOG_FORMAT: 'json',
    ...env,
  });
}

/** Milliseconds from a signal to the process's exit. */
async function stopWith(p: Proc, signal: NodeJS.Signals): Promise<number> {
  const at = Date.now();
  p.child.kill(signal);
  await exited(p.child);
  return Date.now() - at;
}

describe('worker process lifecycle (SIGTERM, SIGINT)', function () {
  this.timeout(240_000);
  let h: Harness;
  let receiver: TestReceiver | undefined;
  const procs: Proc[] = [];

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
  });
  afterEach(async () => {
    await h.env.client.workflow.getHandle(dispatcherWorkflowId(0)).terminate('test over').catch(() => undefined);
    for (const p of procs.splice(0)) {
      if (alive(p)) p.child.kill('SIGKILL');
      await exited(p.child);
    }
    await receiver?.stop();
    receiver = undefined;
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} mid-pass: exits 0 soon, records what it sent, hands back what it claimed`, async () => {
      receiver = await new TestReceiver([SECRET], () => ({ status: 200, delayMs: 300 })).start();
      await seedEvents(h.pool, 'term', 400);
      const worker = startWorker(h, {
        WEBHOOK_URL: receiver.url,
        GOTONG_TASK_QUEUE: uniqueTaskQueue('lifecycle-pass'),
        WEBHOOK_BATCH_SIZE: '200',
        WEBHOOK_CONCURRENCY: '5',
        WEBHOOK_TIMEOUT_MS: '2000',
      }, ['--dispatchers', '1']);
      procs.push(worker);
      await waitFor('deliveries under way', async () => receiver!.received.length >= 40, 60_000, 20);
      const tookMs = await stopWith(worker, signal);
      assert.equal(worker.child.exitCode, 0, worker.stderr.slice(-3000));
      const leased = await h.pool.query('SELECT 1 FROM webhook_outbox WHERE lease_owner IS NOT NULL');
      assert.equal(leased.rowCount, 0, 'every claim handed back');
      assert.ok(new RegExp(`"msg":"${signal}: stopping`).test(worker.stderr), 'it says why it stops');
      assert.ok(/"msg":"worker stopped"/.test(worker.stderr), 'it says it stopped');
      const { rows: mismatched } = await h.pool.query(
        `SELECT o.event_id FROM webhook_outbox o
          LEFT JOIN (SELECT event_id, count(*) AS n FROM webhook_delivery_attempts GROUP BY event_id) a USING (event_id)
          WHERE coalesce(a.n, 0) <> o.attempts`,
      );
      assert.equal(mismatched.length, 0, 'attempts = attempt-log rows');
      const counts = await statusCounts(h.pool);
      assert.equal(counts.in_flight ?? 0, 0, `events left leased after a graceful stop: ${JSON.stringify(counts)}`);
      assert.ok(tookMs < 15_000, `stopped in ${tookMs} ms`);
    });
  }

  it('SIGTERM while requests hang: what was claimed and not sent goes back at once, not after the request timeout', async () => {
    // Every request hangs until the worker's 20 s deadline: a supervisor's grace period (docker's 10 s) may end first.
    receiver = await new TestReceiver([SECRET], () => 'hang').start();
    await seedEvents(h.pool, 'hang', 200);
    const worker = startWorker(
      h,
      {
        WEBHOOK_URL: receiver.url,
        GOTONG_TASK_QUEUE: uniqueTaskQueue('lifecycle-hang'),
        WEBHOOK_BATCH_SIZE: '100',
        WEBHOOK_CONCURRENCY: '5',
        WEBHOOK_TIMEOUT_MS: '20000',
      },
      ['--dispatchers', '1'],
    );
    procs.push(worker);
    await waitFor('five requests hanging', async () => receiver!.received.length >= 5, 60_000, 20);
    const inFlight = async () => Number((await h.pool.query<{ n: string }>(`SELECT count(*) AS n FROM webhook_outbox WHERE status = 'in_flight'`)).rows[0]!.n);
    assert.ok((await inFlight()) > 5, 'the pass holds more than it is sending');
    worker.child.kill('SIGTERM');
    await waitFor('only the hanging requests still leased', async () => (await inFlight()) <= 5 || !alive(worker), 10_000, 50);
    assert.ok(alive(worker), 'the worker still waits for its requests');
    await exited(worker.child);
    assert.equal(worker.child.exitCode, 0, worker.stderr.slice(-3000));
    assert.deepEqual(await statusCounts(h.pool), { pending: 195, retrying: 5 });
  });

  it('a second SIGTERM while the first waits for hanging requests: says so and ends at once, killed by that signal', async () => {
    receiver = await new TestReceiver([SECRET], () => 'hang').start();
    await seedEvents(h.pool, 'again', 50);
    const worker = startWorker(
      h,
      { WEBHOOK_URL: receiver.url, GOTONG_TASK_QUEUE: uniqueTaskQueue('lifecycle-again'), WEBHOOK_CONCURRENCY: '5', WEBHOOK_TIMEOUT_MS: '30000' },
      ['--dispatchers', '1'],
    );
    procs.push(worker);
    await waitFor('five requests hanging', async () => receiver!.received.length >= 5, 60_000, 20);
    worker.child.kill('SIGTERM');
    await waitFor('the stop announced', async () => /"msg":"SIGTERM: stopping/.test(worker.stderr), 10_000, 20);
    assert.ok(alive(worker), 'the first signal waits for the requests in flight');
    await stopWith(worker, 'SIGTERM');
    // As a second signal did before it was logged: a supervisor still sees the process killed by SIGTERM.
    assert.equal(worker.child.signalCode, 'SIGTERM');
    const last = JSON.parse(worker.stderr.trimEnd().split('\n').at(-1)!) as { level: string; msg: string };
    assert.equal(last.level, 'warn');
    assert.match(last.msg, /^SIGTERM again: exiting now/);
  });

  it('SIGTERM while a slow rate keeps the next slot 50 s away: exits 0 within seconds, its claims handed back', async () => {
    receiver = await new TestReceiver([SECRET]).start();
    await seedEvents(h.pool, 'slow', 20);
    const worker = startWorker(
      h,
      { WEBHOOK_URL: receiver.url, GOTONG_TASK_QUEUE: uniqueTaskQueue('lifecycle-slow'), WEBHOOK_RATE_LIMIT: '0.02' },
      ['--dispatchers', '1'],
    );
    procs.push(worker);
    await waitFor('the first slot used', async () => receiver!.received.length >= 1, 60_000, 50);
    worker.child.kill('SIGTERM');
    // The next slot is 50 s away; a supervisor's grace period is not.
    await waitFor('the worker to exit', async () => !alive(worker), 15_000, 50).catch((err: Error) => {
      throw new Error(`${err.message}: ${worker.stderr.slice(-4000)}`);
    });
    assert.equal(worker.child.exitCode, 0, worker.stderr.slice(-3000));
    assert.deepEqual(await statusCounts(h.pool), { delivered: 1, pending: 19 });
  });

  it('SIGTERM mid-backfill batch: exits 0 soon, the run finishes on another worker with exact counts', async () => {
    const taskQueue = uniqueTaskQueue('lifecycle-backfill');
    const file = generatedFile(`term-${randomUUID()}`, { valid: 150_000, dupEvery: 17, failEvery: 1_999 });
    const first = startWorker(h, { GOTONG_TASK_QUEUE: taskQueue });
    procs.push(first);
    const cli = spawnCli(['webhook-backfill', '--file', file.path, '--batch-size', '50000', '--progress-every', '100000', '--json'], {
      TEMPORAL_ADDRESS: h.env.address,
      DATABASE_URL: h.databaseUrl,
      GOTONG_TASK_QUEUE: taskQueue,
    });
    procs.push(cli);
    await waitFor('the worker polls', async () => /polling task queue/.test(first.stderr), 60_000, 50);
    await waitFor('a batch committed, the next in flight', async () => {
      const { rows } = await h.pool.query<{ n: string }>(`SELECT count(*) AS n FROM batch_ledger`);
      return Number(rows[0]!.n) > 0;
    }, 60_000, 20);
    const tookMs = await stopWith(first, 'SIGTERM');
    assert.equal(first.child.exitCode, 0, first.stderr.slice(-3000));
    const second = startWorker(h, { GOTONG_TASK_QUEUE: taskQueue });
    procs.push(second);
    await exited(cli.child);
    assert.equal(cli.child.exitCode, 0, cli.stderr);
    const summary = JSON.parse(cli.stdout.trimEnd().split('\n').at(-1)!) as Record<string, number>;
    assert.equal(summary.created, file.expected.created);
    assert.equal(summary.failed, file.expected.failed);
    assert.equal(summary.duplicates, file.expected.duplicates);
    assert.ok(tookMs < 15_000, `stopped in ${tookMs} ms`);
  });
});

describe('worker process started with bad settings', function () {
  this.timeout(120_000);

  /** The worker's last stderr line, which must be its one error entry. */
  function lastEntry(stderr: string): { level: string; msg: string } {
    const last = stderr.trimEnd().split('\n').at(-1) ?? '';
    try {
      return JSON.parse(last) as { level: string; msg: string };
    } catch {
      throw new assert.AssertionError({ message: `the last line is not a log entry: ${last}` });
    }
  }

  it('a namespace Temporal does not know: one error entry naming TEMPORAL_NAMESPACE and how to create it, exit 1', async () => {
    const result = await runCli(['worker', '--no-migrate', '--dispatchers', '0'], {
      TEMPORAL_NAMESPACE: 'gotong-no-such-namespace',
      GOTONG_TASK_QUEUE: uniqueTaskQueue('bad-namespace'),
      GOTONG_LOG_FORMAT: 'json',
    });
    assert.equal(result.code, 1, result.stderr);
    const entry = lastEntry(result.stderr);
    assert.equal(entry.level, 'error');
    assert.match(entry.msg, /^namespace 'gotong-no-such-namespace' does not exist on Temporal at \S+; set TEMPORAL_NAMESPACE/);
    assert.match(entry.msg, /temporal operator namespace create --namespace gotong-no-such-namespace$/);
    assert.doesNotMatch(entry.msg, /Status \{ code/, 'no raw gRPC status');
    const errors = result.stderr.trimEnd().split('\n').filter((line) => /"level":"error"/.test(line));
    assert.equal(errors.length, 1, `one error entry: ${errors.join('\n')}`);
  });

  it('Temporal refusing the connection that checks the dispatchers: a warning, and the worker keeps serving', async () => {
    // A proxy in front of Temporal that lets only the worker's own connection through, as a server that stops
    // accepting new connections right after the worker connected would.
    const h = getHarness();
    const [host, port] = h.env.address.split(':');
    const sockets: Socket[] = [];
    let connections = 0;
    const proxy: Server = createServer((client) => {
      sockets.push(client);
      if (++connections > 1) return client.destroy();
      const upstream = connect(Number(port), host);
      sockets.push(upstream);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const address = `127.0.0.1:${(proxy.address() as { port: number }).port}`;
    const worker = spawnCli(['worker', '--no-migrate', '--dispatchers', '1'], {
      TEMPORAL_ADDRESS: address,
      DATABASE_URL: h.databaseUrl,
      GOTONG_TASK_QUEUE: uniqueTaskQueue('dispatcher-check'),
      GOTONG_LOG_FORMAT: 'json',
      WEBHOOK_URL: 'http://127.0.0.1:9/hooks',
      WEBHOOK_SECRET: SECRET,
    });
    try {
      await waitFor('the check to fail, or the worker to end', async () => /could not check the delivery dispatchers/.test(worker.stderr) || !alive(worker), 60_000, 50);
      assert.ok(alive(worker), `the worker ended: ${worker.stderr.slice(-1500)}`);
      assert.match(worker.stderr, /"level":"warn","source":"gotong","msg":"could not check the delivery dispatchers: /);
      await stopWith(worker, 'SIGTERM');
      assert.equal(worker.child.exitCode, 0, worker.stderr.slice(-1500));
    } finally {
      if (alive(worker)) worker.child.kill('SIGKILL');
      await exited(worker.child);
      for (const socket of sockets) socket.destroy();
      proxy.close();
    }
  });
});
