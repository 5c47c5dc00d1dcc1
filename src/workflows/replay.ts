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
  replayBatchRows,
  replayCheckpointCounters,
  replayCheckpointEvery,
  ZERO_REPLAY,
} from '../shared/replay';
import { replayBatchKey } from '../shared/batch-keys';
import { grouped } from '../shared/run-metadata';
import { replayInputProblem } from '../shared/input-checks';
import { replayBatchesPerRun } from '../shared/run-inputs';
import { type Checkpoint, CheckpointWindow, PROGRESS_LIMITS, type ProgressQueryArgs } from '../shared/progress';
import { BATCH_ACTIVITY_OPTIONS, PRE_SETTLE_BATCH_ACTIVITY_OPTIONS, SETTLE_CANCELLED_BATCH } from './options';
import { RunUi, shortDuration } from './ui';
import { wakeDispatcher } from './wake';

/** Counters now; with `{ after: n }` also the checkpoints past n processed rows, for clients printing progress lines. */
export const replayProgressQuery = defineQuery<ReplayProgress, [ProgressQueryArgs?]>('progress');
export const replayPauseSignal = defineSignal('pause');
export const replayResumeSignal = defineSignal('resume');

/** Shown by the Temporal UI beside each handler (its Queries and Send Signal views). */
export const REPLAY_HANDLER_DESCRIPTIONS = {
  progress:
    'Counters (processed, replayed, skipped), phase, batches and the limit. Optional argument {"after": N}: also the ' +
    'checkpoints past N processed rows.',
  pause: 'Stop after the batch in flight until resumed. No argument.',
  resume: 'Go on resetting rows after a pause. No argument.',
} as const;

/** The batch activities with a summary for the UI's timeline (metadata: histories without it replay the same). */
const withSummary = (summary: string, options = BATCH_ACTIVITY_OPTIONS) => proxyActivities<Activities>({ ...options, summary });

/**
 * Resets matching outbox rows (dead letters by default) to pending and due, in batches, each batch
 * exactly once (ledger) with an audit row per event; or, as a dry run, only reports what would be reset.
 */
export async function webhookReplayDlq(input: ReplayInput): Promise<ReplaySummary> {
  const ui = new RunUi();
  try {
    const summary = await replayRun(input, ui);
    ui.outcome('completed');
    return summary;
  } catch (err) {
    ui.ended(err);
    throw err;
  }
}

