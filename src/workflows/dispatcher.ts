import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  getCurrentDetails,
  metricMeter,
  patched,
  setCurrentDetails,
  proxyActivities,
  setHandler,
  TimeoutFailure,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  configPatchProblems,
  type DeliverPassResult,
  deliveryTaskQueue,
  type DispatcherConfigAnswer,
  type DispatcherConfigPatch,
  type DispatcherCounters,
  type DispatcherError,
  type DispatcherInput,
  type DispatcherOptions,
  type DispatcherStats,
  dispatcherWorkflowId,
  type OutboxCounts,
  leaseMsFor,
  MAX_SHARDS,
  passHeartbeatTimeoutMs,
  resolveDispatcherOptions,
  settingProblems,
} from '../shared/delivery';
import { METRICS } from '../shared/metrics';
import { grouped } from '../shared/run-metadata';
import { dispatcherBeforeV2 } from './dispatcher-before-v2';
import { configureUpdate, DISPATCHER_HANDLER_DESCRIPTIONS, pauseDeliverySignal, resumeDeliverySignal, statsQuery, wakeSignal } from './dispatcher-signals';

/** The patch that introduced this loop (the delivery task queue, health by first attempts, configure). */
const DISPATCHER_V2 = 'dispatcher-v2';

export { configureUpdate, pauseDeliverySignal, resumeDeliverySignal, statsQuery, wakeSignal };

/** The snapshot behind `stats` (a few index scans) is refreshed at most this often. */
const SNAPSHOT_EVERY_MS = 2_000;
/** A rate-limited pass is started this long before its first slot, so its claim is done by then. */
const RATE_LEAD_MS = 300;
/** After a failed pass, the next waits 1 s, doubling per failure in a row, up to this. */
const ERROR_BACKOFF_CAP_MS = 60_000;
/** A pass no worker has picked up within this is reported (no worker polls the delivery queue) and tried again. */
const PASS_PICKUP_TIMEOUT = '60 seconds';
/** How long passes launched while ramping up stream (see streamMsOfNextPass). */
const RAMP_PASS_STREAM_MS = 300;
/** Passes launched while ramping up claim this many rounds of `concurrency` requests at a time (see claimRowsOfNextPass). */
const RAMP_PASS_CLAIM_ROUNDS = 4;

/**
 * The delivery loop of one shard: claim and deliver due events pass after pass; when nothing is due, sleep until the
 * next event is (or a `wake` signal); pause on an operator's signal, or by itself when the receiver is down (its
 * first attempts keep failing), then probe after a cool-down and resume once it answers. A failed pass never ends
 * the run: it is shown in `stats` and the loop backs off and goes on. Runs forever via continue-as-new.
 */
