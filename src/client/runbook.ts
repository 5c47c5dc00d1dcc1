import { createHash, randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import {
  ApplicationFailure,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowClient,
  type WorkflowHandle,
} from '@temporalio/client';
import { BACKFILL_LIMITS } from '../shared/backfill';
import { dispatcherWorkflowId } from '../shared/delivery';
import { redactedCommand, runbookMetadata } from '../shared/run-metadata';
import {
  RUNBOOK_DEFAULTS,
  RUNBOOK_STEPS,
  type EarlierRun,
  type GateAnswer,
  type GateDecision,
  type RunbookInput,
  type RunbookProcedure,
  type RunbookProgress,
  type RunbookReport,
  type RunbookStep,
} from '../shared/runbook';
import { formatCounters, resolveBackfillFile } from './backfill';
import { Detached, RunError, UsageError, type Output } from './errors';
import { jsonLine } from './json';
import { runEnding, type RunEnding } from './run-ending';
import { formatReplayCounters } from './replay';
import { stallNoticeMsFrom } from './stall';
import { printable } from './text';
import { connectClient, detach, type FollowFrom, interruption, OutageNotice, printChildProgress, resultThroughOutages, startOrAttachRun, StoppedWatching, unreachableServer } from './watch';
import type { OptionFlags } from './attach';

export interface RunbookCommandOptions {
  file: string;
  replayLimit: number;
  approval: string;
  maxFailedRatio: string;
  baseline?: number;
  verifyTimeout: string;
  confirmTimeout: string;
  verifyMaxBacklog: number;
  minSuccessRate: string;
  pollInterval: string;
  progressEvery: number;
  batchSize: number;
  maxAttempts: number;
  json: boolean;
  taskQueue: string;
  /** Overrides TEMPORAL_NAMESPACE (the demo runs in its own). */
  namespace?: string;
}

const LABEL = '[webhook-runbook]';

/** "90s", "30m", "2h", "500ms": a unit is required, so "30" cannot silently mean seconds or minutes. */
export function parseDuration(flag: string, value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value.trim());
  if (!match) throw new UsageError(`${flag} ${value}: use a duration such as 90s, 30m or 2h`);
  const ms = Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'ms' | 's' | 'm' | 'h'];
  if (ms < 1 || !Number.isSafeInteger(Math.round(ms))) throw new UsageError(`${flag} ${value}: must be at least 1ms`);
  return Math.round(ms);
}

/** "0.01" or "1%". */
export function parseRatio(flag: string, value: string): number {
  const text = value.trim();
  const ratio = text.endsWith('%') ? Number(text.slice(0, -1)) / 100 : Number(text);
  if (text === '' || text === '%' || !Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    throw new UsageError(`${flag} ${value}: use a share between 0 and 1, e.g. 0.01 or 1%`);
  }
  // A bare 1 reads as "1%" as easily as "all": for --max-failed-ratio the second turns the gate off.
  if (ratio === 1 && !text.endsWith('%')) {
    throw new UsageError(`${flag} ${value}: ambiguous; write 100% for all, or 1% (0.01) for one in a hundred`);
  }
  return ratio;
}

/** The runbook's own flags by input field: attaching to a runbook started with other values says which it keeps. */
export const RUNBOOK_OPTION_FLAGS: OptionFlags = {
  maxAttempts: '--max-attempts',
  batchSize: '--batch-size',
  replayLimit: '--replay-limit',
  approval: '--approval',
  maxFailedRatio: '--max-failed-ratio',
  baseline: '--baseline',
  verifyTimeoutMs: '--verify-timeout',
  verifyMaxBacklog: '--verify-max-backlog',
  verifyMinSuccessRate: '--min-success-rate',
  confirmTimeoutMs: '--confirm-timeout',
  pollMs: '--poll-interval',
};

