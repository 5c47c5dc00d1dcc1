import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  getExternalWorkflowHandle,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  DEFAULT_DISPATCHER_OPTIONS,
  type DispatcherCounters,
  type DispatcherInput,
  type DispatcherStats,
  dispatcherWorkflowId,
} from '../shared/delivery';

export const statsQuery = defineQuery<DispatcherStats>('stats');
export const wakeSignal = defineSignal('wake');
export const pauseDeliverySignal = defineSignal('pause');
export const resumeDeliverySignal = defineSignal('resume');

/** Passes per run before continuing as new: each pass is about 6-9 history events. */
const PASSES_PER_RUN = 300;

/**
 * The delivery loop of one shard: claim and deliver due events pass after pass; when nothing is due,
 * sleep until the next event is (or a `wake` signal); pause on an operator's signal, or by itself
 * when the receiver keeps failing, until resumed or the cool-down ends. Runs forever via continue-as-new.
 */
export async function webhookDispatcher(input: DispatcherInput): Promise<void> {
  const configured = { ...DEFAULT_DISPATCHER_OPTIONS, ...input.options };
  // A rate-limited pass lasts batchSize / rate seconds; keep it to about two seconds so pause acts quickly.
  const options = {
    ...configured,
    batchSize:
      configured.ratePerSecond > 0
        ? Math.max(1, Math.min(configured.batchSize, Math.ceil(configured.ratePerSecond * 2)))
        : configured.batchSize,
  };
  // A lease must outlive the longest pass: every request slot timing out, or a rate-limited pass.
  const slowestPassMs =
    Math.ceil(options.batchSize / Math.max(1, options.concurrency)) * options.requestTimeoutMs +
    (options.ratePerSecond > 0 ? (options.batchSize / options.ratePerSecond) * 1000 : 0);
  const leaseSeconds = Math.ceil((slowestPassMs * 2) / 1000) + 10;
  const { deliverDue } = proxyActivities<Activities>({
    startToCloseTimeout: `${leaseSeconds} seconds`,
    // A pass heartbeats after every response, so silence longer than two request timeouts means a dead worker.
    heartbeatTimeout: `${Math.max(10, Math.ceil((options.requestTimeoutMs * 2) / 1000) + 5)} seconds`,
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
  });

  let counters: DispatcherCounters = input.carried?.counters ?? { delivered: 0, retried: 0, deadLettered: 0, passes: 0 };
  let paused = input.carried?.paused ?? false;
  let pauseReason: DispatcherStats['pauseReason'] = input.carried?.pauseReason ?? null;
  let consecutiveFailures = input.carried?.consecutiveFailures ?? 0;
  let snapshot = { inFlight: 0, backlog: 0, oldestDueMs: 0 };
  let woken = false;
  let wokenBySignal = false;

  setHandler(statsQuery, () => ({
    shard: input.shard,
    ...counters,
    paused,
    pauseReason,
    consecutiveFailures,
    inFlight: snapshot.inFlight,
    backlog: snapshot.backlog,
    oldestDueAgeMs: snapshot.oldestDueMs,
  }));
  setHandler(wakeSignal, () => {
    woken = true;
    wokenBySignal = true;
  });
  setHandler(pauseDeliverySignal, () => {
    paused = true;
    pauseReason = 'operator';
  });
  setHandler(resumeDeliverySignal, () => {
    paused = false;
    pauseReason = null;
    consecutiveFailures = 0;
  });

  for (let pass = 0; ; pass++) {
    if (pass >= PASSES_PER_RUN || workflowInfo().continueAsNewSuggested) {
      return continueAsNew<typeof webhookDispatcher>({
        ...input,
        carried: { counters, paused, pauseReason, consecutiveFailures },
      });
    }
    if (paused) {
      if (pauseReason === 'receiver-failing') {
        // Cool-down: resume by itself unless an operator resumed (or re-paused) first.
        const resumed = await condition(() => !paused || pauseReason !== 'receiver-failing', options.autoPauseCooldownMs);
        if (!resumed) {
          paused = false;
          pauseReason = null;
          consecutiveFailures = 0;
        }
      } else {
        await condition(() => !paused);
      }
      continue;
    }

    if (wokenBySignal && input.shard === 0 && input.shards > 1) {
      // Producers wake shard 0 only; it passes the news on.
      for (let shard = 1; shard < input.shards; shard++) {
        getExternalWorkflowHandle(dispatcherWorkflowId(shard)).signal(wakeSignal).catch(() => undefined);
      }
    }
    woken = false;
    wokenBySignal = false;
    const result = await deliverDue({ options, leaseSeconds });
    counters = {
      delivered: counters.delivered + result.delivered,
      retried: counters.retried + result.retried,
      deadLettered: counters.deadLettered + result.deadLettered,
      passes: counters.passes + 1,
    };
    snapshot = { inFlight: result.inFlight, backlog: result.backlog, oldestDueMs: result.oldestDueMs };
    consecutiveFailures = result.anySuccess ? result.trailingFailures : consecutiveFailures + result.trailingFailures;
    if (consecutiveFailures >= options.autoPauseAfter) {
      paused = true;
      pauseReason = 'receiver-failing';
      continue;
    }
    if (result.claimed >= options.batchSize) continue;
    const sleepMs = Math.min(result.nextDueInMs ?? options.maxIdleMs, options.maxIdleMs);
    if (sleepMs > 0) await condition(() => woken || paused, sleepMs);
  }
}