export async function webhookDispatcher(input: DispatcherInput): Promise<void> {
  // Runs begun by the loop before this one replay on it until they continue as new (see dispatcher-before-v2.ts).
  if (!patched(DISPATCHER_V2)) return dispatcherBeforeV2(input);
  const { options, complete } = resolveDispatcherOptions(input.options);
  const problems = [...settingProblems(options), ...shardProblems(input)];
  if (problems.length > 0) {
    throw ApplicationFailure.nonRetryable(`invalid dispatcher input: ${problems.join('; ')}`, 'InvalidDispatcherInput');
  }
  const shard = new Shard(input, options);
  setHandler(statsQuery, () => shard.stats(), { description: DISPATCHER_HANDLER_DESCRIPTIONS.stats });
  setHandler(wakeSignal, () => shard.wake(), { description: DISPATCHER_HANDLER_DESCRIPTIONS.wake });
  setHandler(pauseDeliverySignal, () => shard.pause(), { description: DISPATCHER_HANDLER_DESCRIPTIONS.pause });
  setHandler(resumeDeliverySignal, () => shard.resume(), { description: DISPATCHER_HANDLER_DESCRIPTIONS.resume });
  setHandler(configureUpdate, (patch) => shard.configure(patch), {
    description: DISPATCHER_HANDLER_DESCRIPTIONS.configure,
    validator: (patch) => {
      const reasons = patch && typeof patch === 'object' ? configPatchProblems(patch, shard.settings) : ['expected an object of settings'];
      if (reasons.length > 0) throw new Error(reasons.join('; '));
    },
  });

  // Settings not given are filled in from the code's defaults once, here, and from then on carried in the input, so
  // a default changed by a later deploy never changes what a running run does (and its history replays the same).
  // The handlers are set first, so a signal or update that came with the start is carried over, not lost.
  if (!complete) return continueAsNew<typeof webhookDispatcher>(shard.continuation());

  for (;;) {
    if (shard.stopping) {
      // Beyond the configured number of shards: let the passes under way finish, then end.
      await condition(() => shard.running === 0);
      return;
    }
    if (shard.running === 0 && shard.mustContinueAsNew()) {
      return continueAsNew<typeof webhookDispatcher>(shard.continuation());
    }
    if (shard.paused) {
      await shard.whilePaused();
      continue;
    }
    const waitMs = shard.msUntilNextPassMayStart();
    if (shard.running < shard.target && waitMs <= 0 && !shard.mustContinueAsNew()) {
      shard.launch();
      continue;
    }
    await shard.nextChange(waitMs > 0 ? waitMs : undefined);
  }
}

function shardProblems(input: DispatcherInput): string[] {
  const ok = (n: unknown, min: number, max: number) => typeof n === 'number' && Number.isInteger(n) && n >= min && n <= max;
  return ok(input.shard, 0, MAX_SHARDS - 1) && ok(input.shards, 1, MAX_SHARDS) ? [] : [`shard and shards must be whole numbers with 0 <= shard < ${MAX_SHARDS} and 1 <= shards <= ${MAX_SHARDS}`];
}

/** Workflow time: the workflow task's time, replayed identically. */
const now = () => new Date().getTime();

/** The state of one dispatcher shard and the decisions made on it; the loop above only sequences them. */
class Shard {
  settings: DispatcherOptions;
  private shards: number;
  private readonly taskQueue: string;
  private counters: DispatcherCounters;
  paused: boolean;
  private pauseReason: DispatcherStats['pauseReason'];
  /** Failed first attempts in a row (see HealthTracker): what auto-pause judges by. */
  private streak: number;
  private autoPauses: number;
  /** When the current auto-pause (or its last failed probe) began: the cool-down counts from here. */
  private autoPausedAt: number | null;
  private lastError: DispatcherError | null;
  private errorsInARow: number;
  private nextSlotAt: number | null;
  private bytesPerEvent: number | null;
  private peakPassBytes: number;
  private snapshot: OutboxCounts = { inFlight: 0, backlog: 0, oldestDueMs: 0 };
  /** Workflow time of the pass that took `snapshot`; null before any has. */
  private snapshotAt: number | null = null;
  // Counted where the decision is made; the SDK skips metrics while replaying history, so each counts once.
  private readonly autoPauseCounter = metricMeter.createCounter(
    METRICS.autoPauses,
    undefined,
    'Times a dispatcher paused itself because the receiver kept failing',
  );
  running = 0;
  /** Passes to keep in flight: one more after each full pass, back to one when the backlog ends. */
  target = 1;
  private passesStarted = 0;
  private lastSnapshotAt = -Infinity;
  /** No pass starts before these (epoch ms): the next due event after an idle pass, the back-off after a failure. */
  private idleUntil: number | null = null;
  private retryAt: number | null = null;
  /** Counts everything the loop may be waiting for: a pass ending, a signal, an update. */
  private changes = 0;