/** Checks every flag before anything starts. */
export function runbookInputFrom(opts: RunbookCommandOptions, path: string, workflowId: string): RunbookInput {
  if (opts.approval !== 'auto' && opts.approval !== 'manual') {
    throw new UsageError(`--approval ${opts.approval}: use auto or manual`);
  }
  if (opts.batchSize > BACKFILL_LIMITS.maxBatchSize) throw new UsageError(`--batch-size must be at most ${BACKFILL_LIMITS.maxBatchSize}`);
  return {
    runKey: `${workflowId}@${randomUUID()}`,
    path,
    maxAttempts: opts.maxAttempts,
    batchSize: opts.batchSize,
    replayLimit: opts.replayLimit,
    replayBatchSize: 20_000,
    approval: opts.approval,
    maxFailedRatio: parseRatio('--max-failed-ratio', opts.maxFailedRatio),
    baseline: opts.baseline,
    verifyTimeoutMs: parseDuration('--verify-timeout', opts.verifyTimeout),
    verifyMaxBacklog: opts.verifyMaxBacklog,
    verifyMinSuccessRate: parseRatio('--min-success-rate', opts.minSuccessRate),
    confirmTimeoutMs: parseDuration('--confirm-timeout', opts.confirmTimeout),
    pollMs: parseDuration('--poll-interval', opts.pollInterval),
    progressEvery: opts.progressEvery,
    pollsPerRun: RUNBOOK_DEFAULTS.pollsPerRun,
  };
}

/** One runbook per file: starting it again while it runs attaches to it. */
export function runbookWorkflowId(absPath: string): string {
  const name = basename(absPath).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 60);
  const hash = createHash('sha256').update(absPath).digest('hex').slice(0, 10);
  return `webhook-runbook/${name}-${hash}`;
}

/** The Web UI page of a run: TEMPORAL_UI_URL, or a local dev server's UI (gRPC port + 1000). */
export function temporalUiUrl(address: string, namespace: string, workflowId?: string): string | null {
  const [host, port] = address.split(':');
  const base =
    process.env.TEMPORAL_UI_URL?.replace(/\/$/, '') ??
    (['localhost', '127.0.0.1'].includes(host ?? '') ? `http://${host}:${Number(port ?? 7233) + 1000}` : null);
  if (!base) return null;
  return `${base}/namespaces/${encodeURIComponent(namespace)}/workflows${workflowId ? `/${encodeURIComponent(workflowId)}` : ''}`;
}

const percent = (ratio: number | null | undefined) => (ratio === null || ratio === undefined ? 'n/a' : `${(ratio * 100).toFixed(2)}%`);

/** The figures part of a step line. */
function stepFigures(s: RunbookStep): string {
  const parts: string[] = [];
  if (s.backfill) parts.push(formatCounters(s.backfill));
  if (s.gate?.failedRatio !== undefined) parts.push(`failed_ratio=${percent(s.gate.failedRatio)} (max ${percent(s.gate.maxFailedRatio)})`);
  if (s.replay) parts.push(formatReplayCounters(s.replay));
  if (s.verify) {
    const v = s.verify;
    parts.push(`created=${v.created} delivered=${v.delivered} dead_lettered=${v.deadLettered} waiting=${v.waiting} success_rate=${percent(v.successRate)}`);
  }
  if (s.confirm) parts.push(`dead_letter=${s.confirm.deadLetters} baseline=${s.confirm.baseline} replayed_waiting=${s.confirm.replayWaiting}`);
  if (s.gate?.approvedBy === 'operator') parts.push(`approved by an operator${s.gate.reason ? ` (${printable(s.gate.reason)})` : ''}`);
  return parts.join(' ');
}

export function formatStepLine(s: RunbookStep, workflowId: string): string {
  const head = `${LABEL} step ${s.number}/${RUNBOOK_STEPS.length} ${s.name}: ${s.status}`;
  switch (s.status) {
    case 'running':
      return `${head}${s.workflowId ? ` (${s.workflowId})` : ''}`;
    case 'awaiting-approval':
      return `${head} ${stepFigures(s)}; continue with: gotong-worker approve '${workflowId}' --step ${s.number} (or: gotong-worker reject '${workflowId}' --step ${s.number})`;
    case 'failed':
    case 'rejected':
    case 'cancelled':
    case 'skipped':
      return `${head}: ${printable(s.message ?? '')}`;
    default:
      return `${head} ${stepFigures(s)}${s.message ? `; ${printable(s.message)}` : ''}`.trimEnd();
  }
}

function earlierRunText(e: EarlierRun): string {
  const how =
    e.outcome === 'unfinished'
      ? 'it ended without a report (terminated?)'
      : e.stoppedAt !== null
        ? `${e.outcome} at step ${e.stoppedAt}`
        : e.outcome;
  return `the run ${e.runKey} (${how}; started ${e.startedAt})`;
}

