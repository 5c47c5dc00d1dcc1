import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  isCancellation,
  patched,
  continueAsNew,
  defineQuery,
  defineSignal,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  type ReplayBatchResult,
  type ReplayCounters,
  type ReplayInput,
  type ReplayPreview,
  type ReplayProgress,
  type ReplaySummary,
  ZERO_REPLAY,
} from '../shared/replay';
import { replayBatchKey } from '../shared/batch-keys';
import { replayInputProblem } from '../shared/input-checks';
import { BATCH_ACTIVITY_OPTIONS, PRE_SETTLE_BATCH_ACTIVITY_OPTIONS, SETTLE_CANCELLED_BATCH } from './options';
import { wakeDispatcher } from './wake';

export const replayProgressQuery = defineQuery<ReplayProgress>('progress');
export const replayPauseSignal = defineSignal('pause');
export const replayResumeSignal = defineSignal('resume');

const { previewReplay, replayBatch, settleBatch } = proxyActivities<Activities>(BATCH_ACTIVITY_OPTIONS);
const preSettle = proxyActivities<Activities>(PRE_SETTLE_BATCH_ACTIVITY_OPTIONS);

/**
 * Resets matching outbox rows (dead letters by default) to pending and due, in batches, each batch
 * exactly once (ledger) with an audit row per event; or, as a dry run, only reports what would be reset.
 */
export async function webhookReplayDlq(input: ReplayInput): Promise<ReplaySummary> {
  const invalid = replayInputProblem(input);
  if (invalid) throw ApplicationFailure.nonRetryable(`webhookReplayDlq cannot run: ${invalid}`, 'InvalidInput');
  let counters: ReplayCounters = input.state?.counters ?? ZERO_REPLAY;
  let batches = input.state?.batches ?? 0;
  let paused = input.state?.paused ?? false;
  let done = false;
  setHandler(replayProgressQuery, () => ({
    ...counters,
    phase: done ? 'done' : paused ? 'paused' : 'running',
    dryRun: input.dryRun,
    batches,
  }));
  setHandler(replayPauseSignal, () => {
    paused = true;
  });
  setHandler(replayResumeSignal, () => {
    paused = false;
  });

  // Runs started before cancellation settled the batch in flight replay as they ran.
  const settlesCancelledBatch = patched(SETTLE_CANCELLED_BATCH);
  const runBatch = settlesCancelledBatch ? replayBatch : preSettle.replayBatch;

  if (input.dryRun) {
    const preview: ReplayPreview = await previewReplay({ filter: input.filter, limit: input.limit });
    const n = preview.matched;
    counters = { processed: n, replayed: n, enqueued: n, skipped: 0, failed: 0 };
    done = true;
    return { ...counters, dryRun: true, runKey: input.runKey, preview };
  }

  // With a velocity limit a batch is about one second of resets, so the pace stays even.
  const batchSize = input.ratePerSecond > 0 ? Math.max(1, Math.min(input.batchSize, Math.floor(input.ratePerSecond))) : input.batchSize;
  const batchesPerRun = input.batchesPerRun ?? 400;
  let batchesThisRun = 0;
  let woke = false;
  while (counters.processed < input.limit) {
    await condition(() => !paused);
    if (batchesThisRun >= batchesPerRun || workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof webhookReplayDlq>({ ...input, state: { counters, batches, paused } });
    }
    const size = Math.min(batchSize, input.limit - counters.processed);
    const count = (result: ReplayBatchResult) => {
      counters = {
        processed: counters.processed + result.selected,
        replayed: counters.replayed + result.replayed,
        enqueued: counters.enqueued + result.replayed,
        skipped: counters.skipped + (result.selected - result.replayed),
        failed: counters.failed,
      };
      batches += 1;
    };
    let result: ReplayBatchResult;
    try {
      result = await runBatch({ runKey: input.runKey, batchNumber: batches, filter: input.filter, size });
    } catch (err) {
      if (!settlesCancelledBatch || !CancellationScope.current().consideredCancelled) throw err;
      // Cancelled with this batch in flight: count it if it committed (see webhookBackfill).
      const committed = (await CancellationScope.nonCancellable(() =>
        settleBatch({ runKey: input.runKey, batchKey: replayBatchKey(batches) }),
      )) as ReplayBatchResult | null;
      if (committed) count(committed);
      throw isCancellation(err) ? err : new CancelledFailure('the replay was cancelled while a batch was in flight');
    }
    count(result);
    batchesThisRun += 1;
    if (result.replayed > 0 && !woke) {
      woke = true;
      wakeDispatcher();
    }
    if (result.selected < size) break; // the selection is exhausted
    if (input.ratePerSecond > 0 && result.replayed > 0) await sleep(Math.ceil((result.replayed / input.ratePerSecond) * 1000));
  }
  if (counters.replayed > 0) wakeDispatcher();
  done = true;
  return { ...counters, dryRun: false, runKey: input.runKey };
}
