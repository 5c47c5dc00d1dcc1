/**
 * Delivery scale-out: draining one backlog with W worker processes (separate OS processes, as separate hosts would
 * run them) and S dispatcher shards, for each configuration asked for, in the same run, alternating their order
 * round by round. Default: 1 process and 1 shard against 2 processes and 2 shards on a 100,000-event backlog.
 *
 * Where the limit is: for every round it samples /proc for the CPU time of each worker process, of the PostgreSQL
 * backends serving the workers (pg_stat_activity), of the receiver, of the Temporal dev server, and of the whole
 * machine (/proc/stat), and prints each as a share of one core over the round's wall time.
 *
 *   npm run build && npm run bench:delivery-scale -- [--events 100000] [--rounds 2] [--configs 1x1,2x2] [--concurrency 64]
 *     [--receiver-latency-ms 0] [--connections 128]
 *
 * A configuration is <worker processes>x<shards>. Loopback only; the receiver verifies every HMAC. With
 * --receiver-latency-ms the receiver answers that long after each request, as a real endpoint does: then a shard's
 * passes, not CPU, can be the limit (requests in flight / response time). --connections is each worker process's
 * connection limit (0: none, as a deployed worker runs).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'pg';
import { BENCH_DATABASE_URL, benchTemporal, seedPendingEvents } from './common';
import { CpuTally, descendants, machineCpu } from './proc-cpu';
import { migrate, recreateDatabase } from '../src/db/migrate';
import { resolveDispatcherOptions } from '../src/shared/delivery';

const USAGE =
  'usage: npm run bench:delivery-scale -- [--events N] [--rounds N] [--configs 1x1,2x2] [--concurrency N] [--receiver-latency-ms N] [--connections N]';
let values: Record<string, string | undefined>;
try {
  values = parseArgs({
    options: {
      events: { type: 'string', default: '100000' },
      rounds: { type: 'string', default: '2' },
      configs: { type: 'string', default: '1x1,2x2' },
      concurrency: { type: 'string', default: '64' },
      'receiver-latency-ms': { type: 'string', default: '0' },
      connections: { type: 'string', default: '128' },
    },
  }).values;
} catch (err) {
  console.error(`${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}
const EVENTS = Number(values.events);
const ROUNDS = Number(values.rounds);
const CONCURRENCY = Number(values.concurrency);
const LATENCY_MS = Number(values['receiver-latency-ms']);
const CONNECTIONS = Number(values.connections);
const CONFIGS = values.configs!.split(',').map((c) => {
  const m = /^(\d+)x(\d+)$/.exec(c.trim());
  return m ? { workers: Number(m[1]), shards: Number(m[2]) } : null;
});
if (
  !Number.isInteger(EVENTS) || EVENTS < 1 || !Number.isInteger(ROUNDS) || ROUNDS < 1 || !Number.isInteger(CONCURRENCY) ||
  CONCURRENCY < 1 || !Number.isInteger(LATENCY_MS) || LATENCY_MS < 0 || LATENCY_MS > 10_000 || !Number.isInteger(CONNECTIONS) ||
  CONNECTIONS < 0 || CONFIGS.some((c) => !c || c.workers < 1 || c.workers > 8 || c.shards < 1 || c.shards > 8)
) {
  console.error(
    `bad arguments: whole numbers (--receiver-latency-ms 0-10000, --connections 0 for no limit), configurations as <processes>x<shards> (1-8 each)\n${USAGE}`,
  );
  process.exit(2);
}
const configs = CONFIGS as Array<{ workers: number; shards: number }>;
const SECRET = 'bench-secret';
const TASK_QUEUE = 'bench-scale';
interface RoundResult {
  workers: number;
  shards: number;
  ms: number;
  workerCpu: number[];
  postgres: number;
  receiver: number;
  temporal: number;
  machineBusy: number;
  machineCores: number;
  load: string;
}

/**
 * The most a configuration can deliver against a receiver that takes LATENCY_MS to answer: each shard keeps at most
 * `parallelPasses` passes of `concurrency` requests in flight, and each worker process at most CONNECTIONS.
 */
function inFlightCeiling(workers: number, shards: number): { requests: number; perSecond: number } | null {
  if (LATENCY_MS === 0) return null;
  const { parallelPasses } = resolveDispatcherOptions({ concurrency: CONCURRENCY }).options;
  const byShards = shards * parallelPasses * CONCURRENCY;
  const requests = CONNECTIONS > 0 ? Math.min(byShards, workers * CONNECTIONS) : byShards;
  return { requests, perSecond: Math.round((requests * 1000) / LATENCY_MS) };
}

/**
 * What held a round back, judged from its CPU shares: a single-threaded process near a whole core (a worker's main
 * thread, the receiver), else every core of the machine busy (saying how much of it was this benchmark's), else, with
 * a slow receiver, requests in flight near their ceiling, else none of these (waiting: round trips, Temporal
 * scheduling passes).
 */
