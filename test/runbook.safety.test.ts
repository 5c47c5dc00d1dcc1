import { inputRootsFromEnvironment } from '../src/input-files';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { ApplicationFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { Pool } from 'pg';
import { fingerprintFile } from '../src/backfill/batch';
import { runbookWorkflowId } from '../src/client/runbook';
import { procedureKey } from '../src/runbook/procedure';
import { runbookHistoryBound, type RunbookInput, type RunbookProgress, type RunbookReport } from '../src/shared/runbook';
import { createWorker } from '../src/worker';
import { webhookDispatcher } from '../src/workflows/dispatcher';
import { webhookRecoveryRunbook } from '../src/workflows/runbook';
import { generatedFile } from './helpers/files';
import { getHarness, resetTables, runCli, seedEvents, statusCounts, uniqueTaskQueue, waitFor, withWorker, type CliResult, type Harness } from './helpers/harness';
import { TestReceiver } from './helpers/receiver';

const SECRET = 'runbook-safety-secret';
const run = promisify(execFile);

async function markDeadLetters(pool: Pool, prefix: string, count: number, maxAttempts = 5): Promise<void> {
  const ids = await seedEvents(pool, prefix, count, maxAttempts);
  await pool.query(
    `UPDATE webhook_outbox SET status = 'dead_letter', attempts = 5, last_status_code = 500, next_attempt_at = NULL WHERE event_id = ANY($1)`,
    [ids],
  );
}

/** Step 2's ledger key: the procedure's (the file's path and fingerprint), whichever run executes it. */
async function backfillKey(path: string): Promise<string> {
  return `${procedureKey(path, await fingerprintFile(path, inputRootsFromEnvironment()))}/step-2`;
}

const lines = (r: CliResult) => r.stdout.trimEnd().split('\n');
const stepLine = (r: CliResult, n: number, status: string) =>
  lines(r).find((l) => l.startsWith(`[webhook-runbook] step ${n}/6 `) && l.includes(`: ${status}`)) ?? `(no step ${n} ${status} line in)\n${r.stdout}`;

interface ReportJson {
  run_key: string;
  outcome: string;
  stopped_at: number | null;
  baseline: number;
  baseline_from: string;
  continues: { run_key: string; outcome: string; stopped_at: number | null } | null;
  steps: Array<Record<string, unknown>>;
}
const reportOf = (r: CliResult) => JSON.parse(lines(r).at(-1)!) as ReportJson;

/** Every key of the --json report is snake_case; the breakdowns' keys are data (event types, status codes). */
function assertSnakeCase(value: unknown, path = '$'): void {
  if (Array.isArray(value)) value.forEach((v, i) => assertSnakeCase(v, `${path}[${i}]`));
  else if (value && typeof value === 'object') {
    for (const [key, v] of Object.entries(value)) {
      assert.match(key, /^[a-z][a-z0-9_]*$/, `${path}.${key} is not snake_case`);
      if (key !== 'by_event_type' && key !== 'by_status_code') assertSnakeCase(v, `${path}.${key}`);
    }
  }
}

describe('webhookRecoveryRunbook, safe to operate (real Temporal server, PostgreSQL and receiver)', function () {
  this.timeout(300_000);
  let h: Harness;
  let taskQueue: string;
  let receiver: TestReceiver;
  let receiverUp: boolean;

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('runbook-safety');
    receiverUp = true;
    receiver = await new TestReceiver([SECRET], () => (receiverUp ? { status: 200 } : { status: 503 })).start();
  });
  afterEach(async () => {
    await receiver.stop();
  });

  function input(path: string, overrides: Partial<RunbookInput> = {}): RunbookInput {
    return {
      runKey: `rbs-${randomUUID()}`,
      path,
      maxAttempts: 1,
      batchSize: 100,
      replayLimit: 500,
      replayBatchSize: 100,
      approval: 'auto',
      maxFailedRatio: 0.01,
      verifyTimeoutMs: 60_000,
      verifyMaxBacklog: 0,
      verifyMinSuccessRate: 0.5,
      confirmTimeoutMs: 60_000,
      pollMs: 100,
      ...overrides,
    };
  }

  const start = (args: RunbookInput) =>
    h.env.client.workflow.start(webhookRecoveryRunbook, { taskQueue, workflowId: `webhook-runbook/safety-${randomUUID()}`, args: [args] });

  const cli = (args: string[], timeoutMs = 120_000) => runCli(args, { GOTONG_TASK_QUEUE: taskQueue }, timeoutMs);
  const temporal = (args: string[]) => run(h.temporalCli, [...args, '--address', h.env.address, '--namespace', 'default']);
  const progressOf = (handle: WorkflowHandle) => handle.query<RunbookProgress>('progress');
  const atGate = (handle: WorkflowHandle, n: number) => async () => {
    const p = await progressOf(handle);
    return p.phase === 'awaiting-approval' && p.currentStep === n;
  };

  /** Runs `fn` with an in-process worker and a dispatcher of its own delivering to the receiver. */
  async function withDelivery<T>(fn: () => Promise<T>): Promise<T> {
    return withWorker(
      taskQueue,
      async () => {
        const dispatcher = await h.env.client.workflow.start(webhookDispatcher, {
          taskQueue,
          workflowId: `webhook-dispatcher/safety-${randomUUID()}`,
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

  async function ledgerRows(runKey: string): Promise<number> {
    const { rows } = await h.pool.query<{ n: string }>('SELECT count(*) AS n FROM batch_ledger WHERE run_key = $1', [runKey]);
    return Number(rows[0]!.n);
  }

  /** Every run of a workflow, following its continue-as-new chain from the first: its event count and input. */
  async function runChain(workflowId: string, firstRunId: string): Promise<Array<{ events: number; input: RunbookInput }>> {
    const runs: Array<{ events: number; input: RunbookInput }> = [];
    let runId: string | undefined = firstRunId;
    while (runId) {
      const history: Awaited<ReturnType<WorkflowHandle['fetchHistory']>> = await h.env.client.workflow.getHandle(workflowId, runId).fetchHistory();
      const events = history.events ?? [];
      const data = events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0]?.data;
      runs.push({ events: events.length, input: JSON.parse(Buffer.from(data ?? []).toString()) as RunbookInput });
      runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
    }
    return runs;
  }
  const historyLengths = async (workflowId: string, firstRunId: string) => (await runChain(workflowId, firstRunId)).map((r) => r.events);

  describe('gates: approve and reject are Workflow Updates', () => {
    it('the answer names the gate; no gate, another gate, a second decision and a closed run are refused (CLI, exit 1)', async () => {
      const file = generatedFile('rbs_gates', { valid: 20 });
      await markDeadLetters(h.pool, 'rbs_old_dl', 3);
      await withDelivery(async () => {
        const handle = await start(input(file.path, { approval: 'manual' }));
        await waitFor('the gate after step 1', atGate(handle, 1));

        // The CLI knows the gates: a step without one is a usage error before anything is sent ...
        const noGate = await cli(['approve', handle.workflowId, '--step', '3']);
        assert.equal(noGate.code, 2, noGate.stderr);
        assert.match(noGate.stderr, /^error: .*--step must be 1 or 4 \(the gates follow steps 1 and 4\), not 3; see 'gotong-worker approve --help'\n$/);
        // ... and the run itself refuses it too, for clients that send the Update without the CLI (the Temporal UI).
        await assert.rejects(handle.executeUpdate('approve', { args: [{ step: 3 }] }), (err: unknown) =>
          /^step 3 has no gate; the gates follow steps 1 and 4$/.test(String((err as { cause?: Error }).cause?.message)),
        );
        const otherGate = await cli(['reject', handle.workflowId, '--step', '4']);
        assert.deepEqual(
          [otherGate.code, otherGate.stderr],
          [1, '[reject] refused: the run waits at the gate after step 1 (backfill dry-run), not at the gate after step 4\n'],
        );

        // Two operators at once: the first decision wins, the other is refused as already decided.
        const both = await Promise.all([
          cli(['approve', handle.workflowId, '--step', '1', '--reason', 'first']),
          cli(['approve', handle.workflowId, '--step', '1', '--reason', 'second']),
        ]);
        const winner = both.findIndex((r) => r.code === 0);
        assert.ok(winner >= 0, both.map((r) => r.stderr).join('\n'));
        const loser = both[1 - winner]!;
        assert.equal(both[winner]!.stdout, `[approve] approved the gate after step 1 (backfill dry-run) of ${handle.workflowId}\n`);
        assert.equal(loser.code, 1);
        assert.match(loser.stderr, /^\[approve\] refused: the gate after step 1 \(backfill dry-run\) was already approved/);

        // The Temporal UI's signals follow the same rules; a refused one shows in the progress query.
        await waitFor('the gate after step 4', atGate(handle, 4));
        await temporal(['workflow', 'signal', '--workflow-id', handle.workflowId, '--name', 'reject', '--input', '{"step": 1, "reason": "late"}']);
        await waitFor('the refused signal', async () => (await progressOf(handle)).lastRefusedDecision !== null);
        assert.deepEqual((await progressOf(handle)).lastRefusedDecision, {
          decision: 'reject',
          via: 'signal',
          step: 1,
          reason: 'late',
          refusal: `the gate after step 1 (backfill dry-run) was already approved by an operator (${winner === 0 ? 'first' : 'second'})`,
        });
        assert.ok(await atGate(handle, 4)(), 'a refused signal changes nothing');

        const approved = await cli(['approve', handle.workflowId]);
        assert.deepEqual([approved.code, approved.stdout], [0, `[approve] approved the gate after step 4 (replay dry-run) of ${handle.workflowId}\n`]);
        const report = await handle.result();
        assert.equal(report.outcome, 'completed');
        assert.deepEqual(report.steps[0]!.gate, {
          failedRatio: 0,
          maxFailedRatio: 0.01,
          approvedBy: 'operator',
          decidedVia: 'update',
          reason: winner === 0 ? 'first' : 'second',
        });
        const late = await cli(['reject', handle.workflowId, '--step', '4']);
        assert.deepEqual([late.code, late.stderr], [1, '[reject] refused: the run is not waiting at a gate: it has completed\n']);
      });
    });

    it('refused while no gate is open, and in auto mode; a rejection stops the run (CLI)', async () => {
      const file = generatedFile('rbs_nogate', { valid: 10 });
      // No dispatcher: step 3 waits for deliveries that do not happen.
      await withWorker(taskQueue, async () => {
        const manual = await start(input(file.path, { approval: 'manual' }));
        await waitFor('the gate after step 1', atGate(manual, 1));
        await manual.executeUpdate('approve', { args: [{ step: 1 }] });
        await waitFor('step 3', async () => (await progressOf(manual)).currentStep === 3);
        const early = await cli(['approve', manual.workflowId]);
        assert.deepEqual([early.code, early.stderr], [1, '[approve] refused: the run is not waiting at a gate: step 3 (verify delivery) is running\n']);
        await manual.cancel();

        const auto = await start(input(file.path));
        await waitFor('step 3', async () => (await progressOf(auto)).currentStep === 3);
        const refused = await cli(['reject', auto.workflowId]);
        assert.deepEqual(
          [refused.code, refused.stderr],
          [1, '[reject] refused: this run passes its gates on their checks alone (--approval auto); there is nothing to decide\n'],
        );
        await auto.cancel();

        const rejected = await start(input(file.path, { approval: 'manual' }));
        await waitFor('the gate after step 1', atGate(rejected, 1));
        const no = await cli(['reject', rejected.workflowId, '--reason', 'wrong file']);
        assert.deepEqual([no.code, no.stdout], [0, `[reject] rejected the gate after step 1 (backfill dry-run) of ${rejected.workflowId}\n`]);
        const report = await stoppedReport(rejected.result());
        assert.deepEqual([report.stoppedAt, report.steps[0]!.status], [1, 'rejected']);
        assert.deepEqual(report.steps[0]!.gate, { failedRatio: 0, maxFailedRatio: 0.01, decidedVia: 'update', reason: 'wrong file' });
      });
    });
  });

  describe('a child ended by an operator', () => {
    it('cancelled: the runbook stops with RunbookStopped naming step 2, status cancelled (CLI, exit 1)', async () => {
      const file = generatedFile('rbs_child_cancel', { valid: 20_000 });
      const child = `${runbookWorkflowId(file.path)}/step-2-backfill-execute`;
      const key = await backfillKey(file.path);
      const result = await withWorker(taskQueue, async () => {
        const running = cli(['webhook-runbook', '--file', file.path, '--batch-size', '200', '--json'], 180_000);
        await waitFor('step 2 under way', async () => (await ledgerRows(key)) > 0, 120_000, 5);
        await temporal(['workflow', 'cancel', '--workflow-id', child]);
        return running;
      });
      assert.equal(result.code, 1, result.stderr);
      assert.equal(
        stepLine(result, 2, 'cancelled'),
        `[webhook-runbook] step 2/6 backfill execute: cancelled: ${child} was cancelled from outside the runbook (an operator: the Temporal UI ` +
          "or 'temporal workflow cancel'); its committed batches stay recorded; run the runbook on the same file again to continue",
      );
      assert.match(result.stdout, new RegExp(`\\[webhook-runbook\\] ${child.replace(/[.]/g, '\\.')} was cancel requested by \\S+`));
      assert.ok(lines(result).includes('[webhook-runbook] done outcome=stopped stopped_at=2'), result.stdout);
      const report = reportOf(result);
      assertSnakeCase(report);
      assert.deepEqual([report.outcome, report.stopped_at, report.steps[1]!.status], ['stopped', 2, 'cancelled']);
      const record = await h.pool.query('SELECT outcome, stopped_at FROM runbook_runs WHERE run_key = $1', [report.run_key]);
      assert.deepEqual(record.rows, [{ outcome: 'stopped', stopped_at: 2 }]);
      // What the cancelled child committed is in the outbox, exactly as its ledger counted.
      const { rows } = await h.pool.query<{ n: string }>(`SELECT coalesce(sum((result->>'created')::int), 0) AS n FROM batch_ledger WHERE run_key = $1`, [key]);
      assert.equal((await statusCounts(h.pool)).pending ?? 0, Number(rows[0]!.n));
    });

    it('terminated: the runbook stops at step 1, status failed, naming who and why (CLI, exit 1, snake_case --json)', async () => {
      const file = generatedFile('rbs_child_terminate', { valid: 20_000 });
      const workflowId = runbookWorkflowId(file.path);
      const child = `${workflowId}/step-1-backfill-dry-run`;
      const result = await withWorker(taskQueue, async () => {
        const running = cli(['webhook-runbook', '--file', file.path, '--batch-size', '200', '--json'], 180_000);
        await waitFor('step 1 under way', async () => {
          const p = await h.env.client.workflow.getHandle(workflowId).query<RunbookProgress>('progress').catch(() => null);
          return !!p?.steps[0]!.runKey && (await ledgerRows(p.steps[0]!.runKey)) > 0;
        }, 120_000, 5);
        await temporal(['workflow', 'terminate', '--workflow-id', child, '--reason', 'wrong file']);
        return running;
      });
      assert.equal(result.code, 1, result.stderr);
      assert.equal(
        stepLine(result, 1, 'failed'),
        `[webhook-runbook] step 1/6 backfill dry-run: failed: ${child} was terminated from outside the runbook (an operator: the Temporal UI ` +
          "or 'temporal workflow terminate'); its committed batches stay recorded; run the runbook on the same file again to continue",
      );
      assert.match(result.stdout, /was terminated by \S+: wrong file\n/);
      const report = reportOf(result);
      assertSnakeCase(report);
      assert.deepEqual([report.outcome, report.stopped_at, report.steps[0]!.status, report.steps[0]!.dry_run], ['stopped', 1, 'failed', undefined]);
      assert.deepEqual(await statusCounts(h.pool), {});
    });
  });

  it('a re-run continues the stopped procedure: verify and confirm judge the file and the first baseline, never vacuously (CLI)', async () => {
    const file = generatedFile('rbs_rerun', { valid: 100 });
    // One attempt each, so a replay while the receiver is down dead-letters them again at once.
    await markDeadLetters(h.pool, 'rbs_before', 5, 1);
    const runbook = (...extra: string[]) =>
      cli(['webhook-runbook', '--file', file.path, '--max-attempts', '1', '--poll-interval', '100ms', '--json', ...extra]);
    await withDelivery(async () => {
      // 1. The receiver is down: every event is dead-lettered, step 3 stops the run.
      receiverUp = false;
      const first = await runbook();
      assert.equal(first.code, 1, first.stderr);
      assert.equal(lines(first)[0], '[webhook-runbook] baseline dead_letter=5');
      assert.equal(
        stepLine(first, 3, 'failed'),
        '[webhook-runbook] step 3/6 verify delivery: failed: the receiver rejected too many: waiting=0 (allowed 0) delivered=0 dead_lettered=100 success_rate=0.00% (needed 50.00%)',
      );
      const r1 = reportOf(first);
      assertSnakeCase(r1);
      assert.deepEqual([r1.continues, r1.baseline, r1.baseline_from], [null, 5, 'measured']);

      // 2. Again, unchanged: step 2 creates nothing now, yet step 3 judges the file's 100 events and stops again.
      const second = await runbook();
      assert.equal(second.code, 1, second.stderr);
      assert.match(lines(second)[0]!, new RegExp(`^\\[webhook-runbook\\] continues the run ${r1.run_key} \\(stopped at step 3; started \\S+\\): its backfill resumes`));
      assert.equal(lines(second)[1], '[webhook-runbook] baseline dead_letter=5 (carried from the run it continues)');
      assert.equal(stepLine(second, 1, 'passed'), '[webhook-runbook] step 1/6 backfill dry-run: passed processed=100 created=0 enqueued=0 duplicates=100 failed=0 failed_ratio=0.00% (max 1.00%)');
      assert.equal(stepLine(second, 2, 'passed'), '[webhook-runbook] step 2/6 backfill execute: passed processed=100 created=100 enqueued=100 duplicates=0 failed=0');
      assert.match(stepLine(second, 3, 'failed'), /delivered=0 dead_lettered=100 success_rate=0\.00%/);
      const r2 = reportOf(second);
      assert.deepEqual([r2.continues?.run_key, r2.continues?.outcome, r2.continues?.stopped_at, r2.baseline, r2.baseline_from], [r1.run_key, 'stopped', 3, 5, 'earlier-run']);

      // 3. Accept the dead letters and replay them while the receiver is still down: step 6 holds the first
      //    baseline (5), so it keeps waiting with 105 dead letters (a baseline taken now, 105, would pass at once).
      const workflowId = runbookWorkflowId(file.path);
      const third = runbook('--min-success-rate', '0');
      await waitFor('step 6 waiting with the replayed events dead again', async () => {
        const p = await h.env.client.workflow.getHandle(workflowId).query<RunbookProgress>('progress').catch(() => null);
        const c = p?.currentStep === 6 ? p.steps[5]!.confirm : undefined;
        return c?.deadLetters === 105 && c.replayWaiting === 0;
      }, 120_000);
      const waiting = await h.env.client.workflow.getHandle(workflowId).query<RunbookProgress>('progress');
      assert.deepEqual([waiting.steps[5]!.status, waiting.steps[5]!.confirm?.baseline, waiting.baseline], ['running', 5, 5]);
      assert.equal(waiting.steps[4]!.replay?.replayed, 105);
      await temporal(['workflow', 'cancel', '--workflow-id', workflowId]);
      const cancelled = await third;
      assert.equal(cancelled.code, 1, cancelled.stderr);
      const r3key = waiting.runKey;

      // 4. The receiver is fixed; --baseline sets the target explicitly.
      receiverUp = true;
      const fourth = await runbook('--min-success-rate', '0', '--baseline', '0');
      assert.equal(fourth.code, 0, fourth.stderr);
      assert.equal(lines(fourth)[1], '[webhook-runbook] baseline dead_letter=0 (--baseline)');
      assert.ok(lines(fourth).includes('[webhook-runbook] done outcome=completed baseline=0 dead_letter=0'), fourth.stdout);
      const r4 = reportOf(fourth);
      assert.deepEqual(
        [r4.continues?.run_key, r4.continues?.outcome, r4.continues?.stopped_at, r4.baseline_from],
        [r3key, 'cancelled', 6, 'option'],
      );

      // 5. After a completed run the file starts a new procedure (a new baseline), and step 3 still judges its 100 events.
      const fifth = await runbook();
      assert.equal(fifth.code, 0, fifth.stderr);
      assert.equal(lines(fifth)[0], '[webhook-runbook] baseline dead_letter=0');
      assert.equal(stepLine(fifth, 3, 'passed'), '[webhook-runbook] step 3/6 verify delivery: passed created=100 delivered=100 dead_lettered=0 waiting=0 success_rate=100.00%');
      assert.equal(reportOf(fifth).continues, null);
    });
    assert.deepEqual(await statusCounts(h.pool), { delivered: 105 });
  });

  describe('bounded history', () => {
    it('a file of 800 batches adds nothing to the runbook history: each run stays under the stated bound', async () => {
      const file = generatedFile('rbs_batches', { valid: 4_000 });
      // Steps 3 and 6 pass at once (no dispatcher needed): what is measured is what the children cost the runbook.
      const args = input(file.path, { batchSize: 10, verifyMaxBacklog: 1_000_000, verifyMinSuccessRate: 0, pollsPerRun: 5 });
      const { handle, report } = await withWorker(taskQueue, async () => {
        const handle = await start(args);
        return { handle, report: await handle.result() };
      });
      assert.equal(report.outcome, 'completed');
      assert.deepEqual(report.steps[1]!.backfill, { processed: 4_000, created: 4_000, enqueued: 4_000, duplicates: 0, failed: 0, dryRun: false });
      const batches = (await ledgerRows(`${args.runKey}/step-1`)) + (await ledgerRows(await backfillKey(file.path)));
      assert.equal(batches, 800);
      const lengths = await historyLengths(handle.workflowId, handle.firstExecutionRunId);
      const bound = runbookHistoryBound(5);
      console.log(`      runbook history: ${lengths.join(' + ')} events for ${batches} child batches (bound per run: ${bound})`);
      for (const n of lengths) assert.ok(n <= bound, `${n} events in one run, over the bound of ${bound}`);
      // Before, every batch signalled the runbook: at least one event per batch.
      assert.ok(lengths.reduce((a, b) => a + b, 0) < batches / 4, `${lengths} events against ${batches} batches`);
    });

    const runsSoFar = async (handle: { workflowId: string; firstExecutionRunId: string }) =>
      (await runChain(handle.workflowId, handle.firstExecutionRunId)).length;
    /** The `resume` each run after the first started with: what continue-as-new carried. */
    const resumes = async (workflowId: string, firstRunId: string) => (await runChain(workflowId, firstRunId)).slice(1).map((r) => r.input.resume);

    it('step 3 continues as new every pollsPerRun looks, carrying its deadline; each run stays under the bound', async () => {
      const file = generatedFile('rbs_can_verify', { valid: 50 });
      const args = input(file.path, { pollMs: 20, pollsPerRun: 5, verifyTimeoutMs: 600_000 });
      const handle = await withWorker(taskQueue, async () => {
        // No dispatcher yet: step 3 looks at the outbox again and again.
        const handle = await start(args);
        await waitFor('three runs of step 3', async () => (await runsSoFar(handle)) >= 3, 120_000);
        return handle;
      });
      // Now delivery starts, and the latest run sees it.
      const report = await withDelivery(() => handle.result());
      assert.equal(report.outcome, 'completed');
      assert.deepEqual(report.steps[2]!.verify, { created: 50, waiting: 0, delivered: 50, deadLettered: 0, successRate: 1 });
      const lengths = await historyLengths(handle.workflowId, handle.firstExecutionRunId);
      console.log(`      runbook runs while step 3 waited: ${lengths.length}, events ${lengths.join(', ')} (bound per run: ${runbookHistoryBound(5)})`);
      for (const n of lengths) assert.ok(n <= runbookHistoryBound(5), `${n} events in one run`);
      const carried = await resumes(handle.workflowId, handle.firstExecutionRunId);
      assert.ok(carried.length >= 2 && carried.every((r) => r?.at === 3 && r.deadline === carried[0]!.deadline), 'one deadline for the whole step');
      assert.equal(carried[0]!.procedure.key, report.procedure?.key);
      const record = await h.pool.query('SELECT outcome FROM runbook_runs WHERE run_key = $1', [args.runKey]);
      assert.deepEqual(record.rows, [{ outcome: 'completed' }]);
    });

    it('step 6 continues as new too, with the baseline and the replay it waits for', async () => {
      const file = generatedFile('rbs_can_confirm', { valid: 10 });
      await markDeadLetters(h.pool, 'rbs_can_dl', 2);
      // Step 3 passes at once; the 2 replayed dead letters stay pending until a dispatcher runs, so step 6 waits.
      const args = input(file.path, { verifyMaxBacklog: 1_000, pollMs: 20, pollsPerRun: 5 });
      const handle = await withWorker(taskQueue, async () => {
        const handle = await start(args);
        await waitFor('three runs of step 6', async () => {
          const carried = await resumes(handle.workflowId, handle.firstExecutionRunId);
          return carried.filter((r) => r?.at === 6).length >= 2;
        }, 120_000);
        return handle;
      });
      const report = await withDelivery(() => handle.result());
      assert.equal(report.outcome, 'completed');
      assert.equal(report.steps[4]!.replay?.replayed, 2);
      assert.deepEqual(report.steps[5]!.confirm, { deadLetters: 0, baseline: 2, replayWaiting: 0 });
      const lengths = await historyLengths(handle.workflowId, handle.firstExecutionRunId);
      for (const n of lengths) assert.ok(n <= runbookHistoryBound(5), `${n} events in one run`);
    });
  });

  describe('reset while a child of the old run is still closing', () => {
    let runbookOnly: WorkflowBundleWithSourceMap;
    before(async () => {
      // A worker that runs the runbook but not its children: they stay open until a full worker takes them.
      runbookOnly = await bundleWorkflowCode({
        workflowsPath: require.resolve('./helpers/runbook-only-workflows'),
        logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error },
      });
    });

    it('the reset run waits for the old step-2 child to close, then resumes its ledger: exact counts', async () => {
      const file = generatedFile('rbs_reset', { valid: 4_000 });
      const key = await backfillKey(file.path);
      const args = input(file.path, { batchSize: 20, verifyMaxBacklog: 1_000_000, verifyMinSuccessRate: 0 });
      const childId = (runbookId: string) => `${runbookId}/step-2-backfill-execute`;

      // 1. A full worker runs the runbook into step 2; the worker stops mid-step.
      const handle = await withWorker(taskQueue, async () => {
        const handle = await start(args);
        await waitFor('step 2 under way', async () => (await ledgerRows(key)) > 0, 120_000, 5);
        return handle;
      });
      const oldChild = await h.env.client.workflow.getHandle(childId(handle.workflowId)).describe();
      assert.equal(oldChild.status.name, 'RUNNING');

      // 2. Reset the runbook to the workflow task before it started step 2's child: the old run ends, its child is asked to cancel.
      const events = (await handle.fetchHistory()).events!;
      const childStart = events.find(
        (e) => e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId === childId(handle.workflowId),
      )!;
      const taskBefore = events.filter((e) => e.workflowTaskCompletedEventAttributes && Number(e.eventId) < Number(childStart.eventId)).at(-1)!;
      const { runId } = await h.env.client.workflowService.resetWorkflowExecution({
        namespace: 'default',
        workflowExecution: { workflowId: handle.workflowId, runId: handle.firstExecutionRunId },
        workflowTaskFinishEventId: taskBefore.eventId,
        requestId: randomUUID(),
        reason: 'test: reset while a child runs',
      });
      const reset = h.env.client.workflow.getHandle<typeof webhookRecoveryRunbook>(handle.workflowId, runId!);

      // 3. Only the runbook runs: the reset run meets the old child, still open, and waits for it.
      const worker = await createWorker({ connection: h.env.nativeConnection, namespace: 'default', taskQueue, pool: h.pool, workflowBundle: runbookOnly });
      await worker.runUntil(() =>
        waitFor('step 2 waiting for the old child', async () => (await reset.query<RunbookProgress>('progress')).steps[1]!.waitingFor === childId(handle.workflowId)),
      );
      assert.equal((await h.env.client.workflow.getHandle(childId(handle.workflowId), oldChild.runId).describe()).status.name, 'RUNNING');

      // 4. A full worker: the old child closes, the new one takes over the same ledger key, and the run completes.
      const report = await withWorker(taskQueue, () => reset.result());
      assert.equal(report.outcome, 'completed');
      assert.deepEqual(report.steps[1]!.backfill, { processed: 4_000, created: 4_000, enqueued: 4_000, duplicates: 0, failed: 0, dryRun: false });
      assert.equal(report.steps[1]!.waitingFor, undefined);
      assert.equal((await h.env.client.workflow.getHandle(childId(handle.workflowId), oldChild.runId).describe()).status.name, 'CANCELLED');
      const conflicts = (await reset.fetchHistory()).events!.filter((e) => e.startChildWorkflowExecutionFailedEventAttributes);
      assert.ok(conflicts.length >= 1, 'the reset run met the old child');
      assert.equal(await ledgerRows(key), 200, 'one ledger row per batch');
      assert.deepEqual(await statusCounts(h.pool), { pending: 4_000 });
    });
  });
});
