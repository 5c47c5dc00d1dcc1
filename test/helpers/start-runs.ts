import { randomUUID } from 'node:crypto';
import type { BackfillInput } from '../../src/shared/backfill';
import type { ReplayFilter, ReplayInput } from '../../src/shared/replay';
import { webhookBackfill } from '../../src/workflows/backfill';
import { webhookReplayDlq } from '../../src/workflows/replay';
import { getHarness } from './harness';

/**
 * Starts a backfill directly (not through the CLI) with the inputs the tests usually want; `idPrefix` keeps a test
 * file's runs apart in the UI and in failures.
 */
export function startBackfillRun(taskQueue: string, path: string, opts: Partial<BackfillInput> = {}, idPrefix = 'test') {
  const workflowId = `webhook-backfill/${idPrefix}-${randomUUID()}`;
  return getHarness().env.client.workflow.start(webhookBackfill, {
    taskQueue,
    workflowId,
    args: [{ runKey: `${workflowId}@1`, path, dryRun: false, maxAttempts: 5, batchSize: 5000, ...opts }],
  });
}

/** Starts a dead-letter replay directly: every dead letter (or what `filter` narrows to), up to 500. */
export function startReplayRun(
  taskQueue: string,
  filter: Partial<ReplayFilter> = {},
  opts: Partial<ReplayInput> = {},
  idPrefix = 'test',
) {
  const workflowId = `webhook-replay/${idPrefix}-${randomUUID()}`;
  return getHarness().env.client.workflow.start(webhookReplayDlq, {
    taskQueue,
    workflowId,
    args: [
      {
        runKey: `${workflowId}@1`,
        filter: { status: 'dead_letter', eventTypes: [], ...filter },
        limit: 500,
        dryRun: false,
        batchSize: 1000,
        ratePerSecond: 0,
        ...opts,
      },
    ],
  });
}