  constructor(
    private readonly input: DispatcherInput,
    options: DispatcherOptions,
  ) {
    const carried = input.carried;
    this.settings = options;
    this.shards = input.shards;
    this.taskQueue = input.deliveryTaskQueue ?? deliveryTaskQueue(workflowInfo().taskQueue);
    this.counters = carried?.counters ?? { delivered: 0, retried: 0, deadLettered: 0, passes: 0 };
    this.paused = carried?.paused ?? false;
    this.pauseReason = carried?.pauseReason ?? null;
    this.streak = carried?.consecutiveFailures ?? 0;
    this.autoPauses = carried?.autoPauses ?? 0;
    this.autoPausedAt = carried?.autoPausedAt ?? null;
    this.lastError = carried?.lastError ?? null;
    this.errorsInARow = this.lastError?.inARow ?? 0;
    this.nextSlotAt = carried?.nextSlotAt ?? null;
    this.bytesPerEvent = carried?.bytesPerEvent ?? null;
    this.peakPassBytes = carried?.peakPassBytes ?? 0;
    if (carried?.snapshot) this.snapshot = carried.snapshot;
    this.snapshotAt = carried?.snapshotAt ?? null;
  }

  get stopping(): boolean {
    return this.input.shard >= this.shards;
  }

  stats(): DispatcherStats {
    return {
      shard: this.input.shard,
      shards: this.shards,
      ...this.counters,
      paused: this.paused,
      pauseReason: this.pauseReason,
      consecutiveFailures: this.streak,
      autoPauses: this.autoPauses,
      lastError: this.lastError,
      stopping: this.stopping,
      peakPassBytes: this.peakPassBytes,
      inFlight: this.snapshot.inFlight,
      backlog: this.snapshot.backlog,
      backlogEstimated: this.snapshot.backlogEstimated ?? false,
      oldestDueAgeMs: this.snapshot.oldestDueMs,
      countsAsOf: this.snapshotAt === null ? null : new Date(this.snapshotAt).toISOString(),
      settings: this.settings,
    };
  }

  wake(): void {
    this.idleUntil = null;
    this.changed();
    // Producers wake shard 0 only; it passes the news on.
    if (this.input.shard === 0) this.wakeOtherShards();
  }

  pause(): void {
    this.paused = true;
    this.pauseReason = 'operator';
    this.changed();
  }

  resume(): void {
    this.paused = false;
    this.pauseReason = null;
    this.autoPausedAt = null;
    this.streak = 0;
    this.changed();
  }

  configure(patch: DispatcherConfigPatch): DispatcherConfigAnswer {
    const { shards, ...values } = patch;
    this.settings = { ...this.settings, ...values };
    if (shards !== undefined && shards !== this.shards) {
      const grew = shards > this.shards;
      this.shards = shards;
      if (grew && this.input.shard === 0) this.wakeOtherShards();
    }
    // New settings may cure what made passes fail or wait: try again now.
    this.retryAt = null;
    this.idleUntil = null;
    this.changed();
    return { shard: this.input.shard, shards: this.shards, stopping: this.stopping, settings: this.settings };
  }

  mustContinueAsNew(): boolean {
    return this.passesStarted >= this.settings.passesPerRun || workflowInfo().continueAsNewSuggested;
  }

  continuation(): DispatcherInput {
    return {
      shard: this.input.shard,
      shards: this.shards,
      options: this.settings,
      deliveryTaskQueue: this.taskQueue,
      carried: {
        counters: this.counters,
        paused: this.paused,
        pauseReason: this.pauseReason,
        consecutiveFailures: this.streak,
        autoPauses: this.autoPauses,
        autoPausedAt: this.autoPausedAt,
        lastError: this.lastError,
        nextSlotAt: this.nextSlotAt,
        bytesPerEvent: this.bytesPerEvent,
        peakPassBytes: this.peakPassBytes,
        snapshot: this.snapshot,
        snapshotAt: this.snapshotAt,
      },
    };
  }

  async nextChange(timeoutMs?: number, summary?: string): Promise<void> {
    this.showDetails();
    const seen = this.changes;
    const changed = () => this.changes !== seen;
    if (timeoutMs === undefined) await condition(changed);
    // The summary is metadata on the timer command: histories written without it replay the same.
    else await condition(changed, timeoutMs, { summary: summary ?? this.waitSummary(timeoutMs) });
  }

