import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { createDeliveryAgent } from '../src/delivery/http';
import type { DispatcherStats } from '../src/shared/delivery';
import type { GateAnswer, RunbookInput, RunbookProgress, RunbookReport, StepNumber } from '../src/shared/runbook';
import { createWorker, type GotongWorker } from '../src/worker';
import { WORKFLOWS_PATH } from '../src/workflow-bundle';
import { generatedFile } from './helpers/files';
import { getHarness, resetTables, seedEvents, statusCounts, uniqueTaskQueue, waitFor } from './helpers/harness';
import { TestReceiver } from './helpers/receiver';
import { TEST_UPGRADE_PATCH } from './helpers/upgrade/changed-workflow-code';

const SECRET = 'upgrade-test-secret';

/** The patch id a history event's marker records, if it is a patch marker (its details: {"id": ..., "deprecated": ...}). */
function patchIdOf(event: { markerRecordedEventAttributes?: { details?: Record<string, { payloads?: { data?: Uint8Array | null }[] | null }> | null } | null }): string | null {
  const data = event.markerRecordedEventAttributes?.details?.['patch-data']?.payloads?.[0]?.data;
  return data ? (JSON.parse(Buffer.from(data).toString()) as { id: string }).id : null;
}

const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error };

/** The real workflows with the test's change to them (see helpers/upgrade/changed-workflow-code.ts). */
function changedBundle(variant: 'patched' | 'unpatched'): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    workflowInterceptorModules: [require.resolve(`./helpers/upgrade/${variant}`)],
    logger: quiet,
  });
}

/**
 * A deploy of changed workflow code meets runs that are open: a dispatcher mid-loop and a runbook waiting at a manual
 * gate, both begun by the old code. The new worker replays their histories (the change is off there, by patched())
 * and schedules the new way from then on; both complete. The same change without patched() cannot replay them.
 */
