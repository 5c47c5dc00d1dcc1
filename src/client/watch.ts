import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import type { BackfillCounters } from '../shared/backfill';
import { PROGRESS_LIMITS, type ProgressQueryArgs } from '../shared/progress';
import type { ReplayCounters } from '../shared/replay';
import { explainTemporalError, temporalTarget, type TemporalTarget } from '../temporal';
import { formatCounters, formatReplayCounters } from './counters';
import { Detached, RunError, type Output } from './errors';
import { type BarPosition, RunBar, wantsBar } from './progress-bar';
import { failureReason, isDeadlineExceeded, isTemporalUnreachable, type RunEnding, runEnding } from './run-ending';
import { StallNotice, stallNoticeMsFrom } from './stall';
import { printable, shellWord } from './text';
import { type RunMetadata, SEARCH_ATTRIBUTE_DEFINITIONS, searchAttributeCreateCommands } from '../shared/run-metadata';
import { isMissingSearchAttribute } from '../shared/search-attribute-errors';
import { type OptionFlags, optionsKeptByRun, runningInput } from './attach';

export function missingSearchAttributesWarning(namespace: string, missing = SEARCH_ATTRIBUTE_DEFINITIONS.map((a) => a.name)): string {
  return (
    `namespace '${namespace}' lacks the search attributes ${missing.join(', ')}: the run starts without them (the Temporal UI ` +
    `cannot filter by them; nothing else changes). Register them once: ${searchAttributeCreateCommands(namespace, missing).join(' ; ')}`
  );
}

/** A client for operator commands; an unreachable server becomes one line naming the fix (exit 1). */
export async function connectClient(namespace?: string): Promise<{ client: Client; connection: Connection; target: TemporalTarget }> {
  const target = { ...temporalTarget(), ...(namespace ? { namespace } : {}) };
  let connection: Connection;
  try {
    connection = await Connection.connect({
      ...target.connectionOptions,
      connectTimeout: '5s',
      // gRPC backs off reconnecting up to 2 minutes by default: a command waiting through an outage would go on
      // printing that long after the server is back.
      channelArgs: { 'grpc.max_reconnect_backoff_ms': 5_000 },
    });
  } catch (err) {
    throw new RunError(explainTemporalError(err, target.address));
  }
  try {
    await ensureNamespace(connection, target);
  } catch (err) {
    await connection.close();
    throw err;
  }
  return { client: new Client({ connection, namespace: target.namespace }), connection, target };
}

/** gRPC's NOT_FOUND. */
const NOT_FOUND = 5;

/**
 * A namespace that does not exist would otherwise surface later and misleadingly: `delivery status` as "no dispatcher is
 * running", a start as a bare "Namespace not found".
 */
async function ensureNamespace(connection: Connection, target: TemporalTarget): Promise<void> {
  try {
    // Bounded: a server that accepts connections but does not answer must not hang every command here.
    await connection.withDeadline(Date.now() + 10_000, () => connection.workflowService.describeNamespace({ namespace: target.namespace }));
  } catch (err) {
    if ((err as { code?: unknown }).code !== NOT_FOUND) return; // e.g. describing denied where the namespace works: the command will tell
    const { namespace, address } = target;
    throw new RunError(
      `namespace '${namespace}' does not exist on Temporal at ${address}: set TEMPORAL_NAMESPACE to one that does ` +
        `(temporal operator namespace list --address ${address}) or create it (temporal operator namespace create --namespace ${namespace} --address ${address})`,
    );
  }
}

export interface RunStart {
  /** Prefix of every line, e.g. "webhook-backfill". */
  label: string;
  workflowType: string;
  workflowId: string;
  args: unknown[];
  taskQueue: string;
  /** Summary, details and search attributes for the Temporal UI (see shared/run-metadata). */
  metadata?: RunMetadata;
  /** The operator's flags by input field: attaching to a run started with other values says which it keeps. */
  optionFlags?: OptionFlags;
}