  /** Why the loop sleeps, for the timer in the UI's timeline. */
  private waitSummary(ms: number): string {
    const t = now();
    const secs = `${Math.round(ms / 100) / 10} s`;
    if (this.paused) return `auto-pause cool-down: probe the receiver in ${secs}`;
    if (this.retryAt !== null && this.retryAt > t) return `back off ${secs} after ${this.errorsInARow} failed pass(es)`;
    if (this.settings.ratePerSecond > 0 && this.nextSlotAt !== null && this.nextSlotAt - RATE_LEAD_MS > t) return `rate limit: next pass in ${secs}`;
    return `idle: next due event or look in ${secs}`;
  }

  /** The UI's current details: what this shard is doing and what it has done (metadata, not a command). */
  showDetails(): void {
    const c = this.counters;
    const state = this.stopping
      ? 'stopping (beyond the configured shards)'
      : this.paused
        ? `paused (${this.pauseReason === 'receiver-failing' ? 'the receiver kept failing; a probe follows the cool-down' : 'by an operator; send `resume`'})`
        : `delivering, ${this.running} pass(es) in flight`;
    const lines = [
      `**Shard ${this.input.shard} of ${this.shards}**: ${state}`,
      `delivered ${grouped(c.delivered)} · retried ${grouped(c.retried)} · dead-lettered ${grouped(c.deadLettered)} · passes ${grouped(c.passes)}`,
      `backlog ${grouped(this.snapshot.backlog)}${this.snapshot.backlogEstimated ? ' (estimate)' : ''} · in flight ${grouped(this.snapshot.inFlight)}` +
        (this.snapshotAt === null ? ' (not counted yet)' : ` (counted ${new Date(this.snapshotAt).toISOString().slice(11, 19)} UTC)`),
    ];
    if (this.lastError && this.lastError.inARow > 0) lines.push(`Last failed pass (${this.lastError.inARow} in a row): ${this.lastError.message}`);
    const text = lines.join('\n\n');
    if (getCurrentDetails() !== text) setCurrentDetails(text);
  }

  msUntilNextPassMayStart(): number {
    const t = now();
    let wait = 0;
    if (this.idleUntil !== null) wait = Math.max(wait, this.idleUntil - t);
    if (this.retryAt !== null) wait = Math.max(wait, this.retryAt - t);
    if (this.settings.ratePerSecond > 0 && this.nextSlotAt !== null) wait = Math.max(wait, this.nextSlotAt - RATE_LEAD_MS - t);
    return wait;
  }

  launch(): void {
    this.idleUntil = null;
    void this.runPass(false);
  }

  /**
   * Paused by an operator: until resumed. Paused by the receiver's health: a cool-down, then a probe (a small pass):
   * a success, or a probe with no first attempt to judge by (only retries, or nothing due), resumes delivery; a
   * probe whose first attempts all failed starts another cool-down.
   */
  async whilePaused(): Promise<void> {
    if (this.pauseReason !== 'receiver-failing') {
      await condition(() => !this.paused || this.stopping || this.pauseReason === 'receiver-failing');
      return;
    }
    // The cool-down counts from the pause, by the settings in force: `configure` may shorten or lengthen one under way.
    for (;;) {
      if (!this.paused || this.pauseReason !== 'receiver-failing' || this.stopping) return;
      const left = (this.autoPausedAt ?? now()) + this.settings.autoPauseCooldownMs - now();
      if (left <= 0) break;
      await this.nextChange(left);
    }
    await condition(() => this.running === 0);
    const probe = await this.runPass(true);
    if (this.pauseReason !== 'receiver-failing') return;
    if (probe && (probe.anySuccess || (probe.firstAttempts ?? 0) === 0)) {
      this.paused = false;
      this.pauseReason = null;
      this.autoPausedAt = null;
      this.streak = 0;
    } else {
      this.autoPausedAt = now();
    }
  }

