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
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  addCounters,
  BACKFILL_LIMITS,
  type BackfillBatchResult,
  type BackfillCounters,
  type BackfillInput,
  type BackfillPhase,
  type BackfillProgress,
  type BackfillRunState,
  type BackfillSummary,
  backfillCheckpointCounters,
  ZERO_COUNTERS,
} from '../shared/backfill';
import { backfillBatchKey } from '../shared/batch-keys';
import { backfillInputProblem } from '../shared/input-checks';
import { backfillBatchesPerRun } from '../shared/run-inputs';
import { checkpointEvery, CheckpointWindow, type ProgressQueryArgs } from '../shared/progress';
import { BATCH_ACTIVITY_OPTIONS, PRE_SETTLE_BATCH_ACTIVITY_OPTIONS, SETTLE_CANCELLED_BATCH } from './options';
import { wakeDispatcher } from './wake';

/** Counters now; with `{ after: n }` also the checkpoints past n processed lines, for clients printing progress lines. */
export const progressQuery = defineQuery<BackfillProgress, [ProgressQueryArgs?]>('progress');
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');

const { inspectBackfillFile, processBackfillBatch, finishBackfill, settleBatch } = proxyActivities<Activities>(BATCH_ACTIVITY_OPTIONS);
const preSettle = proxyActivities<Activities>(PRE_SETTLE_BATCH_ACTIVITY_OPTIONS);

/**
 * Reads an NDJSON file into the outbox batch by batch. Counters live here and come back in the
 * `progress` query; each batch is accounted exactly once by the ledger, whatever is retried.
 */
export async function webhookBackfill(input: BackfillInput): Promise<BackfillSummary> {
  const invalid = backfillInputProblem(input);
  if (invalid) throw ApplicationFailure.nonRetryable(`webhookBackfill cannot run: ${invalid}`, 'InvalidInput');
  // From the input (the client passes it), or the frozen fallback: a later default never changes a run in flight.
  const batchesPerRun = backfillBatchesPerRun(input);
  let phase: BackfillPhase = 'starting';
  let state: BackfillRunState | undefined = input.state;
  let paused = input.state?.paused ?? false;
  let counters: BackfillCounters = input.state?.counters ?? ZERO_COUNTERS;
  const every = checkpointEvery(input.progressEvery ?? BACKFILL_LIMITS.defaultProgressEvery, input.batchSize);
  const checkpoints = new CheckpointWindow(input.state?.checkpoints);

  setHandler(progressQuery, (args?: ProgressQueryArgs) => ({
    ...counters,
    checkpointEvery: every,
    checkpoints: checkpoints.after(args?.after).map(backfillCheckpointCounters),
    oldestCheckpoint: checkpoints.oldest(),
    phase: paused && phase === 'running' ? 'paused' : phase,
    dryRun: input.dryRun,
    bytesDone: state?.offset ?? 0,
    bytesTotal: state?.fingerprint.size ?? 0,
    batches: state?.batches ?? 0,
    runKey: input.runKey,
  }));
  setHandler(pauseSignal, () => {
    paused = true;
  });
  setHandler(resumeSignal, () => {
    paused = false;
  });

  // Runs started before cancellation settled the batch in flight replay as they ran.
  const settlesCancelledBatch = patched(SETTLE_CANCELLED_BATCH);
  const runBatch = settlesCancelledBatch ? processBackfillBatch : preSettle.processBackfillBatch;

  if (!state) {
    const fingerprint = await inspectBackfillFile(input.path);
    state = { fingerprint, offset: 0, nextLine: 1, batches: 0, counters, paused };
  }
  phase = 'running';

  // New events are due at once: wake the dispatcher once per run, and at the end (keeps history small).
  let dispatcherWoken = false;

  let batchesThisRun = 0;
  while (state.offset < state.fingerprint.size) {
    await condition(() => !paused);
    if (batchesThisRun >= batchesPerRun || workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof webhookBackfill>({ ...input, batchesPerRun, state: { ...state, counters, paused, checkpoints: checkpoints.carry() } });
    }
    let result: BackfillBatchResult;
    try {
      result = await runBatch({
        runKey: input.runKey,
        workflowId: workflowInfo().workflowId,
        path: input.path,
        fingerprint: state.fingerprint,
        startOffset: state.offset,
        startLine: state.nextLine,
        batchSize: input.batchSize,
        dryRun: input.dryRun,
        maxAttempts: input.maxAttempts,
        checkpoints: { every, processedBefore: counters.processed },
      });
    } catch (err) {
      if (!settlesCancelledBatch || !CancellationScope.current().consideredCancelled) throw err;
      // Cancelled with this batch in flight. Its attempt has ended, but a lost one may still hold its
      // transaction: wait for it to end and count the batch if it committed, so the counters this run ends
      // with are exactly what the outbox and the ledger hold.
      const committed = (await CancellationScope.nonCancellable(() =>
        settleBatch({ runKey: input.runKey, batchKey: backfillBatchKey(state!.offset) }),
      )) as BackfillBatchResult | null;
      if (committed) {
        checkpoints.add([counters.processed, counters.created, counters.duplicates, counters.failed], committed.checkpoints);
        counters = addCounters(counters, committed);
        state = { ...state, offset: committed.endOffset, nextLine: state.nextLine + committed.linesConsumed, batches: state.batches + 1 };
      }
      throw isCancellation(err) ? err : new CancelledFailure('the backfill was cancelled while a batch was in flight');
    }
    if (result.endOffset <= state.offset) {
      // Cannot happen while the file matches its fingerprint; looping here forever would be worse than failing.
      throw ApplicationFailure.nonRetryable(`batch at offset ${state.offset} made no progress`, 'BackfillStalled');
    }
    checkpoints.add([counters.processed, counters.created, counters.duplicates, counters.failed], result.checkpoints);
    counters = addCounters(counters, result);
    state = {
      ...state,
      offset: result.endOffset,
      nextLine: state.nextLine + result.linesConsumed,
      batches: state.batches + 1,
    };
    batchesThisRun += 1;
    if (result.created > 0 && !input.dryRun && !dispatcherWoken) {
      dispatcherWoken = true;
      wakeDispatcher();
    }
  }

  phase = 'finishing';
  await finishBackfill({ runKey: input.runKey, dryRun: input.dryRun, created: counters.created });
  if (!input.dryRun && counters.created > 0) wakeDispatcher();
  phase = 'done';
  return { ...counters, dryRun: input.dryRun, runKey: input.runKey, batches: state.batches };
}