/** The lines that say where the procedure stands before step 1: which run this continues, and the baseline. */
export function procedureLines(p: RunbookProcedure): string[] {
  const lines: string[] = [];
  if (p.continues) lines.push(`${LABEL} continues ${earlierRunText(p.continues)}: its backfill resumes, step 3 judges every event it created`);
  const from = { measured: '', option: ' (--baseline)', 'earlier-run': ' (carried from the run it continues)' }[p.baselineFrom];
  lines.push(`${LABEL} baseline dead_letter=${p.baseline}${from}`);
  return lines;
}

/**
 * The --json object of a run that ended without a report, in the report's own fields: `outcome` is how it ended
 * (`failed`, `cancelled`, `terminated`, `timed_out`, or `unknown` when the command stopped watching), `stopped_at`
 * the step it was at when last seen.
 */
export function endingJson(workflowId: string, ending: RunEnding, last: RunbookProgress | undefined): string {
  return jsonLine({
    workflow_id: workflowId,
    run_key: last?.runKey ?? null,
    outcome: ending.status === 'canceled' ? 'cancelled' : ending.status,
    stopped_at: last?.currentStep ?? null,
    reason: ending.reason,
  });
}

/** The final report as one JSON object, snake_case throughout (the breakdowns keep event types and codes as keys). */
export function reportJson(workflowId: string, r: RunbookReport): string {
  const continues = r.procedure?.continues;
  return JSON.stringify({
    workflow_id: workflowId,
    run_key: r.runKey,
    outcome: r.outcome,
    stopped_at: r.stoppedAt,
    reason: r.reason,
    baseline: r.baseline,
    baseline_from: r.procedure?.baselineFrom ?? null,
    procedure_key: r.procedure?.key ?? null,
    continues: continues
      ? {
          run_key: continues.runKey,
          workflow_id: continues.workflowId,
          run_id: continues.runId,
          outcome: continues.outcome,
          stopped_at: continues.stoppedAt,
          reason: continues.reason,
          started_at: continues.startedAt,
        }
      : null,
    steps: r.steps.map((s) => ({
      number: s.number,
      name: s.name,
      status: s.status,
      workflow_id: s.workflowId ?? null,
      run_key: s.runKey ?? null,
      ...(s.backfill
        ? {
            processed: s.backfill.processed,
            created: s.backfill.created,
            enqueued: s.backfill.enqueued,
            duplicates: s.backfill.duplicates,
            failed: s.backfill.failed,
            dry_run: s.backfill.dryRun,
          }
        : {}),
      ...(s.replay
        ? {
            processed: s.replay.processed,
            replayed: s.replay.replayed,
            enqueued: s.replay.enqueued,
            skipped: s.replay.skipped,
            failed: s.replay.failed,
            dry_run: s.replay.dryRun,
          }
        : {}),
      ...(s.replay?.preview ? { by_event_type: s.replay.preview.byEventType, by_status_code: s.replay.preview.byStatusCode } : {}),
      ...(s.verify
        ? {
            created: s.verify.created,
            waiting: s.verify.waiting,
            delivered: s.verify.delivered,
            dead_lettered: s.verify.deadLettered,
            success_rate: s.verify.successRate,
          }
        : {}),
      ...(s.confirm ? { dead_letter: s.confirm.deadLetters, replayed_waiting: s.confirm.replayWaiting } : {}),
      ...(s.gate?.failedRatio !== undefined ? { failed_ratio: s.gate.failedRatio, max_failed_ratio: s.gate.maxFailedRatio ?? null } : {}),
      ...(s.gate?.approvedBy ? { approved_by: s.gate.approvedBy } : {}),
      ...(s.gate?.decidedVia ? { decided_via: s.gate.decidedVia, decision_reason: s.gate.reason ?? null } : {}),
      message: s.message ?? null,
    })),
  });
}

/**
 * Prints each step transition once and, for a step with a child run, the child's own progress lines
 * (read through the child's `progress` query) between the step's start line and its outcome line.
 */
class RunbookPrinter {
  private readonly printed = new Map<number, string>();
  private readonly children = new Map<number, Promise<void>>();
  private readonly stopChildren = new AbortController();
  private procedurePrinted = false;
  private firstLook = true;

