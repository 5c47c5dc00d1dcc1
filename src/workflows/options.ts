import type { ActivityOptions } from '@temporalio/workflow';

/**
 * Batch activities (backfill, replay): each commits its work once, so retrying forever is safe, and an
 * operator stops a run by cancelling it. They heartbeat, so a worker that dies is noticed within
 * 15 seconds rather than after the 10-minute limit.
 */
export const BATCH_ACTIVITY_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
};
