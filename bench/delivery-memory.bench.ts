/**
 * Worker memory while the dispatcher drains a backlog of large payloads: the peak resident set size (RSS) of the
 * worker process above what it was when the drain began, with claims bounded by payload bytes (the default, 4 MiB a
 * claim) against claims bounded by rows only (what a claim was before: claim bytes set to the maximum, 256 MiB, so
 * only the batch size of 1,000 limits it). Each runs in a fresh worker process, so one does not start from the
 * other's heap; the receiver runs in a separate process on loopback.
 *
 *   npm run build && npm run bench:delivery-memory -- [--events 200] [--payload-kib 1024]
 */
import { execFileSync, fork } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_DATABASE_URL, benchTemporal } from './common';
import { createPool } from '../src/db/pool';
import { migrate, recreateDatabase } from '../src/db/migrate';
import { createDeliveryAgent } from '../src/delivery/http';
import { type DispatcherStats, resolveDispatcherOptions } from '../src/shared/delivery';
import { webhookDispatcher } from '../src/workflows/dispatcher';
import { createWorker } from '../src/worker';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '200' },
    'payload-kib': { type: 'string', default: '1024' },
    /** Internal: run one drain in this process with this many claim bytes. */
    'claim-bytes': { type: 'string' },
  },
});
const EVENTS = Number(values.events);
const PAYLOAD_KIB = Number(values['payload-kib']);
const SECRET = 'bench-secret';
const MiB = 1024 * 1024;

async function main(): Promise<void> {
  const receiver = fork(join(__dirname, 'receiver.js'), { env: { ...process.env, BENCH_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve) => receiver.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  const url = `http://127.0.0.1:${port}/hooks`;

  await recreateDatabase(BENCH_DATABASE_URL);
  const pool = createPool(BENCH_DATABASE_URL, 10);
  await migrate(pool);
  // Hex text from random numbers: large, and not so repetitive that PostgreSQL's compression makes it small.
  const seed = () =>
    pool.query(
      `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, attempts, max_attempts, next_attempt_at)
       SELECT 'big_' || i, 'contribution_created', '1', 'req_' || i, 'user_1',
              jsonb_build_object('event_id', 'big_' || i, 'blob',
                (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, $2::int * 32) AS j)),
              'pending', 0, 5, now()
         FROM generate_series(1, $1::int) AS i`,
      [EVENTS, PAYLOAD_KIB],
    );

  const { env, workflowBundle } = await benchTemporal();
  const agent = createDeliveryAgent(128);
  const worker = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue: 'bench-memory',
    pool,
    workflowBundle,
    delivery: { url, secrets: { current: SECRET }, agent },
  });

  const round = async (label: string, claimBytes: number): Promise<string> => {
    await pool.query('TRUNCATE webhook_outbox, webhook_delivery_attempts');
    await seed();
    await pool.query('ANALYZE webhook_outbox');
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
    const t0 = performance.now();
    const handle = await env.client.workflow.start(webhookDispatcher, {
      taskQueue: 'bench-memory',
      workflowId: `webhook-dispatcher/bench-memory-${label}`,
      args: [{ shard: 0, shards: 1, options: resolveDispatcherOptions({ claimBytes }).options }],
    });
    for (;;) {
      const { rows } = await pool.query<{ n: string }>(`SELECT count(*) n FROM webhook_outbox WHERE status = 'delivered'`);
      if (Number(rows[0]!.n) >= EVENTS) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const ms = performance.now() - t0;
    clearInterval(sampler);
    const stats = await handle.query<DispatcherStats>('stats');
    await handle.terminate('benchmark round over');
    return (
      `${label.padEnd(28)} peak RSS +${((peak - before) / MiB).toFixed(0)} MiB over ${(before / MiB).toFixed(0)} MiB, ` +
      `most payload bytes a pass held ${(stats.peakPassBytes / MiB).toFixed(1)} MiB, drained in ${(ms / 1000).toFixed(1)} s`
    );
  };

  const claimBytes = Number(values['claim-bytes']);
  let line = '';
  await worker.runUntil(async () => {
    line = await round(claimBytes === 4 * MiB ? 'claims of at most 4 MiB:' : `rows only (${claimBytes / MiB} MiB a claim):`, claimBytes);
  });
  await agent.close();
  await env.teardown();
  await pool.end();
  receiver.kill();
  console.log(line);
}

/** Each drain in a process of its own. */
function compare(): void {
  console.log(`events=${EVENTS} payload=${PAYLOAD_KIB} KiB batch_size=1000 concurrency=64`);
  for (const claimBytes of [4 * MiB, 256 * MiB]) {
    const args = [__filename, '--events', String(EVENTS), '--payload-kib', String(PAYLOAD_KIB), '--claim-bytes', String(claimBytes)];
    const output = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    console.log(output.trim().split('\n').at(-1));
  }
}

if (values['claim-bytes'] === undefined) {
  compare();
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
