import assert from 'node:assert/strict';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { Client, type Pool } from 'pg';
import { createActivities } from '../src/activities';
import { cancellablePool, withClient } from '../src/db/cancellable';
import { createPool, sessionTimeouts } from '../src/db/pool';
import { getHarness, runCli, waitFor } from './helpers/harness';

/** The backends of the test database running a statement that contains `marker`, besides this probe. */
async function running(pool: Pool, marker: string): Promise<Array<{ pid: number; wait_event_type: string | null }>> {
  const { rows } = await pool.query<{ pid: number; wait_event_type: string | null }>(
    `SELECT pid, wait_event_type FROM pg_stat_activity
      WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0`,
    [marker],
  );
  return rows;
}

async function backendAlive(pool: Pool, pid: number): Promise<boolean> {
  const { rows } = await pool.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
  return rows.length > 0;
}

describe('cancelling database work with its activity (withClient, cancellablePool)', function () {
  this.timeout(60_000);
  let probe: Pool;
  let pool: Pool;

  before(() => {
    probe = getHarness().pool;
  });
  beforeEach(() => {
    pool = createPool(getHarness().databaseUrl, 3);
  });
  afterEach(async () => {
    await pool.end();
  });

  it('withClient: an abort cancels the running statement in PostgreSQL, and the client is not reused', async () => {
    const controller = new AbortController();
    const marker = `withClient-${process.pid}-${Date.now()}`;
    const work = withClient(pool, controller.signal, (client) => client.query(`SELECT pg_sleep(60) /* ${marker} */`));
    await waitFor('the statement running', async () => (await running(probe, marker)).length === 1, 10_000, 20);
    const pid = (await running(probe, marker))[0]!.pid;
    controller.abort();
    await assert.rejects(work, (err: { code?: string }) => err.code === '57014');
    assert.deepEqual(await running(probe, marker), [], 'nothing left running in PostgreSQL');
    await waitFor('its connection closed', async () => !(await backendAlive(probe, pid)), 10_000, 20);
    // The pool goes on with fresh connections.
    assert.deepEqual((await pool.query<{ one: number }>('SELECT 1 AS one')).rows, [{ one: 1 }]);
  });

  it('cancellablePool: a lock wait and a pool.query statement both cancelled; statements after the abort still run', async () => {
    const holder = new Client({ connectionString: getHarness().databaseUrl });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock(4242)');
      const controller = new AbortController();
      const scoped = cancellablePool(pool, controller.signal);
      const marker = `scoped-${process.pid}-${Date.now()}`;
      const inTransaction = (async () => {
        const client = await scoped.connect();
        try {
          await client.query('BEGIN');
          await client.query(`SELECT pg_advisory_xact_lock(4242) /* ${marker} */`);
        } finally {
          client.release();
        }
      })();
      const viaQuery = scoped.query(`SELECT pg_sleep(60) /* ${marker} */`);
      viaQuery.catch(() => undefined); // asserted below, after the other one
      inTransaction.catch(() => undefined);
      await waitFor('both statements running', async () => (await running(probe, marker)).length === 2, 10_000, 20);
      controller.abort();
      await assert.rejects(inTransaction, (err: { code?: string }) => err.code === '57014');
      await assert.rejects(viaQuery, (err: { code?: string }) => err.code === '57014');
      assert.deepEqual(await running(probe, marker), []);
      const waiting = await probe.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted`);
      assert.equal(waiting.rowCount, 0, 'no lock wait left behind');
      // Winding down after the abort (a rollback, handing back claims) still works.
      assert.deepEqual((await scoped.query<{ one: number }>('SELECT 1 AS one')).rows, [{ one: 1 }]);
    } finally {
      await holder.end();
    }
  });

  it("an activity asked to stop lets a statement in flight finish; one whose attempt is over has it cancelled at once", async () => {
    const holder = new Client({ connectionString: getHarness().databaseUrl });
    await holder.connect();
    try {
      const blockedStatement = async (reason: string) => {
        await holder.query('SELECT pg_advisory_lock(4343)');
        const controller = new AbortController();
        const marker = `${reason}-${process.pid}-${Date.now()}`;
        const statement = cancellablePool(pool, controller.signal).query(`SELECT pg_advisory_xact_lock(4343) /* ${marker} */`);
        statement.catch(() => undefined);
        await waitFor('the statement waiting for the lock', async () => (await running(probe, marker)).length === 1, 10_000, 20);
        // Temporal's cancellation reason is the message of the signal's reason (a CancelledFailure).
        controller.abort(Object.assign(new Error(reason), { name: 'CancelledFailure' }));
        return { statement };
      };

      // CANCELLED (or WORKER_SHUTDOWN): the activity's code winds down; a statement that ends soon is left to end.
      const windDown = await blockedStatement('CANCELLED');
      // Looked at from a fresh connection, as the canceller would connect: the statement still waits.
      const look = new Client({ connectionString: getHarness().databaseUrl });
      await look.connect();
      const waiting = await look.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 4343 AND NOT granted`);
      await look.end();
      assert.equal(waiting.rowCount, 1, 'not cancelled at once');
      await holder.query('SELECT pg_advisory_unlock(4343)');
      await windDown.statement;

      // TIMED_OUT: the server has given up on this attempt and a retry may be running: cancelled at once,
      // while the lock it waits for is still held.
      const stale = await blockedStatement('TIMED_OUT');
      await assert.rejects(stale.statement, (err: { code?: string }) => err.code === '57014');
      await holder.query('SELECT pg_advisory_unlock(4343)');
    } finally {
      await holder.end();
    }
  });

  it('a backend that does not answer the cancel has its connection closed under it after a grace period', async function () {
    const controller = new AbortController();
    const marker = `stuck-${process.pid}-${Date.now()}`;
    const work = withClient(pool, controller.signal, (client) => client.query(`SELECT pg_sleep(60) /* ${marker} */`));
    await waitFor('the statement running', async () => (await running(probe, marker)).length === 1, 10_000, 20);
    const pid = (await running(probe, marker))[0]!.pid;
    try {
      // A stopped backend stands for a server that is gone without closing the socket (a failover).
      process.kill(pid, 'SIGSTOP');
    } catch (err) {
      if ((err as { code?: string }).code === 'EPERM') this.skip(); // needs to run as root or as the server's user
      throw err;
    }
    try {
      controller.abort();
      await assert.rejects(work, /Connection terminated/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitFor('the backend gone', async () => !(await backendAlive(probe, pid)), 20_000, 50);
  });

  it('at an activity boundary: cancelling the activity cancels its blocked statement in PostgreSQL (after the grace)', async () => {
    const marker = `activity-${process.pid}-${Date.now()}`;
    const locker = new Client({ connectionString: getHarness().databaseUrl, application_name: marker });
    await locker.connect();
    try {
      // A long transaction holding the outbox: the runbook's poll waits behind it.
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE webhook_outbox IN ACCESS EXCLUSIVE MODE');
      // The activity failing as cancelled is the point here; the worker's warning about it is noise.
      const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
      const activities = createActivities({ pool });
      const poll = env.run(activities.outboxMetrics, { sourceRun: marker });
      const blocked = async () => {
        const { rows } = await probe.query(
          `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND application_name = 'gotong-worker' AND strpos(query, 'webhook_outbox') > 0`,
        );
        return rows.length;
      };
      await waitFor('the activity waiting for the lock', async () => (await blocked()) === 1, 10_000, 20);
      env.cancel();
      await assert.rejects(poll, (err: { code?: string }) => err.code === '57014');
      assert.equal(await blocked(), 0, 'its statement no longer waits beside a retry');
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      await locker.end();
    }
  });
});

