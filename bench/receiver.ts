/**
 * A minimal webhook receiver for benchmarks: verifies the HMAC like a real one, answers 204. Loopback only.
 * BENCH_RECEIVER_LATENCY_MS makes it answer that long after the request arrived, as a real endpoint's work would.
 * Asked for `{ timeline: [from, to] }` (epoch ms), it also tells how many requests arrived in each 100 ms of that span.
 */
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';

const secret = process.env.BENCH_SECRET ?? 'bench-secret';
const latencyMs = Number(process.env.BENCH_RECEIVER_LATENCY_MS ?? 0);
let received = 0;
let bad = 0;
/** Requests that arrived, by 100 ms of the epoch. */
const arrivals = new Map<number, number>();
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const slot = Math.floor(Date.now() / 100);
    arrivals.set(slot, (arrivals.get(slot) ?? 0) + 1);
    const expected = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
    if (req.headers['x-gr-signature'] === expected) received++;
    else bad++;
    if (latencyMs > 0) setTimeout(() => res.writeHead(204).end(), latencyMs);
    else res.writeHead(204).end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('message', (m: { timeline?: [number, number] } | string) => {
  if (typeof m === 'object' && m.timeline) {
    const [from, to] = m.timeline.map((t) => Math.floor(t / 100)) as [number, number];
    const timeline = Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => arrivals.get(from + i) ?? 0);
    for (const slot of [...arrivals.keys()]) if (slot <= to) arrivals.delete(slot);
    process.send?.({ received, bad, timeline });
    return;
  }
  process.send?.({ received, bad });
});
