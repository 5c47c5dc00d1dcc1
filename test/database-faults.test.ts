import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { createPool } from '../src/db/pool';
import { ensureDatabase, migrate } from '../src/db/migrate';
import { dispatcherWorkflowId } from '../src/shared/delivery';
import { countersOf, generatedFile } from './helpers/files';
import { alive, adminQuery, spawnCli, stderrTail, summaryOf, type Proc } from './helpers/cli-process';
import { exited, getHarness, resetTables, seedEvents, statusCounts, uniqueTaskQueue, waitFor, type Harness } from './helpers/harness';
import { TestReceiver } from './helpers/receiver';
import { ThrowawayPostgres } from './helpers/throwaway-postgres';

const SECRET = 'database-faults-secret';

/** A worker backend is inside a statement or a transaction right now: a termination hits work in progress. */
async function workerIsBusy(databaseUrl: string): Promise<boolean> {
  const rows = await adminQuery<{ n: string }>(
    databaseUrl,
    `SELECT count(*) AS n FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'gotong-worker'
        AND (state = 'active' OR state LIKE 'idle in transaction%')`,
  );
  return Number(rows[0]!.n) > 0;
}

/** Terminates every backend of this test database but our own; other databases on the server are untouched. */
async function terminateTestBackends(databaseUrl: string): Promise<number> {
  const rows = await adminQuery<{ n: string }>(
    databaseUrl,
    `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()`,
  );
  return Number(rows[0]!.n);
}

/** Fails at once, with what it printed, if a process that must survive the faults has died. */
function assertAlive(procs: Proc[]): void {
  for (const p of procs) {
    assert.ok(alive(p), `a process died (exit ${p.child.exitCode ?? p.child.signalCode}): ${stderrTail(p)}`);
  }
}

/**
 * Terminates every backend `times` times while the worker is in the middle of database work, each time
 * waiting until the run has made progress again (so it resumed on its own), unless it finished first.
 */
async function terminateRepeatedly(
  databaseUrl: string,
  times: number,
  progress: () => Promise<number>,
  finished: () => boolean,
  mustLive: Proc[],
): Promise<number> {
  let kills = 0;
  const check = () => {
    assertAlive(mustLive);
    return finished();
  };
  for (let i = 0; i < times && !finished(); i++) {
    await waitFor('the worker in the middle of database work', async () => check() || (await workerIsBusy(databaseUrl)), 120_000, 5);
    if (finished()) break;
    const before = await progress();
    assert.ok((await terminateTestBackends(databaseUrl)) > 0, 'some backend was terminated');
    kills++;
    await waitFor('progress after the terminations', async () => check() || (await progress().catch(() => before)) > before, 120_000, 50);
  }
  return kills;
}

