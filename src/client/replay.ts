import { createHash, randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  OUTBOX_STATUSES,
  type OutboxStatus,
  type ReplayCounters,
  type ReplayFilter,
  type ReplayInput,
  type ReplayProgress,
  type ReplaySummary,
  replayCheckpointEvery,
  REPLAY_DEFAULT_BATCHES_PER_RUN,
} from '../shared/replay';
import { inputPathProblem, inputRootsFromEnvironment } from '../input-files';
import { replayInputProblem } from '../shared/input-checks';
import { redactedCommand, replayMetadata } from '../shared/run-metadata';
import { PROGRESS_LIMITS } from '../shared/progress';
import { formatReplayCounters } from './counters';
import { UsageError, type Output } from './errors';
import { jsonLine } from './json';
import type { RunEnding } from './run-ending';
import { printable } from './text';
import { type RunView, startAndWatch } from './watch';

export { formatReplayCounters };

export interface ReplayCommandOptions {
  status: string;
  limit: number;
  dryRun: boolean;
  progressEvery: number;
  json: boolean;
  eventType: string[];
  since?: string;
  until?: string;
  statusCode?: string;
  eventIds?: string;
  resendDelivered: boolean;
  batchSize: number;
  rate: number;
  /** Start (or attach) and return at once with the id and the commands to watch or cancel. */
  detach: boolean;
  /** Plain progress lines even on a terminal. */
  plain: boolean;
  taskQueue: string;
}

function isoTimestamp(flag: string, value: string): string {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new UsageError(`${flag} ${value}: not a timestamp; use ISO 8601, e.g. 2026-02-17T00:00:00Z`);
  return new Date(ms).toISOString();
}

/**
 * A filter flag given an empty value (a script's unset variable: `--event-ids "$IDS"`) used to be dropped, which
 * widened the replay to every dead letter up to --limit instead of the few the operator named.
 */
function refuseEmptyFilters(opts: ReplayCommandOptions): void {
  const empty = (value: string | undefined) => value !== undefined && value.trim() === '';
  if (empty(opts.eventIds)) throw new UsageError(`--event-ids '${opts.eventIds}': empty; pass a file with one event id a line`);
  for (const type of opts.eventType) {
    if (empty(type)) throw new UsageError(`--event-type '${type}': empty; pass an event type, or leave the flag out to replay every type`);
  }
  for (const [flag, value] of [['--since', opts.since], ['--until', opts.until]] as const) {
    if (empty(value)) throw new UsageError(`${flag} '${value}': empty; use ISO 8601, e.g. 2026-02-17T00:00:00Z, or leave the flag out`);
  }
}

/**
 * Each --event-type names its type as written and trimmed, as --event-ids lines do: a backfill keeps event_type
 * exactly as its file had it, so trimming alone selected 'member_joined' when asked for 'member_joined ' and left
 * the type asked for impossible to replay by type.
 */
function eventTypesFrom(flags: string[]): string[] {
  return [...new Set(flags.flatMap((t) => [t.trim(), t]))];
}

/** Checks every flag before anything starts, turning them into the filter the workflow carries. */
export function replayFilterFrom(opts: ReplayCommandOptions): ReplayFilter {
  refuseEmptyFilters(opts);
  if (!(OUTBOX_STATUSES as readonly string[]).includes(opts.status)) {
    throw new UsageError(`--status ${opts.status}: use one of ${OUTBOX_STATUSES.join(', ')}`);
  }
  const status = opts.status as OutboxStatus;
  if (status === 'delivered' && !opts.resendDelivered) {
    throw new UsageError('--status delivered resends events the receiver already accepted; add --resend-delivered to mean it');
  }
  const filter: ReplayFilter = { status, eventTypes: eventTypesFrom(opts.eventType) };
  if (opts.since) filter.since = isoTimestamp('--since', opts.since);
  if (opts.until) filter.until = isoTimestamp('--until', opts.until);
  if (filter.since && filter.until && filter.since >= filter.until) throw new UsageError('--since must be earlier than --until');
  if (opts.statusCode !== undefined) {
    const code = opts.statusCode.trim().toLowerCase();
    if (/^[1-5]xx$/.test(code)) filter.statusClass = Number(code[0]);
    else if (/^[1-5]\d\d$/.test(code)) filter.statusCode = Number(code);
    else throw new UsageError(`--status-code ${opts.statusCode}: use a status code such as 503, or a class such as 5xx`);
  }
  if (opts.eventIds) {
    const path = resolve(opts.eventIds);
    let isFile = false;
    try {
      isFile = statSync(path).isFile();
    } catch {
      throw new UsageError(`--event-ids ${opts.eventIds}: no such file; pass a file with one event id a line`);
    }
    if (!isFile) throw new UsageError(`--event-ids ${opts.eventIds}: not a regular file`);
    const problem = inputPathProblem(path, inputRootsFromEnvironment());
    if (problem) throw new UsageError(`--event-ids ${opts.eventIds}: ${problem}`);
    filter.eventIdsPath = path;
  }
  return filter;
}

/** Input fields as the operator named them, for the checks the workflow makes again on its own. */
const REPLAY_FLAGS: Record<string, string> = {
  limit: '--limit',
  batchSize: '--batch-size',
  ratePerSecond: '--rate',
  'filter.eventTypes': '--event-type',
  'filter.statusCode': '--status-code',
  'filter.statusClass': '--status-code',
};

/** One workflow id per selection and mode: the same replay started twice while it runs attaches. */
export function replayWorkflowId(filter: ReplayFilter, limit: number, dryRun: boolean): string {
  const hash = createHash('sha256').update(JSON.stringify({ filter, limit })).digest('hex').slice(0, 10);
  return `webhook-replay/${filter.status}-${hash}/${dryRun ? 'dry-run' : 'execute'}`;
}