function limitOf(r: RoundResult): string {
  const s = r.ms / 1000;
  const share = (cpu: number) => cpu / s;
  const hot = [
    ...r.workerCpu.map((cpu, i) => ({ name: `worker process ${i + 1}`, share: share(cpu) })),
    { name: 'the receiver', share: share(r.receiver) },
  ].filter((p) => p.share >= 0.85);
  if (hot.length > 0) return `${hot.map((p) => `${p.name} at ${Math.round(p.share * 100)}% of a core`).join(', ')} (one thread each)`;
  const ours = r.workerCpu.reduce((a, b) => a + b, 0) + r.postgres + r.receiver + r.temporal;
  if (r.machineBusy / s >= 0.95 * r.machineCores) {
    return `every core busy (${Math.round((r.machineBusy / s) * 100)}% of ${Math.round(r.machineCores * 100)}%), ${Math.round((ours / r.machineBusy) * 100)}% of it this benchmark's processes`;
  }
  const ceiling = inFlightCeiling(r.workers, r.shards);
  if (ceiling && EVENTS / s >= 0.7 * ceiling.perSecond) {
    return (
      `requests in flight: at most ${ceiling.requests} (shards x passes x concurrency) at ${LATENCY_MS} ms each allow ` +
      `${ceiling.perSecond}/s, and the round reached ${Math.round((EVENTS / s / ceiling.perSecond) * 100)}% of that`
    );
  }
  return 'no process near a core and cores to spare: waiting (round trips, pass scheduling)';
}