async function ledgerRows(pool: Pool, prefix: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM batch_ledger WHERE run_key LIKE $1`, [`${prefix}%`]);
  return Number(rows[0]!.n);
}

function startWorker(databaseUrl: string, taskQueue: string, env: Record<string, string> = {}, dispatchers = 0): Proc {
  return spawnCli(['worker', '--no-migrate', '--dispatchers', String(dispatchers)], {
    TEMPORAL_ADDRESS: getHarness().env.address,
    DATABASE_URL: databaseUrl,
    GOTONG_TASK_QUEUE: taskQueue,
    ...env,
  });
}

async function stopAll(procs: Proc[]): Promise<void> {
  for (const p of procs.splice(0)) {
    p.child.kill('SIGKILL');
    await exited(p.child);
  }
}

describe('database faults: terminated connections and a restarted server', function () {
  this.timeout(300_000);
  let h: Harness;
  const procs: Proc[] = [];

  before(() => {
    h = getHarness();
  });
  afterEach(async () => {
    await h.env.client.workflow.getHandle(dispatcherWorkflowId(0)).terminate('test over').catch(() => undefined);
    await stopAll(procs);
  });

  describe('every backend of the test database terminated, repeatedly', () => {
    beforeEach(async () => {
      await resetTables(h.pool);
    });

    it('during a backfill: worker and CLI live on, the summary equals a clean run', async () => {
      const taskQueue = uniqueTaskQueue('fault-backfill');
      const file = generatedFile(`fault-${randomUUID()}`, { valid: 120_000, dupEvery: 17, failEvery: 1_999, blankEvery: 700 });
      const worker = startWorker(h.databaseUrl, taskQueue);
      const cli = spawnCli(['webhook-backfill', '--file', file.path, '--batch-size', '5000', '--progress-every', '100000', '--json'], {
        TEMPORAL_ADDRESS: h.env.address,
        DATABASE_URL: h.databaseUrl,
        GOTONG_TASK_QUEUE: taskQueue,
      });
      procs.push(worker, cli);
      const done = exited(cli.child);

      const kills = await terminateRepeatedly(h.databaseUrl, 4, () => ledgerRows(h.pool, 'webhook-backfill/'), () => !alive(cli), [worker]);
      await done;
      assert.equal(cli.child.exitCode, 0, cli.stderr);
      assert.ok(kills >= 2, `terminated ${kills} times during the run`);
      assert.ok(alive(worker), `the worker died: ${worker.stderr}`);
      assert.doesNotMatch(worker.stderr, /Unhandled|Connection terminated unexpectedly/);
      assert.deepEqual(countersOf(summaryOf(cli) as never), file.expected);
      const counts = await statusCounts(h.pool);
      assert.deepEqual(counts, { pending: file.expected.created });
    });

    it('during a replay: the summary is exact, every row reset once with one audit row', async () => {
      const taskQueue = uniqueTaskQueue('fault-replay');
      const rows = 60_000;
      await h.pool.query(
        `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, attempts,
                                     max_attempts, last_status_code, last_error)
         SELECT 'dead_' || i, 'contribution_created', '1', 'req_' || i, 'user_1', jsonb_build_object('event_id', 'dead_' || i),
                'dead_letter', 5, 5, 503, 'HTTP 503'
           FROM generate_series(1, $1::int) AS i`,
        [rows],
      );
      await h.pool.query('ANALYZE webhook_outbox');
      const worker = startWorker(h.databaseUrl, taskQueue);
      const cli = spawnCli(['webhook-replay-dlq', '--limit', String(rows), '--batch-size', '3000', '--progress-every', '100000', '--json'], {
        TEMPORAL_ADDRESS: h.env.address,
        DATABASE_URL: h.databaseUrl,
        GOTONG_TASK_QUEUE: taskQueue,
      });
      procs.push(worker, cli);
      const done = exited(cli.child);

      const kills = await terminateRepeatedly(h.databaseUrl, 4, () => ledgerRows(h.pool, 'webhook-replay'), () => !alive(cli), [worker]);
      await done;
      assert.equal(cli.child.exitCode, 0, cli.stderr);
      assert.ok(kills >= 2, `terminated ${kills} times during the run`);
      assert.ok(alive(worker), `the worker died: ${worker.stderr}`);
      const summary = summaryOf(cli);
      assert.deepEqual(
        { processed: summary.processed, replayed: summary.replayed, enqueued: summary.enqueued, skipped: summary.skipped, failed: summary.failed },
        { processed: rows, replayed: rows, enqueued: rows, skipped: 0, failed: 0 },
      );
      assert.deepEqual(await statusCounts(h.pool), { pending: rows });
      const audit = await h.pool.query<{ n: string; events: string }>('SELECT count(*) AS n, count(DISTINCT event_id) AS events FROM webhook_replay_audit');
      assert.deepEqual(audit.rows[0], { n: String(rows), events: String(rows) });
    });

    it('during delivery of a backlog: every event delivered at least once, none left in flight', async () => {
      const receiver = await new TestReceiver([SECRET], () => ({ status: 200, delayMs: 10 })).start();
      try {
        const ids = await seedEvents(h.pool, 'fault', 6_000);
        const taskQueue = uniqueTaskQueue('fault-delivery');
        const worker = startWorker(
          h.databaseUrl,
          taskQueue,
          {
            WEBHOOK_URL: receiver.url,
            WEBHOOK_SECRET: SECRET,
            WEBHOOK_BATCH_SIZE: '100',
            WEBHOOK_CONCURRENCY: '20',
            // Keeps the lease short (about 20 s), so outcomes lost with a terminated connection go out again soon.
            WEBHOOK_TIMEOUT_MS: '1000',
          },
          1,
        );
        procs.push(worker);
        const delivered = async () => (await statusCounts(h.pool)).delivered ?? 0;
        const allSeen = () => receiver.idsSeen().size === ids.length;
        const kills = await terminateRepeatedly(h.databaseUrl, 4, async () => receiver.received.length, allSeen, [worker]);
        assert.ok(kills >= 2, `terminated ${kills} times during delivery`);
        await waitFor('every event delivered', async () => (await delivered().catch(() => 0)) === ids.length, 180_000, 250);
        assert.deepEqual(await statusCounts(h.pool), { delivered: ids.length });
        const seen = receiver.idsSeen();
        assert.ok(ids.every((id) => seen.has(id)), 'the receiver saw every event');
        const leases = await h.pool.query('SELECT 1 FROM webhook_outbox WHERE lease_owner IS NOT NULL');
        assert.equal(leases.rowCount, 0);
        assert.ok(alive(worker), `the worker died: ${worker.stderr}`);
        const run = await h.env.client.workflow.getHandle(dispatcherWorkflowId(0)).describe();
        assert.equal(run.status.name, 'RUNNING', 'the dispatcher runs on');
      } finally {
        await receiver.stop();
      }
    });
  });

  describe('a PostgreSQL server of the test\'s own, restarted (pg_ctl restart -m fast) mid-backfill', () => {
    let cluster: ThrowawayPostgres | undefined;
    let pool: Pool | undefined;
    after(async () => {
      await pool?.end().catch(() => undefined);
      await cluster?.stop();
    });

    it('the worker survives, the run resumes by itself, the summary equals a clean run', async () => {
      cluster = await ThrowawayPostgres.start();
      const databaseUrl = cluster.url('gotong_restart');
      await ensureDatabase(databaseUrl);
      pool = createPool(databaseUrl, 2);
      await migrate(pool);
      const taskQueue = uniqueTaskQueue('fault-restart');
      const file = generatedFile(`restart-${randomUUID()}`, { valid: 150_000, dupEvery: 29, failEvery: 2_503 });
      const worker = startWorker(databaseUrl, taskQueue);
      const cli = spawnCli(['webhook-backfill', '--file', file.path, '--batch-size', '5000', '--progress-every', '100000', '--json'], {
        TEMPORAL_ADDRESS: h.env.address,
        DATABASE_URL: databaseUrl,
        GOTONG_TASK_QUEUE: taskQueue,
      });
      procs.push(worker, cli);
      const done = exited(cli.child);
      const batches = () => ledgerRows(pool!, 'webhook-backfill/').catch(() => 0);
      await waitFor('two batches committed', async () => (assertAlive([worker]), (await batches()) >= 2 || !alive(cli)), 120_000, 20);
      await waitFor('the worker in the middle of a batch', async () => !alive(cli) || (await workerIsBusy(databaseUrl).catch(() => false)), 60_000, 5);
      assert.ok(alive(cli), 'the run was still going when the server restarted');
      const atRestart = await batches();
      await cluster.restart();
      await waitFor('the run to finish', async () => (assertAlive([worker]), !alive(cli)), 180_000, 100);
      await done;
      assert.equal(cli.child.exitCode, 0, cli.stderr);
      assert.ok(alive(worker), `the worker died: ${worker.stderr}`);
      assert.doesNotMatch(worker.stderr, /Unhandled|Connection terminated unexpectedly/);
      assert.deepEqual(countersOf(summaryOf(cli) as never), file.expected);
      assert.ok((await batches()) > atRestart, 'batches committed after the restart');
      const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM webhook_outbox');
      assert.equal(Number(rows[0]!.n), file.expected.created);
    });
  });
});
