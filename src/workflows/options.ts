import { ActivityCancellationType, type ActivityOptions } from '@temporalio/workflow';

/**
 * Batch activities (backfill, replay) and the short ones around them. Each batch commits its work once
 * (ledger), so retrying forever is safe, and an operator stops a run by cancelling it.
 * - They heartbeat every 2 seconds whatever they are doing (reading, waiting for the batch lock, one long
 *   statement), so a heartbeat timeout means the worker is gone: it is noticed within 15 seconds, and a
 *   live attempt is never given up on because it is slow.
 * - The start-to-close limit is far beyond any bounded batch (seconds), so it cannot cut a live attempt
 *   short either; if it ever did, the retry would wait on the batch's lock for the old attempt to end.
 * - A cancelled run waits for the activity to finish cancelling (its transaction committed or rolled back),
 *   so the run's counters end equal to what the outbox and the ledger hold.
 */
export const BATCH_ACTIVITY_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '15 seconds',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
};

/**
 * What runs started before cancellation waited for the batch in flight used (TRY_CANCEL, no settling).
 * Such runs keep it when they replay, behind the `settle-cancelled-batch` patch of webhookBackfill and
 * webhookReplayDlq; drop both once no such run is open and their histories leave the replay tests.
 */
export const PRE_SETTLE_BATCH_ACTIVITY_OPTIONS: ActivityOptions = {
  ...BATCH_ACTIVITY_OPTIONS,
  cancellationType: ActivityCancellationType.TRY_CANCEL,
};

/** Patch id guarding the cancellation that waits for, and settles, the batch in flight. */
export const SETTLE_CANCELLED_BATCH = 'settle-cancelled-batch';
