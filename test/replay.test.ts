import assert from 'node:assert/strict';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool } from 'pg';
import { inputRootsFromEnvironment } from '../src/input-files';
import { loadEventIds, runReplayBatch } from '../src/replay/batch';
import type { ReplayFilter, ReplayInput, ReplayProgress, ReplaySummary } from '../src/shared/replay';
import { webhookDispatcher } from '../src/workflows/dispatcher';
import { tmp } from './helpers/files';
import { CLI, getHarness, resetTables, runCli, seedEvents, statusCounts, uniqueTaskQueue, waitFor, withWorker, type Harness } from './helpers/harness';
import { startReplayRun } from './helpers/start-runs';
import { TestReceiver } from './helpers/receiver';

interface Seed {
  prefix: string;
  count: number;
  status: string;
  eventType?: string;
  code?: number | null;
  lease?: 'live' | 'expired';
}

/** Puts rows into the outbox in given states, as earlier deliveries would have left them. */
async function seedStates(pool: Pool, seeds: Seed[]): Promise<void> {
  for (const s of seeds) {
    const ids = await seedEvents(pool, s.prefix, s.count, 5);
    await pool.query(
      `UPDATE webhook_outbox
          SET status = $2::webhook_status, event_type = $3, last_status_code = $4, attempts = 5,
              last_error = CASE WHEN $4::int IS NULL THEN NULL ELSE 'HTTP ' || $4 END,
              lease_owner = CASE WHEN $5::text IS NULL THEN NULL ELSE 'someone' END,
              lease_expires_at = CASE $5::text WHEN 'live' THEN now() + interval '1 hour'
                                               WHEN 'expired' THEN now() - interval '1 minute' END
        WHERE event_id = ANY($1)`,
      [ids, s.status, s.eventType ?? 'contribution_created', s.code ?? null, s.lease ?? null],
    );
  }
}

const MIX: Seed[] = [
  { prefix: 'dl_a', count: 20, status: 'dead_letter', eventType: 'type_a', code: 500 },
  { prefix: 'dl_b', count: 10, status: 'dead_letter', eventType: 'type_b', code: 400 },
  { prefix: 'ok', count: 5, status: 'delivered', code: 200 },
  { prefix: 'pend', count: 5, status: 'pending' },
  { prefix: 'retry', count: 4, status: 'retrying', code: 503 },
  { prefix: 'live', count: 3, status: 'in_flight', lease: 'live' },
  { prefix: 'expired', count: 2, status: 'in_flight', lease: 'expired' },
];

async function tableSnapshot(pool: Pool): Promise<Map<string, string>> {
  const { rows } = await pool.query<{ event_id: string; row: string }>(
    'SELECT event_id, row_to_json(o)::text AS row FROM webhook_outbox o',
  );
  return new Map(rows.map((r) => [r.event_id, r.row]));
}

const counters = (s: ReplaySummary) => ({ processed: s.processed, replayed: s.replayed, enqueued: s.enqueued, skipped: s.skipped, failed: s.failed });