// Event types and ids come from the outbox, that is from backfilled files: shown escaped.
const pairs = (record: Record<string, number>) =>
  Object.entries(record)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${printable(k)}=${v}`)
    .join(' ') || '(none)';

/** The dry run's breakdown, the done line and (--json) the summary object. */
export function printReplaySummary(summary: ReplaySummary, workflowId: string, opts: { json: boolean }, out: Output): void {
  if (summary.preview) {
    out.log(`[webhook-replay-dlq] would replay by event_type: ${pairs(summary.preview.byEventType)}`);
    out.log(`[webhook-replay-dlq] would replay by last_status_code: ${pairs(summary.preview.byStatusCode)}`);
    out.log(`[webhook-replay-dlq] sample event_ids: ${summary.preview.sampleIds.map(printable).join(', ') || '(none)'}`);
    if (summary.preview.moreBeyondLimit) {
      out.log('[webhook-replay-dlq] more rows match than --limit let this dry run count: it counted the oldest changes first');
    }
    // Rows that match after the dry run (new dead letters) would otherwise be reset too, unseen by whoever read it.
    if (summary.preview.changedBefore) {
      out.log(
        `[webhook-replay-dlq] to leave out rows that match after this dry run, execute with --until ${summary.preview.changedBefore} ` +
          `--limit ${summary.preview.matched} (in place of any --until and --limit)`,
      );
    }
  }
  out.log(`[webhook-replay-dlq] done ${formatReplayCounters(summary)} dry_run=${summary.dryRun}`);
  if (opts.json) {
    out.log(
      JSON.stringify({
        ...replaySummaryJson(workflowId, summary, summary.dryRun),
        ...(summary.preview
          ? {
              by_event_type: summary.preview.byEventType,
              by_status_code: summary.preview.byStatusCode,
              sample_event_ids: summary.preview.sampleIds,
              changed_before: summary.preview.changedBefore ?? null,
              more_beyond_limit: summary.preview.moreBeyondLimit ?? null,
            }
          : {}),
      }),
    );
  }
}

/** The --json summary's keys; `null` where a run that did not complete left a figure unknown. */
function replaySummaryJson(workflowId: string, counters: ReplayCounters | undefined, dryRun: boolean | undefined): Record<string, unknown> {
  return {
    workflow_id: workflowId,
    processed: counters?.processed ?? null,
    replayed: counters?.replayed ?? null,
    enqueued: counters?.enqueued ?? null,
    skipped: counters?.skipped ?? null,
    failed: counters?.failed ?? null,
    dry_run: dryRun ?? null,
  };
}

/** --json for a run that did not complete: the summary's keys with the counters as last read, how it ended and why. */
export function printReplayEnding(ending: RunEnding, last: ReplayProgress | undefined, workflowId: string, opts: { json: boolean }, out: Output): void {
  if (!opts.json) return;
  out.log(jsonLine({ ...replaySummaryJson(workflowId, last, last?.dryRun), status: ending.status, error: ending.reason }));
}

/** How a replay run is shown: lines of processed rows, a bar over --limit (the selection may be smaller). */
export function replayView(opts: { json: boolean }): RunView<ReplayCounters, ReplayProgress, ReplaySummary> {
  return {
    label: 'webhook-replay-dlq',
    itemName: 'rows',
    formatCounters: formatReplayCounters,
    barPosition: (p) => ({
      value: p.processed,
      total: p.limit ?? p.processed,
      unit: 'rows',
      processed: p.processed,
      counters: formatReplayCounters(p),
    }),
    finalBarPosition: (s) => ({ value: s.processed, total: s.processed, unit: 'rows', processed: s.processed, counters: formatReplayCounters(s) }),
    printSummary: (summary, workflowId, out) => printReplaySummary(summary, workflowId, opts, out),
    printEnding: (ending, last, workflowId, out) => printReplayEnding(ending, last, workflowId, opts, out),
  };
}

export async function runReplay(opts: ReplayCommandOptions, out: Output): Promise<void> {
  const filter = replayFilterFrom(opts);
  const workflowId = replayWorkflowId(filter, opts.limit, opts.dryRun);
  const input: ReplayInput = {
    runKey: `${workflowId}@${randomUUID()}`,
    filter,
    limit: opts.limit,
    dryRun: opts.dryRun,
    batchSize: opts.batchSize,
    ratePerSecond: opts.rate,
    progressEvery: opts.progressEvery,
    batchesPerRun: REPLAY_DEFAULT_BATCHES_PER_RUN,
  };
  const invalid = replayInputProblem(input);
  if (invalid) throw new UsageError(invalid.replace(/^(\w+(?:\.\w+)?)\b/, (field) => REPLAY_FLAGS[field] ?? field));
  const every = replayCheckpointEvery(input);
  if (every !== opts.progressEvery) {
    out.err(
      `[webhook-replay-dlq] --progress-every ${opts.progressEvery} would record more than ` +
        `${PROGRESS_LIMITS.maxCheckpointsPerBatch} checkpoints a batch; printing every ${every} rows instead ` +
        '(a finer step needs a smaller --batch-size or --limit)',
    );
  }
  await startAndWatch(
    {
      // The selection and the limit are part of the workflow id: another selection is another run.
      optionFlags: { batchSize: '--batch-size', ratePerSecond: '--rate' },
      label: 'webhook-replay-dlq',
      workflowType: 'webhookReplayDlq',
      workflowId,
      args: [input],
      metadata: replayMetadata(input, redactedCommand(process.argv.slice(2))),
      taskQueue: opts.taskQueue,
      view: replayView(opts),
      progressEvery: every,
      detach: opts.detach,
      json: opts.json,
      plain: opts.plain,
    },
    out,
  );
}
