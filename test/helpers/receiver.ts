import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Action = { status: number; headers?: Record<string, string>; delayMs?: number } | 'hang' | 'reset';

export interface Received {
  eventId: string;
  attempt: number;
  at: number;
  body: string;
  bytes: number;
  headers: IncomingMessage['headers'];
  /** Which secret verified the X-GR-Signature (or its -Previous twin) and the Standard Webhooks signature. */
  grVerifiedWith: string | null;
  standardVerifiedWith: string | null;
}

function key(secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret);
}
function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * A webhook receiver on loopback that verifies signatures itself, the way a real receiver would,
 * and answers each request as the test scripts it.
 */
export class TestReceiver {
  readonly received: Received[] = [];
  private readonly attemptsById = new Map<string, number>();
  private readonly inFlightById = new Map<string, number>();
  maxConcurrentPerEvent = 0;
  /** Keep each request's body in `received` (off for large payloads: only its length is kept). */
  keepBodies = true;
  private server: Server | undefined;
  private port = 0;
  url = '';

  constructor(
    private readonly secrets: string[],
    public behaviour: (eventId: string, attempt: number) => Action = () => ({ status: 200 }),
  ) {}

  /** Listens on a free loopback port, or, after `stop()`, on the same one again (a receiver coming back). */
  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}/hooks`;
    return this;
  }

  /** Closes the port: connections are refused until `start()` again (a receiver that is down). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  idsSeen(): Set<string> {
    return new Set(this.received.map((r) => r.eventId));
  }

  private verify(req: IncomingMessage, raw: Buffer): { gr: string | null; standard: string | null } {
    const grHeaders = [req.headers['x-gr-signature'], req.headers['x-gr-signature-previous']].filter(
      (h): h is string => typeof h === 'string',
    );
    const id = String(req.headers['webhook-id'] ?? '');
    const ts = String(req.headers['webhook-timestamp'] ?? '');
    const standard = String(req.headers['webhook-signature'] ?? '').split(' ');
    let gr: string | null = null;
    let std: string | null = null;
    for (const secret of this.secrets) {
      const expectGr = `sha256=${createHmac('sha256', key(secret)).update(raw).digest('hex')}`;
      if (!gr && grHeaders.some((h) => same(h, expectGr))) gr = secret;
      const expectStd = `v1,${createHmac('sha256', key(secret)).update(`${id}.${ts}.`).update(raw).digest('base64')}`;
      if (!std && standard.some((s) => same(s, expectStd))) std = secret;
    }
    return { gr, standard: std };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const eventId = String(req.headers['webhook-id'] ?? '');
    const attempt = (this.attemptsById.get(eventId) ?? 0) + 1;
    this.attemptsById.set(eventId, attempt);
    const inFlight = (this.inFlightById.get(eventId) ?? 0) + 1;
    this.inFlightById.set(eventId, inFlight);
    this.maxConcurrentPerEvent = Math.max(this.maxConcurrentPerEvent, inFlight);
    const verified = this.verify(req, raw);
    this.received.push({
      eventId,
      attempt,
      at: Date.now(),
      body: this.keepBodies ? raw.toString('utf8') : '',
      bytes: raw.length,
      headers: req.headers,
      grVerifiedWith: verified.gr,
      standardVerifiedWith: verified.standard,
    });
    const done = () => this.inFlightById.set(eventId, (this.inFlightById.get(eventId) ?? 1) - 1);
    const action = verified.gr && verified.standard ? this.behaviour(eventId, attempt) : { status: 401 };
    if (action === 'hang') {
      res.on('close', done);
      return; // never answers; the dispatcher's timeout must fire
    }
    if (action === 'reset') {
      done();
      req.socket.destroy();
      return;
    }
    if (action.delayMs) await new Promise((r) => setTimeout(r, action.delayMs));
    done();
    res.writeHead(action.status, { 'content-type': 'application/json', ...action.headers });
    res.end(JSON.stringify({ ok: action.status < 300 }));
  }
}
