import {
  ApplicationFailure,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowExecutionInfo,
} from '@temporalio/client';
import type { BackfillProgress, BackfillSummary } from '../shared/backfill';
import type { DispatcherStats } from '../shared/delivery';
import type { ReplayProgress, ReplaySummary } from '../shared/replay';
import { RUNBOOK_STEPS, type RunbookProgress, type RunbookReport } from '../shared/runbook';
import { formatCounters } from './backfill';
import { RunError, type Output } from './errors';
import { failureReason } from './run-ending';
import { jsonLine, snakeKeys } from './json';
import { formatReplayCounters } from './replay';
import { formatStepLine } from './runbook';
import { printable } from './text';
import { connectClient } from './watch';

/** The kinds of run this tool starts, by workflow type. */
export const RUN_KINDS = {
  backfill: 'webhookBackfill',
  replay: 'webhookReplayDlq',
  runbook: 'webhookRecoveryRunbook',
  dispatcher: 'webhookDispatcher',
} as const;
export type RunKind = keyof typeof RUN_KINDS;

export function kindOf(workflowType: string): RunKind | 'other' {
  const entry = Object.entries(RUN_KINDS).find(([, type]) => type === workflowType);
  return entry ? (entry[0] as RunKind) : 'other';
}

/** Execution states as Temporal's visibility names them (`ExecutionStatus`), in the CLI's spelling. */
export const RUN_STATES = {
  running: 'Running',
  completed: 'Completed',
  failed: 'Failed',
  canceled: 'Canceled',
  terminated: 'Terminated',
  timed_out: 'TimedOut',
  continued_as_new: 'ContinuedAsNew',
} as const;
export type RunState = keyof typeof RUN_STATES;

/** What `describe` and `list` both return about a run. */
type RunInfo = Pick<WorkflowExecutionInfo, 'type' | 'workflowId' | 'runId' | 'status' | 'startTime' | 'closeTime' | 'taskQueue'>;

function stateOf(info: RunInfo): RunState | 'unknown' {
  switch (info.status.name) {
    case 'RUNNING':
      return 'running';
    case 'COMPLETED':
      return 'completed';
    case 'FAILED':
      return 'failed';
    case 'CANCELLED':
      return 'canceled';
    case 'TERMINATED':
      return 'terminated';
    case 'TIMED_OUT':
      return 'timed_out';
    case 'CONTINUED_AS_NEW':
      return 'continued_as_new';
    default:
      return 'unknown';
  }
}

type Live = BackfillProgress | ReplayProgress | RunbookProgress | DispatcherStats;
type Result = BackfillSummary | ReplaySummary | RunbookReport;

/** What `status` and `list` know about one run. */
export interface RunSnapshot {
  workflowId: string;
  runId: string;
  kind: RunKind | 'other';
  workflowType: string;
  state: RunState | 'unknown';
  startedAt: Date;
  closedAt: Date | null;
  taskQueue: string;
  /** The run's own view while it runs (its `progress` or `stats` query), or of its end when it failed. */
  live: Live | null;
  /** A completed run's result, or the report a stopped runbook attached to its failure. */
  result: Result | null;
  /** Why a closed run did not complete. */
  failure: string | null;
  /** Why `live` is missing when it was asked for. */
  unavailable: string | null;
  /** A running runbook's running child, with its counters from its own query (`status` only). */
  child: { workflowId: string; kind: 'backfill' | 'replay'; live: BackfillProgress | ReplayProgress | null } | null;
}

/** gRPC's status code for a call that ran out of time. */
const DEADLINE_EXCEEDED = 4;

/** How long `status` and `list` wait for a worker to answer a query. */
const QUERY_TIMEOUT_MS = 5_000;

function queryNameOf(kind: RunKind | 'other'): string | null {
  if (kind === 'dispatcher') return 'stats';
  return kind === 'other' ? null : 'progress';
}