  private async runPass(probe: boolean): Promise<DeliverPassResult | null> {
    this.running += 1;
    this.passesStarted += 1;
    const options: DispatcherOptions = probe
      ? {
          ...this.settings,
          batchSize: this.settings.probeSize,
          concurrency: Math.min(this.settings.concurrency, this.settings.probeSize),
          autoPauseAfter: this.settings.probeSize,
        }
      : this.settings;
    const t = now();
    const wantSnapshot = t - this.lastSnapshotAt >= SNAPSHOT_EVERY_MS;
    if (wantSnapshot) this.lastSnapshotAt = t;
    const streamMs = probe ? 0 : this.streamMsOfNextPass(options);
    const claimRows = probe ? undefined : this.claimRowsOfNextPass(options);
    try {
      const result = await this.passActivity(options, passSummary(probe, this.counters.passes + this.running, options.batchSize, claimRows, streamMs))({
        options,
        leaseMs: leaseMsFor(options),
        wantSnapshot,
        streamMs,
        healthStreak: probe ? 0 : this.streak,
        paceFrom: this.nextSlotAt,
        bytesPerEventHint: this.bytesPerEvent,
        claimRows,
      });
      this.apply(result, probe);
      return result;
    } catch (err) {
      this.failed(err);
      return null;
    } finally {
      this.running -= 1;
      this.changed();
    }
  }

  private get maxParallel(): number {
    return this.settings.ratePerSecond > 0 ? 1 : this.settings.parallelPasses;
  }

  /** Still adding passes, one more after each full pass, up to its parallel passes. */
  private get rampingUp(): boolean {
    return this.target < this.maxParallel;
  }

  /**
   * While ramping up, a shard runs short passes, so a new backlog has all its passes within about a second rather
   * than after a full stream time per step.
   */
  private streamMsOfNextPass(options: DispatcherOptions): number {
    return this.rampingUp ? Math.min(options.streamMs, RAMP_PASS_STREAM_MS) : options.streamMs;
  }

  /**
   * ...and those passes claim little at a time: a pass sends everything it claimed before it ends, so with whole
   * batches a short pass against a receiver that takes 200 ms to answer still ran for 3 s (1,000 events, 64 at a time),
   * and the shard reached its third pass after about 6 s.
   */
  private claimRowsOfNextPass(options: DispatcherOptions): number | undefined {
    return this.rampingUp ? Math.min(options.batchSize, RAMP_PASS_CLAIM_ROUNDS * options.concurrency) : undefined;
  }

  private passActivity(options: DispatcherOptions, summary: string) {
    const leaseMs = leaseMsFor(options);
    // Backstop only: a pass ends on its own once it has sent what it claimed (every request bounded by the timeout).
    const slowestPassMs =
      options.streamMs * 1.25 +
      leaseMs +
      2 * Math.ceil(options.batchSize / options.concurrency) * options.requestTimeoutMs +
      (options.ratePerSecond > 0 ? (2 * options.batchSize * 1000) / options.ratePerSecond : 0);
    return proxyActivities<Activities>({
      taskQueue: this.taskQueue,
      scheduleToStartTimeout: PASS_PICKUP_TIMEOUT,
      startToCloseTimeout: Math.ceil(slowestPassMs + 60_000),
      // A pass heartbeats from a timer, also while it waits on a statement or a slow receiver, so silence this long
      // means its worker is gone, and the leases it held have run out by then (see passHeartbeatTimeoutMs): the next
      // pass takes its events back at once. A pass that is timed out but still alive cannot post an event twice:
      // it renews its leases and sends only under one it knows is live, so no other pass can have taken it.
      heartbeatTimeout: passHeartbeatTimeoutMs(options),
      // Never retried by Temporal: the loop sees every failure, shows it in `stats`, backs off and starts a new pass.
      retry: { maximumAttempts: 1 },
      summary,
    }).deliverPass;
  }

