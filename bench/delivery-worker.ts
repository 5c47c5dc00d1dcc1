/**
 * One worker process for bench/delivery-scale.bench.ts: the worker a deployment runs (workflows on the task queue,
 * delivery passes on its delivery queue), on its own OS process, so two of them use two cores as two hosts would.
 * Forked by the benchmark with its settings in the environment; says 'ready' once polling, and stops on 'stop'.
 * With BENCH_CPU_PROF_DIR set it is profiled (`--cpu-prof`), one file per process.
 */
import { NativeConnection, DefaultLogger, Runtime } from '@temporalio/worker';
import { createPool } from '../src/db/pool';
import { createDeliveryAgent } from '../src/delivery/http';
import { createWorker } from '../src/worker';

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; this script is forked by bench/delivery-scale.bench.ts`);
  return value;
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const connection = await NativeConnection.connect({ address: required('BENCH_TEMPORAL_ADDRESS') });
  const pool = createPool(required('BENCH_DATABASE_URL'), 10);
  // 128 connections unless told otherwise (0: no limit, as a deployed worker runs).
  const connections = Number(process.env.BENCH_AGENT_CONNECTIONS ?? 128);
  const agent = createDeliveryAgent(connections > 0 ? connections : null);
  const worker = await createWorker({
    connection,
    namespace: 'default',
    taskQueue: required('BENCH_TASK_QUEUE'),
    pool,
    delivery: { url: required('BENCH_WEBHOOK_URL'), secrets: { current: required('BENCH_SECRET') }, agent },
  });
  const stopped = new Promise<void>((resolve) => process.on('message', (m) => m === 'stop' && resolve()));
  await worker.runUntil(async () => {
    process.send?.('ready');
    await stopped;
  });
  await agent.close();
  await pool.end();
  await connection.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
