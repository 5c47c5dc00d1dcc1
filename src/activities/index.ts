import { ApplicationFailure, Context } from '@temporalio/activity';
import type { DeliveryTarget } from '../delivery/http';
import { deliverPass } from '../delivery/pass';
import { type DeliverPassInput, type DeliverPassResult, type PassInputBeforeV2, resolveDispatcherOptions } from '../shared/delivery';
import { loadEventIds, runReplayBatch } from '../replay/batch';
import type { ReplayBatchInput, ReplayBatchResult, ReplayFilter, ReplayPreview } from '../shared/replay';
import type { Pool } from 'pg';
import type { WorkerMetrics } from '../metrics';
import { fingerprintFile, runBackfillBatch, type BatchHooks } from '../backfill/batch';
import { analyzeOutbox, finishRunbookRun, forgetDryRunEvents, outboxMetrics, previewReplay, settledBatch } from '../db/queries';
import { InputFileError, inputRootsFromEnvironment } from '../input-files';
import { beginProcedure } from '../runbook/procedure';
import type { BeginRunbookInput, FinishRunbookInput, OutboxMetrics, RunbookProcedure } from '../shared/runbook';
import { cancellablePool } from '../db/cancellable';
import type { BackfillBatchInput, BackfillBatchResult, FileFingerprint } from '../shared/backfill';

export interface ActivityDeps {
  pool: Pool;
  /** Absent on a worker without WEBHOOK_URL: such a worker does not poll the delivery task queue. */
  delivery?: DeliveryTarget;
  /** Directories input files may be read from (GOTONG_INPUT_ROOTS); default: the environment's setting. */
  inputRoots?: readonly string[];
  /** Counts what the activities do, when the worker serves metrics. */
  metrics?: WorkerMetrics;
}

/**
 * How often a backfill or replay activity heartbeats while it runs, whatever it is doing: reading, waiting
 * for its batch's lock, or waiting for one long statement. A heartbeat timeout then means the worker is gone,
 * never that the work is slow, so no attempt is retried while it still runs. Heartbeats also bring the
 * cancellation of a run to its activity.
 */
const HEARTBEAT_EVERY_MS = 2_000;

/**
 * Runs the work of a backfill or replay activity with heartbeats every HEARTBEAT_EVERY_MS (repeating the
 * last progress details). Whatever the work throws once the activity was cancelled, it ends as cancelled
 * (its transaction rolled back); a file no retry can fix fails it for good.
 */
async function heartbeating<T>(work: (hooks: BatchHooks) => Promise<T>, initialDetails?: unknown): Promise<T> {
  const ctx = Context.current();
  let details: unknown = initialDetails;
  const beat = () => ctx.heartbeat(details);
  beat();
  const timer = setInterval(beat, HEARTBEAT_EVERY_MS);
  try {
    return await work({
      heartbeat: (progress) => {
        details = progress;
        beat();
      },
      throwIfCancelled: () => {
        if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
      },
      signal: ctx.cancellationSignal,
    });
  } catch (err) {
    if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
    if (err instanceof InputFileError) throw ApplicationFailure.nonRetryable(err.message, err.name);
    throw err;
  } finally {
    clearInterval(timer);
  }
}