describe('webhookReplayDlq (real Temporal server, real PostgreSQL)', function () {
  this.timeout(300_000);
  let h: Harness;
  let taskQueue: string;

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('replay');
  });

  const start = (filter: Partial<ReplayFilter> = {}, opts: Partial<ReplayInput> = {}) => startReplayRun(taskQueue, filter, opts);
  const replay = async (filter: Partial<ReplayFilter> = {}, opts: Partial<ReplayInput> = {}) => (await start(filter, opts)).result();

  it('dry run counts what execute then resets; untouched rows stay untouched; a second run resets nothing', async () => {
    await seedStates(h.pool, MIX);
    const before = await tableSnapshot(h.pool);
    await withWorker(taskQueue, async () => {
      const dry = await replay({}, { dryRun: true });
      assert.deepEqual(counters(dry), { processed: 30, replayed: 30, enqueued: 30, skipped: 0, failed: 0 });
      assert.deepEqual(dry.preview!.byEventType, { type_a: 20, type_b: 10 });
      assert.deepEqual(dry.preview!.byStatusCode, { '400': 10, '500': 20 });
      assert.equal(dry.preview!.sampleIds.length, 10);
      assert.deepEqual(await tableSnapshot(h.pool), before, 'a dry run writes nothing');

      const exec = await replay();
      assert.deepEqual(counters(exec), counters(dry));
      const again = await replay();
      assert.deepEqual(counters(again), { processed: 0, replayed: 0, enqueued: 0, skipped: 0, failed: 0 });
    });
    const after = await tableSnapshot(h.pool);
    const { rows } = await h.pool.query<{ event_id: string; status: string; attempts: number; last_error: string | null; replay_count: number; next_due: boolean }>(
      `SELECT event_id, status, attempts, last_error, replay_count, next_attempt_at <= now() AS next_due
         FROM webhook_outbox WHERE event_id LIKE 'dl_%'`,
    );
    assert.equal(rows.length, 30);
    assert.ok(rows.every((r) => r.status === 'pending' && r.attempts === 0 && r.last_error === null && r.replay_count === 1 && r.next_due));
    for (const [id, row] of before) {
      if (!id.startsWith('dl_')) assert.equal(after.get(id), row, `${id} untouched`);
    }
    const audit = await h.pool.query<{ previous_status: string; previous_attempts: number; previous_error: string }>(
      'SELECT previous_status, previous_attempts, previous_error FROM webhook_replay_audit',
    );
    assert.equal(audit.rowCount, 30);
    assert.ok(audit.rows.every((a) => a.previous_status === 'dead_letter' && a.previous_attempts === 5 && /^HTTP (400|500)$/.test(a.previous_error)));
  });

  it('filters: event type, status-code class, limit, id list, in-flight only with an expired lease', async () => {
    await seedStates(h.pool, MIX);
    await withWorker(taskQueue, async () => {
      assert.equal((await replay({ eventTypes: ['type_b'] }, { dryRun: true })).processed, 10);
      assert.equal((await replay({ statusClass: 5 }, { dryRun: true })).processed, 20);
      assert.equal((await replay({ statusCode: 400 }, { dryRun: true })).processed, 10);
      assert.equal((await replay({ status: 'in_flight' }, { dryRun: true })).processed, 2, 'live leases are never touched');
      const limited = await replay({}, { limit: 7, batchSize: 3 });
      assert.deepEqual(counters(limited), { processed: 7, replayed: 7, enqueued: 7, skipped: 0, failed: 0 });
      const idsFile = join(tmp, `ids-${randomUUID()}.txt`);
      writeFileSync(idsFile, 'dl_b_1\n\ndl_b_2\r\nnot_there\n');
      assert.equal((await replay({ eventIdsPath: idsFile })).replayed, 2);
      const inFlight = await replay({ status: 'in_flight' });
      assert.equal(inFlight.replayed, 2);
    });
    const live = await h.pool.query(`SELECT 1 FROM webhook_outbox WHERE event_id LIKE 'live_%' AND status = 'in_flight'`);
    assert.equal(live.rowCount, 3);
  });

  it('a reset of the finished run replays every batch from the ledger: each row reset exactly once', async () => {
    await seedStates(h.pool, [{ prefix: 'dl', count: 250, status: 'dead_letter', code: 500 }]);
    await withWorker(taskQueue, async () => {
      const handle = await start({}, { batchSize: 40 });
      const original = await handle.result();
      assert.equal(original.replayed, 250);
      // The rows are pending now; make them dead letters again so a re-execution *could* reset them twice.
      await h.pool.query(`UPDATE webhook_outbox SET status = 'dead_letter'`);
      const history = await handle.fetchHistory();
      const firstTaskCompleted = history.events!.find((e) => e.workflowTaskCompletedEventAttributes)!;
      const { runId } = await h.env.client.workflowService.resetWorkflowExecution({
        namespace: h.env.namespace ?? 'default',
        workflowExecution: { workflowId: handle.workflowId, runId: handle.firstExecutionRunId },
        workflowTaskFinishEventId: firstTaskCompleted.eventId,
        requestId: randomUUID(),
        reason: 'test: re-execute every batch',
      });
      const replayed = await h.env.client.workflow.getHandle(handle.workflowId, runId!).result();
      assert.deepEqual(counters(replayed), counters(original));
    });
    const audit = await h.pool.query('SELECT 1 FROM webhook_replay_audit');
    assert.equal(audit.rowCount, 250);
    const counts = await h.pool.query<{ n: string }>(`SELECT count(*) AS n FROM webhook_outbox WHERE replay_count = 1`);
    assert.equal(Number(counts.rows[0]!.n), 250);
  });

  it('SIGKILL the worker mid-replay of 100,000 rows: every row reset once, the summary a clean run’s', async () => {
    await seedStates(h.pool, [{ prefix: 'big', count: 100_000, status: 'dead_letter', code: 502 }]);
    const handle = await start({}, { limit: 100_000, batchSize: 2000 });
    const worker = (): ChildProcess =>
      spawn(process.execPath, [CLI, 'worker', '--no-migrate', '--dispatchers', '0'], {
        env: { ...process.env, TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: h.databaseUrl, GOTONG_TASK_QUEUE: taskQueue },
        stdio: 'ignore',
      });
    // Every worker process dies with the test, whatever fails, so none outlives the suite.
    const workers: ChildProcess[] = [];
    try {
      const first = worker();
      workers.push(first);
      await waitFor('replay under way', async () => {
        const p = await handle.query<ReplayProgress>('progress').catch(() => undefined);
        return (p?.replayed ?? 0) >= 20_000;
      }, 60_000, 50);
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      const atKill = await h.pool.query<{ n: string }>('SELECT count(*) AS n FROM webhook_replay_audit');
      assert.ok(Number(atKill.rows[0]!.n) < 100_000, 'the worker died mid-run');
      workers.push(worker());
      const summary = await handle.result();
      assert.deepEqual(counters(summary), { processed: 100_000, replayed: 100_000, enqueued: 100_000, skipped: 0, failed: 0 });
    } finally {
      for (const child of workers) child.kill('SIGKILL');
    }
    const audit = await h.pool.query<{ n: string; d: string }>('SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM webhook_replay_audit');
    assert.equal(Number(audit.rows[0]!.n), 100_000);
    assert.equal(Number(audit.rows[0]!.d), 100_000);
    assert.deepEqual(await statusCounts(h.pool), { pending: 100_000 });
  });

  it('end to end: a receiver that fails then recovers; dead letters are replayed, delivered, and the count returns', async () => {
    const secret = 'replay-e2e-secret';
    let healthy = false;
    const receiver = await new TestReceiver([secret], () => (healthy ? { status: 200 } : { status: 503 })).start();
    const baselineDeadLetters = 0;
    await seedEvents(h.pool, 'e2e', 25, 2);
    try {
      await withWorker(
        taskQueue,
        async () => {
          const dispatcher = await h.env.client.workflow.start(webhookDispatcher, {
            taskQueue,
            workflowId: `webhook-dispatcher/replay-test-${randomUUID()}`,
            args: [{ shard: 0, shards: 1, options: { backoffBaseMs: 50, backoffCapMs: 100, maxIdleMs: 200, autoPauseAfter: 1000 } }],
          });
          try {
            await waitFor('dead letters', async () => (await statusCounts(h.pool)).dead_letter === 25);
            healthy = true;
            const summary = await replay();
            assert.equal(summary.replayed, 25);
            await waitFor('delivered', async () => (await statusCounts(h.pool)).delivered === 25);
          } finally {
            await dispatcher.terminate('test over');
          }
        },
        { url: receiver.url, secret },
      );
    } finally {
      await receiver.stop();
    }
    assert.equal((await statusCounts(h.pool)).dead_letter ?? 0, baselineDeadLetters);
    const triggers = await h.pool.query<{ trigger: string; n: string }>(
      'SELECT trigger, count(*) AS n FROM webhook_delivery_attempts GROUP BY trigger ORDER BY trigger',
    );
    assert.deepEqual(triggers.rows.map((r) => [r.trigger, Number(r.n)]), [['replay', 25], ['scheduled', 50]]);
  });

  it('execute resets exactly the rows its dry run listed, also when --limit cuts through rows dead-lettered together', async () => {
    // One delivery pass records its outcomes in one statement, so the dead letters it leaves share updated_at.
    await seedStates(h.pool, [
      { prefix: 'tie_b', count: 20, status: 'dead_letter', eventType: 'type_b', code: 500 },
      { prefix: 'tie_a', count: 20, status: 'dead_letter', eventType: 'type_a', code: 400 },
    ]);
    await h.pool.query('UPDATE webhook_outbox SET updated_at = now()');
    await withWorker(taskQueue, async () => {
      const dry = await replay({}, { dryRun: true, limit: 10 });
      const exec = await replay({}, { limit: 10, batchSize: 4 });
      assert.deepEqual(counters(exec), counters(dry));
      const { rows } = await h.pool.query<{ event_id: string }>(
        'SELECT event_id FROM webhook_replay_audit WHERE run_key = $1 ORDER BY event_id',
        [exec.runKey],
      );
      assert.deepEqual(rows.map((r) => r.event_id), [...dry.preview!.sampleIds].sort(), 'the rows reset are the ones the dry run listed');
    });
  });

  it('rows an operator changes while a batch waits for their locks are skipped and counted; the audit matches', async () => {
    await seedStates(h.pool, [{ prefix: 'op', count: 30, status: 'dead_letter', code: 503 }]);
    const operator = await h.pool.connect();
    try {
      await operator.query('BEGIN');
      await operator.query(`UPDATE webhook_outbox SET status = 'pending', next_attempt_at = now() WHERE event_id IN ('op_3', 'op_7', 'op_11')`);
      await withWorker(taskQueue, async () => {
        const run = await start({}, { batchSize: 30 });
        await waitFor('the batch waiting for the operator\'s row locks', async () => {
          const { rows } = await h.pool.query(
            `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%WITH candidates AS%'`,
          );
          return rows.length > 0;
        });
        await operator.query('COMMIT');
        const summary = await run.result();
        assert.deepEqual(counters(summary), { processed: 30, replayed: 27, enqueued: 27, skipped: 3, failed: 0 });
        const audit = await h.pool.query<{ n: string }>('SELECT count(*) AS n FROM webhook_replay_audit WHERE run_key = $1', [summary.runKey]);
        assert.equal(Number(audit.rows[0]!.n), 27);
      });
    } finally {
      operator.release();
    }
    assert.deepEqual(await statusCounts(h.pool), { pending: 30 });
  });

  it('an --event-ids list rewritten while its replay runs fails the run at its next batch instead of replaying the new ids', async () => {
    await seedStates(h.pool, [
      { prefix: 'first', count: 6, status: 'dead_letter', code: 503 },
      { prefix: 'second', count: 6, status: 'dead_letter', code: 503 },
    ]);
    const idsFile = join(tmp, `ids-${randomUUID()}.txt`);
    writeFileSync(idsFile, ['first_0', 'first_1', 'first_2', 'first_3', 'first_4', 'first_5'].join('\n'));
    // Holds first_2, so the second batch (first_2, first_3) waits with the list already read.
    const holder = await h.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM webhook_outbox WHERE event_id = 'first_2' FOR UPDATE`);
      await withWorker(taskQueue, async () => {
        const run = await start({ eventIdsPath: idsFile }, { batchSize: 2 });
        await waitFor('the second batch waiting for first_2', async () => {
          const { rows } = await h.pool.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%WITH candidates AS%'`);
          return rows.length > 0;
        });
        writeFileSync(idsFile, ['second_0', 'second_1', 'second_2', 'second_3', 'second_4', 'second_5'].join('\n'));
        await holder.query('COMMIT');
        await assert.rejects(run.result(), (err: unknown) => {
          assert.ok(err instanceof WorkflowFailedError, String(err));
          const failure = err.cause instanceof ActivityFailure ? err.cause.cause : err.cause;
          assert.ok(failure instanceof ApplicationFailure && failure.nonRetryable, String(failure));
          assert.match(failure.message, /--event-ids file .* changed after the replay started; .*start a new replay/);
          return true;
        });
      });
    } finally {
      holder.release();
    }
    const { rows } = await h.pool.query<{ event_id: string }>('SELECT event_id FROM webhook_replay_audit ORDER BY event_id');
    assert.deepEqual(rows.map((r) => r.event_id), ['first_0', 'first_1', 'first_2', 'first_3'], 'only ids of the list the run started with');
  });

  it('a dry run keeps what it counted for its execute, which resets exactly those rows; an execute whose kept rows are gone fails, resetting nothing', async () => {
    await seedStates(h.pool, [{ prefix: 'kept', count: 6, status: 'dead_letter', code: 503 }]);
    await withWorker(taskQueue, async () => {
      const dry = await start({}, { dryRun: true, limit: 4, keepSelection: true });
      const preview = (await dry.result()).preview!;
      assert.deepEqual([preview.matched, preview.selectionKept, preview.moreBeyondLimit], [4, true, true]);
      const dryRunKey = `${dry.workflowId}@1`;
      // A month-old selection nothing deleted (a terminated runbook's) goes when a dry run keeps its own.
      await h.pool.query(`INSERT INTO webhook_replay_selection (run_key, event_id, kept_at) VALUES ('terminated/step-4', 'kept_5', now() - interval '31 days')`);
      await (await start({}, { dryRun: true, limit: 1, keepSelection: true })).result();
      assert.equal((await h.pool.query(`SELECT 1 FROM webhook_replay_selection WHERE run_key = 'terminated/step-4'`)).rowCount, 0);
      // One of the four kept rows is delivered meanwhile (a manual resend, say): the execute leaves it.
      await h.pool.query(`UPDATE webhook_outbox SET status = 'delivered' WHERE event_id = 'kept_0'`);
      const execute = await start({ selectedBy: dryRunKey }, { batchSize: 1, limit: 4 });
      const summary = await execute.result();
      assert.deepEqual([summary.processed, summary.replayed, summary.skipped], [3, 3, 0]);
      const { rows } = await h.pool.query<{ event_id: string }>('SELECT event_id FROM webhook_replay_audit ORDER BY event_id');
      assert.deepEqual(rows.map((r) => r.event_id), ['kept_1', 'kept_2', 'kept_3'], 'only rows the dry run counted, never kept_4 or kept_5');

      // Kept rows deleted while an execute runs (a finished runbook's, by hand): its next batch fails, naming what stays.
      const more = await start({}, { dryRun: true, limit: 2, keepSelection: true });
      await more.result();
      const keptBy = `${more.workflowId}@1`;
      const batch = (batchNumber: number) =>
        runReplayBatch(h.pool, { runKey: 'midway@1', batchNumber, filter: { status: 'dead_letter', eventTypes: [], selectedBy: keptBy }, size: 1 }, inputRootsFromEnvironment());
      assert.deepEqual(await batch(0), { selected: 1, replayed: 1 });
      await h.pool.query('DELETE FROM webhook_replay_selection WHERE run_key = $1', [keptBy]);
      await assert.rejects(batch(1), (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure && err.type === 'ReplaySelectionGone' && err.nonRetryable, String(err));
        assert.match(err.message, /no longer kept .*the rows its 1 earlier batches reset stay reset/);
        return true;
      });
      assert.deepEqual(await batch(0), { selected: 1, replayed: 1 }, 'a batch in the ledger still returns what it recorded');

      const gone = await start({ selectedBy: 'webhook-replay/nothing-kept@1' });
      await assert.rejects(gone.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError, String(err));
        const failure = err.cause instanceof ActivityFailure ? err.cause.cause : err.cause;
        assert.ok(failure instanceof ApplicationFailure && failure.nonRetryable && failure.type === 'ReplaySelectionGone', String(failure));
        assert.match(failure.message, /the rows the dry run webhook-replay\/nothing-kept@1 counted are no longer kept .*nothing was reset/);
        return true;
      });
    });
    // kept_4 was reset by the execute stopped midway (the oldest dead letter left); kept_5 waits for another replay.
    assert.equal((await statusCounts(h.pool)).dead_letter, 1);
  });

  it('a row this run reset, that another replay reset and delivery dead-lettered again since, is not reset twice by this run (nor retried forever)', async () => {
    await seedStates(h.pool, [{ prefix: 'twice', count: 4, status: 'dead_letter', code: 400 }]);
    const deadLetterAgain = (id: string) =>
      h.pool.query(`UPDATE webhook_outbox SET status = 'dead_letter', attempts = 5, last_status_code = 400, updated_at = now() WHERE event_id = $1`, [id]);
    const idsFile = join(tmp, `ids-${randomUUID()}.txt`);
    writeFileSync(idsFile, 'twice_0\n');
    // Holds twice_2, so this run's second batch (twice_2, twice_3) waits while twice_0 goes round again.
    const holder = await h.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM webhook_outbox WHERE event_id = 'twice_2' FOR UPDATE`);
      await withWorker(taskQueue, async () => {
        const run = await start({}, { batchSize: 2 });
        await waitFor('the second batch waiting for twice_2', async () => {
          const { rows } = await h.pool.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%WITH candidates AS%'`);
          return rows.length > 0;
        });
        await deadLetterAgain('twice_0');
        assert.equal((await replay({ eventIdsPath: idsFile })).replayed, 1, 'another replay resets twice_0');
        await deadLetterAgain('twice_0');
        await holder.query('COMMIT');
        await waitFor('the run to end, or its batch to be retried', async () => {
          const d = await run.describe();
          return d.status.name !== 'RUNNING' || (d.raw.pendingActivities ?? []).some((a) => (a.attempt ?? 1) > 1);
        });
        const d = await run.describe();
        const failure = (d.raw.pendingActivities ?? []).map((a) => a.lastFailure?.message).join('; ');
        assert.equal(d.status.name, 'COMPLETED', `the run is ${d.status.name}: ${failure}`);
        assert.deepEqual(counters(await run.result()), { processed: 4, replayed: 4, enqueued: 4, skipped: 0, failed: 0 });
      });
    } finally {
      holder.release();
    }
    assert.deepEqual(await statusCounts(h.pool), { pending: 3, dead_letter: 1 });
  });

  it('paused, resumed and continued as new while dead letters arrive: the counters are the audit, every row once', async () => {
    await seedStates(h.pool, [{ prefix: 'can', count: 20, status: 'dead_letter', code: 503 }]);
    await withWorker(taskQueue, async () => {
      const run = await start({}, { batchSize: 3, batchesPerRun: 2, limit: 100 });
      await run.signal('pause');
      await waitFor('the run paused', async () => (await run.query<ReplayProgress>('progress')).phase === 'paused');
      const held = await run.query<ReplayProgress>('progress');
      // Delivery dead-letters more events while the run holds; they are part of the selection when it goes on.
      await seedStates(h.pool, [{ prefix: 'late', count: 5, status: 'dead_letter', code: 500 }]);
      await run.signal('resume');
      const summary = await run.result();
      assert.ok(held.processed < 25, `paused at ${held.processed}`);
      assert.deepEqual(counters(summary), { processed: 25, replayed: 25, enqueued: 25, skipped: 0, failed: 0 });
      const { rows } = await h.pool.query<{ n: string; d: string }>(
        'SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM webhook_replay_audit WHERE run_key = $1',
        [summary.runKey],
      );
      assert.deepEqual([Number(rows[0]!.n), Number(rows[0]!.d)], [25, 25]);
      const described = await h.env.client.workflow.getHandle(run.workflowId, run.firstExecutionRunId).describe();
      assert.equal(described.status.name, 'CONTINUED_AS_NEW');
    });
    assert.deepEqual(await statusCounts(h.pool), { pending: 25 });
  });

  it('two replays over the same dead letters at once: each row reset by one of them, once; each run counts what its audit holds', async () => {
    await seedStates(h.pool, [{ prefix: 'both', count: 3000, status: 'dead_letter', code: 503 }]);
    await withWorker(taskQueue, async () => {
      const [a, b] = await Promise.all([start({}, { batchSize: 200, limit: 5000 }), start({}, { batchSize: 150, limit: 5000 })]);
      const runs = await Promise.all([a.result(), b.result()]);
      assert.equal(runs[0].replayed + runs[1].replayed, 3000);
      for (const run of runs) {
        assert.equal(run.processed, run.replayed + run.skipped);
        const { rows } = await h.pool.query<{ n: string }>('SELECT count(*) AS n FROM webhook_replay_audit WHERE run_key = $1', [run.runKey]);
        assert.equal(Number(rows[0]!.n), run.replayed);
      }
    });
    const { rows } = await h.pool.query<{ n: string; d: string }>('SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM webhook_replay_audit');
    assert.deepEqual([Number(rows[0]!.n), Number(rows[0]!.d)], [3000, 3000]);
    assert.deepEqual(await statusCounts(h.pool), { pending: 3000 });
  });

  describe('CLI', () => {
    const NOWHERE = { TEMPORAL_ADDRESS: '127.0.0.1:1' };
    const usage: Array<[string[], RegExp]> = [
      [['--status', 'gone'], /--status gone: use one of pending, in_flight, delivered, retrying, dead_letter/],
      [['--status', 'delivered'], /add --resend-delivered/],
      [['--since', 'yesterday'], /--since yesterday: not a timestamp/],
      [['--since', '2026-02-02', '--until', '2026-02-01'], /--since must be earlier than --until/],
      [['--status-code', '5x'], /use a status code such as 503, or a class such as 5xx/],
      [['--event-ids', 'no/such/ids.txt'], /--event-ids no\/such\/ids.txt: no such file/],
      [['--limit', '0'], /--limit must be a whole number >= 1/],
      // An empty value (a script's unset variable) must not drop the filter and widen the replay to every dead letter.
      [['--event-ids', ''], /--event-ids '': empty; pass a file with one event id a line/],
      [['--event-type', ' '], /--event-type ' ': empty; pass an event type, or leave the flag out to replay every type/],
      [['--event-type', 'type_a', '--event-type', ''], /--event-type '': empty/],
      [['--since', ''], /--since '': empty; use ISO 8601/],
      [['--until', ''], /--until '': empty; use ISO 8601/],
    ];
    for (const [args, message] of usage) {
      it(`usage error: ${args.join(' ')}`, async () => {
        const result = await runCli(['webhook-replay-dlq', ...args], NOWHERE);
        assert.equal(result.code, 2, result.stderr);
        assert.match(result.stderr, message);
        assert.equal(result.stdout, '');
      });
    }

    it('--event-type matches a type as written as well as trimmed: types a backfill kept with spaces can be replayed', async () => {
      await seedStates(h.pool, [
        { prefix: 'spaced', count: 3, status: 'dead_letter', eventType: 'member_joined ', code: 503 },
        { prefix: 'plain', count: 2, status: 'dead_letter', eventType: 'member_joined', code: 503 },
      ]);
      await withWorker(taskQueue, async () => {
        const dry = await runCli(['webhook-replay-dlq', '--dry-run', '--event-type', 'member_joined ', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(dry.code, 0, dry.stderr);
        const summary = JSON.parse(dry.stdout.trimEnd().split('\n').at(-1)!) as { processed: number; by_event_type: Record<string, number> };
        assert.deepEqual(summary.by_event_type, { 'member_joined ': 3, member_joined: 2 });
      });
    });

    it("prints the runbook's lines, the dry-run breakdown, and --json last", async () => {
      await seedStates(h.pool, MIX);
      await withWorker(taskQueue, async () => {
        const dry = await runCli(['webhook-replay-dlq', '--dry-run', '--limit', '1000', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(dry.code, 0, dry.stderr);
        const lines = dry.stdout.trimEnd().split('\n');
        assert.ok(lines.includes('[webhook-replay-dlq] would replay by event_type: type_a=20 type_b=10'), dry.stdout);
        assert.ok(lines.includes('[webhook-replay-dlq] would replay by last_status_code: 400=10 500=20'), dry.stdout);
        assert.equal(lines.at(-2), '[webhook-replay-dlq] done processed=30 replayed=30 enqueued=30 skipped=0 failed=0 dry_run=true');
        const exec = await runCli(['webhook-replay-dlq', '--limit', '1000', '--batch-size', '5', '--progress-every', '10', '--json'], {
          GOTONG_TASK_QUEUE: taskQueue,
        });
        assert.equal(exec.code, 0, exec.stderr);
        const execLines = exec.stdout.trimEnd().split('\n');
        assert.equal(execLines.at(-2), '[webhook-replay-dlq] done processed=30 replayed=30 enqueued=30 skipped=0 failed=0 dry_run=false');
        const json = JSON.parse(execLines.at(-1)!) as { workflow_id: string; replayed: number };
        assert.match(json.workflow_id, /^webhook-replay\/dead_letter-[0-9a-f]{10}\/execute$/);
        assert.ok(execLines.slice(0, -2).every((l) => /^\[webhook-replay-dlq\] progress processed=\d+ replayed=\d+ enqueued=\d+ skipped=\d+ failed=0$/.test(l)));
      });
    });

    it('a dry run names the --until that makes its execute reset exactly what it counted, and says when --limit cut it', async () => {
      await seedStates(h.pool, MIX);
      await withWorker(taskQueue, async () => {
        type DryJson = { processed: number; changed_before: string | null; more_beyond_limit: boolean | null };
        const lastJson = (stdout: string) => JSON.parse(stdout.trimEnd().split('\n').at(-1)!) as DryJson;
        const cut = await runCli(['webhook-replay-dlq', '--dry-run', '--limit', '25', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(cut.code, 0, cut.stderr);
        assert.ok(cut.stdout.includes('[webhook-replay-dlq] more rows match than --limit let this dry run count'), cut.stdout);
        assert.equal(lastJson(cut.stdout).processed, 25);
        assert.equal(lastJson(cut.stdout).more_beyond_limit, true);

        const whole = await runCli(['webhook-replay-dlq', '--dry-run', '--limit', '1000', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(whole.code, 0, whole.stderr);
        const summary = lastJson(whole.stdout);
        assert.equal(summary.more_beyond_limit, false);
        assert.ok(!whole.stdout.includes('more rows match'), whole.stdout);
        const bound = summary.changed_before;
        assert.match(bound ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.ok(
          whole.stdout.includes(`[webhook-replay-dlq] to leave out rows that match after this dry run, execute with --until ${bound} --limit 30 (in place of any --until and --limit)`),
          whole.stdout,
        );
        // Waiting rows change their time with every claim: no bound is offered for them.
        const waiting = await runCli(['webhook-replay-dlq', '--dry-run', '--status', 'retrying', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(waiting.code, 0, waiting.stderr);
        assert.equal(lastJson(waiting.stdout).changed_before, null);
        assert.ok(!waiting.stdout.includes('--until'), waiting.stdout);

        // Dead letters that arrive after the dry run was read are not in its count: the bound leaves them.
        await seedStates(h.pool, [{ prefix: 'late', count: 4, status: 'dead_letter', eventType: 'type_a', code: 500 }]);
        const exec = await runCli(['webhook-replay-dlq', '--limit', '30', '--until', bound!, '--json'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(exec.code, 0, exec.stderr);
        assert.equal(exec.stdout.trimEnd().split('\n').at(-2), '[webhook-replay-dlq] done processed=30 replayed=30 enqueued=30 skipped=0 failed=0 dry_run=false');
        const { rows } = await h.pool.query<{ event_id: string }>(`SELECT event_id FROM webhook_outbox WHERE status = 'dead_letter' ORDER BY 1`);
        assert.deepEqual(rows.map((r) => r.event_id.replace(/_\d+$/, '')), ['late', 'late', 'late', 'late']);
      });
    });
  });
});

describe('--event-ids lists (read as a worker reads them)', () => {
  it('a line names its id as written and trimmed: ids a backfill kept with spaces can be replayed, editors\' blanks do no harm', async () => {
    const path = join(tmp, `ids-${randomUUID()}.txt`);
    writeFileSync(path, '\uFEFFevt_a\r\nevt_b  \n\n  \n ws_id \nevt_a\n');
    const ids = await loadEventIds({ status: 'dead_letter', eventTypes: [], eventIdsPath: path }, inputRootsFromEnvironment());
    assert.deepEqual(ids, ['evt_a', 'evt_b', 'evt_b  ', 'ws_id', ' ws_id ']);
  });
});
