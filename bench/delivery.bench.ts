/**
 * Delivery throughput: the webhookDispatcher draining a backlog (claim, signed POST, record outcome and
 * attempt) against a plain keep-alive HTTP client posting the same signed payloads, in the same run,
 * to the same receiver in a separate process on loopback.
 *
 *   npm run build && npm run bench:delivery -- [--events 50000] [--concurrency 64] [--batch-size N] [--parallel N] [--pass-concurrency N] [--timeline]
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from 'undici';
import { BENCH_DATABASE_URL, benchTemporal, seedPendingEvents } from './common';
import { CpuTally, descendants, machineCpu } from './proc-cpu';
import { createPool } from '../src/db/pool';
import { migrate, recreateDatabase } from '../src/db/migrate';
import { createDeliveryAgent } from '../src/delivery/http';
import { signedHeaders } from '../src/delivery/signing';
import { resolveDispatcherOptions } from '../src/shared/delivery';
import { webhookDispatcher } from '../src/workflows/dispatcher';
import { createWorker } from '../src/worker';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '50000' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '64' },
    'batch-size': { type: 'string' },
    parallel: { type: 'string' },
    'pass-concurrency': { type: 'string' },
    /** Also print, per round, how many requests reached the receiver in each 100 ms. */
    timeline: { type: 'boolean', default: false },
  },
});
const EVENTS = Number(values.events);
const CONCURRENCY = Number(values.concurrency);
const ROUNDS = Number(values.rounds);
const TUNING = {
  ...(values['batch-size'] ? { batchSize: Number(values['batch-size']) } : {}),
  ...(values.parallel ? { parallelPasses: Number(values.parallel) } : {}),
  ...(values['pass-concurrency'] ? { concurrency: Number(values['pass-concurrency']) } : {}),
};
const SECRET = 'bench-secret';

/** CPU seconds one round used, by process ("self": this process, the plain client or the worker). */
interface CpuLine {
  self: number;
  receiver: number;
  postgres: number;
  temporal: number;
  machine: number;
  /** Share of the round this process's main thread was busy (event-loop utilization). */
  mainThread: number;
}
const DATABASE_URL = BENCH_DATABASE_URL;