async function queryLive(client: Client, info: RunInfo, kind: RunKind | 'other'): Promise<{ live: Live | null; unavailable: string | null }> {
  const name = queryNameOf(kind);
  if (!name) return { live: null, unavailable: null };
  const started = Date.now();
  try {
    const live = await client.connection.withDeadline(started + QUERY_TIMEOUT_MS, () =>
      client.workflow.getHandle(info.workflowId, info.runId || undefined).query<Live>(name),
    );
    return { live, unavailable: null };
  } catch (err) {
    const cause = (err as { cause?: { code?: number; message?: string } }).cause;
    // The deadline shows as DEADLINE_EXCEEDED, or as CANCELLED when the client gives up the call itself.
    const timedOut = cause?.code === DEADLINE_EXCEEDED || Date.now() - started >= QUERY_TIMEOUT_MS;
    const message = cause?.message ?? (err as Error).message ?? String(err);
    const why = timedOut
      ? `no worker answered the '${name}' query within ${QUERY_TIMEOUT_MS / 1000}s (is a worker polling task queue '${info.taskQueue}'?)`
      : `the '${name}' query failed: ${message.split('\n')[0]}`;
    return { live: null, unavailable: why };
  }
}

/** A closed run's result, or what ended it. */
async function closedOutcome(client: Client, info: RunInfo): Promise<{ result: Result | null; failure: string | null }> {
  try {
    const result = await client.workflow.getHandle(info.workflowId, info.runId, { followRuns: false }).result();
    return { result: (result ?? null) as Result | null, failure: null };
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) return { result: null, failure: `cannot read the result: ${(err as Error).message}` };
    const cause = err.cause;
    // A stopped runbook carries its report (every step's figures) in its failure.
    if (cause instanceof ApplicationFailure && cause.type === 'RunbookStopped' && cause.details?.[0]) {
      return { result: cause.details[0] as RunbookReport, failure: cause.message };
    }
    return { result: null, failure: failureReason(err) };
  }
}

/**
 * One snapshot of a run: its state, and its counters from its query while it runs, or its result once
 * closed. `detailed` (for `status`) also asks a closed run that did not complete for its counters at the end
 * (a worker replays its history to answer), and a running runbook's child for its counters.
 */
export async function snapshotOf(client: Client, info: RunInfo, detailed: boolean): Promise<RunSnapshot> {
  const kind = kindOf(info.type);
  const state = stateOf(info);
  const snapshot: RunSnapshot = {
    workflowId: info.workflowId,
    runId: info.runId,
    kind,
    workflowType: info.type,
    state,
    startedAt: info.startTime,
    closedAt: info.closeTime ?? null,
    taskQueue: info.taskQueue,
    live: null,
    result: null,
    failure: null,
    unavailable: null,
    child: null,
  };
  if (state === 'running') {
    const running = { ...snapshot, ...(await queryLive(client, info, kind)) };
    const child = kind === 'runbook' ? (running.live as RunbookProgress | null)?.runningChild : null;
    if (!detailed || !child) return running;
    const childInfo = { ...info, type: RUN_KINDS[child.kind], workflowId: child.workflowId, runId: '' };
    const { live } = await queryLive(client, childInfo, child.kind);
    return { ...running, child: { workflowId: child.workflowId, kind: child.kind, live: live as BackfillProgress | ReplayProgress | null } };
  }
  if (state === 'continued_as_new') return snapshot;
  const outcome = await closedOutcome(client, info);
  const live = state !== 'completed' && detailed && !outcome.result ? await queryLive(client, info, kind) : null;
  return { ...snapshot, ...outcome, ...(live ?? {}) };
}

// ---- text ----

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

export function ago(from: Date, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - from.getTime()) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

const percent = (done: number, total: number) => (total > 0 ? `${((done / total) * 100).toFixed(1)}%` : 'n/a');

