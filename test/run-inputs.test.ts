import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { optionsKeptByRun } from '../src/client/attach';
import { RUNBOOK_OPTION_FLAGS } from '../src/client/runbook';
import { BACKFILL_LIMITS } from '../src/shared/backfill';
import { DEFAULT_DISPATCHER_OPTIONS, type DispatcherOptions, resolveDispatcherOptions } from '../src/shared/delivery';
import { REPLAY_DEFAULT_BATCHES_PER_RUN } from '../src/shared/replay';
import { RUNBOOK_DEFAULTS } from '../src/shared/runbook';
import { backfillBatchesPerRun, replayBatchesPerRun, runbookPollsPerRun } from '../src/shared/run-inputs';
import { webhookDispatcher } from '../src/workflows/dispatcher';
import { generatedFile } from './helpers/files';
import { getHarness, runCli, uniqueTaskQueue, waitFor, withWorker } from './helpers/harness';

/**
 * Constants that shape a run's sequence of commands (batches, polls and passes per run, parallel passes) are carried in
 * its input, so a default changed by a later deploy cannot change what a run in flight does (and its history keeps
 * replaying). See CONTRIBUTING.md, "Constants that shape the sequence".
 */
describe('constants that shape the command sequence are carried in the run input', function () {
  this.timeout(120_000);

  /** Runs `fn` with the client defaults changed as a later deploy might change them, then puts them back. */
  function withChangedDefaults(fn: () => void): void {
    const backfill = BACKFILL_LIMITS as { defaultBatchesPerRun: number };
    const runbook = RUNBOOK_DEFAULTS as { pollsPerRun: number };
    const dispatcher = DEFAULT_DISPATCHER_OPTIONS as DispatcherOptions & { aSettingAddedLater?: number };
    const saved = [backfill.defaultBatchesPerRun, runbook.pollsPerRun, dispatcher.passesPerRun, dispatcher.parallelPasses] as const;
    backfill.defaultBatchesPerRun = 7;
    runbook.pollsPerRun = 7;
    dispatcher.passesPerRun = 7;
    dispatcher.parallelPasses = 7;
    dispatcher.aSettingAddedLater = 7;
    try {
      fn();
    } finally {
      [backfill.defaultBatchesPerRun, runbook.pollsPerRun, dispatcher.passesPerRun, dispatcher.parallelPasses] = saved;
      delete dispatcher.aSettingAddedLater;
    }
  }

  it('a run in flight keeps its sequence when a default changes: the value in its input, else the frozen fallback', () => {
    const before = {
      backfill: [backfillBatchesPerRun({}), backfillBatchesPerRun({ batchesPerRun: 50 })],
      replay: [replayBatchesPerRun({}), replayBatchesPerRun({ batchesPerRun: 50 })],
      runbook: [runbookPollsPerRun({}), runbookPollsPerRun({ pollsPerRun: 50 })],
    };
    // The fallbacks are the defaults those runs were started under.
    assert.deepEqual(before, { backfill: [400, 50], replay: [400, 50], runbook: [100, 50] });
    const running = resolveDispatcherOptions({ ...DEFAULT_DISPATCHER_OPTIONS, passesPerRun: 40 });
    assert.equal(running.complete, true);
    withChangedDefaults(() => {
      assert.deepEqual(
        {
          backfill: [backfillBatchesPerRun({}), backfillBatchesPerRun({ batchesPerRun: 50 })],
          replay: [replayBatchesPerRun({}), replayBatchesPerRun({ batchesPerRun: 50 })],
          runbook: [runbookPollsPerRun({}), runbookPollsPerRun({ pollsPerRun: 50 })],
        },
        before,
      );
      // A running dispatcher (its input complete as of dispatcher-v2) keeps its settings, and a setting added to the
      // defaults later does not make it continue as new where it did not (which would not replay).
      const after = resolveDispatcherOptions(running.options);
      assert.equal(after.complete, true);
      assert.equal(after.options.passesPerRun, 40);
      assert.equal(after.options.parallelPasses, 3);
    });
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

  it('the CLI passes batchesPerRun (backfill, replay) and pollsPerRun (runbook) explicitly in the input it starts', async () => {
    const h = getHarness();
    const taskQueue = uniqueTaskQueue('explicit');
    const file = generatedFile(`explicit-${randomUUID()}`, { valid: 3 });
    const started = async (args: string[]): Promise<Record<string, unknown>> => {
      const result = await runCli([...args, '--detach', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
      assert.equal(result.code, 0, result.stderr);
      const { workflow_id } = JSON.parse(result.stdout.trim().split('\n').pop()!) as { workflow_id: string };
      const handle = h.env.client.workflow.getHandle(workflow_id);
      const first = (await handle.fetchHistory()).events![0]!.workflowExecutionStartedEventAttributes!;
      await handle.terminate('test over');
      return JSON.parse(Buffer.from(first.input!.payloads![0]!.data!).toString()) as Record<string, unknown>;
    };
    assert.equal((await started(['webhook-backfill', '--file', file.path]))['batchesPerRun'], BACKFILL_LIMITS.defaultBatchesPerRun);
    assert.equal((await started(['webhook-replay-dlq', '--limit', '5']))['batchesPerRun'], REPLAY_DEFAULT_BATCHES_PER_RUN);
    assert.equal((await started(['webhook-runbook', '--file', file.path]))['pollsPerRun'], RUNBOOK_DEFAULTS.pollsPerRun);
  });
});

describe('attaching to a run started with other options (pure)', () => {
  it('names each flag whose running value differs, with units for durations, and nothing else', () => {
    const running = { runKey: 'a', approval: 'manual', maxFailedRatio: 0.01, verifyTimeoutMs: 1_800_000, baseline: 3, state: { x: 1 } };
    const asked = { runKey: 'b', approval: 'auto', maxFailedRatio: 0.01, verifyTimeoutMs: 600_000, baseline: undefined };
    assert.deepEqual(optionsKeptByRun(running, asked, RUNBOOK_OPTION_FLAGS), [
      '--approval manual (this command: auto)',
      '--baseline 3 (this command: unset)',
      '--verify-timeout 1800000 ms (this command: 600000 ms)',
    ]);
    assert.deepEqual(optionsKeptByRun(running, { ...running, runKey: 'c' }, RUNBOOK_OPTION_FLAGS), []);
  });
});