/**
 * Starts a run, or attaches to it when the same workflow id is already running (one run per id), says
 * which on stderr, and warns when no worker polls its task queue.
 */
export async function startOrAttachRun(
  client: Client,
  namespace: string,
  run: RunStart,
  out: Output,
): Promise<{ handle: WorkflowHandle; attached: boolean }> {
  const attached = await client.workflow
    .getHandle(run.workflowId)
    .describe()
    .then((d) => d.status.name === 'RUNNING')
    .catch(() => false);
  const start = (withAttributes: boolean) =>
    client.workflow.start(run.workflowType, {
      taskQueue: run.taskQueue,
      workflowId: run.workflowId,
      args: run.args,
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: run.metadata?.staticSummary,
      staticDetails: run.metadata?.staticDetails,
      typedSearchAttributes: withAttributes ? run.metadata?.typedSearchAttributes : undefined,
    });
  let handle: WorkflowHandle;
  try {
    handle = await start(Boolean(run.metadata?.typedSearchAttributes.length));
  } catch (err) {
    // A namespace without the project's search attributes refuses a start that sets them. The run works without
    // them (its workflow sets only those it started with), so start it anyway and say how to register them.
    if (!run.metadata || !isMissingSearchAttribute(err)) throw err;
    out.err(`[${run.label}] ${missingSearchAttributesWarning(namespace)}`);
    handle = await start(false);
  }
  out.err(`[${run.label}] ${attached ? 'attached to running' : 'started'} ${run.workflowId}`);
  if (attached && run.optionFlags) await warnOfKeptOptions(client, namespace, run, out);
  await warnIfNoWorker(client, namespace, run.taskQueue, run.label, out);
  return { handle, attached };
}

async function warnOfKeptOptions(client: Client, namespace: string, run: RunStart, out: Output): Promise<void> {
  const running = await runningInput(client, namespace, run.workflowId);
  const asked = run.args[0];
  if (!running || !asked || typeof asked !== 'object') return;
  const kept = optionsKeptByRun(running, asked as Record<string, unknown>, run.optionFlags!);
  if (kept.length > 0) {
    out.err(`[${run.label}] the run keeps the options it was started with: ${kept.join(', ')}; to change them, cancel it and start again`);
  }
}

export async function startOrAttach(client: Client, namespace: string, run: RunStart, out: Output): Promise<WorkflowHandle> {
  return (await startOrAttachRun(client, namespace, run, out)).handle;
}

/** What a backfill's or replay's `progress` query answers, as far as following it goes. */
export interface FollowableProgress<Counters> {
  processed: number;
  /** Absent from workers that predate checkpoints. */
  checkpointEvery?: number;
  checkpoints?: Counters[];
  oldestCheckpoint?: number | null;
}

/** How a kind of run is shown: its lines, its bar, its summary. */
export interface RunView<Counters extends { processed: number }, Progress extends Counters & FollowableProgress<Counters>, Summary extends Counters> {
  label: string;
  itemName: 'lines' | 'rows';
  formatCounters(c: Counters): string;
  barPosition(p: Progress): BarPosition;
  finalBarPosition(summary: Summary, last: Progress | undefined): BarPosition;
  printSummary(summary: Summary, workflowId: string, out: Output): void;
  /** With --json, the summary of a run that did not complete: its counters as far as known, how it ended and why. */
  printEnding(ending: RunEnding, last: Progress | undefined, workflowId: string, out: Output): void;
}

/** Where a client starts printing: every checkpoint (it started the run), or from where the run stands now. */
export type FollowFrom = 'beginning' | 'now';

/**
 * Prints a run's checkpoint lines in order, each once, through its `progress` query: it asks for the
 * checkpoints past the last one it printed, and again at once while pages come back full. A client that
 * attaches late starts where the run stands and says so; one that fell further behind than the run's window
 * says which lines it could not print. With `progressEvery` coarser than the run's step it prints the first
 * checkpoint at or past each multiple of it.
 */
