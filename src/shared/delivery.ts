/** Dispatcher settings, counters and stats: pure data shared by the workflow, its activity, the worker and the CLI. */

export interface DispatcherOptions {
  /** Most events one claim takes (one claim statement). */
  batchSize: number;
  /** Most payload bytes one claim takes (always at least one event), so large payloads keep a worker's memory bounded. */
  claimBytes: number;
  /** Requests in flight at once within a pass. */
  concurrency: number;
  /** Deliveries started per second by this dispatcher shard; 0 means no limit. */
  ratePerSecond: number;
  requestTimeoutMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** Failed first attempts in a row (receiver down) after which the dispatcher pauses itself. */
  autoPauseAfter: number;
  autoPauseCooldownMs: number;
  // The rest shape the run's sequence of commands. They are fixed when a dispatcher first starts and carried through
  // continue-as-new, so a new default in the code never changes what a running run does (see resolveDispatcherOptions).
  /** Passes in flight at once while a backlog lasts (1 when rate-limited). */
  parallelPasses: number;
  /** How long a pass keeps claiming while a backlog lasts. */
  streamMs: number;
  /** Passes per run before it continues as new (each pass is about 6-9 history events). */
  passesPerRun: number;
  /** Longest idle sleep, so events made due by someone who does not send `wake` still go out soon. */
  maxIdleMs: number;
  /** Events a probe pass sends after an auto-pause cool-down. */
  probeSize: number;
}

export const DEFAULT_DISPATCHER_OPTIONS: DispatcherOptions = {
  batchSize: 1000,
  claimBytes: 4 * 1024 * 1024,
  concurrency: 64,
  ratePerSecond: 0,
  requestTimeoutMs: 10_000,
  backoffBaseMs: 1_000,
  backoffCapMs: 60_000,
  autoPauseAfter: 50,
  autoPauseCooldownMs: 60_000,
  parallelPasses: 3,
  streamMs: 2_000,
  passesPerRun: 300,
  maxIdleMs: 5_000,
  probeSize: 5,
};

export type DispatcherOptionKey = keyof DispatcherOptions;

/** How a setting is named and bounded everywhere: environment, `delivery configure` flags, validation, messages. */
export interface SettingSpec {
  key: DispatcherOptionKey;
  /** Environment variable a worker reads it from (absent: not operator-tunable). */
  env?: string;
  /** `gotong-worker delivery configure` flag (absent: not operator-tunable). */
  flag?: string;
  unit: 'count' | 'ms' | 'bytes' | 'per-second';
  min: number;
  max: number;
  /** A rate may be 0 (no limit) below its minimum. */
  zeroAllowed?: boolean;
}

/**
 * Every dispatcher setting, its names and bounds: read from the environment at a worker's start and by `delivery
 * configure`, and checked again by the workflow. Values beyond the bounds are mistakes, not tuning: a minimum
 * catches seconds written as milliseconds, a maximum keeps leases, heartbeats and one pass's memory within reason.
 */
export const DISPATCHER_SETTINGS: readonly SettingSpec[] = [
  { key: 'ratePerSecond', env: 'WEBHOOK_RATE_LIMIT', flag: '--rate', unit: 'per-second', min: 0.01, max: 10_000, zeroAllowed: true },
  { key: 'concurrency', env: 'WEBHOOK_CONCURRENCY', flag: '--concurrency', unit: 'count', min: 1, max: 256 },
  { key: 'requestTimeoutMs', env: 'WEBHOOK_TIMEOUT_MS', flag: '--timeout', unit: 'ms', min: 100, max: 60_000 },
  { key: 'backoffBaseMs', env: 'WEBHOOK_BACKOFF_BASE_MS', flag: '--backoff-base', unit: 'ms', min: 1, max: 86_400_000 },
  { key: 'backoffCapMs', env: 'WEBHOOK_BACKOFF_CAP_MS', flag: '--backoff-cap', unit: 'ms', min: 1, max: 86_400_000 },
  { key: 'autoPauseAfter', env: 'WEBHOOK_AUTO_PAUSE_AFTER', flag: '--auto-pause-after', unit: 'count', min: 1, max: 1_000_000 },
  { key: 'autoPauseCooldownMs', env: 'WEBHOOK_AUTO_PAUSE_COOLDOWN_MS', flag: '--auto-pause-cooldown', unit: 'ms', min: 100, max: 3_600_000 },
  { key: 'batchSize', env: 'WEBHOOK_BATCH_SIZE', flag: '--batch-size', unit: 'count', min: 1, max: 10_000 },
  { key: 'claimBytes', env: 'WEBHOOK_CLAIM_BYTES', flag: '--claim-bytes', unit: 'bytes', min: 64 * 1024, max: 256 * 1024 * 1024 },
  { key: 'parallelPasses', unit: 'count', min: 1, max: 8 },
  { key: 'streamMs', unit: 'ms', min: 0, max: 60_000 },
  { key: 'passesPerRun', unit: 'count', min: 1, max: 2_000 },
  { key: 'maxIdleMs', unit: 'ms', min: 10, max: 300_000 },
  { key: 'probeSize', unit: 'count', min: 1, max: 1_000 },
];

