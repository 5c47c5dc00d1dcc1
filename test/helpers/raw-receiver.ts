import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface RawRequest {
  /** The request line and header lines exactly as they came over the wire. */
  head: Buffer;
  /** Header names lowercased, values decoded one character per byte, as Node's own HTTP server does. */
  headers: Record<string, string>;
  body: Buffer;
  socket: Socket;
}

/**
 * A receiver on loopback that works on raw bytes, to behave in ways an HTTP server library will not (drip a
 * status line, stream without end, send any header bytes) and to see exactly which bytes a request carried.
 * Each connection serves one request; what to answer is up to `handle`, which owns the socket from then on.
 */
export class RawReceiver {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  readonly requests: RawRequest[] = [];
  url = '';

  constructor(private readonly handle: (request: RawRequest) => void) {}

  async start(path = '/hooks'): Promise<this> {
    this.server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}${path}`;
    return this;
  }

  get port(): number {
    return (this.server!.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    let request: Omit<RawRequest, 'body'> | null = null;
    let length = 0;
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (!request) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffered.subarray(0, end);
        const headers: Record<string, string> = {};
        for (const line of head.toString('latin1').split('\r\n').slice(1)) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
        }
        request = { head, headers, socket };
        length = Number(headers['content-length'] ?? 0);
        buffered = buffered.subarray(end + 4);
      }
      if (buffered.length < length) return;
      socket.off('data', onData);
      const complete: RawRequest = { ...request, body: buffered.subarray(0, length) };
      this.requests.push(complete);
      this.handle(complete);
    };
    socket.on('data', onData);
  }
}

/** Writes `data` to a socket, resolving once it is handed to the kernel, or false once the peer has gone. */
export function write(socket: Socket, data: Buffer | string): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed || !socket.writable) {
      resolve(false);
      return;
    }
    socket.write(data, (err) => resolve(!err));
  });
}