export class CheckpointFollower<Counters extends { processed: number }, Progress extends Counters & FollowableProgress<Counters>> {
  latest: Progress | undefined;
  /** Processed count of the last checkpoint taken from the run (printed or skipped); undefined until placed. */
  private after: number | undefined;
  private lastPrinted = 0;
  private stepNoticed = false;

  constructor(
    private readonly handle: WorkflowHandle,
    private readonly label: string,
    private readonly format: (c: Counters) => string,
    private readonly out: Output,
    private readonly opts: { from: FollowFrom; progressEvery?: number; print: boolean },
  ) {
    if (opts.from === 'beginning') this.after = 0;
  }

  /** One look at the run, printing what was committed since the last look. Throws what the query throws. */
  async poll(): Promise<Progress> {
    for (;;) {
      const args: ProgressQueryArgs = this.opts.print && this.after !== undefined ? { after: this.after } : {};
      const progress = await this.handle.query<Progress, [ProgressQueryArgs]>('progress', args);
      this.latest = progress;
      if (!this.opts.print) return progress;
      if (this.after === undefined) {
        this.placeAt(progress);
        return progress;
      }
      if (!progress.checkpoints || !progress.checkpointEvery) {
        this.printCrossing(progress);
        return progress;
      }
      this.printCheckpoints(progress.checkpoints, progress.checkpointEvery);
      if (progress.checkpoints.length < PROGRESS_LIMITS.page) return progress;
    }
  }

  private placeAt(progress: Progress): void {
    const step = progress.checkpointEvery ?? 1;
    this.after = Math.floor(progress.processed / step) * step;
    this.lastPrinted = this.after;
    this.out.err(`[${this.label}] attached at processed=${progress.processed}: progress lines from here on`);
  }

  private printCheckpoints(checkpoints: Counters[], step: number): void {
    const every = this.opts.progressEvery ?? step;
    if (every % step !== 0 && !this.stepNoticed) {
      this.stepNoticed = true;
      this.out.err(
        `[${this.label}] this run records progress every ${step} (set when it started): ` +
          `each line is the first of those at or past a multiple of ${every}`,
      );
    }
    const first = checkpoints[0];
    if (first && first.processed > this.after! + step) {
      this.out.err(
        `[${this.label}] the progress lines from processed=${this.after! + step} to ${first.processed - step} are no longer ` +
          `held by the run (it keeps the newest ${PROGRESS_LIMITS.window}); going on from processed=${first.processed}`,
      );
    }
    for (const checkpoint of checkpoints) {
      if (Math.floor(checkpoint.processed / every) > Math.floor(this.lastPrinted / every)) {
        this.out.log(`[${this.label}] progress ${this.format(checkpoint)}`);
        this.lastPrinted = checkpoint.processed;
      }
      this.after = checkpoint.processed;
    }
  }

  /** A worker from before checkpoints: a line whenever the committed counters cross a multiple, as it was. */
  private printCrossing(progress: Progress): void {
    const every = this.opts.progressEvery ?? 1;
    if (Math.floor(progress.processed / every) > Math.floor(this.lastPrinted / every)) {
      this.out.log(`[${this.label}] progress ${this.format(progress)}`);
      this.lastPrinted = progress.processed;
    }
  }
}

/** The commands to watch, cancel (and approve) a run, one a line. */
export function runCommands(label: string, workflowId: string, namespace: string, opts: { approve?: boolean } = {}): string[] {
  const id = shellWord(workflowId);
  const ns = namespace === 'default' ? '' : ` --namespace ${shellWord(namespace)}`;
  return [
    `[${label}] watch it:   gotong-worker watch ${id}`,
    `[${label}] cancel it:  temporal workflow cancel --workflow-id ${id}${ns}`,
    ...(opts.approve ? [`[${label}] approve a gate: gotong-worker approve ${id} (or reject it: gotong-worker reject ${id})`] : []),
  ];
}

/**
 * Resolves on the first SIGINT (Ctrl-C) while installed; the handler removes itself then, so a second
 * Ctrl-C ends the process the ordinary way if closing takes too long.
 */
