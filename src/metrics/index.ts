import type { MetricCounter, MetricHistogram, MetricMeter, MetricTags } from '@temporalio/common';
import { classifyStatus } from '../delivery/policy';
import type { BackfillCounters } from '../shared/backfill';
import { METRICS } from '../shared/metrics';

export { METRICS };

/** From a loopback receiver's few milliseconds to a request timing out. */
export const DELIVERY_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The delivery code's one way to report what it does; the worker fills it in when metrics are on.
 * Called once per HTTP attempt, thousands of times a second, so implementations must be cheap.
 */
export interface DeliveryMetrics {
  /**
   * `outcome` is the status the attempt moves its event to (delivered, retrying, dead_letter); `statusCode`
   * is null when no response came back (timeout, connection error).
   */
  recordAttempt(outcome: string, statusCode: number | null, durationMs: number): void;
}

/** 2xx ... 5xx, or `none` when no response came back. */
export function statusClass(statusCode: number | null): string {
  return statusCode === null ? 'none' : `${Math.floor(statusCode / 100)}xx`;
}

/**
 * Counter increments summed in memory and handed to the runtime once a second: each call into the native
 * meter costs a few microseconds (its tags travel as JSON), too much for every delivery.
 */
class CounterTally {
  private readonly pending = new Map<string, { tags: MetricTags; n: number }>();

  constructor(private readonly counter: MetricCounter) {}

  add(key: string, tags: MetricTags, n = 1): void {
    const entry = this.pending.get(key);
    if (entry) entry.n += n;
    else this.pending.set(key, { tags, n });
  }

  flush(): void {
    for (const entry of this.pending.values()) {
      if (entry.n > 0) this.counter.add(entry.n, entry.tags);
      entry.n = 0;
    }
  }
}

/** The worker's metrics; one per process, shared by every activity. */
export class WorkerMetrics {
  readonly delivery: DeliveryMetrics;
  /** Lines a backfill batch committed (counted by the worker that completes the batch activity). */
  readonly recordBackfill: (result: Pick<BackfillCounters, 'created' | 'duplicates' | 'failed'>, dryRun: boolean) => void;
  /** Rows a replay batch reset. */
  readonly recordReplayResets: (rows: number) => void;
  private readonly tallies: CounterTally[] = [];
  private readonly flushDurations: () => void;
  private readonly timer: NodeJS.Timeout;

  constructor(meter: MetricMeter, flushEveryMs = 1000) {
    const tally = (name: string, description: string) => {
      const t = new CounterTally(meter.createCounter(name, undefined, description));
      this.tallies.push(t);
      return t;
    };
    const lines = tally(METRICS.backfillLines, 'Backfill lines committed, by result (created, duplicate, failed) and mode (execute, dry_run)');
    const deliveries = tally(METRICS.deliveries, 'Delivery attempts, by the outcome for the event and the response status class (none: no response)');
    const deadLetters = tally(METRICS.deadLetters, 'Events dead-lettered, by reason: rejected (a status never retried) or attempts_exhausted');
    const resets = tally(METRICS.replayResets, 'Outbox rows reset to pending by dead-letter replay runs');
    const duration: MetricHistogram = meter.createHistogram(
      METRICS.deliveryDuration,
      'float',
      undefined,
      'Delivery attempt duration, from sending the request to reading the response (or failing)',
    );
    // Handed over with the counters, after them: a scrape never shows an attempt's duration without its count.
    let durations: number[] = [];
    this.flushDurations = () => {
      const batch = durations;
      durations = [];
      for (const seconds of batch) duration.record(seconds);
    };

    this.recordBackfill = (result, dryRun) => {
      const mode = dryRun ? 'dry_run' : 'execute';
      lines.add(`created/${mode}`, { result: 'created', mode }, result.created);
      lines.add(`duplicate/${mode}`, { result: 'duplicate', mode }, result.duplicates);
      lines.add(`failed/${mode}`, { result: 'failed', mode }, result.failed);
    };
    this.recordReplayResets = (rows) => resets.add('all', {}, rows);
    this.delivery = {
      recordAttempt(outcome, statusCode, durationMs) {
        const cls = statusClass(statusCode);
        deliveries.add(`${outcome}/${cls}`, { outcome, status_class: cls });
        if (outcome === 'dead_letter') {
          const reason = statusCode !== null && classifyStatus(statusCode) === 'terminal' ? 'rejected' : 'attempts_exhausted';
          deadLetters.add(reason, { reason });
        }
        durations.push(Math.max(0, durationMs) / 1000);
      },
    };
    this.timer = setInterval(() => this.flush(), flushEveryMs);
    this.timer.unref();
  }

  flush(): void {
    for (const t of this.tallies) t.flush();
    this.flushDurations();
  }

  close(): void {
    clearInterval(this.timer);
    this.flush();
  }
}
