import { createHash, randomUUID } from 'node:crypto';
import { basename } from 'node:path';
import { ApplicationFailure, WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { BACKFILL_LIMITS, type BackfillCounters } from '../shared/backfill';
import { dispatcherWorkflowId } from '../shared/delivery';
import type { ReplayCounters } from '../shared/replay';
import {
  RUNBOOK_STEPS,
  type GateDecision,
  type RunbookInput,
  type RunbookProgress,
  type RunbookReport,
  type RunbookStep,
} from '../shared/runbook';
import { formatCounters, resolveBackfillFile } from './backfill';
import { Detached, RunError, UsageError, type Output } from './errors';
import { formatReplayCounters } from './replay';
import { connectClient, detach, interruption, startOrAttach } from './watch';

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
  return ratio;
}

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
  if (s.gate?.approvedBy === 'operator') parts.push(`approved by an operator${s.gate.reason ? ` (${s.gate.reason})` : ''}`);
  return parts.join(' ');
}

export function formatStepLine(s: RunbookStep, workflowId: string): string {
  const head = `${LABEL} step ${s.number}/${RUNBOOK_STEPS.length} ${s.name}: ${s.status}`;
  switch (s.status) {
    case 'running':
      return `${head}${s.workflowId ? ` (${s.workflowId})` : ''}`;
    case 'awaiting-approval':
      return `${head} ${stepFigures(s)}; continue with: gotong-worker approve '${workflowId}' (or: gotong-worker reject '${workflowId}')`;
    case 'failed':
    case 'rejected':
    case 'skipped':
      return `${head}: ${s.message ?? ''}`;
    default:
      return `${head} ${stepFigures(s)}`.trimEnd();
  }
}

function reportJson(workflowId: string, r: RunbookReport): string {
  return JSON.stringify({
    workflow_id: workflowId,
    outcome: r.outcome,
    stopped_at: r.stoppedAt,
    reason: r.reason,
    baseline: r.baseline,
    steps: r.steps.map((s) => ({
      number: s.number,
      name: s.name,
      status: s.status,
      workflow_id: s.workflowId ?? null,
      ...(s.backfill ?? {}),
      ...(s.replay ? { ...s.replay, preview: undefined } : {}),
      ...(s.replay?.preview ? { by_event_type: s.replay.preview.byEventType, by_status_code: s.replay.preview.byStatusCode } : {}),
      ...(s.verify
        ? { waiting: s.verify.waiting, delivered: s.verify.delivered, dead_lettered: s.verify.deadLettered, success_rate: s.verify.successRate }
        : {}),
      ...(s.confirm ? { dead_letter: s.confirm.deadLetters, replayed_waiting: s.confirm.replayWaiting } : {}),
      ...(s.gate?.failedRatio !== undefined ? { failed_ratio: s.gate.failedRatio } : {}),
      ...(s.gate?.approvedBy ? { approved_by: s.gate.approvedBy } : {}),
      message: s.message ?? null,
    })),
  });
}

/** Prints each step transition once, and the running child's progress every `progressEvery` items. */
class RunbookPrinter {
  private readonly printed = new Map<number, string>();
  private readonly childPrinted = new Map<string, number>();
  private baselinePrinted = false;

  constructor(
    private readonly workflowId: string,
    private readonly progressEvery: number,
    private readonly out: Output,
  ) {}