export interface Interruption {
  fired: Promise<void>;
  dispose(): void;
}

export function interruption(): Interruption {
  let fire!: () => void;
  const fired = new Promise<void>((resolve) => (fire = resolve));
  const handler = () => {
    process.removeListener('SIGINT', handler);
    fire();
  };
  process.on('SIGINT', handler);
  return { fired, dispose: () => process.removeListener('SIGINT', handler) };
}

/** Says on stderr that the client detached and the run goes on, with the commands for it, and ends the command (exit 130). */
export function detach(label: string, workflowId: string, namespace: string, out: Output, opts: { approve?: boolean } = {}): never {
  out.err(`[${label}] detached from ${workflowId}: the run goes on (it was not cancelled)`);
  for (const line of runCommands(label, workflowId, namespace, opts)) out.err(line);
  throw new Detached();
}

/** Bounds one query, so a run whose worker is gone cannot hold the client in a query forever. */
function withinSeconds<T>(handle: WorkflowHandle, seconds: number, fn: () => Promise<T>): Promise<T> {
  return handle.client.connection.withDeadline(Date.now() + seconds * 1000, fn);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const settledOf = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    () => undefined,
  );

export interface FollowOptions {
  from: FollowFrom;
  /** The Temporal server's address, named when it cannot be reached. */
  address: string;
  /** Installed by the caller when Ctrl-C must detach from an earlier point (while the run starts). */
  interrupt?: Interruption;
  /** Print at multiples of this; default: at the run's own checkpoint step. */
  progressEvery?: number;
  /** A terminal progress bar instead of lines. */
  bar: boolean;
  namespace: string;
  pollMs?: number;
  /** Quiet this long, the command says why the run is not moving; default: GOTONG_STALL_NOTICE_S. */
  stallNoticeMs?: number;
}

/** How often a command waiting through an outage says it still is, so a quiet terminal does not read as a hang. */
const OUTAGE_REMINDER_MS = 60_000;

/**
 * Says on stderr that the Temporal server cannot be reached and the command keeps trying (again every minute
 * while that lasts), and when it answers again. An outage says nothing about the run (it goes on, or waits, on
 * the server's side), so the command waits it out, up to OUTAGE_GIVE_UP_MS, or until the operator presses Ctrl-C.
 */
export class OutageNotice {
  private since: number | undefined;
  private saidAt = 0;

  constructor(
    private readonly label: string,
    private readonly address: string,
    private readonly out: Output,
  ) {}

  lost(err: unknown): void {
    const now = Date.now();
    if (this.since === undefined) {
      this.since = this.saidAt = now;
      this.out.err(
        `[${this.label}] Temporal at ${this.address} is unreachable (${whyUnreachable(err)}); this command keeps ` +
          'trying and goes on printing once it answers. The run is not affected: Ctrl-C stops watching and leaves it going',
      );
    } else if (now - this.saidAt >= OUTAGE_REMINDER_MS) {
      this.saidAt = now;
      this.out.err(`[${this.label}] Temporal at ${this.address} still unreachable after ${secondsSince(this.since)}s; still trying (Ctrl-C leaves the run going)`);
    }
  }

  /** How long the server has been unreachable without a break, in ms; 0 while it answers. */
  get outageMs(): number {
    return this.since === undefined ? 0 : Date.now() - this.since;
  }

  regained(): void {
    if (this.since === undefined) return;
    this.out.err(`[${this.label}] Temporal at ${this.address} answers again (unreachable for about ${secondsSince(this.since)}s); following the run`);
    this.since = undefined;
  }
}

const secondsSince = (ms: number) => Math.round((Date.now() - ms) / 1000);

/** The SDK retries a refused connection until the call's deadline, so most outages surface as that deadline. */
function whyUnreachable(err: unknown): string {
  return isDeadlineExceeded(err) ? `no answer within ${PROBE_SECONDS}s` : failureReason(err).split('\n')[0]!;
}

const PROBE_SECONDS = 5;

