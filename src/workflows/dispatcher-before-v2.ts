import {
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { DeliverPassResult, DispatcherCounters, DispatcherInput, DispatcherStats } from '../shared/delivery';
import { dispatcherWorkflowId } from '../shared/delivery';
import type { webhookDispatcher } from './dispatcher';
import { pauseDeliverySignal, resumeDeliverySignal, statsQuery, wakeSignal } from './dispatcher-signals';

/**
 * The dispatcher loop as it was before the `dispatcher-v2` patch (commit 3348d5c), kept so that runs started by that
 * code go on replaying exactly as they were written: they schedule `deliverDue` on their own task queue with a lease
 * sized for the whole pass, and continue as new into the current loop after at most PASSES_PER_RUN passes (minutes
 * when busy, about half an hour when idle). Once no such run exists anywhere, replace `patched` with `deprecatePatch`
 * and delete this file and `deliverDue`; test/dispatcher.replay.test.ts replays a history recorded from that code.
 * Only what the workflow commands matters here; the pass itself is today's, reached through `deliverDue`.
 */

/** The defaults that code ran with, frozen: a later change to the current defaults must not reach these runs. */
const LEGACY_DEFAULTS = {
  batchSize: 1000,
  concurrency: 64,
  ratePerSecond: 0,
  requestTimeoutMs: 10_000,
  backoffBaseMs: 1_000,
  backoffCapMs: 60_000,
  autoPauseAfter: 50,
  autoPauseCooldownMs: 60_000,
  maxIdleMs: 5_000,
  parallelPasses: 3,
};

/** Passes per run before continuing as new: each pass is about 6-9 history events. */
const PASSES_PER_RUN = 300;
/**
 * How long a pass keeps claiming while a backlog lasts. Each pass start costs a round through Temporal
 * and leaves the receiver idle while it claims; longer passes pay that less often. Pause and stats act
 * between passes, so this stays short.
 */
const STREAM_MS = 2_000;

/**
 * The delivery loop of one shard: claim and deliver due events pass after pass; when nothing is due,
 * sleep until the next event is (or a `wake` signal); pause on an operator's signal, or by itself
 * when the receiver keeps failing, until resumed or the cool-down ends. Runs forever via continue-as-new.
 */
export async function dispatcherBeforeV2(input: DispatcherInput): Promise<void> {
  const configured = { ...LEGACY_DEFAULTS, ...input.options };
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
  // A rate-limited pass is paced from its start, so it stays one batch long.
  const streamMs = configured.ratePerSecond > 0 ? 0 : STREAM_MS;
  const { deliverDue } = proxyActivities<Activities>({
    // A streaming pass claims its last batch by streamMs (up to 1.25 times, jittered), then finishes it like any pass.
    startToCloseTimeout: `${leaseSeconds + Math.ceil((streamMs * 1.25) / 1000)} seconds`,
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

  setHandler(statsQuery, () => ({
    shard: input.shard,
    shards: input.shards,
    ...counters,
    paused,
    pauseReason,
    consecutiveFailures,
    autoPauses: 0,
    lastError: null,
    stopping: false,
    peakPassBytes: 0,
    inFlight: snapshot.inFlight,
    backlog: snapshot.backlog,
    backlogEstimated: false,
    oldestDueAgeMs: snapshot.oldestDueMs,
    settings: { ...LEGACY_DEFAULTS, claimBytes: 0, streamMs: 0, passesPerRun: PASSES_PER_RUN, probeSize: 0, ...input.options },
  }));
  setHandler(wakeSignal, () => {
    woken = true;
    if (input.shard === 0) {
      // Producers wake shard 0 only; it passes the news on.
      for (let shard = 1; shard < input.shards; shard++) {
        getExternalWorkflowHandle(dispatcherWorkflowId(shard)).signal(wakeSignal).catch(() => undefined);
      }
    }
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

  // Several passes in flight overlap one pass's database work with another's HTTP work. A rate limit is
  // paced within a pass, so a rate-limited dispatcher runs one pass at a time.
  const maxParallel = options.ratePerSecond > 0 ? 1 : Math.max(1, options.parallelPasses);
  let running = 0;
  let target = 1;
  let passesStarted = 0;
  let idleForMs: number | null = null;
  let failure: unknown;
  let lastSnapshotAt = -Infinity;

  const apply = (result: DeliverPassResult) => {
    counters = {
      delivered: counters.delivered + result.delivered,
      retried: counters.retried + result.retried,
      deadLettered: counters.deadLettered + result.deadLettered,
      passes: counters.passes + 1,
    };
    if (result.snapshot) snapshot = result.snapshot;
    consecutiveFailures = result.anySuccess ? result.trailingFailures : consecutiveFailures + result.trailingFailures;
    if (consecutiveFailures >= options.autoPauseAfter && !paused) {
      paused = true;
      pauseReason = 'receiver-failing';
    }
    if (result.full ?? result.claimed >= options.batchSize) {
      target = Math.min(maxParallel, target + 1);
    } else {
      target = 1;
      idleForMs = Math.min(result.nextDueInMs ?? options.maxIdleMs, options.maxIdleMs);
    }
  };
  const launch = () => {
    running += 1;
    passesStarted += 1;
    woken = false;
    // The snapshot (counts for `stats`) is refreshed at most every 2 s. In workflow code `new Date()` is
    // the workflow task's time, replayed identically, so this stays deterministic.
    const now = new Date().getTime();
    const wantSnapshot = now - lastSnapshotAt >= 2_000;
    if (wantSnapshot) lastSnapshotAt = now;
    deliverDue({ options, leaseSeconds, wantSnapshot, streamMs }).then(
      (result) => {
        running -= 1;
        apply(result);
      },
      (err: unknown) => {
        running -= 1;
        failure = err;
      },
    );
  };
  const mustContinueAsNew = () => passesStarted >= PASSES_PER_RUN || workflowInfo().continueAsNewSuggested;

  for (;;) {
    if (failure !== undefined) throw failure;
    if (running === 0 && mustContinueAsNew()) {
      // Into the current loop: it fills in the settings not given, once, and carries them from then on.
      return continueAsNew<typeof webhookDispatcher>({
        ...input,
        carried: { counters, paused, pauseReason, consecutiveFailures },
      });
    }
    if (paused) {
      // Passes already started finish (they are short); no new one starts.
      await condition(() => running === 0);
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
      idleForMs = null;
      continue;
    }
    if (idleForMs !== null && running === 0) {
      const sleepMs = idleForMs;
      idleForMs = null;
      if (sleepMs > 0) await condition(() => woken || paused, sleepMs);
      continue;
    }
    if (idleForMs === null && running < target && !mustContinueAsNew()) {
      launch();
      continue;
    }
    await condition(
      () =>
        failure !== undefined ||
        paused ||
        (running === 0 && (idleForMs !== null || mustContinueAsNew())) ||
        (idleForMs === null && running < target && !mustContinueAsNew()),
    );
  }
}
