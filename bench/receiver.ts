/**
 * A minimal webhook receiver for benchmarks: verifies the HMAC like a real one, answers 204. Loopback only.
 * BENCH_RECEIVER_LATENCY_MS makes it answer that long after the request arrived, as a real endpoint's work would.
 */
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';

const secret = process.env.BENCH_SECRET ?? 'bench-secret';
const latencyMs = Number(process.env.BENCH_RECEIVER_LATENCY_MS ?? 0);
let received = 0;
let bad = 0;
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
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
process.on('message', () => process.send?.({ received, bad }));