export function createActivities({ pool: sharedPool, delivery, metrics, inputRoots = inputRootsFromEnvironment() }: ActivityDeps) {
  // Each activity's database work goes through its cancellation signal: a cancelled or timed-out attempt has
  // its statements cancelled in PostgreSQL instead of running on beside its retry (see src/db/cancellable.ts).
  const db = () => cancellablePool(sharedPool, Context.current().cancellationSignal);
  const runPass = (input: DeliverPassInput): Promise<DeliverPassResult> => {
    if (!delivery) {
      throw ApplicationFailure.nonRetryable(
        'this worker has no WEBHOOK_URL, so it cannot deliver; set WEBHOOK_URL and WEBHOOK_SECRET and restart it',
        'DeliveryNotConfigured',
      );
    }
    const ctx = Context.current();
    return deliverPass(db(), delivery, input, {
      heartbeat: (details) => ctx.heartbeat(details),
      cancelled: () => ctx.cancellationSignal.aborted,
      leaseOwnerPrefix: `${ctx.info.workflowExecution?.workflowId ?? 'standalone'}/${ctx.info.activityId}#${ctx.info.attempt}`,
      metrics: metrics?.delivery,
    });
  };

  return {
    async inspectBackfillFile(path: string): Promise<FileFingerprint> {
      return heartbeating(() => fingerprintFile(path, inputRoots));
    },

    async processBackfillBatch(input: BackfillBatchInput): Promise<BackfillBatchResult> {
      const result = await heartbeating((hooks) => runBackfillBatch(db(), input, inputRoots, hooks));
      metrics?.recordBackfill(result, input.dryRun);
      return result;
    },

    /** After a cancellation: what the batch that was in flight committed, once its transaction has ended. */
    async settleBatch(input: { runKey: string; batchKey: string }): Promise<unknown> {
      return heartbeating(() => settledBatch(db(), input.runKey, input.batchKey));
    },

    /**
     * One delivery pass. Registered only by workers that can deliver, on the delivery task queue (see src/worker.ts);
     * the check below guards against a worker wired up by hand without a receiver.
     */
    async deliverPass(input: DeliverPassInput): Promise<DeliverPassResult> {
      return runPass(input);
    },

    /**
     * The pass as dispatchers started before the `dispatcher-v2` patch schedule it (on the main task queue, with
     * partial settings and a lease for the whole pass): today's pass, with today's renewed leases. Registered only
     * by workers that can deliver; see src/workflows/dispatcher-before-v2.ts.
     */
    async deliverDue(input: PassInputBeforeV2): Promise<DeliverPassResult> {
      const { options } = resolveDispatcherOptions(input.options);
      return runPass({ options, wantSnapshot: input.wantSnapshot, streamMs: input.streamMs });
    },

    /**
     * One statement over every matching row (2,000,000 take a few seconds), heartbeating while it runs; with `keepAs`,
     * the counted rows are kept under that run key for the execute that follows (the runbook's step 5).
     */
    async previewReplay(input: { filter: ReplayFilter; limit: number; keepAs?: string }): Promise<ReplayPreview> {
      return heartbeating(async () => previewReplay(db(), input.filter, await loadEventIds(input.filter, inputRoots), input.limit, input.keepAs));
    },

    async replayBatch(input: ReplayBatchInput): Promise<ReplayBatchResult> {
      // One statement does the batch: the details say which rows are in flight, and heartbeats keep coming
      // while it runs, so a slow batch is neither timed out nor opaque in the UI.
      const details = { batch: input.batchNumber, rows: input.size, processedBefore: input.checkpoints?.processedBefore ?? null };
      const result = await heartbeating((hooks) => runReplayBatch(db(), input, inputRoots, hooks.signal), details);
      metrics?.recordReplayResets(result.replayed);
      return result;
    },

    async finishBackfill(input: { runKey: string; dryRun: boolean; created: number }): Promise<void> {
      return heartbeating(async () => {
        // The ledger keeps every batch's result, so re-running batches after this cleanup still counts right.
        if (input.dryRun) await forgetDryRunEvents(db(), input.runKey);
        // Fresh statistics after a bulk load: with stale ones the planner reads every due row to claim a
        // batch instead of walking the due index (about 40 ms against 2 ms per claim on 50,000 rows).
        if (!input.dryRun && input.created > 0) await analyzeOutbox(db());
      });
    },

    async outboxMetrics(input: { sourceRun?: string; replayRun?: string }): Promise<OutboxMetrics> {
      const run = input.sourceRun
        ? ({ column: 'source_run', key: input.sourceRun } as const)
        : input.replayRun
          ? ({ column: 'last_replay_run', key: input.replayRun } as const)
          : null;
      const row = await outboxMetrics(db(), run);
      return {
        deadLetters: Number(row.dead_letters),
        run: run ? { waiting: Number(row.waiting), deadLettered: Number(row.dead_lettered) } : null,
      };
    },

    /** Records a run of the runbook, and finds the earlier run it continues and the baseline it keeps. */
    async beginRunbook(input: BeginRunbookInput): Promise<RunbookProcedure> {
      return beginProcedure(db(), input);
    },

    async finishRunbook(input: FinishRunbookInput): Promise<void> {
      await finishRunbookRun(db(), input.runKey, input.outcome, input.stoppedAt, input.reason);
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