export const MAX_SHARDS = 64;

export function settingSpec(key: DispatcherOptionKey): SettingSpec {
  return DISPATCHER_SETTINGS.find((s) => s.key === key)!;
}

/** "10000 ms" reads worse than "10s" in a one-line status. */
export function formatSetting(spec: SettingSpec, value: number): string {
  if (spec.unit === 'ms') return value % 1000 === 0 ? `${value / 1000}s` : `${value}ms`;
  if (spec.unit === 'bytes') {
    if (value % (1024 * 1024) === 0) return `${value / (1024 * 1024)}MiB`;
    return value % 1024 === 0 ? `${value / 1024}KiB` : `${value}B`;
  }
  return String(value);
}

const flagName = (spec: SettingSpec) => spec.flag ?? spec.key;

/**
 * The reasons a set of values cannot be used, one sentence each (empty: fine). Checks only the keys present;
 * `nameOf` names a setting as the operator gave it (a flag, or an environment variable).
 */
export function settingProblems(values: Partial<DispatcherOptions>, nameOf: (spec: SettingSpec) => string = flagName): string[] {
  const problems: string[] = [];
  for (const spec of DISPATCHER_SETTINGS) {
    const value = values[spec.key];
    if (value === undefined) continue;
    const name = nameOf(spec);
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      problems.push(`${name} must be a number`);
    } else if (spec.zeroAllowed && value === 0) {
      continue;
    } else if (spec.unit !== 'per-second' && !Number.isInteger(value)) {
      problems.push(`${name} must be a whole number`);
    } else if (value < spec.min || value > spec.max) {
      const zero = spec.zeroAllowed ? ' (or 0: no limit)' : '';
      problems.push(`${name} must be between ${formatSetting(spec, spec.min)} and ${formatSetting(spec, spec.max)}${zero}, not ${value}`);
    }
  }
  if (values.backoffBaseMs !== undefined && values.backoffCapMs !== undefined && values.backoffBaseMs > values.backoffCapMs) {
    const base = nameOf(settingSpec('backoffBaseMs'));
    const cap = nameOf(settingSpec('backoffCapMs'));
    problems.push(`${base} (${values.backoffBaseMs} ms) must not exceed ${cap} (${values.backoffCapMs} ms)`);
  }
  return problems;
}

/**
 * The settings every run of the dispatcher-v2 loop carries in its input. never change: runs in flight rely on it. A run
 * whose input lacks one of them fills them in and continues as new at once; were a setting added here later, a run
 * begun before it would, on replay, continue as new where it did not. A new setting is read instead with a frozen
 * fallback (see run-inputs.ts) and carried from then on.
 */
const CARRIED_SINCE_V2: readonly DispatcherOptionKey[] = [
  'batchSize', 'claimBytes', 'concurrency', 'ratePerSecond', 'requestTimeoutMs', 'backoffBaseMs', 'backoffCapMs',
  'autoPauseAfter', 'autoPauseCooldownMs', 'parallelPasses', 'streamMs', 'passesPerRun', 'maxIdleMs', 'probeSize',
];

/**
 * Settings as given, over the defaults: complete, and whether they already were (then nothing was filled in). A
 * default is used only for a setting the input lacks, in a run that then continues as new carrying it, so changing a
 * default reaches new dispatchers only.
 */