/** The counters of a run in the runbook's `key=value` shape, on one line; '' when there are none. */
export function countersLine(s: RunSnapshot): string {
  const data = s.result ?? s.live;
  if (!data) return '';
  switch (s.kind) {
    case 'backfill': {
      const b = data as BackfillProgress & BackfillSummary;
      const bytes = b.bytesTotal ? ` bytes=${b.bytesDone}/${b.bytesTotal} (${percent(b.bytesDone, b.bytesTotal)})` : '';
      return `${formatCounters(b)} dry_run=${b.dryRun}${bytes} batches=${b.batches}`;
    }
    case 'replay': {
      const r = data as ReplayProgress & ReplaySummary;
      return `${formatReplayCounters(r)} dry_run=${r.dryRun}`;
    }
    case 'runbook': {
      const p = data as Partial<RunbookProgress> & Partial<RunbookReport>;
      const step = p.currentStep ?? p.stoppedAt;
      const state = p.outcome ? `outcome=${p.outcome}` : `phase=${p.phase}`;
      return `${state}${step ? ` step=${step}/${RUNBOOK_STEPS.length}` : ''} baseline=${p.baseline ?? 'n/a'}`;
    }
    case 'dispatcher': {
      const d = data as DispatcherStats;
      const paused = d.paused ? `paused (${d.pauseReason})` : 'delivering';
      return (
        `${paused} delivered=${d.delivered} retried=${d.retried} dead_lettered=${d.deadLettered} ` +
        `in_flight=${d.inFlight} backlog=${d.backlog} oldest_due_age_ms=${d.oldestDueAgeMs}`
      );
    }
    default:
      return '';
  }
}

function phaseOf(s: RunSnapshot): string | null {
  const live = s.live as { phase?: string } | null;
  return live?.phase ?? null;
}

/** The lines `status` prints for one run. */
export function statusLines(s: RunSnapshot, now = Date.now()): string[] {
  const id = printable(s.workflowId);
  const phase = phaseOf(s);
  const lines = [`${id}`];
  lines.push(`  kind      ${s.kind} (${printable(s.workflowType)})`);
  lines.push(`  state     ${s.state}${phase && s.state === 'running' ? `, phase ${phase}` : ''}`);
  lines.push(`  started   ${iso(s.startedAt)} (${ago(s.startedAt, now)} ago)`);
  if (s.closedAt) lines.push(`  closed    ${iso(s.closedAt)} (after ${ago(s.startedAt, s.closedAt.getTime())})`);
  lines.push(`  run id    ${s.runId}`);
  const counters = countersLine(s);
  if (counters) lines.push(`  ${s.result ? 'result  ' : 'counters'}  ${printable(counters)}`);
  if (s.kind === 'runbook') {
    const steps = ((s.result ?? s.live) as { steps?: RunbookProgress['steps'] } | null)?.steps ?? [];
    for (const step of steps) {
      if (step.status !== 'pending') lines.push(`  ${printable(formatStepLine(step, s.workflowId))}`);
    }
    if (s.child) {
      const c = s.child;
      const figures = !c.live ? 'counters unavailable' : c.kind === 'backfill' ? formatCounters(c.live as BackfillProgress) : formatReplayCounters(c.live as ReplayProgress);
      lines.push(`  child     ${printable(c.workflowId)} ${figures}`);
    }
  }
  if (s.failure) lines.push(`  failure   ${printable(s.failure)}`);
  if (s.unavailable) lines.push(`  counters  unavailable: ${printable(s.unavailable)}`);
  return lines;
}

/** The JSON form of a snapshot: snake_case keys throughout. */
export function snapshotJson(s: RunSnapshot): Record<string, unknown> {
  return snakeKeys({
    workflowId: s.workflowId,
    runId: s.runId,
    kind: s.kind,
    workflowType: s.workflowType,
    state: s.state,
    startedAt: s.startedAt.toISOString(),
    closedAt: s.closedAt?.toISOString() ?? null,
    taskQueue: s.taskQueue,
    live: s.live,
    result: s.result,
    failure: s.failure,
    unavailable: s.unavailable,
    child: s.child,
  }) as Record<string, unknown>;
}

/** `gotong-worker status <workflow-id>`: one snapshot of a run (its newest run when the id was reused). */
export async function runStatus(workflowId: string, opts: { json: boolean }, out: Output): Promise<void> {
  const { client, connection, target } = await connectClient();
  try {
    let info: RunInfo;
    try {
      info = await client.workflow.getHandle(workflowId).describe();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        throw new RunError(
          `[status] no run with workflow id '${printable(workflowId)}' in namespace ${target.namespace}; ` +
            "list recent runs with 'gotong-worker list'",
        );
      }
      throw new RunError(`[status] cannot describe '${printable(workflowId)}': ${(err as Error).message}`);
    }
    const snapshot = await snapshotOf(client, info, true);
    if (opts.json) out.log(jsonLine(snapshotJson(snapshot)));
    else for (const line of statusLines(snapshot)) out.log(line);
  } finally {
    await connection.close();
  }
}