  private apply(result: DeliverPassResult, probe: boolean): void {
    this.counters = {
      delivered: this.counters.delivered + result.delivered,
      retried: this.counters.retried + result.retried,
      deadLettered: this.counters.deadLettered + result.deadLettered,
      passes: this.counters.passes + 1,
    };
    this.errorsInARow = 0;
    this.retryAt = null;
    if (this.lastError) this.lastError = { ...this.lastError, inARow: 0 };
    if (result.snapshot) {
      this.snapshot = result.snapshot;
      this.snapshotAt = now();
    }
    if (result.bytesPerEvent) this.bytesPerEvent = result.bytesPerEvent;
    if (result.nextSlotAt !== undefined && result.nextSlotAt !== null) this.nextSlotAt = result.nextSlotAt;
    this.peakPassBytes = Math.max(this.peakPassBytes, result.peakHeldBytes ?? 0);
    if (probe) return;
    this.streak = result.anySuccess ? result.trailingFailures : this.streak + result.trailingFailures;
    if (this.streak >= this.settings.autoPauseAfter && !this.paused) {
      this.paused = true;
      this.pauseReason = 'receiver-failing';
      this.autoPausedAt = now();
      this.autoPauses += 1;
      this.autoPauseCounter.add(1, { shard: this.input.shard });
    }
    if (result.full && !result.stoppedForHealth) {
      this.target = Math.min(this.maxParallel, this.target + 1);
    } else {
      this.target = 1;
      if (!result.full) this.idleUntil = now() + Math.min(result.nextDueInMs ?? this.settings.maxIdleMs, this.settings.maxIdleMs);
    }
  }

  private failed(err: unknown): void {
    this.errorsInARow += 1;
    this.lastError = { message: describePassFailure(err, this.taskQueue), at: new Date().toISOString(), inARow: this.errorsInARow };
    this.retryAt = now() + Math.min(ERROR_BACKOFF_CAP_MS, 1000 * 2 ** Math.min(16, this.errorsInARow - 1));
    this.target = 1;
  }

  private changed(): void {
    this.changes += 1;
  }

  private wakeOtherShards(): void {
    for (let other = 1; other < this.shards; other++) {
      getExternalWorkflowHandle(dispatcherWorkflowId(other)).signal(wakeSignal).catch(() => undefined);
    }
  }
}

/**
 * The pass's line in the UI. A streaming pass claims again and again until its stream time is up, so its size is per
 * claim; ramp-up passes claim less than a batch (claimRowsOfNextPass), and the line says so.
 */
function passSummary(probe: boolean, passNumber: number, batchSize: number, claimRows: number | undefined, streamMs: number): string {
  const kind = `${probe ? 'probe' : 'delivery'} pass ${grouped(passNumber)}`;
  const rows = grouped(Math.min(batchSize, claimRows ?? batchSize));
  if (streamMs <= 0) return `${kind} (up to ${rows} events)`;
  return `${kind} (claims up to ${rows} events at a time for about ${Number((streamMs / 1000).toFixed(1))} s)`;
}

/** One line an operator can act on; never the receiver's URL (it stays in the worker). */
function describePassFailure(err: unknown, taskQueue: string): string {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof TimeoutFailure) {
    if (cause.timeoutType === 'SCHEDULE_TO_START') {
      return `no worker took the delivery pass within ${PASS_PICKUP_TIMEOUT}: start a worker with WEBHOOK_URL set (it polls task queue '${taskQueue}')`;
    }
    if (cause.timeoutType === 'HEARTBEAT') {
      return 'the delivery pass stopped heartbeating (its worker crashed or stalled); the events it held are taken back as their leases expire';
    }
    return `the delivery pass timed out (${cause.timeoutType ?? 'timeout'})`;
  }
  const failure = cause as { type?: string; message?: string } | undefined;
  const text = `${failure?.type ? `${failure.type}: ` : ''}${failure?.message ?? String(err)}`;
  return text.length > 500 ? `${text.slice(0, 497)}...` : text;
}
