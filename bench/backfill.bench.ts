/**
 * Backfill throughput: the webhookBackfill workflow (real Temporal dev server, worker in process)
 * against a plain script doing batched INSERT ... SELECT FROM unnest on the same file, in the same run;
 * and the same workflow's `--dry-run` against its execute run, rounds alternating which goes first.
 *
 *   npm run build && npm run bench:backfill -- [--lines 100000] [--batch-size 10000] [--rounds 2] [--baseline-statement 1000]
 */
import { createReadStream, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { Pool } from 'pg';
import { BENCH_DATABASE_URL, benchTemporal } from './common';
import { createPool } from '../src/db/pool';
import { migrate, recreateDatabase } from '../src/db/migrate';
import { webhookBackfill } from '../src/workflows/backfill';
import { createWorker } from '../src/worker';

const { values } = parseArgs({
  options: {
    lines: { type: 'string', default: '100000' },
    'batch-size': { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '2' },
    'baseline-statement': { type: 'string', default: '1000' },
  },
});
const LINES = Number(values.lines);
const BATCH = Number(values['batch-size']);
const ROUNDS = Number(values.rounds);
const BASELINE_STATEMENT = Number(values['baseline-statement']);
const DATABASE_URL = BENCH_DATABASE_URL;

function writeInput(): string {
  const path = join(mkdtempSync(join(tmpdir(), 'gotong-bench-')), 'events.ndjson');
  const lines: string[] = [];
  for (let i = 0; i < LINES; i++) {
    lines.push(
      JSON.stringify({
        event_id: `evt_bench_${i}`,
        event_type: 'contribution_created',
        schema_version: '1',
        request_id: `req_bench_${i}`,
        actor: { user_id: `user_${i % 997}`, username: `name${i}` },
        subject: { title: `item ${i}`, tags: ['a', 'b'] },
        occurred_at: '2026-01-01T00:00:00Z',
      }),
    );
  }
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}


/** The baseline: what an operator could write by hand, with no durability, progress or exactly-once accounting. */
async function plainScript(pool: Pool, path: string): Promise<void> {
  const rl = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  let cols: string[][] = [[], [], [], [], [], []];
  const flush = async () => {
    if (cols[0]!.length === 0) return;
    await pool.query(
      `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload,
                                   status, attempts, max_attempts, next_attempt_at)
       SELECT e.a, e.b, e.c, e.d, e.e, e.f::jsonb, 'pending', 0, 5, now()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS e(a, b, c, d, e, f)
       ON CONFLICT (event_id) DO NOTHING`,
      cols,
    );
    cols = [[], [], [], [], [], []];
  };
  for await (const line of rl) {
    if (!line.trim()) continue;
    const v = JSON.parse(line) as { event_id: string; event_type: string; schema_version: string; request_id: string; actor: { user_id: string } };
    cols[0]!.push(v.event_id);
    cols[1]!.push(v.event_type);
    cols[2]!.push(v.schema_version);
    cols[3]!.push(v.request_id);
    cols[4]!.push(v.actor.user_id);
    cols[5]!.push(line);
    if (cols[0]!.length >= BASELINE_STATEMENT) await flush();
  }
  await flush();
}

/**
 * CPU milliseconds used so far by this process (worker, Temporal SDK, bench) and by the PostgreSQL backends serving
 * this database: what a round costs, which a busy shared machine changes far less than it changes wall time.
 */
async function cpuNow(pool: Pool): Promise<{ node: number; postgres: Map<number, number> }> {
  const usage = process.cpuUsage();
  const { rows } = await pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database()');
  const postgres = new Map<number, number>();
  for (const { pid } of rows) {
    try {
      // utime and stime, in clock ticks (100 a second on Linux), after the command name's closing parenthesis.
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      postgres.set(pid, (Number(fields[11]) + Number(fields[12])) * 10);
    } catch {
      // A backend that has just exited, or a server on another machine: counted as nothing.
    }
  }
  return { node: (usage.user + usage.system) / 1000, postgres };
}

function cpuSince(before: { node: number; postgres: Map<number, number> }, after: { node: number; postgres: Map<number, number> }) {
  let postgres = 0;
  for (const [pid, ms] of after.postgres) postgres += ms - (before.postgres.get(pid) ?? 0);
  return { node: after.node - before.node, postgres };
}

async function main(): Promise<void> {
  const path = writeInput();
  await recreateDatabase(DATABASE_URL);
  const pool = createPool(DATABASE_URL, 10);
  await migrate(pool);
  const { env, workflowBundle } = await benchTemporal();
  const taskQueue = 'bench';
  // The input is a temporary file of the bench's own: its directory is the worker's only input root.
  const worker = await createWorker({ connection: env.nativeConnection, namespace: 'default', taskQueue, pool, workflowBundle, inputRoots: [dirname(path)] });
  const truncate = () => pool.query('TRUNCATE webhook_outbox, batch_ledger, backfill_failed_lines, backfill_dry_run_seen, backfill_dry_run_coverage CASCADE');
  const count = async () => Number((await pool.query<{ n: string }>('SELECT count(*) n FROM webhook_outbox')).rows[0]!.n);
  const baseline: number[] = [];
  const workflow: number[] = [];
  const dry: number[] = [];
  const workflowCpu: Array<{ node: number; postgres: number }> = [];
  const dryCpu: Array<{ node: number; postgres: number }> = [];
  const backfill = async (dryRun: boolean) => {
    await truncate();
    const cpu0 = await cpuNow(pool);
    const t0 = performance.now();
    const id = `webhook-backfill/bench-${dryRun ? 'dry' : 'execute'}-${Date.now()}`;
    const summary = await env.client.workflow.execute(webhookBackfill, {
      taskQueue,
      workflowId: id,
      args: [{ runKey: `${id}@1`, path, dryRun, maxAttempts: 5, batchSize: BATCH }],
    });
    const ms = performance.now() - t0;
    (dryRun ? dryCpu : workflowCpu).push(cpuSince(cpu0, await cpuNow(pool)));
    if (summary.created !== LINES || summary.processed !== LINES || summary.duplicates !== 0 || summary.failed !== 0) {
      throw new Error(`${dryRun ? 'dry run' : 'workflow'} did not count every line as created: ${JSON.stringify(summary)}`);
    }
    if ((await count()) !== (dryRun ? 0 : LINES)) throw new Error(`${dryRun ? 'dry run wrote to' : 'workflow did not fill'} the outbox`);
    return ms;
  };

  const loads: string[] = [loadavg()[0]!.toFixed(1)];
  await worker.runUntil(async () => {
    for (let round = 0; round < ROUNDS; round++) {
      await truncate();
      const t0 = performance.now();
      await plainScript(pool, path);
      baseline.push(performance.now() - t0);
      if ((await count()) !== LINES) throw new Error('baseline did not insert every line');

      // Alternating which goes first, so a change in the machine's load is not all charged to one side.
      if (round % 2 === 0) {
        workflow.push(await backfill(false));
        dry.push(await backfill(true));
      } else {
        dry.push(await backfill(true));
        workflow.push(await backfill(false));
      }
      loads.push(loadavg()[0]!.toFixed(1));
    }
  });
  await env.teardown();
  await pool.end();

  const best = (xs: number[]) => Math.min(...xs);
  const rate = (ms: number) => Math.round((LINES / ms) * 1000);
  const all = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
  console.log(`lines=${LINES} batch_size=${BATCH} baseline_statement=${BASELINE_STATEMENT} rounds=${ROUNDS} load_average_1m=${loads.join(' -> ')}`);
  console.log(`baseline (plain script, unnest INSERT):  best ${best(baseline).toFixed(0)} ms, ${rate(best(baseline))} lines/s (all: ${all(baseline)} ms)`);
  console.log(`webhookBackfill workflow:              best ${best(workflow).toFixed(0)} ms, ${rate(best(workflow))} lines/s (all: ${all(workflow)} ms)`);
  console.log(`webhookBackfill --dry-run:             best ${best(dry).toFixed(0)} ms, ${rate(best(dry))} lines/s (all: ${all(dry)} ms)`);
  console.log(`ratio (workflow rate / baseline rate): ${(best(baseline) / best(workflow)).toFixed(2)}x; per round: ${baseline.map((b, i) => (b / workflow[i]!).toFixed(2)).join(', ')}`);
  console.log(`ratio (dry-run rate / workflow rate):  ${(best(workflow) / best(dry)).toFixed(2)}x; per round: ${workflow.map((w, i) => (w / dry[i]!).toFixed(2)).join(', ')}`);
  const cpu = (xs: Array<{ node: number; postgres: number }>) =>
    xs.map((x) => `${(x.node / 1000).toFixed(1)}+${(x.postgres / 1000).toFixed(1)}`).join(', ');
  const total = (xs: Array<{ node: number; postgres: number }>) => xs.reduce((sum, x) => sum + x.node + x.postgres, 0);
  console.log(`CPU s per run (worker process + PostgreSQL backends): workflow ${cpu(workflowCpu)}; dry run ${cpu(dryCpu)}`);
  console.log(`ratio of CPU (workflow / dry run, all rounds): ${(total(workflowCpu) / total(dryCpu)).toFixed(2)}x`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