  constructor(
    private readonly handle: WorkflowHandle,
    private readonly progressEvery: number,
    private readonly out: Output,
    /** 'now' when the command attached to a run already under way: lines of steps done before are not repeated. */
    private readonly from: FollowFrom,
  ) {}

  async show(p: Pick<RunbookProgress, 'steps' | 'procedure'>): Promise<void> {
    if (!this.procedurePrinted && p.procedure) {
      this.procedurePrinted = true;
      for (const line of procedureLines(p.procedure)) this.out.log(line);
    }
    const attachedNow = this.firstLook && this.from === 'now';
    this.firstLook = false;
    for (const s of p.steps) {
      const shown = s.waitingFor ? `${s.status}:${s.waitingFor}` : s.status;
      if (s.status === 'pending' || this.printed.get(s.number) === shown) continue;
      const seenBefore = this.printed.has(s.number);
      // A finished step whose start was not seen still gets its start line first.
      if (!seenBefore && s.status !== 'running' && s.workflowId) {
        this.out.log(formatStepLine({ ...s, status: 'running' }, this.handle.workflowId));
      }
      if (!seenBefore && s.workflowId && !(attachedNow && s.status !== 'running')) {
        this.followChild(s.number, s.workflowId, attachedNow ? 'now' : 'beginning');
      }
      // The child's last lines come before the step's outcome.
      if (s.status !== 'running') await this.children.get(s.number);
      this.printed.set(s.number, shown);
      this.out.log(
        s.waitingFor
          ? `${LABEL} step ${s.number}/${RUNBOOK_STEPS.length} ${s.name}: waiting for ${s.waitingFor}, left running by an earlier run of this runbook, to close`
          : formatStepLine(s, this.handle.workflowId),
      );
    }
  }

  /** Stops following children (the command detached or ends). */
  async close(): Promise<void> {
    this.stopChildren.abort();
    await Promise.all(this.children.values());
  }

  private followChild(step: number, workflowId: string, from: FollowFrom): void {
    const kind = step <= 2 ? 'backfill' : step === 4 || step === 5 ? 'replay' : null;
    if (!kind || this.children.has(step)) return;
    const child = this.handle.client.getHandle(workflowId);
    this.children.set(
      step,
      printChildProgress(child, kind, this.out, { progressEvery: this.progressEvery, from, signal: this.stopChildren.signal }).catch(() => undefined),
    );
  }
}

async function warnIfNoDispatcher(client: Client, out: Output): Promise<void> {
  const running = await client.workflow
    .getHandle(dispatcherWorkflowId(0))
    .describe()
    .then((d) => d.status.name === 'RUNNING')
    .catch(() => false);
  if (!running) {
    out.err(
      `${LABEL} warning: no delivery dispatcher is running (${dispatcherWorkflowId(0)}), so step 3 will wait for deliveries ` +
        "that never happen; start a worker with WEBHOOK_URL and WEBHOOK_SECRET set ('gotong-worker worker')",
    );
  }
}

/** The report a stopped run attached to its failure. */
function stoppedReport(err: unknown): RunbookReport | null {
  if (!(err instanceof WorkflowFailedError) || !(err.cause instanceof ApplicationFailure)) return null;
  const details = err.cause.details as unknown[] | undefined;
  return err.cause.type === 'RunbookStopped' && details?.[0] ? (details[0] as RunbookReport) : null;
}

/**
 * Who ended a child from outside the runbook, from the child's own history (a workflow cannot see it):
 * the terminate request's identity and reason, or the cancel request's identity.
 */
async function whoEndedChild(client: WorkflowClient, workflowId: string): Promise<string | null> {
  try {
    const history = await client.getHandle(workflowId).fetchHistory();
    for (const event of [...(history.events ?? [])].reverse()) {
      const terminated = event.workflowExecutionTerminatedEventAttributes;
      if (terminated) return `terminated by ${terminated.identity || 'an unnamed client'}${terminated.reason ? `: ${terminated.reason}` : ''}`;
      const cancel = event.workflowExecutionCancelRequestedEventAttributes;
      if (cancel) return `cancel requested by ${cancel.identity || 'an unnamed client'}${cancel.cause ? `: ${cancel.cause}` : ''}`;
    }
  } catch {
    // Only a detail for the operator; the report stands without it.
  }
  return null;
}

