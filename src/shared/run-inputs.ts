/**
 * How many commands a run issues before it continues as new is decided by values carried in its input: the client
 * passes them explicitly and continue-as-new carries them, so changing a client default (BACKFILL_LIMITS, RUNBOOK_DEFAULTS,
 * DEFAULT_DISPATCHER_OPTIONS) reaches new runs only. Runs started before the client passed a field replay with the
 * fallbacks below. Pure data: part of the workflow bundle. See CONTRIBUTING.md, "Constants that shape the sequence".
 */
import type { BackfillInput } from './backfill';
import type { ReplayInput } from './replay';
import type { RunbookInput } from './runbook';

/** never change: runs in flight without this field rely on it (the default when backfills were started without it). */
export const BACKFILL_BATCHES_PER_RUN_IF_ABSENT = 400;
/** never change: runs in flight without this field rely on it (the default when replays were started without it). */
export const REPLAY_BATCHES_PER_RUN_IF_ABSENT = 400;
/** never change: runs in flight without this field rely on it (the default when runbooks were started without it). */
export const RUNBOOK_POLLS_PER_RUN_IF_ABSENT = 100;

export const backfillBatchesPerRun = (input: Pick<BackfillInput, 'batchesPerRun'>): number => input.batchesPerRun ?? BACKFILL_BATCHES_PER_RUN_IF_ABSENT;
export const replayBatchesPerRun = (input: Pick<ReplayInput, 'batchesPerRun'>): number => input.batchesPerRun ?? REPLAY_BATCHES_PER_RUN_IF_ABSENT;
export const runbookPollsPerRun = (input: Pick<RunbookInput, 'pollsPerRun'>): number => input.pollsPerRun ?? RUNBOOK_POLLS_PER_RUN_IF_ABSENT;
