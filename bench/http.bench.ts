/**
 * The cost of one delivery attempt's safeguards: `postOnce` (signed headers with ids made header-safe, one
 * overall deadline per request, a bounded read that keeps the body as evidence) against the bare keep-alive
 * request the delivery benchmark's plain client makes (the same signed headers, no deadline, body dumped), in
 * the same run, to the same receiver in a separate process on loopback. Rounds alternate; CPU time of this
 * process per request is the figure that matters on a shared machine, wall time is printed beside it.
 *
 *   npm run build && node dist/bench/http.bench.js [--requests 20000] [--rounds 5] [--concurrency 64]
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ClaimedEvent } from '../src/db/queries';
import { createDeliveryAgent, type DeliveryTarget } from '../src/delivery/http';
import { postOnce } from '../src/delivery/http';
import { signedHeaders } from '../src/delivery/signing';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '64' },
  },
});
const REQUESTS = Number(values.requests);
const ROUNDS = Number(values.rounds);
const CONCURRENCY = Number(values.concurrency);
const SECRET = 'bench-secret-of-enough-bytes';

function events(round: number): ClaimedEvent[] {
  return Array.from({ length: REQUESTS }, (_, i) => {
    const id = `evt_${round}_${i}`;
    const body = JSON.stringify({ event_id: id, event_type: 'contribution_created', schema_version: '1', request_id: `req_${id}`, actor: { user_id: 'user_1' } });
    return { event_id: id, request_id: `req_${id}`, body, attempts: 1, max_attempts: 5, replay_count: 0 };
  });
}

async function timed(work: () => Promise<void>): Promise<{ wallMs: number; cpuMs: number }> {
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const used = process.cpuUsage(cpu);
  return { wallMs: performance.now() - t0, cpuMs: (used.user + used.system) / 1000 };
}

async function inParallel(items: ClaimedEvent[], post: (event: ClaimedEvent, body: Buffer) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < items.length) {
        const event = items[next++]!;
        await post(event, Buffer.from(event.body));
      }
    }),
  );
}

async function main(): Promise<void> {
  const receiver = fork(join(__dirname, 'receiver.js'), { env: { ...process.env, BENCH_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve) => receiver.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  const origin = `http://127.0.0.1:${port}`;
  const agent = createDeliveryAgent(128);
  const target: DeliveryTarget = { url: `${origin}/hooks`, secrets: { current: SECRET }, agent };
  let failures = 0;

  const bare = (items: ClaimedEvent[]) =>
    inParallel(items, async (event, body) => {
      const headers = signedHeaders(target.secrets, event.event_id, event.request_id, Math.floor(Date.now() / 1000), body);
      const response = await agent.request({ origin, path: '/hooks', method: 'POST', headers, body });
      await response.body.dump();
      if (response.statusCode !== 204) failures++;
    });
  const guarded = (items: ClaimedEvent[]) =>
    inParallel(items, async (event, body) => {
      const result = await postOnce(target, event, body, 10_000);
      if (result.statusCode !== 204) failures++;
    });

  // A warm-up of each, so the first measured round does not pay for JIT and connections.
  await bare(events(-1).slice(0, 2000));
  await guarded(events(-2).slice(0, 2000));
  const results = { bare: [] as Array<{ wallMs: number; cpuMs: number }>, guarded: [] as Array<{ wallMs: number; cpuMs: number }> };
  for (let round = 0; round < ROUNDS; round++) {
    const items = events(round);
    const [first, second] = round % 2 === 0 ? (['bare', 'guarded'] as const) : (['guarded', 'bare'] as const);
    results[first].push(await timed(() => (first === 'bare' ? bare(items) : guarded(items))));
    results[second].push(await timed(() => (second === 'bare' ? bare(items) : guarded(items))));
  }
  await agent.close();
  receiver.kill();
  if (failures > 0) throw new Error(`${failures} requests did not get their 204`);

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const perRequestUs = (ms: number) => ((ms * 1000) / REQUESTS).toFixed(1);
  const line = (name: string, xs: Array<{ wallMs: number; cpuMs: number }>) =>
    `${name}: median CPU ${perRequestUs(median(xs.map((x) => x.cpuMs)))} us/request, wall ${perRequestUs(median(xs.map((x) => x.wallMs)))} us/request (CPU ms per round: ${xs.map((x) => x.cpuMs.toFixed(0)).join(', ')})`;
  console.log(`requests=${REQUESTS} rounds=${ROUNDS} concurrency=${CONCURRENCY}`);
  console.log(line('bare request (no deadline, body dumped)', results.bare));
  console.log(line('postOnce (deadline, bounded read)     ', results.guarded));
  const cpuRatios = results.guarded.map((g, i) => g.cpuMs / results.bare[i]!.cpuMs).sort((a, b) => a - b);
  console.log(
    `CPU per request, postOnce / bare: median ${median(cpuRatios).toFixed(2)}x; per-round ratios: ${cpuRatios.map((r) => r.toFixed(2)).join(', ')}`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
