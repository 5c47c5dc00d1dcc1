import type { BackfillCounters } from '../shared/backfill';
import type { ReplayCounters } from '../shared/replay';

/** The counters part of a backfill progress or done line, in the runbook's order. */
export function formatCounters(c: BackfillCounters): string {
  return `processed=${c.processed} created=${c.created} enqueued=${c.enqueued} duplicates=${c.duplicates} failed=${c.failed}`;
}

/** The counters part of a replay progress or done line, in the runbook's order. */
export function formatReplayCounters(c: ReplayCounters): string {
  return `processed=${c.processed} replayed=${c.replayed} enqueued=${c.enqueued} skipped=${c.skipped} failed=${c.failed}`;
}
