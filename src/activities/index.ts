import { ApplicationFailure, Context } from '@temporalio/activity';
import type { DeliveryTarget } from '../delivery/dispatch';
import { deliverPass } from '../delivery/pass';
import { type DeliverPassInput, type DeliverPassResult, type PassInputBeforeV2, resolveDispatcherOptions } from '../shared/delivery';
import { loadEventIds, runReplayBatch } from '../replay/batch';
import type { ReplayBatchInput, ReplayBatchResult, ReplayFilter, ReplayPreview } from '../shared/replay';
import type { Pool } from 'pg';
import { BackfillFileError, fingerprintFile, runBackfillBatch } from '../backfill/batch';
import { analyzeOutbox, forgetDryRunEvents, outboxMetrics, previewReplay } from '../db/queries';
import type { OutboxMetrics } from '../shared/runbook';
import type { BackfillBatchInput, BackfillBatchResult, FileFingerprint } from '../shared/backfill';

export interface ActivityDeps {
  pool: Pool;
  /** Absent on a worker without WEBHOOK_URL: such a worker does not poll the delivery task queue. */
  delivery?: DeliveryTarget;
}

/** Errors no retry can fix become non-retryable failures the operator sees in the run's result. */
async function failFastOn<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof BackfillFileError) throw ApplicationFailure.nonRetryable(err.message, err.name);
    throw err;
  }
}

export function createActivities({ pool, delivery }: ActivityDeps) {
  const runPass = (input: DeliverPassInput): Promise<DeliverPassResult> => {
    if (!delivery) {
      throw ApplicationFailure.nonRetryable(
        'this worker has no WEBHOOK_URL, so it cannot deliver; set WEBHOOK_URL and WEBHOOK_SECRET and restart it',
        'DeliveryNotConfigured',
      );
    }
    const ctx = Context.current();
    return deliverPass(pool, delivery, input, {
      heartbeat: (details) => ctx.heartbeat(details),
      cancelled: () => ctx.cancellationSignal.aborted,
      leaseOwnerPrefix: `${ctx.info.workflowExecution?.workflowId ?? 'standalone'}/${ctx.info.activityId}#${ctx.info.attempt}`,
    });
  };

  return {
    async inspectBackfillFile(path: string): Promise<FileFingerprint> {
      return failFastOn(() => fingerprintFile(path));
    },

    async processBackfillBatch(input: BackfillBatchInput): Promise<BackfillBatchResult> {
      const ctx = Context.current();
      return failFastOn(() =>
        runBackfillBatch(pool, input, {
          heartbeat: (details) => ctx.heartbeat(details),
          throwIfCancelled: () => {
            if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
          },
        }),
      );
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

    async previewReplay(input: { filter: ReplayFilter; limit: number }): Promise<ReplayPreview> {
      return previewReplay(pool, input.filter, await loadEventIds(input.filter), input.limit);
    },

    async replayBatch(input: ReplayBatchInput): Promise<ReplayBatchResult> {
      Context.current().heartbeat();
      return runReplayBatch(pool, input);
    },

    async finishBackfill(input: { runKey: string; dryRun: boolean; created: number }): Promise<void> {
      // The ledger keeps every batch's result, so re-running batches after this cleanup still counts right.
      if (input.dryRun) await forgetDryRunEvents(pool, input.runKey);
      // Fresh statistics after a bulk load: with stale ones the planner reads every due row to claim a
      // batch instead of walking the due index (about 40 ms against 2 ms per claim on 50,000 rows).
      if (!input.dryRun && input.created > 0) await analyzeOutbox(pool);
    },

    async outboxMetrics(input: { sourceRun?: string; replayRun?: string }): Promise<OutboxMetrics> {
      const run = input.sourceRun
        ? ({ column: 'source_run', key: input.sourceRun } as const)
        : input.replayRun
          ? ({ column: 'last_replay_run', key: input.replayRun } as const)
          : null;
      const row = await outboxMetrics(pool, run);
      return {
        deadLetters: Number(row.dead_letters),
        run: run ? { waiting: Number(row.waiting), deadLettered: Number(row.dead_lettered) } : null,
      };
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
