import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { verifySignatures } from '../delivery/signing';

/**
 * The demo's webhook receiver on loopback: verifies every signature as a real receiver must, and rejects
 * a fixed share of events (about one in eight, chosen by a hash of the event id) with 503 until `fix()`,
 * so the demo's dead-letter queue fills during the backfill and drains after the replay.
 */
export class DemoReceiver {
  url = '';
  accepted = 0;
  rejected = 0;
  badSignatures = 0;
  private fixed = false;
  private server: Server | undefined;

  constructor(private readonly secret: string) {}

  static rejects(eventId: string): boolean {
    return createHash('sha256').update(eventId).digest()[0]! < 32;
  }

  fix(): void {
    this.fixed = true;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const verified = verifySignatures([this.secret], req.headers, body);
        let status = 204;
        if (!verified.gr || !verified.standard) {
          this.badSignatures += 1;
          status = 401;
        } else if (!this.fixed && DemoReceiver.rejects(String(req.headers['webhook-id'] ?? ''))) {
          this.rejected += 1;
          status = 503;
        } else {
          this.accepted += 1;
        }
        res.writeHead(status).end();
      });
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/webhooks`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
