/**
 * The delivery metrics hook's cost per attempt: WorkerMetrics (counters summed in memory, handed to the
 * runtime's meter with the durations once a second) against calling the runtime's native meter on every
 * attempt, in the same run, on the real Temporal runtime meter with its Prometheus exporter on.
 *
 *   npm run build && node dist/bench/metrics.bench.js [--attempts 1000000] [--rounds 5]
 */
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { statusClass, WorkerMetrics, METRICS } from '../src/metrics';

const { values } = parseArgs({ options: { attempts: { type: 'string', default: '1000000' }, rounds: { type: 'string', default: '5' } } });
const ATTEMPTS = Number(values.attempts);
const ROUNDS = Number(values.rounds);

/** A mix like a receiver rejecting a share: mostly 2xx, some 5xx retries and dead letters, some without a response. */
function attempt(i: number): [string, number | null, number] {
  if (i % 50 === 0) return ['retrying', null, 10_000];
  if (i % 10 === 0) return ['retrying', 503, 40];
  if (i % 97 === 0) return ['dead_letter', 410, 12];
  return ['delivered', 200, 8];
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function main(): Promise<void> {
  const port = await freePort();
  const runtime = Runtime.install({
    logger: new DefaultLogger('ERROR'),
    telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${port}` } } },
  });
  const meter = runtime.metricMeter;
  const batched = new WorkerMetrics(meter, 3_600_000);
  const direct = {
    deliveries: meter.createCounter(`${METRICS.deliveries}_direct`),
    deadLetters: meter.createCounter(`${METRICS.deadLetters}_direct`),
    duration: meter.createHistogram(`${METRICS.deliveryDuration}_direct`, 'float'),
  };

  const perAttemptNs = { batched: [] as number[], direct: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    let start = process.hrtime.bigint();
    for (let i = 0; i < ATTEMPTS; i++) {
      const [outcome, code, ms] = attempt(i);
      batched.delivery.recordAttempt(outcome, code, ms);
      // The flush a worker makes once a second, here every 10,000 attempts (a busy worker's second).
      if (i % 10_000 === 9_999) batched.flush();
    }
    batched.flush();
    perAttemptNs.batched.push(Number(process.hrtime.bigint() - start) / ATTEMPTS);

    start = process.hrtime.bigint();
    for (let i = 0; i < ATTEMPTS; i++) {
      const [outcome, code, ms] = attempt(i);
      const cls = statusClass(code);
      direct.deliveries.add(1, { outcome, status_class: cls });
      if (outcome === 'dead_letter') direct.deadLetters.add(1, { reason: 'rejected' });
      direct.duration.record(ms / 1000);
    }
    perAttemptNs.direct.push(Number(process.hrtime.bigint() - start) / ATTEMPTS);
  }
  batched.close();

  const best = (xs: number[]) => Math.min(...xs);
  const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
  console.log(`attempts=${ATTEMPTS} rounds=${ROUNDS}`);
  console.log(`WorkerMetrics (summed, flushed):  best ${best(perAttemptNs.batched).toFixed(0)} ns/attempt (all: ${fmt(perAttemptNs.batched)})`);
  console.log(`native meter on every attempt:   best ${best(perAttemptNs.direct).toFixed(0)} ns/attempt (all: ${fmt(perAttemptNs.direct)})`);
  console.log(`ratio of bests (direct / WorkerMetrics): ${(best(perAttemptNs.direct) / best(perAttemptNs.batched)).toFixed(1)}x`);
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
