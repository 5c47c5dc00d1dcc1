import { hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Agent } from 'undici';
import type { ClaimedEvent } from '../db/queries';
import { sanitizeForText } from '../backfill/lines';
import { signedHeaders, type SigningSecrets } from './signing';

export interface DeliveryTarget {
  url: string;
  secrets: SigningSecrets;
  /** One keep-alive connection pool per worker process, shared by every pass. */
  agent: Agent;
}

const RESPONSE_EXCERPT_CHARS = 512;
const RESPONSE_READ_LIMIT = 64 * 1024;

// One-shot hashing: a Hash object per call costs more than hashing a webhook-sized body.
const sha256Hex = (data: Buffer): string => hash('sha256', data, 'hex');
const EMPTY_SHA256 = sha256Hex(Buffer.alloc(0));

interface AttemptResult {
  statusCode: number | null;
  error: string | null;
  retryAfter: string | undefined;
  responseSha256: string | null;
  responseExcerpt: string | null;
  /** Epoch milliseconds. */
  startedAt: number;
  finishedAt: number;
}

export function createDeliveryAgent(connections = 128): Agent {
  return new Agent({ connections, pipelining: 1, keepAliveTimeout: 30_000 });
}

/**
 * Reads a response body to its end, keeping at most `limit` bytes. Plain listeners rather than `for await`:
 * an async iterator per response (usually an empty 2xx body) was a visible share of a pass's CPU.
 */
function readBounded(stream: Readable, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let kept = 0;
    stream.on('data', (chunk: Buffer) => {
      if (kept >= limit) return;
      const part = chunk.length > limit - kept ? chunk.subarray(0, limit - kept) : chunk;
      chunks.push(part);
      kept += part.length;
    });
    stream.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

// `request(url)` parses the URL again for every request; a worker posts thousands a second to one URL.
const parsedTargets = new WeakMap<DeliveryTarget, { origin: string; path: string }>();
function parsedTarget(target: DeliveryTarget): { origin: string; path: string } {
  let parsed = parsedTargets.get(target);
  if (!parsed) {
    const url = new URL(target.url);
    parsed = { origin: url.origin, path: `${url.pathname}${url.search}` };
    parsedTargets.set(target, parsed);
  }
  return parsed;
}

export async function postOnce(target: DeliveryTarget, event: ClaimedEvent, body: Buffer, timeoutMs: number): Promise<AttemptResult> {
  const startedAt = Date.now();
  const headers = signedHeaders(target.secrets, event.event_id, event.request_id, Math.floor(startedAt / 1000), body);
  try {
    const { origin, path } = parsedTarget(target);
    const response = await target.agent.request({
      origin,
      path,
      method: 'POST',
      headers,
      body,
      // Per-phase timeouts are timers undici already keeps per connection; a per-request AbortSignal costs more.
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const responseBody = await readBounded(response.body, RESPONSE_READ_LIMIT);
    const retryAfter = response.headers['retry-after'];
    const empty = responseBody.length === 0;
    return {
      statusCode: response.statusCode,
      error: null,
      retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter,
      responseSha256: empty ? EMPTY_SHA256 : sha256Hex(responseBody),
      responseExcerpt: empty ? '' : sanitizeForText(responseBody.toString('utf8').slice(0, RESPONSE_EXCERPT_CHARS)),
      startedAt,
      finishedAt: Date.now(),
    };
  } catch (err) {
    return {
      statusCode: null,
      error: describeNetworkError(err, timeoutMs),
      retryAfter: undefined,
      responseSha256: null,
      responseExcerpt: null,
      startedAt,
      finishedAt: Date.now(),
    };
  }
}

function describeNetworkError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; code?: string; message?: string };
  if (e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') {
    return `timeout after ${timeoutMs} ms`;
  }
  // Never echo the URL: it may carry a token.
  return `${e.code ?? e.name ?? 'error'}: ${(e.message ?? String(err)).replace(/https?:\/\/\S+/g, '<receiver>')}`.slice(0, 300);
}
