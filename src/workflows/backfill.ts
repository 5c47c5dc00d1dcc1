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
import { grouped } from '../shared/run-metadata';
import { backfillInputProblem } from '../shared/input-checks';
import { backfillBatchesPerRun } from '../shared/run-inputs';
import { checkpointEvery, CheckpointWindow, type ProgressQueryArgs } from '../shared/progress';
import { BATCH_ACTIVITY_OPTIONS, PRE_SETTLE_BATCH_ACTIVITY_OPTIONS, SETTLE_CANCELLED_BATCH } from './options';
import { percentOf, RunUi } from './ui';
import { wakeDispatcher } from './wake';

/** Counters now; with `{ after: n }` also the checkpoints past n processed lines, for clients printing progress lines. */
export const progressQuery = defineQuery<BackfillProgress, [ProgressQueryArgs?]>('progress');
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');

/** Shown by the Temporal UI beside each handler (its Queries and Send Signal views). */
export const BACKFILL_HANDLER_DESCRIPTIONS = {
  progress:
    'Counters (processed, created, duplicates, failed), phase, bytes done of the file and batches. Optional argument ' +
    '{"after": N}: also the checkpoints past N processed lines.',
  pause: 'Stop after the batch in flight; the run waits, holding its place in the file, until resumed. No argument.',
  resume: 'Go on reading the file after a pause. No argument.',
} as const;


/**
 * Reads an NDJSON file into the outbox batch by batch. Counters live here and come back in the
 * `progress` query; each batch is accounted exactly once by the ledger, whatever is retried.
 */
export async function webhookBackfill(input: BackfillInput): Promise<BackfillSummary> {
  const ui = new RunUi();
  try {
    const summary = await backfillRun(input, ui);
    ui.outcome('completed');
    return summary;
  } catch (err) {
    ui.ended(err);
    throw err;
  }
}

async function backfillRun(input: BackfillInput, ui: RunUi): Promise<BackfillSummary> {
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

  const showDetails = () => {
    const shown = paused && phase === 'running' ? 'paused' : phase;
    const size = state?.fingerprint.size ?? 0;
    const offset = state?.offset ?? 0;
    const lines = [
      `**${input.dryRun ? 'Dry run' : 'Backfill'}, ${shown}**: byte ${grouped(offset)} of ${grouped(size)} (${percentOf(offset, size)}), ${grouped(state?.batches ?? 0)} batches`,
      `processed ${grouped(counters.processed)} · created ${grouped(counters.created)} · duplicates ${grouped(counters.duplicates)} · failed ${grouped(counters.failed)}`,
    ];
    if (shown === 'paused') lines.push('Paused: send the `resume` signal (no input) to go on.');
    if (counters.failed > 0) lines.push(`Failed lines: \`gotong-worker failed-lines '${workflowInfo().workflowId}'\``);
    ui.details(lines.join('\n\n'));
  };

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
  }), { description: BACKFILL_HANDLER_DESCRIPTIONS.progress });
  showDetails();
  setHandler(
    pauseSignal,
    () => {
      paused = true;
      showDetails();
    },
    { description: BACKFILL_HANDLER_DESCRIPTIONS.pause },
  );
  setHandler(
    resumeSignal,
    () => {
      paused = false;
      showDetails();
    },
    { description: BACKFILL_HANDLER_DESCRIPTIONS.resume },
  );

  // Runs started before cancellation settled the batch in flight replay as they ran.
  const settlesCancelledBatch = patched(SETTLE_CANCELLED_BATCH);
  // Summaries are metadata on the command, not part of it: histories written without them replay the same.
  const runBatch = (summary: string) =>
    proxyActivities<Activities>({ ...(settlesCancelledBatch ? BATCH_ACTIVITY_OPTIONS : PRE_SETTLE_BATCH_ACTIVITY_OPTIONS), summary }).processBackfillBatch;

  if (!state) {
    const fingerprint = await proxyActivities<Activities>({ ...BATCH_ACTIVITY_OPTIONS, summary: 'check the file and take its fingerprint' }).inspectBackfillFile(input.path);
    state = { fingerprint, offset: 0, nextLine: 1, batches: 0, counters, paused };
  }
  phase = 'running';
  showDetails();

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
      result = await runBatch(`batch ${grouped(state.batches + 1)} at byte ${grouped(state.offset)}${input.dryRun ? ' (dry run)' : ''}`)({
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
        proxyActivities<Activities>({ ...BATCH_ACTIVITY_OPTIONS, summary: `settle the cancelled batch at byte ${grouped(state!.offset)}` }).settleBatch({
          runKey: input.runKey,
          batchKey: backfillBatchKey(state!.offset),
        }),
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
    showDetails();
    if (result.created > 0 && !input.dryRun && !dispatcherWoken) {
      dispatcherWoken = true;
      wakeDispatcher();
    }
  }

  phase = 'finishing';
  showDetails();
  await proxyActivities<Activities>({ ...BATCH_ACTIVITY_OPTIONS, summary: 'record the run as finished' }).finishBackfill({ runKey: input.runKey, dryRun: input.dryRun, created: counters.created });
  if (!input.dryRun && counters.created > 0) wakeDispatcher();
  phase = 'done';
  showDetails();
  return { ...counters, dryRun: input.dryRun, runKey: input.runKey, batches: state.batches };
}