/** Why the server does not answer at all, or null when it does: a failed query may only mean that no worker answered it. */
export async function unreachableServer(client: WorkflowHandle['client']): Promise<unknown> {
  try {
    await client.connection.withDeadline(Date.now() + PROBE_SECONDS * 1000, () => client.workflowService.getSystemInfo({}));
    return null;
  } catch (err) {
    return err;
  }
}

/** Pause between two waits for the result while the server is unreachable; each wait already retries for tens of seconds. */
const RESULT_RETRY_MS = 1_000;

/**
 * A command stops waiting after this long without an answer: an operator at a terminal has long since pressed Ctrl-C,
 * and a command in a script or a CI job must end some time (exit 1) rather than hang on a server that is gone.
 */
export const OUTAGE_GIVE_UP_MS = 30 * 60_000;

/** The command stopped waiting through an outage; the run itself is not affected. */
export class StoppedWatching extends RunError {}

/**
 * A run's result, waited for through outages: the SDK gives up a wait after its own retries, which ends no run, so
 * only the run's own ending, another error, or an outage longer than OUTAGE_GIVE_UP_MS (StoppedWatching) settles this.
 */
export async function resultThroughOutages<Summary>(handle: WorkflowHandle, notice: OutageNotice, stopped: () => boolean): Promise<Summary> {
  for (;;) {
    try {
      const summary = (await handle.result()) as Summary;
      notice.regained();
      return summary;
    } catch (err) {
      if (stopped() || !isTemporalUnreachable(err)) throw err;
      notice.lost(err);
      if (notice.outageMs >= OUTAGE_GIVE_UP_MS) {
        throw new StoppedWatching(
          `${handle.workflowId}: stopped watching after Temporal was unreachable for ${Math.round(notice.outageMs / 60_000)} min; ` +
            `the run is not affected: follow it again with 'gotong-worker watch ${handle.workflowId}' once the server answers`,
        );
      }
      await sleep(RESULT_RETRY_MS);
    }
  }
}

/**
 * Follows a run until it closes: its checkpoint lines (or a bar on a terminal) while it runs, then the
 * last checkpoints it committed (a query on a closed run is answered by a worker replaying it), and
 * returns its result. An unreachable server is waited out, said on stderr. Ctrl-C detaches: the run goes
 * on, the command says how to watch or cancel it.
 */
