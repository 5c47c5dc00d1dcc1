import { countersOf, generatedFile } from '../helpers/files';
import { alive, spawnCli, stderrTail, summaryOf, type Proc } from '../helpers/cli-process';
import { seedEvents } from '../helpers/harness';
import type { ChaosStack } from './stack';

export const WORKLOADS = ['backfill', 'replay', 'delivery'] as const;
export type WorkloadKind = (typeof WORKLOADS)[number];

/** One run a fault is thrown at, with what a clean run of the same input must report. */
export interface Workload {
  /** Events that must end delivered, each at least once to the receiver. */
  ids: string[];
  /** Share of the work done, 0 to 1; rejects while the database is away. */
  progress(): Promise<number>;
  /** The run is over: its command exited, or (delivery) every event is delivered. */
  done(): Promise<boolean>;
  /** The run's summary and a clean run's, in the same shape; problems found in the run's own records. */
  outcome(): Promise<{ summary: unknown; expected: unknown; problems: string[] }>;
  /** Ends the run's command if it still runs (a trial given up). */
  stop(): void;
}

async function count(stack: ChaosStack, sql: string): Promise<number> {
  const { rows } = await stack.pool.query<{ n: string | null }>(sql);
  return Number(rows[0]!.n ?? 0);
}

/** What a finished run command left: its exit and its `--json` summary, or a problem saying why there is none. */
function commandSummary(cli: Proc, what: string): { summary: Record<string, unknown> | null; problems: string[] } {
  if (cli.child.exitCode !== 0) return { summary: null, problems: [`${what} exited ${cli.child.exitCode ?? cli.child.signalCode}: ${stderrTail(cli, 3)}`] };
  try {
    return { summary: summaryOf(cli), problems: [] };
  } catch {
    return { summary: null, problems: [`${what} printed no JSON summary`] };
  }
}

/** Sums of the ledger's batch results for the run (one row per committed batch). */
async function ledgerSums(stack: ChaosStack, prefix: string, fields: string[]): Promise<Record<string, number>> {
  const sums = fields.map((f) => `coalesce(sum((result->>'${f}')::bigint), 0) AS "${f}"`).join(', ');
  const { rows } = await stack.pool.query<Record<string, string>>(`SELECT ${sums} FROM batch_ledger WHERE run_key LIKE $1`, [`${prefix}%`]);
  return Object.fromEntries(fields.map((f) => [f, Number(rows[0]![f])]));
}

function compareLedger(ledger: Record<string, number>, summary: Record<string, unknown>): string[] {
  return Object.entries(ledger)
    .filter(([field, n]) => summary[field] !== n)
    .map(([field, n]) => `ledger ${field} ${n} but summary ${String(summary[field])}`);
}

/** A backfill of a generated file (duplicates, broken and blank lines among the events) by the real CLI. */
function backfill(stack: ChaosStack, name: string, events: number): Workload {
  const file = generatedFile(name, { valid: events, dupEvery: 13, failEvery: 997, blankEvery: 499 });
  const ids = Array.from({ length: events }, (_, i) => `evt_${name}_${i + 1}`);
  const batchSize = Math.max(50, Math.ceil(events / 20));
  const cli = spawnCli(
    ['webhook-backfill', '--file', file.path, '--batch-size', String(batchSize), '--progress-every', String(events * 10), '--json', '--plain'],
    stack.clientEnv,
  );
  return {
    ids,
    progress: async () => (await count(stack, 'SELECT count(*) AS n FROM webhook_outbox')) / events,
    done: async () => !alive(cli),
    stop: () => cli.child.kill('SIGKILL'),
    async outcome() {
      const { summary, problems } = commandSummary(cli, 'webhook-backfill');
      if (!summary) return { summary: null, expected: file.expected, problems };
      const ledger = await ledgerSums(stack, 'webhook-backfill/', ['processed', 'created', 'duplicates', 'failed']);
      problems.push(...compareLedger(ledger, summary));
      const failedLines = await count(stack, 'SELECT count(*) AS n FROM backfill_failed_lines');
      if (failedLines !== file.expected.failed) problems.push(`${failedLines} failed lines recorded, ${file.expected.failed} in the file`);
      return { summary: countersOf(summary as never), expected: file.expected, problems };
    },
  };
}

/** A replay of dead letters (503s, attempts spent) by the real CLI; every one must be reset once, audited once. */
async function replay(stack: ChaosStack, name: string, events: number): Promise<Workload> {
  const ids = await seedEvents(stack.pool, name, events, 5, 'dead_letter');
  await stack.pool.query('ANALYZE webhook_outbox');
  const batchSize = Math.max(50, Math.ceil(events / 20));
  const cli = spawnCli(
    ['webhook-replay-dlq', '--limit', String(events), '--batch-size', String(batchSize), '--progress-every', String(events * 10), '--json', '--plain'],
    stack.clientEnv,
  );
  const expected = { processed: events, replayed: events, enqueued: events, skipped: 0, failed: 0 };
  return {
    ids,
    progress: async () => (await count(stack, 'SELECT count(*) AS n FROM webhook_replay_audit')) / events,
    done: async () => !alive(cli),
    stop: () => cli.child.kill('SIGKILL'),
    async outcome() {
      const { summary, problems } = commandSummary(cli, 'webhook-replay-dlq');
      if (!summary) return { summary: null, expected, problems };
      problems.push(...compareLedger(await ledgerSums(stack, 'webhook-replay', ['replayed']), summary));
      const picked = Object.fromEntries(Object.keys(expected).map((k) => [k, summary[k]]));
      return { summary: picked, expected, problems };
    },
  };
}

/** A backlog of due events drained by the dispatcher across both workers. */
async function delivery(stack: ChaosStack, name: string, events: number): Promise<Workload> {
  const ids = await seedEvents(stack.pool, name, events);
  const delivered = () => count(stack, "SELECT count(*) AS n FROM webhook_outbox WHERE status = 'delivered'");
  return {
    ids,
    progress: async () => (await delivered()) / events,
    done: async () => (await delivered().catch(() => 0)) === events,
    stop: () => undefined,
    async outcome() {
      const { rows } = await stack.pool.query<{ status: string; n: string }>('SELECT status, count(*) AS n FROM webhook_outbox GROUP BY status');
      const summary = Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
      return { summary, expected: { delivered: events }, problems: [] };
    },
  };
}

export async function startWorkload(kind: WorkloadKind, stack: ChaosStack, name: string, events: number): Promise<Workload> {
  if (kind === 'backfill') return backfill(stack, name, events);
  if (kind === 'replay') return replay(stack, name, events);
  return delivery(stack, name, events);
}