export function resolveDispatcherOptions(given: Partial<DispatcherOptions> | undefined): { options: DispatcherOptions; complete: boolean } {
  const options = { ...DEFAULT_DISPATCHER_OPTIONS };
  for (const key of Object.keys(DEFAULT_DISPATCHER_OPTIONS) as DispatcherOptionKey[]) {
    const value = given?.[key];
    if (value !== undefined) options[key] = value;
  }
  const complete = given !== undefined && CARRIED_SINCE_V2.every((key) => given[key] !== undefined);
  return { options, complete };
}

/**
 * A claimed event's lease lasts one request timeout plus this. A pass renews the leases it holds while it works and
 * starts a request only while the lease outlasts it, so no event is ever posted by two passes at once; a pass whose
 * worker died leaves leases that expire within this window, and the next pass takes those events back.
 */
export const LEASE_SLACK_MS = 10_000;
export const leaseMsFor = (options: Pick<DispatcherOptions, 'requestTimeoutMs'>) => options.requestTimeoutMs + LEASE_SLACK_MS;

/** Delivery workers send a pass's heartbeat at least this often (the SDK would otherwise wait 0.8 x the timeout). */
export const PASS_HEARTBEAT_MS = 2_000;

/**
 * Silence this long means a pass's worker is gone. Its leases were renewed while it lived and it heartbeated at
 * most PASS_HEARTBEAT_MS before dying, so by the time Temporal notices, every lease it held has expired: the next
 * pass takes its events back at once.
 */
export const passHeartbeatTimeoutMs = (options: Pick<DispatcherOptions, 'requestTimeoutMs'>) => leaseMsFor(options) + PASS_HEARTBEAT_MS;

/** Activities of delivery run on a task queue of their own, which only workers that can deliver poll. */
export const deliveryTaskQueue = (taskQueue: string) => `${taskQueue}-delivery`;

export interface DeliverPassInput {
  options: DispatcherOptions;
  /** Lease of claimed events (renewed while the pass holds them); absent in passes scheduled by older code. */
  leaseMs?: number;
  /** Set by older code, which sized one lease for a whole pass; ignored when `leaseMs` is given. */
  leaseSeconds?: number;
  /** Also count the backlog for `stats` (a few index scans; not needed on every pass). */
  wantSnapshot: boolean;
  /** Keep claiming further batches for about this long (0 or absent: one batch). */
  streamMs?: number;
  /**
   * Failed first attempts in a row so far (the dispatcher's streak): the pass stops sending once its own failures
   * bring the streak to `options.autoPauseAfter`, unless it sees a success first. Absent: 0.
   */
  healthStreak?: number;
  /** Epoch ms before which a rate-limited pass sends nothing: the previous pass's next free slot. */
  paceFrom?: number | null;
  /** Payload bytes per event seen lately, so the first claim of a pass over large payloads asks for few rows. */
  bytesPerEventHint?: number | null;
  /**
   * Claim at most this many rows at a time (absent: `options.batchSize`). Passes launched while a shard ramps up claim
   * a few rounds of requests at a time: a pass sends all it claimed before it ends, and against a slow receiver a
   * whole batch takes seconds, while the shard adds its next pass only when one ends.
   */
  claimRows?: number;
}

/** A pass as dispatchers started before the `dispatcher-v2` patch schedule it (`deliverDue`). */
export type PassInputBeforeV2 = Omit<DeliverPassInput, 'options'> & { options: Partial<DispatcherOptions> };

export interface OutboxCounts {
  backlog: number;
  /** `backlog` is PostgreSQL's estimate (more than 10,000 due), not a count. Absent in older results: a count. */
  backlogEstimated?: boolean;
  inFlight: number;
  oldestDueMs: number;
}

export interface DeliverPassResult {
  claimed: number;
  /** Every claim came back full: more is probably due. */
  full?: boolean;
  delivered: number;
  retried: number;
  deadLettered: number;
  /** Claimed but not sent (the pass stopped early); handed back with their attempt uncounted. */
  released: number;
  /** Failed first attempts since the pass's last success (or its start): the receiver-health streak. */
  trailingFailures: number;
  anySuccess: boolean;
  /** First attempts of events that had never been sent before (retries and replays excluded): the health sample. */
  firstAttempts?: number;
  /** The pass stopped sending because the streak of failed first attempts reached `autoPauseAfter`. */
  stoppedForHealth?: boolean;
  /** Epoch ms of the next free rate-limit slot (rate-limited passes only). */
  nextSlotAt?: number | null;
  /** The most payload bytes the pass held at once (claimed, not yet answered). */
  peakHeldBytes?: number;
  /** Average payload bytes of the events it claimed (null: none claimed). */
  bytesPerEvent?: number | null;
  snapshot: OutboxCounts | null;
  /** Only known after a pass that found less than a full batch; then 0 means "due now". */
  nextDueInMs: number | null;
}