export async function followRun<Counters extends { processed: number }, Progress extends Counters & FollowableProgress<Counters>, Summary extends Counters>(
  handle: WorkflowHandle,
  workflowId: string,
  view: RunView<Counters, Progress, Summary>,
  out: Output,
  opts: FollowOptions,
): Promise<Summary> {
  const follower = new CheckpointFollower<Counters, Progress>(handle, view.label, (c) => view.formatCounters(c), out, {
    from: opts.from,
    progressEvery: opts.progressEvery,
    print: !opts.bar,
  });
  const bar = opts.bar ? new RunBar(view.label, view.itemName) : null;
  // Said while the bar may be drawn: on a line of their own.
  const noticeOut = bar ? bar.around(out) : out;
  const notice = new OutageNotice(view.label, opts.address, noticeOut);
  const interrupt = opts.interrupt ?? interruption();
  let stopped = false;
  const result = resultThroughOutages<Summary>(handle, notice, () => stopped);
  const stall = new StallNotice(view.label, handle, noticeOut, opts.stallNoticeMs ?? stallNoticeMsFrom());
  const look = async () => {
    const progress = await withinSeconds(handle, 10, () => follower.poll());
    notice.regained();
    bar?.update(view.barPosition(progress));
    return progress;
  };
  const poller = (async () => {
    while (!stopped) {
      // No worker yet, the run between continue-as-new runs, or the server down: the next tick tries again.
      const progress = await look().catch(async () => {
        const unreachable = await unreachableServer(handle.client);
        if (unreachable) notice.lost(unreachable);
        return unreachable ? null : undefined;
      });
      if (progress === null) stall.outage();
      else if (!stopped) await stall.observe(progress);
      await Promise.race([sleep(opts.pollMs ?? 300), settledOf(result), interrupt.fired]);
    }
  })();

  type Outcome = { kind: 'done'; summary: Summary } | { kind: 'failed'; err: unknown } | { kind: 'detached' };
  const outcome = await Promise.race<Outcome>([
    result.then(
      (summary) => ({ kind: 'done', summary }),
      (err: unknown) => ({ kind: 'failed', err }),
    ),
    interrupt.fired.then(() => ({ kind: 'detached' })),
  ]);
  stopped = true;
  stall.close();
  interrupt.dispose();
  if (outcome.kind === 'detached') {
    bar?.stop();
    detach(view.label, workflowId, opts.namespace, out);
  }
  await poller;
  if (!bar) {
    // The checkpoints its last batches committed after the previous look.
    await look().catch((err: unknown) => {
      if (outcome.kind === 'done') out.err(`[${view.label}] could not read the last progress lines: ${(err as Error).message}`);
    });
  }
  if (outcome.kind === 'failed') {
    bar?.stop();
    if (outcome.err instanceof StoppedWatching) {
      view.printEnding({ status: 'unknown', reason: outcome.err.message }, follower.latest, workflowId, out);
      throw new RunError(`[${view.label}] ${outcome.err.message}`);
    }
    const ending = runEnding(outcome.err);
    view.printEnding(ending, follower.latest, workflowId, out);
    const counters = follower.latest ? ` ${view.formatCounters(follower.latest)}` : '';
    throw new RunError(`[${view.label}] ${workflowId} did not finish: ${printable(ending.reason)}${counters}`);
  }
  bar?.finish(view.finalBarPosition(outcome.summary, follower.latest));
  return outcome.summary;
}

export interface AttachedRun<Counters extends { processed: number }, Progress extends Counters & FollowableProgress<Counters>, Summary extends Counters>
  extends RunStart {
  view: RunView<Counters, Progress, Summary>;
  /** The step the run records checkpoints at (after coarsening), so lines come at exactly those. */
  progressEvery: number;
  /** Start (or attach), print the id and the commands, and return at once. */
  detach: boolean;
  json: boolean;
  /** Plain lines even on a terminal. */
  plain: boolean;
  pollMs?: number;
}

/**
 * Starts a run, or attaches to it when the same workflow id is already running, then follows it and
 * prints its summary; with `detach`, prints its id and how to watch or cancel it instead. Every operator
 * command that starts a backfill or replay goes through here.
 */
export async function startAndWatch<Counters extends { processed: number }, Progress extends Counters & FollowableProgress<Counters>, Summary extends Counters>(
  run: AttachedRun<Counters, Progress, Summary>,
  out: Output,
): Promise<Summary | null> {
  // A bad GOTONG_STALL_NOTICE_S is a usage error before the run starts, not after.
  stallNoticeMsFrom();
  const { client, connection, target } = await connectClient();
  // From here Ctrl-C detaches, not kills: once the start request is sent, the run may exist either way.
  const interrupt = run.detach ? null : interruption();
  try {
    const { handle, attached } = await startOrAttachRun(client, target.namespace, run, out);
    if (run.detach) {
      printDetached(run.label, run.workflowId, target.namespace, attached, run.json, out);
      return null;
    }
    const summary = await followRun(handle, run.workflowId, run.view, out, {
      interrupt: interrupt ?? undefined,
      from: attached ? 'now' : 'beginning',
      progressEvery: run.progressEvery,
      bar: wantsBar(run.plain),
      namespace: target.namespace,
      address: target.address,
      pollMs: run.pollMs,
    });
    run.view.printSummary(summary, run.workflowId, out);
    return summary;
  } finally {
    interrupt?.dispose();
    await connection.close();
  }
}