async function replayRun(input: ReplayInput, ui: RunUi): Promise<ReplaySummary> {
  const invalid = replayInputProblem(input);
  if (invalid) throw ApplicationFailure.nonRetryable(`webhookReplayDlq cannot run: ${invalid}`, 'InvalidInput');
  let counters: ReplayCounters = input.state?.counters ?? ZERO_REPLAY;
  let batches = input.state?.batches ?? 0;
  let paused = input.state?.paused ?? false;
  let done = false;
  const every = replayCheckpointEvery(input);
  const checkpoints = new CheckpointWindow(input.state?.checkpoints);
  // A dry run resets nothing, so its checkpoints are those an execute run would record on an unchanged
  // selection: every row replayed. They are computed when asked for, never held.
  let dryRunMatched: number | null = null;
  const page = (after: number | undefined): { items: Checkpoint[]; oldest: number | null } => {
    if (dryRunMatched === null) return { items: checkpoints.after(after), oldest: checkpoints.oldest() };
    const items: Checkpoint[] = [];
    if (after !== undefined) {
      for (let p = (Math.floor(after / every) + 1) * every; p <= dryRunMatched && items.length < PROGRESS_LIMITS.page; p += every) {
        items.push([p, p, 0]);
      }
    }
    return { items, oldest: dryRunMatched >= every ? every : null };
  };
  const showDetails = () => {
    const shown = done ? 'done' : paused ? 'paused' : 'running';
    const lines = [
      `**${input.dryRun ? 'Dry run' : 'Replay'}, ${shown}**: ${grouped(counters.processed)} of at most ${grouped(input.limit)} rows, ${grouped(batches)} batches`,
      `${input.dryRun ? 'would reset' : 'replayed'} ${grouped(counters.replayed)} · skipped ${grouped(counters.skipped)} · failed ${grouped(counters.failed)}`,
    ];
    if (shown === 'paused') lines.push('Paused: send the `resume` signal (no input) to go on.');
    ui.details(lines.join('\n\n'));
  };
  showDetails();
  setHandler(replayProgressQuery, (args?: ProgressQueryArgs) => {
    const { items, oldest } = page(args?.after);
    return {
      ...counters,
      checkpointEvery: every,
      checkpoints: items.map(replayCheckpointCounters),
      oldestCheckpoint: oldest,
      phase: done ? 'done' : paused ? 'paused' : 'running',
      dryRun: input.dryRun,
      batches,
      limit: input.limit,
    };
  }, { description: REPLAY_HANDLER_DESCRIPTIONS.progress });
  setHandler(
    replayPauseSignal,
    () => {
      paused = true;
      showDetails();
    },
    { description: REPLAY_HANDLER_DESCRIPTIONS.pause },
  );
  setHandler(
    replayResumeSignal,
    () => {
      paused = false;
      showDetails();
    },
    { description: REPLAY_HANDLER_DESCRIPTIONS.resume },
  );

  // Runs started before cancellation settled the batch in flight replay as they ran.
  const settlesCancelledBatch = patched(SETTLE_CANCELLED_BATCH);
  const runBatch = (summary: string) =>
    withSummary(summary, settlesCancelledBatch ? BATCH_ACTIVITY_OPTIONS : PRE_SETTLE_BATCH_ACTIVITY_OPTIONS).replayBatch;

  if (input.dryRun) {
    const preview: ReplayPreview = await withSummary(`count the rows a replay would reset (at most ${grouped(input.limit)})`).previewReplay({
      filter: input.filter,
      limit: input.limit,
      // Only when asked (runs of the runbook that has it): other runs schedule the activity as they always did.
      ...(input.keepSelection ? { keepAs: input.runKey } : {}),
    });
    const n = preview.matched;
    counters = { processed: n, replayed: n, enqueued: n, skipped: 0, failed: 0 };
    dryRunMatched = n;
    done = true;
    showDetails();
    return { ...counters, dryRun: true, runKey: input.runKey, preview };
  }

  const batchSize = replayBatchRows(input);
  // From the input (the client passes it), or the frozen fallback: a later default never changes a run in flight.
  const batchesPerRun = replayBatchesPerRun(input);
  let batchesThisRun = 0;
  let woke = false;
  while (counters.processed < input.limit) {
    await condition(() => !paused);
    if (batchesThisRun >= batchesPerRun || workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof webhookReplayDlq>({ ...input, batchesPerRun, state: { counters, batches, paused, checkpoints: checkpoints.carry() } });
    }
    const size = Math.min(batchSize, input.limit - counters.processed);
    const count = (result: ReplayBatchResult) => {
      checkpoints.add([counters.processed, counters.replayed, counters.skipped], result.checkpoints);
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
      result = await runBatch(`batch ${grouped(batches + 1)}: reset up to ${grouped(size)} rows after ${grouped(counters.processed)}`)({
        runKey: input.runKey,
        batchNumber: batches,
        filter: input.filter,
        size,
        checkpoints: { every, processedBefore: counters.processed },
      });
    } catch (err) {
      if (!settlesCancelledBatch || !CancellationScope.current().consideredCancelled) throw err;
      // Cancelled with this batch in flight: count it if it committed (see webhookBackfill).
      const committed = (await CancellationScope.nonCancellable(() =>
        withSummary(`settle the cancelled batch ${grouped(batches + 1)}`).settleBatch({ runKey: input.runKey, batchKey: replayBatchKey(batches) }),
      )) as ReplayBatchResult | null;
      if (committed) count(committed);
      throw isCancellation(err) ? err : new CancelledFailure('the replay was cancelled while a batch was in flight');
    }
    count(result);
    showDetails();
    batchesThisRun += 1;
    if (result.replayed > 0 && !woke) {
      woke = true;
      wakeDispatcher();
    }
    if (result.selected < size) break; // the selection is exhausted
    if (input.ratePerSecond > 0 && result.replayed > 0) {
      const ms = Math.ceil((result.replayed / input.ratePerSecond) * 1000);
      await sleep(ms, { summary: `rate limit: ${shortDuration(ms)} for ${grouped(result.replayed)} rows at ${grouped(input.ratePerSecond)}/s` });
    }
  }
  if (counters.replayed > 0) wakeDispatcher();
  done = true;
  showDetails();
  return { ...counters, dryRun: false, runKey: input.runKey };
}
