import { createHash, randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import {
  BACKFILL_LIMITS,
  type BackfillCounters,
  type BackfillInput,
  type BackfillProgress,
  type BackfillSummary,
} from '../shared/backfill';
import { describeDatabaseUrl } from '../config';
import { inputPathProblem, inputRootsFromEnvironment } from '../input-files';
import { backfillInputProblem } from '../shared/input-checks';
import { backfillMetadata, redactedCommand } from '../shared/run-metadata';
import { checkpointEvery } from '../shared/progress';
import { formatCounters } from './counters';
import { UsageError, type Output } from './errors';
import { jsonLine } from './json';
import type { RunEnding } from './run-ending';
import { type RunView, startAndWatch } from './watch';

export { formatCounters };

export interface BackfillCommandOptions {
  file: string;
  dryRun: boolean;
  progressEvery: number;
  maxAttempts: number;
  batchSize: number;
  json: boolean;
  /** Start (or attach) and return at once with the id and the commands to watch or cancel. */
  detach: boolean;
  /** Plain progress lines even on a terminal. */
  plain: boolean;
  taskQueue: string;
  /** Poll interval for the progress query. */
  pollMs?: number;
  /** Set when the run writes to a database other than DATABASE_URL (the demo's), so the failed-lines hint works. */
  databaseUrl?: string;
}

/** One workflow id per file and mode: starting the same backfill again while it runs attaches to it. */
export function backfillWorkflowId(absPath: string, dryRun: boolean): string {
  const name = basename(absPath).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 60);
  const hash = createHash('sha256').update(absPath).digest('hex').slice(0, 10);
  return `webhook-backfill/${name}-${hash}/${dryRun ? 'dry-run' : 'execute'}`;
}

/**
 * The absolute path of an NDJSON file a worker will accept: a regular file below GOTONG_INPUT_ROOTS (this
 * process's setting, which should match the workers'; their own check on the opened file is the one that counts).
 */
export function resolveBackfillFile(file: string, roots: readonly string[] = inputRootsFromEnvironment()): string {
  const path = resolve(file);
  let info;
  try {
    info = statSync(path);
  } catch {
    throw new UsageError(`--file ${file}: no such file; pass the path of an NDJSON file`);
  }
  if (!info.isFile()) throw new UsageError(`--file ${file}: not a regular file; pass the path of an NDJSON file`);
  const problem = inputPathProblem(path, roots);
  if (problem) throw new UsageError(`--file ${file}: ${problem}`);
  return path;
}

/** The done line, the failed-lines hint and (--json) the summary object. */
export function printBackfillSummary(
  summary: BackfillSummary,
  workflowId: string,
  opts: { json: boolean; databaseUrl?: string },
  out: Output,
): void {
  out.log(`[webhook-backfill] done ${formatCounters(summary)} dry_run=${summary.dryRun}`);
  if (summary.failed > 0) {
    const env = opts.databaseUrl ? `DATABASE_URL=${describeDatabaseUrl(opts.databaseUrl)} ` : '';
    out.err(`[webhook-backfill] ${summary.failed} failed lines recorded; list them with: ${env}gotong-worker failed-lines '${workflowId}'`);
  }
  if (opts.json) out.log(JSON.stringify(backfillSummaryJson(workflowId, summary, summary.dryRun)));
}

/** The --json summary's keys; `null` where a run that did not complete left a figure unknown. */
function backfillSummaryJson(workflowId: string, counters: BackfillCounters | undefined, dryRun: boolean | undefined): Record<string, unknown> {
  return {
    workflow_id: workflowId,
    processed: counters?.processed ?? null,
    created: counters?.created ?? null,
    enqueued: counters?.enqueued ?? null,
    duplicates: counters?.duplicates ?? null,
    failed: counters?.failed ?? null,
    dry_run: dryRun ?? null,
  };
}

/** --json for a run that did not complete: the summary's keys with the counters as last read, how it ended and why. */
export function printBackfillEnding(ending: RunEnding, last: BackfillProgress | undefined, workflowId: string, opts: { json: boolean }, out: Output): void {
  if (!opts.json) return;
  out.log(jsonLine({ ...backfillSummaryJson(workflowId, last, last?.dryRun), status: ending.status, error: ending.reason }));
}

/** How a backfill run is shown: lines of processed lines, a bar over the file's bytes. */
export function backfillView(opts: { json: boolean; databaseUrl?: string }): RunView<BackfillCounters, BackfillProgress, BackfillSummary> {
  return {
    label: 'webhook-backfill',
    itemName: 'lines',
    formatCounters,
    barPosition: (p) => ({ value: p.bytesDone, total: p.bytesTotal, unit: 'bytes', processed: p.processed, counters: formatCounters(p) }),
    finalBarPosition: (s, last) => {
      const bytes = last?.bytesTotal ?? 0;
      return { value: bytes, total: bytes, unit: 'bytes', processed: s.processed, counters: formatCounters(s) };
    },
    printSummary: (summary, workflowId, out) => printBackfillSummary(summary, workflowId, opts, out),
    printEnding: (ending, last, workflowId, out) => printBackfillEnding(ending, last, workflowId, opts, out),
  };
}

export async function runBackfill(opts: BackfillCommandOptions, out: Output): Promise<void> {
  const path = resolveBackfillFile(opts.file);
  if (opts.batchSize > BACKFILL_LIMITS.maxBatchSize) {
    throw new UsageError(`--batch-size must be at most ${BACKFILL_LIMITS.maxBatchSize}`);
  }
  const workflowId = backfillWorkflowId(path, opts.dryRun);
  const every = checkpointEvery(opts.progressEvery, opts.batchSize);
  if (every !== opts.progressEvery) {
    out.err(
      `[webhook-backfill] --progress-every ${opts.progressEvery} with --batch-size ${opts.batchSize} would record ` +
        `${Math.ceil(opts.batchSize / opts.progressEvery)} checkpoints a batch; printing every ${every} lines instead ` +
        '(a finer step needs a smaller --batch-size)',
    );
  }
  const input: BackfillInput = {
    runKey: `${workflowId}@${randomUUID()}`,
    path,
    dryRun: opts.dryRun,
    maxAttempts: opts.maxAttempts,
    batchSize: opts.batchSize,
    progressEvery: opts.progressEvery,
    batchesPerRun: BACKFILL_LIMITS.defaultBatchesPerRun,
  };
  const invalid = backfillInputProblem(input);
  if (invalid) throw new UsageError(invalid.replace(/^maxAttempts\b/, '--max-attempts').replace(/^batchSize\b/, '--batch-size'));
  await startAndWatch(
    {
      optionFlags: { maxAttempts: '--max-attempts', batchSize: '--batch-size' },
      label: 'webhook-backfill',
      workflowType: 'webhookBackfill',
      workflowId,
      args: [input],
      metadata: backfillMetadata(input, redactedCommand(process.argv.slice(2))),
      taskQueue: opts.taskQueue,
      view: backfillView(opts),
      progressEvery: every,
      detach: opts.detach,
      json: opts.json,
      plain: opts.plain,
      pollMs: opts.pollMs,
    },
    out,
  );
}
