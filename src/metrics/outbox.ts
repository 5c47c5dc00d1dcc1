import type { MetricMeter } from '@temporalio/common';
import type { Pool } from 'pg';
import { outboxDepth } from '../db/queries';
import { METRICS } from '.';

export const DEFAULT_OUTBOX_REFRESH_MS = 15_000;

const WAITING_STATUSES = ['pending', 'retrying', 'in_flight', 'dead_letter'] as const;

/**
 * Keeps the outbox gauges current: a few index-only counts every `everyMs`, never two at once. The gauges
 * describe the whole outbox, so every worker exports the same figures (aggregate them with max, not sum).
 * Returns a function that stops the refreshing.
 */
export function startOutboxGauges(
  pool: Pool,
  meter: MetricMeter,
  everyMs: number,
  onError: (err: unknown) => void,
): () => void {
  const events = meter.createGauge(METRICS.outboxEvents, 'int', undefined, 'Outbox events waiting, by status (delivered ones are history, not depth)');
  const due = meter.createGauge(METRICS.outboxDue, 'int', undefined, 'Outbox events due for delivery now (pending or retrying, next attempt time passed)');
  const oldest = meter.createGauge(
    METRICS.outboxOldestDueAge,
    'float',
    undefined,
    'How long the oldest due event has been waiting (0 when none is due)',
  );
  let running = false;
  let failing = false;
  const refresh = async () => {
    if (running) return;
    running = true;
    try {
      const row = await outboxDepth(pool);
      for (const status of WAITING_STATUSES) events.set(Number(row[status]), { status });
      due.set(Number(row.due));
      oldest.set(Math.max(0, row.oldest_due_seconds ?? 0));
      failing = false;
    } catch (err) {
      // Reported once per outage; the gauges keep their last values meanwhile.
      if (!failing) onError(err);
      failing = true;
    } finally {
      running = false;
    }
  };
  void refresh();
  const timer = setInterval(() => void refresh(), everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
