import { inputRootsFromEnvironment } from '../src/input-files';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { ApplicationFailure, CancelledFailure, WorkflowFailedError, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import type { Pool } from 'pg';
import { dispatcherWorkflowId } from '../src/shared/delivery';
import type { RunbookInput, RunbookProgress, RunbookReport, RunbookStep } from '../src/shared/runbook';
import { formatStepLine } from '../src/client/runbook';
import { webhookBackfill } from '../src/workflows/backfill';
import { webhookDispatcher } from '../src/workflows/dispatcher';
import { webhookRecoveryRunbook } from '../src/workflows/runbook';
import { fingerprintFile } from '../src/backfill/batch';
import { procedureKey } from '../src/runbook/procedure';
import { generatedFile } from './helpers/files';
import { CLI, getHarness, resetTables, runCli, seedEvents, statusCounts, uniqueTaskQueue, waitFor, withWorker, type Harness, exited } from './helpers/harness';
import { TestReceiver } from './helpers/receiver';

const SECRET = 'runbook-test-secret';

/** Step 2's ledger key: the procedure's (the file's path and fingerprint), whichever run executes it. */
async function procedureBackfillKey(path: string): Promise<string> {
  return `${procedureKey(path, await fingerprintFile(path, inputRootsFromEnvironment()))}/step-2`;
}
const run = promisify(execFile);

/** The share of events the receiver rejects until the replay step: every tenth generated event. */
const rejectedShare = (eventId: string) => /_(\d+)$/.exec(eventId)?.[1]?.endsWith('0') ?? false;


async function markDeadLetters(pool: Pool, prefix: string, count: number): Promise<void> {
  const ids = await seedEvents(pool, prefix, count, 5);
  await pool.query(
    `UPDATE webhook_outbox SET status = 'dead_letter', attempts = 5, last_status_code = 500, next_attempt_at = NULL WHERE event_id = ANY($1)`,
    [ids],
  );
}

/** Each step's status and counts, without the breakdowns (checked on their own). */
const figures = (steps: RunbookStep[]) =>
  steps.map((s) => ({
    n: s.number,
    status: s.status,
    backfill: s.backfill,
    replay: s.replay && {
      processed: s.replay.processed,
      replayed: s.replay.replayed,
      enqueued: s.replay.enqueued,
      skipped: s.replay.skipped,
      failed: s.replay.failed,
      dryRun: s.replay.dryRun,
    },
    verify: s.verify,
    confirm: s.confirm && { deadLetters: s.confirm.deadLetters, baseline: s.confirm.baseline, replayWaiting: s.confirm.replayWaiting },
  }));

describe('webhookRecoveryRunbook (real Temporal server, PostgreSQL and receiver)', function () {
  this.timeout(300_000);
  let h: Harness;
  let taskQueue: string;
  let receiver: TestReceiver;
  /** Until the run reaches step 4 the receiver rejects its share with 503; then it is "fixed". */
  let fixed: boolean;

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('runbook');
    fixed = false;
    receiver = await new TestReceiver([SECRET], (id) => (fixed || !rejectedShare(id) ? { status: 200 } : { status: 503 })).start();
  });
  afterEach(async () => {
    await receiver.stop();
  });

  function input(path: string, overrides: Partial<RunbookInput> = {}): RunbookInput {
    return {
      runKey: `rb-${randomUUID()}`,
      path,
      maxAttempts: 2,
      batchSize: 100,
      replayLimit: 500,
      replayBatchSize: 10,
      approval: 'auto',
      maxFailedRatio: 0.01,
      verifyTimeoutMs: 60_000,
      verifyMaxBacklog: 0,
      verifyMinSuccessRate: 0.5,
      confirmTimeoutMs: 60_000,
      pollMs: 200,
      ...overrides,
    };
  }

  function start(args: RunbookInput): Promise<WorkflowHandleWithFirstExecutionRunId<typeof webhookRecoveryRunbook>> {
    return h.env.client.workflow.start(webhookRecoveryRunbook, { taskQueue, workflowId: `webhook-runbook/test-${randomUUID()}`, args: [args] });
  }

  /**
   * Fixes the receiver once every event is settled with `deadLetters` dead-lettered, which is what step 3
   * waits for: then the replay's deliveries succeed. Read from the database, not through a query, so it
   * is quick even while the worker is busy.
   */
  function fixReceiverWhenSettled(deadLetters: number): { stop: () => Promise<void> } {
    let done = false;
    const loop = (async () => {
      while (!done && !fixed) {
        const counts = await statusCounts(h.pool);
        const waiting = (counts.pending ?? 0) + (counts.retrying ?? 0) + (counts.in_flight ?? 0);
        if (waiting === 0 && counts.dead_letter === deadLetters) fixed = true;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    return {
      stop: async () => {
        done = true;
        await loop;
      },
    };
  }

  /** Runs `fn` with an in-process worker and a dispatcher (its own id, so suites never share one). */
  async function withDelivery<T>(fn: () => Promise<T>): Promise<T> {
    return withWorker(
      taskQueue,
      async () => {
        const dispatcher = await h.env.client.workflow.start(webhookDispatcher, {
          taskQueue,
          workflowId: `webhook-dispatcher/runbook-test-${randomUUID()}`,
          args: [{ shard: 0, shards: 1, options: { backoffBaseMs: 20, backoffCapMs: 50, maxIdleMs: 100, autoPauseAfter: 100_000 } }],
        });
        try {
          return await fn();
        } finally {
          await dispatcher.terminate('test over');
        }
      },
      { url: receiver.url, secret: SECRET },
    );
  }

  async function stoppedReport(promise: Promise<unknown>): Promise<RunbookReport> {
    try {
      await promise;
    } catch (err) {
      assert.ok(err instanceof WorkflowFailedError, String(err));
      assert.ok(err.cause instanceof ApplicationFailure && err.cause.type === 'RunbookStopped', String(err.cause));
      return err.cause.details![0] as RunbookReport;
    }
    throw new Error('the runbook completed, but it should have stopped');
  }

  it('happy path: six steps with exact counts, dead letters back to the baseline', async () => {
    const file = generatedFile('rb_happy', { valid: 300, dupEvery: 50, failEvery: 150 });
    await markDeadLetters(h.pool, 'old_dl', 3);
    let handle: WorkflowHandleWithFirstExecutionRunId<typeof webhookRecoveryRunbook> | undefined;
    const report = await withDelivery(async () => {
      handle = await start(input(file.path));
      const fixer = fixReceiverWhenSettled(33);
      try {
        return await handle.result();
      } finally {
        await fixer.stop();
      }
    });
    assert.equal(report.outcome, 'completed');
    assert.equal(report.baseline, 3);
    assert.deepEqual(figures(report.steps), [
      { n: 1, status: 'passed', backfill: { ...file.expected, dryRun: true }, replay: undefined, verify: undefined, confirm: undefined },
      { n: 2, status: 'passed', backfill: { ...file.expected, dryRun: false }, replay: undefined, verify: undefined, confirm: undefined },
      {
        n: 3,
        status: 'passed',
        backfill: undefined,
        replay: undefined,
        verify: { created: 300, waiting: 0, delivered: 270, deadLettered: 30, successRate: 0.9 },
        confirm: undefined,
      },
      // The 30 rejected by the receiver and the 3 that were dead before the run.
      { n: 4, status: 'passed', backfill: undefined, replay: { processed: 33, replayed: 33, enqueued: 33, skipped: 0, failed: 0, dryRun: true }, verify: undefined, confirm: undefined },
      { n: 5, status: 'passed', backfill: undefined, replay: { processed: 33, replayed: 33, enqueued: 33, skipped: 0, failed: 0, dryRun: false }, verify: undefined, confirm: undefined },
      { n: 6, status: 'passed', backfill: undefined, replay: undefined, verify: undefined, confirm: { deadLetters: 0, baseline: 3, replayWaiting: 0 } },
    ]);
    assert.deepEqual(report.steps[0]!.gate, { failedRatio: 2 / 308, maxFailedRatio: 0.01, approvedBy: 'auto' });
    assert.deepEqual(report.steps[3]!.replay!.preview!.byStatusCode, { '500': 3, '503': 30 });
    assert.deepEqual(await statusCounts(h.pool), { delivered: 303 });
    const replays = await h.pool.query<{ n: string }>(`SELECT count(*) AS n FROM webhook_delivery_attempts WHERE trigger = 'replay'`);
    assert.equal(Number(replays.rows[0]!.n), 33);

    // Reset the finished run to its start: every step runs again, and none writes anything twice.
    const sent = receiver.received.length;
    const ledger = await h.pool.query<{ run_key: string; n: string }>('SELECT run_key, count(*) AS n FROM batch_ledger GROUP BY 1 ORDER BY 1');
    const history = await handle!.fetchHistory();
    const firstTaskCompleted = history.events!.find((e) => e.workflowTaskCompletedEventAttributes)!;
    const again = await withDelivery(async () => {
      const { runId } = await h.env.client.workflowService.resetWorkflowExecution({
        namespace: h.env.namespace ?? 'default',
        workflowExecution: { workflowId: handle!.workflowId, runId: handle!.firstExecutionRunId },
        workflowTaskFinishEventId: firstTaskCompleted.eventId,
        requestId: randomUUID(),
        reason: 'test: run every step again',
      });
      return h.env.client.workflow.getHandle<typeof webhookRecoveryRunbook>(handle!.workflowId, runId!).result();
    });
    assert.equal(again.outcome, 'completed');
    // The backfill steps report what they did the first time (from the ledger) ...
    assert.deepEqual(again.steps[1]!.backfill, report.steps[1]!.backfill);
    // ... and the world as it is now: everything delivered, so nothing is left to replay.
    assert.deepEqual(again.steps[2]!.verify, { created: 300, waiting: 0, delivered: 300, deadLettered: 0, successRate: 1 });
    assert.equal(again.steps[3]!.replay!.replayed, 0);
    assert.equal(again.steps[4]!.status, 'skipped');
    assert.deepEqual(await statusCounts(h.pool), { delivered: 303 });
    assert.equal(receiver.received.length, sent, 'no event was sent again');
    const ledgerAfter = await h.pool.query<{ run_key: string; n: string }>('SELECT run_key, count(*) AS n FROM batch_ledger GROUP BY 1 ORDER BY 1');
    assert.deepEqual(ledgerAfter.rows, ledger.rows);
  });

  it('cancelling the runbook cancels its running child cleanly: the outbox holds exactly what the ledger counted', async () => {
    const file = generatedFile('rb_cancel', { valid: 5_000 });
    const args = input(file.path, { batchSize: 50 });
    let step2Key = '';
    await withWorker(taskQueue, async () => {
      const handle = await start(args);
      // The runbook's progress names the running child; its live counters are the child's own progress query. A batch
      // is in the ledger a moment before the child's workflow has counted it, so the wait asks for both.
      const child = h.env.client.workflow.getHandle(`${handle.workflowId}/step-2-backfill-execute`);
      await waitFor('step 2 under way', async () => {
        const p = await handle.query<RunbookProgress>('progress');
        step2Key = p.steps[1]!.runKey ?? '';
        if (p.runningChild?.workflowId !== child.workflowId || (await ledgerCreated(step2Key)).batches === 0) return false;
        return (await child.query<{ processed: number }>('progress')).processed > 0;
      }, 60_000, 5);
      await handle.cancel();
      await assert.rejects(handle.result(), (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof CancelledFailure);
      assert.equal((await child.describe()).status.name, 'CANCELLED');
      // The run's own record says how it ended, for the run that continues it.
      const p = await handle.query<RunbookProgress>('progress');
      assert.equal(p.phase, 'cancelled');
      assert.deepEqual([p.steps[1]!.status, p.steps[1]!.message], ['cancelled', 'the runbook was cancelled']);
    });
    const { batches, created } = await ledgerCreated(step2Key);
    assert.ok(batches > 0 && batches < 100, `cancelled mid-step (${batches} of 100 batches)`);
    const outbox = await h.pool.query<{ n: string }>('SELECT count(*) AS n FROM webhook_outbox');
    assert.equal(Number(outbox.rows[0]!.n), created);
    const record = await h.pool.query<{ outcome: string; stopped_at: number }>('SELECT outcome, stopped_at FROM runbook_runs WHERE run_key = $1', [args.runKey]);
    assert.deepEqual(record.rows, [{ outcome: 'cancelled', stopped_at: 2 }]);
  });

  async function ledgerCreated(runKey: string): Promise<{ batches: number; created: number }> {
    const { rows } = await h.pool.query<{ batches: string; created: string | null }>(
      `SELECT count(*) AS batches, sum((result->>'created')::int) AS created FROM batch_ledger WHERE run_key = $1`,
      [runKey],
    );
    return { batches: Number(rows[0]!.batches), created: Number(rows[0]!.created ?? 0) };
  }

  it('a file whose events were all backfilled outside the runbook: step 3 says it has nothing to verify, not a pass on zeros', async () => {
    const file = generatedFile('rb_outside', { valid: 20 });
    // Backfilled by hand first, under its own run key; no dispatcher runs, so the events stay pending.
    const report = await withWorker(taskQueue, async () => {
      await h.env.client.workflow.execute(webhookBackfill, {
        taskQueue,
        workflowId: `webhook-backfill/test-${randomUUID()}`,
        args: [{ runKey: `by-hand-${randomUUID()}`, path: file.path, dryRun: false, maxAttempts: 2, batchSize: 100 }],
      });
      return (await start(input(file.path))).result();
    });
    assert.equal(report.outcome, 'completed');
    const verify = report.steps[2]!;
    assert.deepEqual({ created: report.steps[1]!.backfill!.created, duplicates: report.steps[1]!.backfill!.duplicates }, { created: 0, duplicates: 20 });
    assert.equal(verify.status, 'skipped');
    assert.match(verify.message!, /^nothing to verify: step 2 created no events \(20 already in the outbox\); this step judges only the events the runbook's backfill creates/);
    assert.equal(
      formatStepLine(verify, 'webhook-runbook/x'),
      `[webhook-runbook] step 3/6 verify delivery: skipped: ${verify.message}`,
    );
    // The file's events are still waiting: a pass here would have claimed a delivery nobody checked.
    assert.deepEqual(await statusCounts(h.pool), { pending: 20 });
  });

  it('gate failure: a file over the failed-lines share stops after step 1 with nothing written (CLI, exit 1)', async () => {
    const file = generatedFile('rb_gate', { valid: 100, failEvery: 20 }); // 5 of 105 lines fail: 4.76%
    const result = await withWorker(taskQueue, () =>
      runCli(['webhook-runbook', '--file', file.path, '--json', '--poll-interval', '200ms'], { GOTONG_TASK_QUEUE: taskQueue }),
    );
    assert.equal(result.code, 1, result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    assert.equal(lines[0], '[webhook-runbook] baseline dead_letter=0');
    assert.match(lines[1]!, /^\[webhook-runbook\] step 1\/6 backfill dry-run: running \(webhook-runbook\/rb_gate\.ndjson-[0-9a-f]{10}\/step-1-backfill-dry-run\)$/);
    assert.match(lines[2]!, /^\[webhook-runbook\] step 1\/6 backfill dry-run: failed: 5 of 105 lines failed \(4\.76%\), over the allowed 1\.00%; nothing was written/);
    assert.equal(lines[3], '[webhook-runbook] done outcome=stopped stopped_at=1');
    const json = JSON.parse(lines[4]!) as { outcome: string; stopped_at: number; steps: Array<{ status: string }> };
    assert.equal(json.outcome, 'stopped');
    assert.equal(json.stopped_at, 1);
    assert.deepEqual(json.steps.map((s) => s.status), ['failed', 'pending', 'pending', 'pending', 'pending', 'pending']);
    assert.match(result.stderr, /\[webhook-runbook\] stopped: step 1 \(backfill dry-run\) failed/);
    assert.deepEqual(await statusCounts(h.pool), {});
  });

  it('manual approval: waits at each gate; `temporal workflow signal` and `gotong-worker approve` let it go on', async () => {
    const file = generatedFile('rb_manual', { valid: 50 });
    await withDelivery(async () => {
      const handle = await start(input(file.path, { approval: 'manual' }));
      try {
        const atGate = (step: number) => async () => {
          const p = await handle.query<RunbookProgress>('progress');
          return p.phase === 'awaiting-approval' && p.currentStep === step;
        };
        await waitFor('the gate after step 1', atGate(1));
        // Waiting means waiting: nothing is written while the gate is closed.
        await new Promise((r) => setTimeout(r, 1000));
        assert.ok(await atGate(1)());
        assert.deepEqual(await statusCounts(h.pool), {});
        // A signal for another gate is refused, and the run shows why.
        await handle.signal('approve', { step: 4, reason: 'too early' });
        await waitFor('the refused signal in progress', async () => (await handle.query<RunbookProgress>('progress')).lastRefusedDecision !== null);
        assert.deepEqual((await handle.query<RunbookProgress>('progress')).lastRefusedDecision, {
          decision: 'approve',
          via: 'signal',
          step: 4,
          reason: 'too early',
          refusal: 'the run waits at the gate after step 1 (backfill dry-run), not at the gate after step 4',
        });
        assert.ok(await atGate(1)());

        await run(h.temporalCli, ['workflow', 'signal', '--address', h.env.address, '--namespace', 'default', '--workflow-id', handle.workflowId, '--name', 'approve']);
        await waitFor('the gate after step 4', atGate(4));
        fixed = true;
        const approved = await runCli(['approve', handle.workflowId, '--reason', 'receiver fixed']);
        assert.equal(approved.code, 0, approved.stderr);
        assert.equal(approved.stdout, `[approve] approved the gate after step 4 (replay dry-run) of ${handle.workflowId}\n`);
        const report = await handle.result();
        assert.equal(report.outcome, 'completed');
        assert.equal(report.steps[0]!.gate?.approvedBy, 'operator');
        assert.deepEqual(report.steps[0]!.gate, { failedRatio: 0, maxFailedRatio: 0.01, approvedBy: 'operator', decidedVia: 'signal' });
        assert.deepEqual(report.steps[3]!.gate, { approvedBy: 'operator', decidedVia: 'update', reason: 'receiver fixed' });
        assert.deepEqual(await statusCounts(h.pool), { delivered: 50 });
      } finally {
        fixed = true;
      }
      const late = await runCli(['approve', handle.workflowId]);
      assert.equal(late.code, 1);
      assert.equal(late.stderr, '[approve] refused: the run is not waiting at a gate: it has completed\n');
    });
  });

  it('step 5 resets what step 4 counted: dead letters that arrive while its gate is open are left for another replay', async () => {
    // Every tenth event is rejected until the receiver is fixed: 5 of 50 dead-lettered by step 3.
    const file = generatedFile('rb_bound', { valid: 50 });
    await withDelivery(async () => {
      const handle = await start(input(file.path, { approval: 'manual', baseline: 3 }));
      try {
        const atGate = (step: number) => async () => {
          const p = await handle.query<RunbookProgress>('progress');
          return p.phase === 'awaiting-approval' && p.currentStep === step;
        };
        await waitFor('the gate after step 1', atGate(1));
        assert.equal((await runCli(['approve', handle.workflowId])).code, 0);
        await waitFor('the gate after step 4', atGate(4));
        fixed = true;
        const atGate4 = (await handle.query<RunbookProgress>('progress')).steps[3]!;
        const counted = atGate4.replay!;
        assert.equal(counted.replayed, 5);
        // What step 4 kept: the five it counted, under its run key.
        const kept = async () =>
          Number((await h.pool.query<{ n: string }>('SELECT count(*) AS n FROM webhook_replay_selection WHERE run_key = $1', [atGate4.runKey])).rows[0]!.n);
        assert.equal(await kept(), 5);
        // Two more dead letters while the operator reads the dry run (live traffic, or the file's own retries) ...
        await seedEvents(h.pool, 'late_dl', 2, 5, 'dead_letter');
        // ... and one whose outcome write began before the dry run and committed after it: updated_at is when a
        // transaction began, so its time is older than the newest the dry run counted. A bound on time lets it in.
        await seedEvents(h.pool, 'late_dl_backdated', 1, 5, 'dead_letter');
        await h.pool.query(`UPDATE webhook_outbox SET updated_at = now() - interval '1 hour' WHERE event_id LIKE 'late_dl_backdated%'`);
        assert.equal((await runCli(['approve', handle.workflowId])).code, 0);
        const report = await handle.result();
        assert.equal(report.outcome, 'completed');
        const bound = report.steps[3]!.replay!.preview!.changedBefore;
        assert.match(bound ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.deepEqual(figures(report.steps)[4]!.replay, { processed: 5, replayed: 5, enqueued: 5, skipped: 0, failed: 0, dryRun: false });
        assert.equal(report.steps[4]!.message, `only the dead letters the dry run counted (changed before ${bound})`);
        assert.equal(
          formatStepLine(report.steps[4]!, handle.workflowId),
          `[webhook-runbook] step 5/6 replay execute: passed processed=5 replayed=5 enqueued=5 skipped=0 failed=0; only the dead letters the dry run counted (changed before ${bound})`,
        );
        // The late ones are still dead letters (the --baseline 3 lets step 6 pass with them).
        assert.deepEqual(report.steps[5]!.confirm && { deadLetters: report.steps[5]!.confirm.deadLetters, replayWaiting: report.steps[5]!.confirm.replayWaiting }, { deadLetters: 3, replayWaiting: 0 });
        const { rows } = await h.pool.query<{ event_id: string }>(`SELECT event_id FROM webhook_outbox WHERE status = 'dead_letter' ORDER BY 1`);
        assert.deepEqual(rows.map((r) => r.event_id), ['late_dl_0', 'late_dl_1', 'late_dl_backdated_0']);
        // Forgotten once the run is over: the table holds open runs' rows only.
        assert.equal(await kept(), 0);
      } finally {
        fixed = true;
      }
    });
  });

  it('reject at a gate (CLI): the run stops with the gate marked rejected and the outbox untouched', async () => {
    const file = generatedFile('rb_reject', { valid: 20 });
    await withWorker(taskQueue, async () => {
      const handle = await start(input(file.path, { approval: 'manual' }));
      await waitFor('the gate after step 1', async () => (await handle.query<RunbookProgress>('progress')).phase === 'awaiting-approval');
      const rejected = await runCli(['reject', handle.workflowId, '--reason', 'wrong file']);
      assert.equal(rejected.code, 0, rejected.stderr);
      const report = await stoppedReport(handle.result());
      assert.equal(report.stoppedAt, 1);
      assert.equal(report.steps[0]!.status, 'rejected');
      assert.equal(report.reason, 'step 1 (backfill dry-run) rejected: an operator rejected the gate: wrong file');
    });
    assert.deepEqual(await statusCounts(h.pool), {});
  });

  it('confirm timeout: a receiver that never recovers ends step 6 failed, with the numbers (CLI, exit 1)', async () => {
    const file = generatedFile('rb_never', { valid: 100 });
    const result = await withDelivery(() =>
      runCli(
        ['webhook-runbook', '--file', file.path, '--max-attempts', '2', '--poll-interval', '200ms', '--confirm-timeout', '3s', '--json'],
        { GOTONG_TASK_QUEUE: taskQueue },
      ),
    );
    assert.equal(result.code, 1, result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    const step = (n: number, status: string) => lines.find((l) => l.startsWith(`[webhook-runbook] step ${n}/6`) && l.includes(`: ${status}`));
    assert.equal(step(3, 'passed'), '[webhook-runbook] step 3/6 verify delivery: passed created=100 delivered=90 dead_lettered=10 waiting=0 success_rate=90.00%');
    assert.match(
      step(5, 'passed') ?? lines.join('\n'),
      /^\[webhook-runbook\] step 5\/6 replay execute: passed processed=10 replayed=10 enqueued=10 skipped=0 failed=0; only the dead letters the dry run counted \(changed before \S+Z\)$/,
    );
    assert.match(
      step(6, 'failed') ?? lines.join('\n'),
      /step 6\/6 confirm baseline: failed: timed out after 3s: dead_letter=10 baseline=0 replayed_waiting=0; still dead-lettered by type: contribution_created=10; e\.g\. evt_rb_never_\d+0/,
    );
    const json = JSON.parse(lines.at(-1)!) as { outcome: string; stopped_at: number };
    assert.deepEqual([json.outcome, json.stopped_at], ['stopped', 6]);
    assert.equal((await statusCounts(h.pool)).dead_letter, 10);
  });

  describe('CLI usage errors (exit 2, nothing started)', () => {
    const NOWHERE = { TEMPORAL_ADDRESS: '127.0.0.1:1' };
    const file = () => generatedFile('rb_usage', { valid: 1 }).path;
    const usage: Array<[string[], RegExp]> = [
      [['--approval', 'sometimes'], /--approval sometimes: use auto or manual/],
      [['--max-failed-ratio', '2'], /--max-failed-ratio 2: use a share between 0 and 1, e\.g\. 0\.01 or 1%/],
      [['--min-success-rate', 'most'], /--min-success-rate most: use a share between 0 and 1/],
      // "1" may mean 1% as well as all, and all turns the failed-lines gate off.
      [['--max-failed-ratio', '1'], /--max-failed-ratio 1: ambiguous; write 100% for all, or 1% \(0\.01\) for one in a hundred/],
      [['--verify-timeout', '30'], /--verify-timeout 30: use a duration such as 90s, 30m or 2h/],
      [['--confirm-timeout', 'soon'], /--confirm-timeout soon: use a duration/],
      [['--replay-limit', '0'], /--replay-limit must be a whole number >= 1/],
      [['--baseline', '-1'], /--baseline must be a whole number >= 0/],
    ];
    for (const [args, message] of usage) {
      it(`webhook-runbook ${args.join(' ')}`, async () => {
        const result = await runCli(['webhook-runbook', '--file', file(), ...args], NOWHERE);
        assert.equal(result.code, 2, result.stderr);
        assert.match(result.stderr, message);
        assert.equal(result.stdout, '');
      });
    }
    it('approve --step that is not a step number', async () => {
      const result = await runCli(['approve', 'webhook-runbook/x', '--step', 'first'], NOWHERE);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /--step must be 1 or 4 \(the gates follow steps 1 and 4\), not first/);
      assert.equal(result.stdout, '');
    });
    it('webhook-runbook without --file, or with a missing file', async () => {
      const missing = await runCli(['webhook-runbook'], NOWHERE);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /required option '--file <path>' not specified/);
      const gone = await runCli(['webhook-runbook', '--file', 'no/such.ndjson'], NOWHERE);
      assert.equal(gone.code, 2);
      assert.match(gone.stderr, /--file no\/such\.ndjson: no such file/);
    });
  });

  describe('demo', () => {
    // The demo runs in its own namespace on the test server, with its own database; it starts and stops the rest.
    const expectCompleted = (stdout: string) => {
      const lines = stdout.trimEnd().split('\n');
      for (let n = 1; n <= 6; n++) assert.ok(lines.some((l) => l.startsWith(`[webhook-runbook] step ${n}/6 `) && l.includes(': passed')), `step ${n} passed\n${stdout}`);
      assert.ok(lines.includes('[webhook-runbook] done outcome=completed baseline=0 dead_letter=0'), stdout);
      assert.match(stdout, /\[demo\] receiver: 1200 accepted, \d+ answered 503 before the fix, 0 bad signatures; dead letters \d+ after step 3, 0 at the end/);
      assert.match(stdout, /\[demo\] the run in the Temporal UI: http:\/\/.+\/namespaces\/gotong-demo\/workflows\/webhook-runbook%2Fevents\.ndjson-[0-9a-f]{10}/);
      const verify = lines.find((l) => l.startsWith('[webhook-runbook] step 3/6 verify delivery: passed'));
      assert.match(verify ?? '', /created=1200 delivered=\d+ dead_lettered=[1-9]\d* waiting=0/, 'some events were dead-lettered before the replay');
    };

    it('runs the six steps on the bundled sample, on a database beside DATABASE_URL', async () => {
      const url = new URL(h.databaseUrl);
      url.pathname = `${url.pathname}_demo`;
      const result = await runCli(['demo'], { GOTONG_DEMO_DATABASE_URL: url.toString() }, 180_000);
      assert.equal(result.code, 0, result.stderr);
      expectCompleted(result.stdout);
    });

    it('falls back to an embedded PostgreSQL when DATABASE_URL is unreachable', async () => {
      const result = await runCli(['demo'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/gotong' }, 180_000);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /no PostgreSQL reachable at postgres:\/\/postgres@127\.0\.0\.1:1\/gotong_demo; starting an embedded one/);
      expectCompleted(result.stdout);
    });
  });

  describe('worker processes', () => {
    const children: ChildProcess[] = [];
    afterEach(async () => {
      await h.env.client.workflow.getHandle(dispatcherWorkflowId(0)).terminate('test over').catch(() => undefined);
      for (const child of children.splice(0)) {
        child.kill('SIGKILL');
        await exited(child);
      }
    });

    function startWorker(): ChildProcess {
      const child = spawn(process.execPath, [CLI, 'worker', '--no-migrate', '--dispatchers', '1'], {
        env: {
          ...process.env,
          TEMPORAL_ADDRESS: h.env.address,
          DATABASE_URL: h.databaseUrl,
          GOTONG_TASK_QUEUE: taskQueue,
          WEBHOOK_URL: receiver.url,
          WEBHOOK_SECRET: SECRET,
          WEBHOOK_BACKOFF_BASE_MS: '20',
          WEBHOOK_BACKOFF_CAP_MS: '50',
          // Leases of about 10 s, so the deliveries a kill interrupts are taken up again soon; and no shorter, since
          // with max_attempts 1 a request that outlasts its timeout on a loaded machine would be an extra dead letter.
          WEBHOOK_TIMEOUT_MS: '8000',
          WEBHOOK_BATCH_SIZE: '200',
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.push(child);
      return child;
    }

    async function ledgerRows(runKey: string): Promise<number> {
      const { rows } = await h.pool.query<{ n: string }>('SELECT count(*) AS n FROM batch_ledger WHERE run_key = $1', [runKey]);
      return Number(rows[0]!.n);
    }

    it('SIGKILL the worker during step 2 and during step 5: the runbook completes with the exact report', async () => {
      const file = generatedFile('rb_crash', { valid: 10_000 });
      // Manual gates: the test fixes the receiver before it approves the replay, as an operator would.
      const args = input(file.path, { maxAttempts: 1, batchSize: 200, replayLimit: 20_000, replayBatchSize: 20, approval: 'manual' });
      let worker = startWorker();
      const handle = await start(args);
      let approving = true;
      const approver = (async () => {
        while (approving) {
          const p = await handle.query<RunbookProgress>('progress').catch(() => undefined);
          if (p?.phase === 'awaiting-approval' && p.currentStep !== null) {
            if (p.currentStep === 4) fixed = true;
            await handle.signal('approve', { step: p.currentStep });
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      try {
        for (const [step, batches] of [[2, 50], [5, 51]] as const) {
          const runKey = step === 2 ? await procedureBackfillKey(file.path) : `${args.runKey}/step-${step}`;
          // The step's ledger shows its first batch committed: read from the database, so the kill lands early.
          await waitFor(`step ${step} under way`, async () => (await ledgerRows(runKey)) > 0, 120_000, 5);
          worker.kill('SIGKILL');
          await exited(worker);
          const done = await ledgerRows(runKey);
          assert.ok(done > 0 && done < batches, `the kill landed mid-step ${step} (${done} of ${batches} batches done)`);
          worker = startWorker();
        }
        const report = await handle.result();
        assert.equal(report.outcome, 'completed');
        const expected = { processed: 10_000, created: 10_000, enqueued: 10_000, duplicates: 0, failed: 0 };
        const replayed = { processed: 1_000, replayed: 1_000, enqueued: 1_000, skipped: 0, failed: 0 };
        assert.deepEqual(figures(report.steps), [
          { n: 1, status: 'passed', backfill: { ...expected, dryRun: true }, replay: undefined, verify: undefined, confirm: undefined },
          { n: 2, status: 'passed', backfill: { ...expected, dryRun: false }, replay: undefined, verify: undefined, confirm: undefined },
          {
            n: 3,
            status: 'passed',
            backfill: undefined,
            replay: undefined,
            verify: { created: 10_000, waiting: 0, delivered: 9_000, deadLettered: 1_000, successRate: 0.9 },
            confirm: undefined,
          },
          { n: 4, status: 'passed', backfill: undefined, replay: { ...replayed, dryRun: true }, verify: undefined, confirm: undefined },
          { n: 5, status: 'passed', backfill: undefined, replay: { ...replayed, dryRun: false }, verify: undefined, confirm: undefined },
          { n: 6, status: 'passed', backfill: undefined, replay: undefined, verify: undefined, confirm: { deadLetters: 0, baseline: 0, replayWaiting: 0 } },
        ]);
        assert.equal(await ledgerRows(await procedureBackfillKey(file.path)), 50, 'one ledger row per backfill batch');
        // 50 full batches and the one that found the selection exhausted.
        assert.equal(await ledgerRows(`${args.runKey}/step-5`), 51, 'one ledger row per replay batch');
        const audit = await h.pool.query<{ n: string; d: string }>(
          'SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM webhook_replay_audit WHERE run_key = $1',
          [`${args.runKey}/step-5`],
        );
        assert.deepEqual([Number(audit.rows[0]!.n), Number(audit.rows[0]!.d)], [1_000, 1_000]);
        assert.deepEqual(await statusCounts(h.pool), { delivered: 10_000 });
      } finally {
        approving = false;
        await approver;
      }
    });
  });
});