export interface RunbookHooks {
  /** Called with every progress the command reads; the demo uses it to fix its receiver and approve gates. */
  onProgress?: (progress: RunbookProgress, handle: WorkflowHandle) => Promise<void>;
}

export async function runRunbook(opts: RunbookCommandOptions, out: Output, hooks: RunbookHooks = {}): Promise<RunbookReport> {
  const path = resolveBackfillFile(opts.file);
  const workflowId = runbookWorkflowId(path);
  const input = runbookInputFrom(opts, path, workflowId);

  stallNoticeMsFrom(); // a bad GOTONG_STALL_NOTICE_S is a usage error before the run starts
  const { client, connection, target } = await connectClient(opts.namespace);
  try {
    const { handle, attached } = await startOrAttachRun(
      client,
      target.namespace,
      {
        label: 'webhook-runbook',
        workflowType: 'webhookRecoveryRunbook',
        workflowId,
        args: [input],
        taskQueue: opts.taskQueue,
        metadata: runbookMetadata(input, redactedCommand(process.argv.slice(2))),
        optionFlags: RUNBOOK_OPTION_FLAGS,
      },
      out,
    );
    const ui = temporalUiUrl(target.address, target.namespace, workflowId);
    if (ui) out.err(`${LABEL} Temporal UI: ${ui}`);
    await warnIfNoDispatcher(client, out);
    return await followRunbook(handle, workflowId, target, opts, out, hooks, attached ? 'now' : 'beginning');
  } finally {
    await connection.close();
  }
}

/**
 * Prints a runbook run's step lines and its children's progress until it closes, then its report (the
 * command itself, and `watch`). Ctrl-C detaches: the run goes on and the command says how to watch, cancel
 * or approve it (exit 130).
 */