/** --detach for a command whose run has no attached view here (the runbook): start or attach, print, return. */
export async function startDetached(run: RunStart & { namespace?: string }, out: Output, opts: { json: boolean; approve?: boolean }): Promise<void> {
  const { client, connection, target } = await connectClient(run.namespace);
  try {
    const { attached } = await startOrAttachRun(client, target.namespace, run, out);
    printDetached(run.label, run.workflowId, target.namespace, attached, opts.json, out, { approve: opts.approve });
  } finally {
    await connection.close();
  }
}

/** --detach: the id on stdout (a JSON object with --json) for scripts, the commands on stderr for people. */
export function printDetached(label: string, workflowId: string, namespace: string, attached: boolean, json: boolean, out: Output, opts: { approve?: boolean } = {}): void {
  out.log(json ? JSON.stringify({ workflow_id: workflowId, detached: true, attached }) : workflowId);
  out.err(`[${label}] detached: ${workflowId} runs without this command`);
  for (const line of runCommands(label, workflowId, namespace, opts)) out.err(line);
}

/**
 * Prints the checkpoint lines of a backfill or replay run, in the runbook's shape, until that run closes
 * (then its last checkpoints) or `signal` aborts. For the runbook command, which shows its running child's
 * progress: call it with the child's handle (`runbookHandle.client.getHandle(step.workflowId)`) when a
 * step's child starts, and await it before printing the step's outcome so the child's lines come first.
 * `from: 'now'` when the command attached to the runbook mid-step.
 */
export async function printChildProgress(
  handle: WorkflowHandle,
  kind: 'backfill' | 'replay',
  out: Output,
  opts: { progressEvery?: number; from?: FollowFrom; pollMs?: number; signal?: AbortSignal; stallNoticeMs?: number } = {},
): Promise<void> {
  const label = kind === 'backfill' ? 'webhook-backfill' : 'webhook-replay-dlq';
  const stall = new StallNotice(label, handle, out, opts.stallNoticeMs ?? stallNoticeMsFrom());
  const format = (c: BackfillCounters | ReplayCounters) =>
    kind === 'backfill' ? formatCounters(c as BackfillCounters) : formatReplayCounters(c as ReplayCounters);
  const follower = new CheckpointFollower<BackfillCounters | ReplayCounters, (BackfillCounters | ReplayCounters) & FollowableProgress<BackfillCounters | ReplayCounters>>(
    handle,
    label,
    format,
    out,
    { from: opts.from ?? 'beginning', progressEvery: opts.progressEvery, print: true },
  );
  let closed = false;
  // An outage is not the child closing: its lines would stop for the rest of the step.
  const untilClosed = async () => {
    for (;;) {
      try {
        await handle.result();
        return;
      } catch (err) {
        if (opts.signal?.aborted || !isTemporalUnreachable(err)) return;
        await sleep(RESULT_RETRY_MS);
      }
    }
  };
  const result = untilClosed().then(() => (closed = true));
  const aborted = new Promise<void>((resolve) => {
    if (opts.signal?.aborted) resolve();
    opts.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  while (!closed && !opts.signal?.aborted) {
    const progress = await withinSeconds(handle, 10, () => follower.poll()).catch(async () => ((await unreachableServer(handle.client)) ? null : undefined));
    // A runbook step's backfill retrying through a database restart would otherwise leave the runbook command silent.
    if (progress === null) stall.outage();
    else if (!closed && !opts.signal?.aborted) await stall.observe(progress);
    await Promise.race([sleep(opts.pollMs ?? 300), result, aborted]);
  }
  stall.close();
  if (closed) await withinSeconds(handle, 10, () => follower.poll()).catch(() => undefined);
}

async function warnIfNoWorker(client: Client, namespace: string, taskQueue: string, label: string, out: Output): Promise<void> {
  try {
    const response = await client.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: taskQueue },
      taskQueueType: 1, // workflow task queue
    });
    if ((response.pollers ?? []).length === 0) {
      out.err(
        `[${label}] warning: no worker is polling task queue '${taskQueue}'; ` +
          "the run waits until one starts ('gotong-worker worker')",
      );
    }
  } catch {
    // Only a hint; never fail the command over it.
  }
}