describe('a deploy of changed workflow code: runs begun by the old code go on and complete', function () {
  this.timeout(300_000);

  it('a dispatcher and a runbook at a manual gate, moved to a worker whose workflow code schedules differently', async () => {
    const h = getHarness();
    await resetTables(h.pool);
    const [patchedBundle, unpatchedBundle] = await Promise.all([changedBundle('patched'), changedBundle('unpatched')]);
    const taskQueue = uniqueTaskQueue('upgrade');
    const receiver = await new TestReceiver([SECRET]).start();
    const agent = createDeliveryAgent(16);
    const worker = (workflowBundle: WorkflowBundleWithSourceMap): Promise<GotongWorker> =>
      createWorker({
        connection: h.env.nativeConnection,
        namespace: h.env.namespace ?? 'default',
        taskQueue,
        pool: h.pool,
        workflowBundle,
        delivery: { url: receiver.url, secrets: { current: SECRET }, agent },
      });
    const client = h.env.client;
    const dispatcherId = `webhook-dispatcher/upgrade-${randomUUID()}`;
    const runbookId = `webhook-runbook/upgrade-${randomUUID()}`;
    const dispatcher = client.workflow.getHandle(dispatcherId);
    const runbook: WorkflowHandle = client.workflow.getHandle(runbookId);
    const progress = () => runbook.query<RunbookProgress>('progress');
    const atGate = (step: StepNumber) => async () => {
      const p = await progress();
      return p.phase === 'awaiting-approval' && p.currentStep === step;
    };
    const file = generatedFile('upgrade', { valid: 20 });
    try {
      // Three dead letters from before the procedure: its baseline, and what steps 4 and 5 replay.
      const dead = await seedEvents(h.pool, 'upgrade_dl', 3);
      await h.pool.query(`UPDATE webhook_outbox SET status = 'dead_letter', attempts = 5, last_status_code = 500, next_attempt_at = NULL WHERE event_id = ANY($1)`, [dead]);
      await seedEvents(h.pool, 'upgrade_first', 5);

      // ---- the old code: the workflow bundle of this checkout ----
      const historyAtGate = await (await worker(h.workflowBundle)).runUntil(async () => {
        await client.workflow.start('webhookDispatcher', {
          taskQueue,
          workflowId: dispatcherId,
          args: [{ shard: 0, shards: 1, options: { backoffBaseMs: 20, backoffCapMs: 50, maxIdleMs: 100, autoPauseAfter: 100_000 } }],
        });
        await waitFor('the first backlog delivered', async () => (await statusCounts(h.pool)).delivered === 5);
        const input: RunbookInput = {
          runKey: `rb-${randomUUID()}`,
          path: file.path,
          maxAttempts: 2,
          batchSize: 10,
          replayLimit: 500,
          replayBatchSize: 10,
          approval: 'manual',
          maxFailedRatio: 0.01,
          verifyTimeoutMs: 120_000,
          verifyMaxBacklog: 0,
          verifyMinSuccessRate: 0.5,
          confirmTimeoutMs: 120_000,
          pollMs: 100,
        };
        await client.workflow.start('webhookRecoveryRunbook', { taskQueue, workflowId: runbookId, args: [input] });
        await waitFor('the runbook at gate 1', atGate(1), 60_000);
        return runbook.fetchHistory();
      });

      // The change without patched() cannot take over these runs: the history the old code wrote does not replay on it.
      await assert.rejects(Worker.runReplayHistory({ workflowBundle: unpatchedBundle }, historyAtGate, runbookId), DeterminismViolationError);
      // Guarded, it replays (as the new worker is about to).
      await Worker.runReplayHistory({ workflowBundle: patchedBundle }, historyAtGate, runbookId);

      // ---- the new code: a worker restarted on the changed bundle ----
      const report = await (await worker(patchedBundle)).runUntil(async () => {
        const answer = await runbook.executeUpdate<GateAnswer, [{ step: number }]>('approve', { args: [{ step: 1 }] });
        assert.deepEqual(answer, { step: 1, name: 'backfill dry-run', decision: 'approved', reason: null });
        await waitFor('the runbook at gate 4', atGate(4), 120_000);
        await runbook.executeUpdate('approve', { args: [{ step: 4 }] });
        const done = (await runbook.result()) as RunbookReport;

        // The dispatcher, woken for a new backlog, delivers it on the new code.
        await seedEvents(h.pool, 'upgrade_after', 10);
        await dispatcher.signal('wake');
        await waitFor('the new backlog delivered', async () => (await statusCounts(h.pool)).delivered === 38);
        await waitFor('the dispatcher counted it', async () => (await dispatcher.query<DispatcherStats>('stats')).delivered === 38);
        return done;
      });

      assert.equal(report.outcome, 'completed');
      assert.equal(report.baseline, 3);
      const step = (n: number) => report.steps[n - 1]!;
      assert.deepEqual(
        report.steps.map((s) => [s.number, s.status]),
        [1, 2, 3, 4, 5, 6].map((n) => [n, 'passed']),
      );
      assert.deepEqual(step(1).backfill, { ...file.expected, dryRun: true });
      assert.deepEqual(step(1).gate?.approvedBy, 'operator');
      assert.deepEqual(step(2).backfill, { ...file.expected, dryRun: false });
      assert.deepEqual(step(3).verify, { created: 20, waiting: 0, delivered: 20, deadLettered: 0, successRate: 1 });
      assert.deepEqual([step(4).replay?.processed, step(4).replay?.replayed, step(5).replay?.replayed], [3, 3, 3]);
      assert.deepEqual([step(6).confirm?.deadLetters, step(6).confirm?.baseline, step(6).confirm?.replayWaiting], [0, 3, 0]);
      assert.deepEqual(await statusCounts(h.pool), { delivered: 38 });

      // The new code did schedule differently, from the point the old one had reached: the patch's marker and its
      // timers come after the gate's update in the runbook's history, and after the upgrade in the dispatcher's.
      const firstRunId = historyAtGate.events?.[0]?.workflowExecutionStartedEventAttributes?.originalExecutionRunId ?? undefined;
      const firstRun = (await client.workflow.getHandle(runbookId, firstRunId).fetchHistory()).events ?? [];
      const markerAt = firstRun.findIndex((e) => patchIdOf(e) === TEST_UPGRADE_PATCH);
      const updateAt = firstRun.findIndex((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
      assert.ok(updateAt > 0 && markerAt > updateAt, `the patch marker (event ${markerAt}) follows the gate's update (event ${updateAt})`);
      assert.ok(firstRun.slice(markerAt).some((e) => e.timerStartedEventAttributes), 'the new code started its timer');
      assert.ok(!firstRun.slice(0, updateAt).some((e) => e.timerStartedEventAttributes), 'the old code started none before the gate');
      assert.ok(((await dispatcher.fetchHistory()).events ?? []).some((e) => patchIdOf(e) === TEST_UPGRADE_PATCH), 'the dispatcher took the new code');
    } finally {
      await dispatcher.terminate('test over').catch(() => undefined);
      await agent.close();
      await receiver.stop();
    }
  });
});