  show(p: Pick<RunbookProgress, 'steps' | 'baseline'> & Partial<Pick<RunbookProgress, 'child'>>): void {
    if (!this.baselinePrinted && p.baseline !== null) {
      this.baselinePrinted = true;
      this.out.log(`${LABEL} baseline dead_letter=${p.baseline}`);
    }
    for (const s of p.steps) {
      if (s.status === 'pending' || this.printed.get(s.number) === s.status) continue;
      // A finished step whose child progress has not been printed yet still gets its start line first.
      if (!this.printed.has(s.number) && s.status !== 'running' && s.workflowId) {
        this.out.log(formatStepLine({ ...s, status: 'running' }, this.workflowId));
      }
      this.printed.set(s.number, s.status);
      this.out.log(formatStepLine(s, this.workflowId));
    }
    const child = p.child;
    if (child) {
      const last = this.childPrinted.get(child.workflowId) ?? 0;
      if (Math.floor(child.counters.processed / this.progressEvery) > Math.floor(last / this.progressEvery)) {
        this.childPrinted.set(child.workflowId, child.counters.processed);
        this.out.log(
          child.kind === 'backfill'
            ? `[webhook-backfill] progress ${formatCounters(child.counters as BackfillCounters)}`
            : `[webhook-replay-dlq] progress ${formatReplayCounters(child.counters as ReplayCounters)}`,
        );
      }
    }
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

export interface RunbookHooks {
  /** Called with every progress the command reads; the demo uses it to fix its receiver and approve gates. */
  onProgress?: (progress: RunbookProgress, handle: WorkflowHandle) => Promise<void>;
}

export async function runRunbook(opts: RunbookCommandOptions, out: Output, hooks: RunbookHooks = {}): Promise<RunbookReport> {
  const path = resolveBackfillFile(opts.file);
  const workflowId = runbookWorkflowId(path);
  const input = runbookInputFrom(opts, path, workflowId);

  const { client, connection, target } = await connectClient(opts.namespace);
  try {
    const handle = await startOrAttach(
      client,
      target.namespace,
      { label: 'webhook-runbook', workflowType: 'webhookRecoveryRunbook', workflowId, args: [input], taskQueue: opts.taskQueue },
      out,
    );
    const ui = temporalUiUrl(target.address, target.namespace, workflowId);
    if (ui) out.err(`${LABEL} Temporal UI: ${ui}`);
    await warnIfNoDispatcher(client, out);
    return await followRunbook(handle, workflowId, target.namespace, opts, out, hooks);
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
  namespace: string,
  opts: Pick<RunbookCommandOptions, 'progressEvery' | 'json'>,
  out: Output,
  hooks: RunbookHooks = {},
): Promise<RunbookReport> {
  const printer = new RunbookPrinter(workflowId, opts.progressEvery, out);
  const interrupt = interruption();
  let finished = false;
  const result = (handle.result() as Promise<RunbookReport>).finally(() => {
    finished = true;
  });
  const poller = (async () => {
    while (!finished) {
      try {
        const progress = await handle.query<RunbookProgress>('progress');
        printer.show(progress);
        await hooks.onProgress?.(progress, handle);
      } catch {
        // No worker yet: the next tick tries again.
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  })();

  let report: RunbookReport;
  try {
    report = await Promise.race([result, interrupt.fired.then(() => detach('webhook-runbook', workflowId, namespace, out, { approve: true }))]);
  } catch (err) {
    if (err instanceof Detached) throw err;
    const stopped = stoppedReport(err);
    if (!stopped) {
      const cause = err instanceof WorkflowFailedError ? (err.cause?.message ?? err.message) : (err as Error).message;
      throw new RunError(`${LABEL} ${workflowId} did not finish: ${cause}`);
    }
    report = stopped;
  } finally {
    interrupt.dispose();
    finished = true;
  }
  await poller;
  printer.show(report);
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

/** `approve` / `reject`: only while the run waits at a gate, and only for that gate. */
export async function runGateDecision(
  decision: 'approve' | 'reject',
  workflowId: string,
  opts: { reason?: string },
  out: Output,
): Promise<void> {
  const { client, connection } = await connectClient();
  try {
    const handle = client.workflow.getHandle(workflowId);
    let progress: RunbookProgress;
    try {
      progress = await handle.query<RunbookProgress>('progress');
    } catch (err) {
      throw new RunError(`[${decision}] cannot read ${workflowId}: ${(err as Error).message} (is it a webhook-runbook run, and is a worker running?)`);
    }
    if (progress.phase !== 'awaiting-approval' || progress.currentStep === null) {
      throw new RunError(`[${decision}] ${workflowId} is not waiting for approval (phase ${progress.phase}); nothing sent`);
    }
    const payload: GateDecision = { step: progress.currentStep, reason: opts.reason };
    await handle.signal(decision, payload);
    const step = RUNBOOK_STEPS[progress.currentStep - 1]!;
    out.log(`[${decision}] ${decision === 'approve' ? 'approved' : 'rejected'} the gate after step ${step.number} (${step.name}) of ${workflowId}`);
  } finally {
    await connection.close();
  }
}