async function main(): Promise<void> {
  const receiver = fork(join(__dirname, 'receiver.js'), {
    env: { ...process.env, BENCH_SECRET: SECRET, BENCH_RECEIVER_LATENCY_MS: String(LATENCY_MS) },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((resolve) => receiver.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  const receiverCounts = () =>
    new Promise<{ received: number; bad: number }>((resolve) => {
      receiver.once('message', (m) => resolve(m as { received: number; bad: number }));
      receiver.send('count');
    });

  await recreateDatabase(BENCH_DATABASE_URL);
  // Its own application name, so its backends are not counted as the workers'.
  const pool = new Pool({ connectionString: BENCH_DATABASE_URL, max: 4, application_name: 'gotong-bench' });
  await migrate(pool);
  const { env } = await benchTemporal();
  const temporalPids = descendants(process.pid).filter((pid) => pid !== receiver.pid);

  const startWorkers = async (count: number): Promise<ChildProcess[]> => {
    const children = Array.from({ length: count }, () =>
      fork(join(__dirname, 'delivery-worker.js'), {
        env: {
          ...process.env,
          BENCH_TEMPORAL_ADDRESS: env.address,
          BENCH_DATABASE_URL,
          BENCH_TASK_QUEUE: TASK_QUEUE,
          BENCH_WEBHOOK_URL: `http://127.0.0.1:${port}/hooks`,
          BENCH_SECRET: SECRET,
          BENCH_AGENT_CONNECTIONS: String(CONNECTIONS),
        },
        execArgv: process.env.BENCH_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : [],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve, reject) => {
            child.once('message', () => resolve());
            child.once('exit', (code) => reject(new Error(`a worker process exited with ${code} before it was ready`)));
          }),
      ),
    );
    return children;
  };
  const stopWorkers = (children: ChildProcess[]) =>
    Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            child.once('exit', () => resolve());
            child.send('stop');
          }),
      ),
    );

  const seed = async () => {
    await pool.query('TRUNCATE webhook_outbox, webhook_delivery_attempts CASCADE');
    await seedPendingEvents(pool, EVENTS);
    await pool.query('VACUUM ANALYZE webhook_outbox');
  };

  const workerBackends = async () =>
    (
      await pool.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'gotong-worker'`,
      )
    ).rows.map((r) => r.pid);

  const drain = async (round: number, workers: number, shards: number): Promise<RoundResult> => {
    await seed();
    const children = await startWorkers(workers);
    const workerPids = children.map((c) => c.pid!);
    const receivedBefore = (await receiverCounts()).received;
    const tally = new CpuTally();
    const backends = new Set(await workerBackends());
    const sample = () => tally.see([...workerPids, receiver.pid!, ...temporalPids, ...backends]);
    sample();
    const machine0 = machineCpu();
    const t0 = performance.now();
    const options = resolveDispatcherOptions({ concurrency: CONCURRENCY }).options;
    const handles = await Promise.all(
      Array.from({ length: shards }, (_, shard) =>
        env.client.workflow.start('webhookDispatcher', {
          taskQueue: TASK_QUEUE,
          workflowId: `webhook-dispatcher-bench/${round}-${workers}x${shards}/${shard}`,
          args: [{ shard, shards, options }],
        }),
      ),
    );
    let ticks = 0;
    while ((await receiverCounts()).received < receivedBefore + EVENTS) {
      await new Promise((r) => setTimeout(r, 50));
      // Workers open connections as passes need them: look for new backends now and then.
      if (++ticks % 10 === 0) for (const pid of await workerBackends()) backends.add(pid);
      sample();
    }
    for (;;) {
      const { rows } = await pool.query<{ n: string }>(`SELECT count(*) n FROM webhook_outbox WHERE status = 'delivered'`);
      if (Number(rows[0]!.n) >= EVENTS) break;
      sample();
      await new Promise((r) => setTimeout(r, 20));
    }
    sample();
    const ms = performance.now() - t0;
    const machine1 = machineCpu();
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    await Promise.all(handles.map((h) => h.terminate('benchmark round over')));
    await stopWorkers(children);
    const attempts = Number((await pool.query<{ n: string }>('SELECT count(*) n FROM webhook_delivery_attempts')).rows[0]!.n);
    if (attempts !== EVENTS) throw new Error(`expected ${EVENTS} attempt rows, found ${attempts}`);
    const wall = machine1.total - machine0.total;
    return {
      workers,
      shards,
      ms,
      workerCpu: workerPids.map((pid) => tally.seconds([pid])),
      postgres: tally.seconds([...backends]),
      receiver: tally.seconds([receiver.pid!]),
      temporal: tally.seconds(temporalPids),
      machineBusy: machine1.busy - machine0.busy,
      machineCores: wall / (ms / 1000),
      load,
    };
  };

  const results: RoundResult[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order, so neither configuration always runs on the warmer (or more bloated) database.
    const order = round % 2 === 0 ? configs : [...configs].reverse();
    for (const { workers, shards } of order) {
      const r = await drain(round, workers, shards);
      results.push(r);
      const s = r.ms / 1000;
      const pct = (cpu: number) => `${Math.round((cpu / s) * 100)}%`;
      // Per delivery: what sizing needs, and less at the mercy of other jobs than wall time.
      const us = (cpu: number) => `${Math.round((cpu / EVENTS) * 1e6)} us`;
      const workerSum = r.workerCpu.reduce((a, b) => a + b, 0);
      console.log(
        `round ${round + 1} ${workers}x${shards}: ${r.ms.toFixed(0)} ms, ${Math.round(EVENTS / s)} deliveries/s; load ${r.load}\n` +
          `  CPU, share of one core: workers ${r.workerCpu.map(pct).join(' + ')}, PostgreSQL ${pct(r.postgres)}, receiver ${pct(r.receiver)}, ` +
          `Temporal ${pct(r.temporal)}, whole machine ${pct(r.machineBusy)} of ${Math.round(r.machineCores * 100)}%\n` +
          `  CPU per delivery: workers ${us(workerSum)}, PostgreSQL ${us(r.postgres)}, receiver ${us(r.receiver)}, Temporal ${us(r.temporal)}; ` +
          `all of these ${pct(workerSum + r.postgres + r.receiver + r.temporal)} of one core, the machine ${pct(r.machineBusy)}`,
      );
      const ceiling = inFlightCeiling(workers, shards);
      if (ceiling) console.log(`  in flight: at most ${ceiling.requests} requests, ${ceiling.perSecond} deliveries/s at ${LATENCY_MS} ms each`);
      console.log(`  limit: ${limitOf(r)}`);
    }
  }
  await env.teardown();
  await pool.end();
  receiver.kill();

  const base = configs[0]!;
  const key = (c: { workers: number; shards: number }) => `${c.workers}x${c.shards}`;
  const msOf = (c: { workers: number; shards: number }) => results.filter((r) => key(r) === key(c)).map((r) => r.ms);
  console.log(
    `events=${EVENTS} rounds=${ROUNDS} concurrency=${CONCURRENCY} (per pass) cores=${Math.round(results[0]!.machineCores)} ` +
      `receiver latency=${LATENCY_MS} ms connections per process=${CONNECTIONS || 'no limit'}`,
  );
  for (const c of configs) {
    const ms = msOf(c);
    console.log(`${key(c)}: best ${Math.min(...ms).toFixed(0)} ms, ${Math.round(EVENTS / (Math.min(...ms) / 1000))} deliveries/s (all: ${ms.map((m) => m.toFixed(0)).join(', ')} ms)`);
  }
  for (const c of configs.slice(1)) {
    const per = msOf(base).map((b, i) => b / msOf(c)[i]!);
    console.log(
      `speed-up ${key(c)} / ${key(base)}: best ${(Math.min(...msOf(base)) / Math.min(...msOf(c))).toFixed(2)}x; per round ${per.map((x) => x.toFixed(2)).join(', ')}`,
    );
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
