import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import { RunError, UsageError, type Output } from './errors';
import { SEARCH_ATTRIBUTE_DEFINITIONS, SEARCH_ATTRIBUTES, searchAttributeCreateCommands } from '../shared/run-metadata';
import { isMissingSearchAttribute } from '../shared/search-attribute-errors';
import { jsonLine } from './json';
import { ago, countersLine, RUN_KINDS, RUN_STATES, type RunKind, type RunSnapshot, type RunState, snapshotJson, snapshotOf } from './status';
import { printable } from './text';
import { connectClient } from './watch';

export interface ListFilter {
  kinds: RunKind[];
  /** Empty: every state but continued-as-new (a long run's earlier segments; its newest segment is listed). */
  states: RunState[];
  idPrefix?: string;
  /** Filters on the project's search attributes (see shared/run-metadata); runs started without them never match. */
  file?: string;
  dryRun?: boolean;
  awaitingApproval?: boolean;
}

export interface ListCommandOptions {
  kind: string[];
  state: string[];
  idPrefix?: string;
  file?: string;
  dryRun?: boolean;
  awaitingApproval?: boolean;
  limit: number;
  json: boolean;
}

/** Flags to a filter; a mistake is a usage error naming the values that work. */
export function listFilterFrom(opts: Pick<ListCommandOptions, 'kind' | 'state' | 'idPrefix' | 'file' | 'dryRun' | 'awaitingApproval'>): ListFilter {
  const split = (values: string[]) => values.flatMap((v) => v.split(',')).map((v) => v.trim().toLowerCase()).filter(Boolean);
  const kinds = split(opts.kind);
  for (const kind of kinds) {
    if (!(kind in RUN_KINDS)) throw new UsageError(`--kind ${kind}: use ${Object.keys(RUN_KINDS).join(', ')}`);
  }
  const states = split(opts.state).map((s) => (s === 'cancelled' ? 'canceled' : s));
  for (const state of states) {
    if (!(state in RUN_STATES)) throw new UsageError(`--state ${state}: use ${Object.keys(RUN_STATES).join(', ')}`);
  }
  // Workflow ids this tool makes are letters, digits and ./_-; a quote or backslash would end the query's string.
  if (opts.idPrefix !== undefined && !/^[\x20-\x7e]+$/.test(opts.idPrefix)) {
    throw new UsageError('--id-prefix must be printable ASCII text, e.g. webhook-backfill/events.ndjson');
  }
  if (opts.idPrefix && /['"\\]/.test(opts.idPrefix)) {
    throw new UsageError("--id-prefix must not contain quotes or backslashes (workflow ids made by this tool have none)");
  }
  if (opts.file !== undefined && (!/^[\x20-\x7e]+$/.test(opts.file) || /['"\\/]/.test(opts.file))) {
    throw new UsageError('--file takes the file name only (no directory, quotes or backslashes), e.g. events.ndjson');
  }
  return {
    kinds: (kinds.length ? [...new Set(kinds)] : Object.keys(RUN_KINDS)) as RunKind[],
    states: [...new Set(states)] as RunState[],
    idPrefix: opts.idPrefix || undefined,
    file: opts.file || undefined,
    dryRun: opts.dryRun || undefined,
    awaitingApproval: opts.awaitingApproval || undefined,
  };
}

/**
 * The visibility query for one kind of run: built only from the attributes every Temporal server keeps
 * (WorkflowType, WorkflowId, ExecutionStatus). Every list filter is added here.
 */
export function visibilityQuery(kind: RunKind, filter: ListFilter): string {
  const clauses = [`WorkflowType = '${RUN_KINDS[kind]}'`];
  if (filter.awaitingApproval) {
    // A runbook terminated or timed out at its gate keeps the last outcome its code wrote: only a running one waits.
    clauses.push(`ExecutionStatus = '${RUN_STATES.running}'`);
  } else if (filter.states.length > 0) {
    clauses.push(`ExecutionStatus IN (${filter.states.map((s) => `'${RUN_STATES[s]}'`).join(', ')})`);
  } else {
    clauses.push(`ExecutionStatus != '${RUN_STATES.continued_as_new}'`);
  }
  if (filter.idPrefix) clauses.push(`WorkflowId STARTS_WITH '${filter.idPrefix}'`);
  if (filter.file) clauses.push(`${SEARCH_ATTRIBUTES.sourceFile.name} = '${filter.file}'`);
  if (filter.dryRun) clauses.push(`${SEARCH_ATTRIBUTES.dryRun.name} = true`);
  if (filter.awaitingApproval) clauses.push(`${SEARCH_ATTRIBUTES.outcome.name} = 'awaiting-approval'`);
  return clauses.join(' AND ');
}

/** Runs `work` over `items` with at most `limit` at once, keeping their order. */
async function mapLimited<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/** The newest runs of each kind that match, newest first (running ones before closed ones), with their counters. */
export async function listRuns(client: Client, filter: ListFilter, limit: number): Promise<Map<RunKind, RunSnapshot[]>> {
  const byKind = new Map<RunKind, RunSnapshot[]>();
  for (const kind of filter.kinds) {
    const infos: WorkflowExecutionInfo[] = [];
    try {
      for await (const info of client.workflow.list({ query: visibilityQuery(kind, filter), pageSize: limit })) {
        infos.push(info);
        if (infos.length >= limit) break;
      }
    } catch (err) {
      if (!isMissingSearchAttribute(err)) throw err;
      const { namespace } = client.options;
      throw new RunError(
        `--file, --dry-run and --awaiting-approval filter on the project's search attributes, which namespace '${namespace}' ` +
          `lacks; register them once: ${searchAttributeCreateCommands(namespace, SEARCH_ATTRIBUTE_DEFINITIONS.map((a) => a.name)).join(' ; ')} (runs started before that ` +
          "carry none); without those flags 'list' works on any namespace",
      );
    }
    byKind.set(kind, await mapLimited(infos, 8, (info) => snapshotOf(client, info, false)));
  }
  return byKind;
}

function listLine(s: RunSnapshot, now: number): string {
  const when = s.closedAt ? `closed ${ago(s.closedAt, now)} ago` : `started ${ago(s.startedAt, now)} ago`;
  const detail = countersLine(s) || (s.failure ? `failure: ${s.failure}` : '') || (s.unavailable ? `counters unavailable: ${s.unavailable}` : '');
  return `  ${s.state.padEnd(10)} ${when.padEnd(20)} ${printable(s.workflowId)}${detail ? `  ${printable(detail)}` : ''}`;
}

/** `gotong-worker list`: recent runs of each kind, their state and counters. */
export async function runList(opts: ListCommandOptions, out: Output): Promise<void> {
  const filter = listFilterFrom(opts);
  const { client, connection } = await connectClient();
  try {
    const byKind = await listRuns(client, filter, opts.limit);
    const now = Date.now();
    for (const [kind, runs] of byKind) {
      if (opts.json) {
        for (const run of runs) out.log(jsonLine(snapshotJson(run)));
        continue;
      }
      out.log(`${kind} (${RUN_KINDS[kind]}): ${runs.length === 0 ? 'none' : `${runs.length} most recent`}`);
      for (const run of runs) out.log(listLine(run, now));
    }
  } finally {
    await connection.close();
  }
}