export interface DispatcherCounters {
  delivered: number;
  retried: number;
  deadLettered: number;
  passes: number;
}

export interface DispatcherError {
  message: string;
  /** ISO time (workflow time) it happened. */
  at: string;
  /** Passes that failed in a row up to now (0 once a pass succeeded again). */
  inARow: number;
}

export interface DispatcherStats extends DispatcherCounters {
  shard: number;
  shards: number;
  paused: boolean;
  pauseReason: 'operator' | 'receiver-failing' | null;
  /** Failed first attempts in a row (retries never count): what auto-pause judges by. */
  consecutiveFailures: number;
  autoPauses: number;
  /** The last pass that failed (the dispatcher backs off and goes on), or null. */
  lastError: DispatcherError | null;
  /** This shard is beyond the configured number of shards: it finishes its passes and ends. */
  stopping: boolean;
  /** The most payload bytes one pass held at once. */
  peakPassBytes: number;
  inFlight: number;
  backlog: number;
  /** True when `backlog` is an estimate (more than 10,000 events due); every other figure is exact. */
  backlogEstimated: boolean;
  oldestDueAgeMs: number;
  /**
   * When a pass last counted `inFlight`, `backlog` and `oldestDueAgeMs` (ISO time), or null before one has: they are as
   * of then. Passes count every few seconds while they run; a paused dispatcher runs none, so its counts grow old.
   * Absent from dispatchers started before it was added.
   */
  countsAsOf?: string | null;
  settings: DispatcherOptions;
}

/** What `configure` changes: operator-tunable settings and the number of shards. */
export type DispatcherConfigPatch = Partial<DispatcherOptions> & { shards?: number };

export interface DispatcherConfigAnswer {
  shard: number;
  shards: number;
  stopping: boolean;
  settings: DispatcherOptions;
}

/** The reasons a patch cannot be applied on top of `current` (empty: fine). */
export function configPatchProblems(patch: DispatcherConfigPatch, current: DispatcherOptions): string[] {
  const { shards, ...values } = patch;
  const problems: string[] = [];
  for (const key of Object.keys(values)) {
    const spec = DISPATCHER_SETTINGS.find((s) => s.key === key);
    if (!spec) problems.push(`unknown setting '${key}'`);
    else if (!spec.flag) problems.push(`${key} is fixed for the life of a dispatcher and cannot be configured`);
  }
  if (shards !== undefined && (!Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS)) {
    problems.push(`--shards must be a whole number between 1 and ${MAX_SHARDS}, not ${shards}`);
  }
  problems.push(...settingProblems({ ...current, ...values }));
  return problems;
}

export interface DispatcherCarried {
  counters: DispatcherCounters;
  paused: boolean;
  pauseReason: DispatcherStats['pauseReason'];
  consecutiveFailures: number;
  autoPauses?: number;
  autoPausedAt?: number | null;
  lastError?: DispatcherError | null;
  nextSlotAt?: number | null;
  bytesPerEvent?: number | null;
  peakPassBytes?: number;
  /** The last counts and when they were taken, so `stats` after continuing as new still has them. */
  snapshot?: OutboxCounts | null;
  snapshotAt?: number | null;
}

export interface DispatcherInput {
  shard: number;
  shards: number;
  /** Complete once the run has started (see resolveDispatcherOptions); partial or absent when started by hand. */
  options?: Partial<DispatcherOptions>;
  /** Where its delivery passes run; absent: the run's own task queue with `-delivery` appended. */
  deliveryTaskQueue?: string;
  /** Set only when continuing as new. */
  carried?: DispatcherCarried;
}

export const dispatcherWorkflowId = (shard: number) => `webhook-dispatcher/${shard}`;