async function main(): Promise<void> {
  const receiver = fork(join(__dirname, 'receiver.js'), { env: { ...process.env, BENCH_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve) => receiver.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  const origin = `http://127.0.0.1:${port}`;
  const url = `${origin}/hooks`;
  const receiverCounts = () =>
    new Promise<{ received: number; bad: number }>((resolve) => {
      receiver.once('message', (m) => resolve(m as { received: number; bad: number }));
      receiver.send('count');
    });

  /** Requests that reached the receiver per 100 ms between two epoch times. */
  const receiverTimeline = (from: number, to: number) =>
    new Promise<number[]>((resolve) => {
      receiver.once('message', (m) => resolve((m as { timeline: number[] }).timeline));
      receiver.send({ timeline: [from, to] });
    });

  await recreateDatabase(DATABASE_URL);
  const pool = createPool(DATABASE_URL, 10);
  await migrate(pool);
  const seed = () => seedPendingEvents(pool, EVENTS);

  const { env, workflowBundle } = await benchTemporal();
  const temporalPids = descendants(process.pid).filter((pid) => pid !== receiver.pid);
  const backends = async () =>
    (await pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database()')).rows.map((r) => r.pid);
  /**
   * Where a round's CPU went, from /proc: this process (the worker, or the plain client), the receiver, the
   * PostgreSQL backends of this database, the Temporal dev server, and the whole machine (other jobs included).
   */
  const watchCpu = async () => {
    const tally = new CpuTally();
    const pg = new Set(await backends());
    const sample = () => tally.see([process.pid, receiver.pid!, ...temporalPids, ...pg]);
    sample();
    const machine0 = machineCpu();
    const loop0 = performance.eventLoopUtilization();
    let refreshing = false;
    const timer = setInterval(() => {
      sample();
      if (refreshing) return;
      refreshing = true;
      void backends()
        .then((pids) => pids.forEach((pid) => pg.add(pid)))
        .catch(() => undefined)
        .finally(() => (refreshing = false));
      // Twice a second: reading /proc costs this process CPU, the same in both kinds of round.
    }, 500);
    return (): CpuLine => {
      clearInterval(timer);
      sample();
      const machine = machineCpu();
      return {
        self: tally.seconds([process.pid]),
        receiver: tally.seconds([receiver.pid!]),
        postgres: tally.seconds([...pg]),
        temporal: tally.seconds(temporalPids),
        machine: machine.busy - machine0.busy,
        mainThread: performance.eventLoopUtilization(loop0).utilization,
      };
    };
  };
  const deliveryAgent = createDeliveryAgent(128);
  const worker = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue: 'bench',
    pool,
    workflowBundle,
    delivery: { url, secrets: { current: SECRET }, agent: deliveryAgent },
  });

  // Baseline: the same bodies, signed the same way, posted by a plain client with the same concurrency.
  const plainClient = async (): Promise<number> => {
    await pool.query('TRUNCATE webhook_outbox, webhook_delivery_attempts CASCADE');
    await seed();
    const { rows } = await pool.query<{ event_id: string; request_id: string; body: string }>(
      'SELECT event_id, request_id, payload::text AS body FROM webhook_outbox',
    );
    const agent = new Agent({ connections: 128, keepAliveTimeout: 30_000 });
    let next = 0;
    const cpu = await watchCpu();
    const t0 = performance.now();
    const startedAt = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < rows.length) {
          const row = rows[next++]!;
          const body = Buffer.from(row.body);
          const headers = signedHeaders({ current: SECRET }, row.event_id, row.request_id, Math.floor(Date.now() / 1000), body);
          // The agent's own request, as the dispatcher posts: the top-level request(url) costs noticeably more per call.
          const response = await agent.request({ origin, path: '/hooks', method: 'POST', headers, body });
          await response.body.dump();
        }
      }),
    );
    const ms = performance.now() - t0;
    plainCpu.push(cpu());
    plainTimelines.push(await receiverTimeline(startedAt, Date.now()));
    await agent.close();
    return ms;
  };

  // The dispatcher on the same backlog, with fresh statistics as a backfill leaves them.
  const dispatcher = async (round: number): Promise<number> => {
    await pool.query('TRUNCATE webhook_outbox, webhook_delivery_attempts CASCADE');
    await seed();
    await pool.query('ANALYZE webhook_outbox');
    const receivedBefore = (await receiverCounts()).received;
    const cpu = await watchCpu();
    const t0 = performance.now();
    const startedAt = Date.now();
    const handle = await env.client.workflow.start(webhookDispatcher, {
      taskQueue: 'bench',
      workflowId: `webhook-dispatcher/bench-${round}`,
      // Complete settings, as a worker starts a dispatcher (see src/delivery/fleet.ts).
      args: [{ shard: 0, shards: 1, options: resolveDispatcherOptions({ concurrency: CONCURRENCY, ...TUNING }).options }],
    });
    // Watch the receiver, not the outbox, until every event has arrived: counting delivered rows every 50 ms
    // is a scan of a table that grows by a dead version per write, and took a good part of a core from the
    // dispatcher it was timing. The round ends once every outcome is recorded.
    while ((await receiverCounts()).received < receivedBefore + EVENTS) await new Promise((r) => setTimeout(r, 20));
    for (;;) {
      const { rows: done } = await pool.query<{ n: string }>(`SELECT count(*) n FROM webhook_outbox WHERE status = 'delivered'`);
      if (Number(done[0]!.n) >= EVENTS) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const ms = performance.now() - t0;
    dispatcherCpu.push(cpu());
    dispatcherTimelines.push(await receiverTimeline(startedAt, Date.now()));
    await handle.terminate('benchmark round over');
    return ms;
  };

  const plain: number[] = [];
  const dispatched: number[] = [];
  // CPU seconds per round: less at the mercy of a busy machine than wall time, which other processes' load stretches.
  const plainCpu: CpuLine[] = [];
  const dispatcherCpu: CpuLine[] = [];
  const loads: string[] = [];
  // Where a round's time went: the ramp at its start, the steady rate, the tail after the last request.
  const plainTimelines: number[][] = [];
  const dispatcherTimelines: number[][] = [];
  let attempts = 0;
  await worker.runUntil(async () => {
    for (let round = 0; round < ROUNDS; round++) {
      plain.push(await plainClient());
      dispatched.push(await dispatcher(round));
      loads.push(readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '));
      attempts = Number((await pool.query<{ n: string }>('SELECT count(*) n FROM webhook_delivery_attempts')).rows[0]!.n);
      if (attempts !== EVENTS) throw new Error(`expected ${EVENTS} attempt rows, found ${attempts}`);
    }
  });
  const counts = await receiverCounts();
  await deliveryAgent.close();
  await env.teardown();
  await pool.end();
  receiver.kill();

  const rate = (ms: number) => Math.round((EVENTS / ms) * 1000);
  const best = (xs: number[]) => Math.min(...xs);
  const list = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
  const ratios = plain.map((p, i) => p / dispatched[i]!).sort((a, b) => a - b);
  console.log(`events=${EVENTS} concurrency=${CONCURRENCY} rounds=${ROUNDS} tuning=${JSON.stringify(TUNING)} receiver verified=${counts.received} rejected=${counts.bad}`);
  console.log(`plain keep-alive client:  best ${best(plain).toFixed(0)} ms, ${rate(best(plain))} deliveries/s (all: ${list(plain)} ms)`);
  console.log(`webhookDispatcher drain:  best ${best(dispatched).toFixed(0)} ms, ${rate(best(dispatched))} deliveries/s (all: ${list(dispatched)} ms)`);
  const cpuText = (c: CpuLine) =>
    `self ${c.self.toFixed(1)}, receiver ${c.receiver.toFixed(1)}, PostgreSQL ${c.postgres.toFixed(1)}, Temporal ${c.temporal.toFixed(1)}, machine ${c.machine.toFixed(1)}; main thread busy ${(c.mainThread * 100).toFixed(0)}%`;
  for (let round = 0; round < ROUNDS; round++) {
    console.log(`round ${round + 1} (load ${loads[round]}): plain ${plain[round]!.toFixed(0)} ms, dispatcher ${dispatched[round]!.toFixed(0)} ms, ratio ${(plain[round]! / dispatched[round]!).toFixed(2)}`);
    console.log(`  CPU s plain:      ${cpuText(plainCpu[round]!)}`);
    console.log(`  CPU s dispatcher: ${cpuText(dispatcherCpu[round]!)}`);
    if (values.timeline) {
      console.log(`  requests per 100 ms, plain:      ${plainTimelines[round]!.join(' ')}`);
      console.log(`  requests per 100 ms, dispatcher: ${dispatcherTimelines[round]!.join(' ')}`);
    }
  }
  console.log(`ratio of bests (dispatcher / plain): ${(best(plain) / best(dispatched)).toFixed(2)}x; per-round ratios: ${ratios.map((r) => r.toFixed(2)).join(', ')}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