describe('session timeouts on every pooled connection', function () {
  this.timeout(60_000);

  it('defaults are set on each session, and GOTONG_DB_* override them', async () => {
    const byDefault = createPool(getHarness().databaseUrl, 1, sessionTimeouts({}));
    const overridden = createPool(getHarness().databaseUrl, 1, sessionTimeouts({ GOTONG_DB_STATEMENT_TIMEOUT_MS: '1500', GOTONG_DB_LOCK_TIMEOUT_MS: '0' }));
    try {
      const settings = async (pool: Pool) =>
        (await pool.query<{ s: string; l: string; i: string }>(
          `SELECT current_setting('statement_timeout') AS s, current_setting('lock_timeout') AS l,
                  current_setting('idle_in_transaction_session_timeout') AS i`,
        )).rows[0];
      assert.deepEqual(await settings(byDefault), { s: '2min', l: '30s', i: '1min' });
      assert.deepEqual(await settings(overridden), { s: '1500ms', l: '0', i: '1min' });
    } finally {
      await byDefault.end();
      await overridden.end();
    }
  });

  it('a malformed value stops a command before it starts: one line, exit 2', async () => {
    const result = await runCli(['migrate'], { GOTONG_DB_LOCK_TIMEOUT_MS: '30s' });
    assert.equal(result.code, 2);
    assert.equal(result.stderr, "error: GOTONG_DB_LOCK_TIMEOUT_MS must be a whole number of milliseconds (0: no limit), not '30s'\n");
  });

  it('a statement over the limit is cancelled by the server; a session idle in a transaction is closed, and the process lives on', async () => {
    const pool = createPool(getHarness().databaseUrl, 2, { statementMs: 300, lockMs: 0, idleInTransactionMs: 300 });
    try {
      await assert.rejects(pool.query('SELECT pg_sleep(5)'), /canceling statement due to statement timeout/);
      const client = await pool.connect();
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await client.query('BEGIN');
      // The server ends the session; the client's 'error' event has a listener, so nothing crashes.
      await waitFor('the idle transaction closed by the server', async () => !(await backendAlive(getHarness().pool, pid)), 10_000, 50);
      await assert.rejects(client.query('SELECT 1'));
      client.release();
      assert.deepEqual((await pool.query<{ one: number }>('SELECT 1 AS one')).rows, [{ one: 1 }]);
    } finally {
      await pool.end();
    }
  });
});