export async function followRunbook(
  handle: WorkflowHandle,
  workflowId: string,
  server: { namespace: string; address: string },
  opts: Pick<RunbookCommandOptions, 'progressEvery' | 'json'>,
  out: Output,
  hooks: RunbookHooks = {},
  from: FollowFrom = 'now',
): Promise<RunbookReport> {
  const { namespace } = server;
  const printer = new RunbookPrinter(handle, opts.progressEvery, out, from);
  const interrupt = interruption();
  let finished = false;
  const notice = new OutageNotice('webhook-runbook', server.address, out);
  const result = resultThroughOutages<RunbookReport>(handle, notice, () => finished).finally(() => {
    finished = true;
  });
  let latest: RunbookProgress | undefined;
  const poller = (async () => {
    while (!finished) {
      try {
        const progress = await handle.query<RunbookProgress>('progress');
        latest = progress;
        notice.regained();
        await printer.show(progress);
        await hooks.onProgress?.(progress, handle);
      } catch {
        // No worker yet, or the server down (said at once, not only when result() gives up its retries): the next tick tries again.
        const unreachable = await unreachableServer(handle.client);
        if (unreachable && !finished) notice.lost(unreachable);
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  })();

  let report: RunbookReport | undefined;
  // How it ended when it ended without a report of its own (terminated, cancelled, timed out, failed outside a step).
  let ending: RunEnding | undefined;
  try {
    report = await Promise.race([result, interrupt.fired.then(() => detach('webhook-runbook', workflowId, namespace, out, { approve: true }))]);
  } catch (err) {
    if (err instanceof Detached) {
      finished = true;
      await printer.close();
      throw err;
    }
    if (err instanceof StoppedWatching) {
      // The server has not answered for half an hour: a last look would only wait on it too.
      if (opts.json) out.log(endingJson(workflowId, { status: 'unknown', reason: err.message }, latest));
      throw new RunError(`${LABEL} ${printable(err.message)}`);
    }
    report = stoppedReport(err) ?? undefined;
    if (!report) ending = runEnding(err);
  } finally {
    interrupt.dispose();
    finished = true;
  }
  await poller;
  if (report) await printer.show(report);
  await printer.close();
  if (!report) {
    // Scripts reading --json still get one object, after the run's last lines, saying how it ended.
    if (opts.json) out.log(endingJson(workflowId, ending!, latest));
    throw new RunError(`${LABEL} ${workflowId} did not finish: ${printable(ending!.reason)}`);
  }
  const stoppedStep = report.stoppedAt ? report.steps[report.stoppedAt - 1] : undefined;
  if (stoppedStep?.workflowId && (stoppedStep.status === 'cancelled' || / was terminated /.test(stoppedStep.message ?? ''))) {
    const who = await whoEndedChild(handle.client, stoppedStep.workflowId);
    if (who) out.log(`${LABEL} ${stoppedStep.workflowId} was ${who}`);
  }
  if (report.outcome === 'completed') {
    const confirm = report.steps[5]?.confirm;
    out.log(`${LABEL} done outcome=completed baseline=${report.baseline} dead_letter=${confirm?.deadLetters ?? 'n/a'}`);
  } else {
    out.log(`${LABEL} done outcome=stopped stopped_at=${report.stoppedAt}`);
  }
  if (opts.json) out.log(reportJson(workflowId, report));
  if (report.outcome !== 'completed') throw new RunError(`${LABEL} stopped: ${report.reason}`);
  return report;
}

const CLOSED_AS: Record<string, string> = {
  COMPLETED: 'it has completed',
  FAILED: 'it has stopped',
  CANCELLED: 'it was cancelled',
  TERMINATED: 'it was terminated',
  TIMED_OUT: 'it timed out',
};

/**
 * `approve` / `reject`: a Workflow Update, so the run itself answers which gate it decided, or why it
 * refused (not at a gate, another gate named, already decided). Refused: exit 1, nothing changed.
 */
export async function runGateDecision(
  decision: 'approve' | 'reject',
  workflowId: string,
  opts: { step?: number; reason?: string },
  out: Output,
): Promise<void> {
  const label = `[${decision}]`;
  const { client, connection, target } = await connectClient();
  try {
    const handle = client.workflow.getHandle(workflowId);
    let description;
    try {
      description = await handle.describe();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new RunError(`${label} no run ${workflowId} in namespace ${target.namespace}; use the id webhook-runbook printed`);
      throw new RunError(`${label} cannot read ${workflowId}: ${(err as Error).message}`);
    }
    if (description.type !== 'webhookRecoveryRunbook') {
      throw new RunError(`${label} ${workflowId} is a ${description.type} run, not a webhook-runbook run; nothing sent`);
    }
    if (description.status.name !== 'RUNNING') {
      const closed = CLOSED_AS[description.status.name] ?? `it is ${description.status.name.toLowerCase()}`;
      throw new RunError(`${label} refused: the run is not waiting at a gate: ${closed}`);
    }
    if (!(await hasWorker(client, target.namespace, description.taskQueue))) {
      throw new RunError(
        `${label} no worker is polling task queue '${description.taskQueue}', so the run cannot answer; start one ('gotong-worker worker') and try again; nothing sent`,
      );
    }
    // Without --step the decision names the gate the run waits at now, so a late or concurrent decision is
    // refused as "already decided" rather than passing the next gate. Asked with --step too: the query has a worker
    // that does not hold the run replay it before the decision arrives, which runs begun before the
    // `gate-opens-with-a-marker` patch need (see gate() in src/workflows/runbook.ts).
    const waitingAt = await gateWaitingNow(handle);
    const step = opts.step ?? waitingAt;
    let answer: GateAnswer;
    try {
      answer = await handle.executeUpdate<GateAnswer, [GateDecision]>(decision, { args: [{ step, reason: opts.reason }] });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw new RunError(`${label} refused: ${err.cause?.message ?? err.message}`);
      if (err instanceof WorkflowNotFoundError) throw new RunError(`${label} refused: the run closed before it answered`);
      throw new RunError(`${label} ${workflowId}: ${(err as Error).message}`);
    }
    out.log(`${label} ${answer.decision} the gate after step ${answer.step} (${answer.name}) of ${workflowId}`);
  } finally {
    await connection.close();
  }
}

async function gateWaitingNow(handle: WorkflowHandle): Promise<number | undefined> {
  try {
    const progress = await handle.query<RunbookProgress>('progress');
    return progress.phase === 'awaiting-approval' ? (progress.currentStep ?? undefined) : undefined;
  } catch {
    return undefined;
  }
}

async function hasWorker(client: Client, namespace: string, taskQueue: string): Promise<boolean> {
  try {
    const response = await client.workflowService.describeTaskQueue({ namespace, taskQueue: { name: taskQueue }, taskQueueType: 1 });
    return (response.pollers ?? []).length > 0;
  } catch {
    // Cannot tell: let the update try.
    return true;
  }
}
