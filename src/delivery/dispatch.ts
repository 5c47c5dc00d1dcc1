import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Pool } from 'pg';
import { Agent, request } from 'undici';
import {
  claimDueEvents,
  type ClaimedEvent,
  type DeliveryRecord,
  outboxSnapshot,
  recordDeliveries,
  releaseClaims,
} from '../db/queries';
import type { DeliverPassInput, DeliverPassResult } from '../shared/delivery';
import { sanitizeForText } from '../backfill/lines';
import { classifyStatus, retryDelayMs } from './policy';
import { sha256Hex, signedHeaders, type SigningSecrets } from './signing';

export interface DeliveryTarget {
  url: string;
  secrets: SigningSecrets;
  /** One keep-alive connection pool per worker process, shared by every pass. */
  agent: Agent;
}

export interface PassHooks {
  heartbeat(details: unknown): void;
  cancelled(): boolean;
  /** Identifies the claimant; the random part makes a retried activity a different owner than its dead predecessor. */
  leaseOwnerPrefix: string;
}

const RESPONSE_EXCERPT_CHARS = 512;
const RESPONSE_READ_LIMIT = 64 * 1024;

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

async function postOnce(target: DeliveryTarget, event: ClaimedEvent, body: Buffer, timeoutMs: number): Promise<AttemptResult> {
  const startedAt = Date.now();
  const headers = signedHeaders(target.secrets, event.event_id, event.request_id, Math.floor(startedAt / 1000), body);
  try {
    const response = await request(target.url, {
      method: 'POST',
      headers,
      body,
      dispatcher: target.agent,
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

/**
 * One dispatcher pass: claim due events, POST them with bounded concurrency and rate, then record every
 * outcome and attempt in one transaction. Stops launching requests once `autoPauseAfter` deliveries in a
 * row have failed, or on cancellation, and hands back what it claimed but did not send.
 */
export async function deliverPass(
  pool: Pool,
  target: DeliveryTarget,
  input: DeliverPassInput,
  hooks: PassHooks,
): Promise<DeliverPassResult> {
  const { options } = input;
  const leaseOwner = `${hooks.leaseOwnerPrefix}/${randomUUID()}`;
  const claimed = await claimDueEvents(pool, options.batchSize, leaseOwner, input.leaseSeconds);

  const records: DeliveryRecord[] = [];
  let delivered = 0;
  let retried = 0;
  let deadLettered = 0;
  let streak = 0;
  let anySuccess = false;
  let stop = false;
  let next = 0;
  const sent = new Set<string>();
  const passStart = Date.now();
  // Crossing into the SDK for every response is measurable at thousands a second; once a second is plenty.
  let lastHeartbeat = 0;
  const heartbeat = () => {
    const now = Date.now();
    if (now - lastHeartbeat < 1000) return;
    lastHeartbeat = now;
    hooks.heartbeat({ done: records.length, of: claimed.length });
  };

  const worker = async () => {
    for (;;) {
      if (stop || hooks.cancelled() || next >= claimed.length) return;
      const index = next++;
      if (options.ratePerSecond > 0) {
        const slot = passStart + (index * 1000) / options.ratePerSecond;
        const wait = slot - Date.now();
        if (wait > 0) {
          heartbeat();
          await new Promise((r) => setTimeout(r, wait));
        }
        // Not sent, so not in `sent`: it is released below.
        if (stop || hooks.cancelled()) return;
      }
      const event = claimed[index]!;
      sent.add(event.event_id);
      const body = Buffer.from(event.body);
      const result = await postOnce(target, event, body, options.requestTimeoutMs);
      const verdict = result.statusCode === null ? 'retryable' : classifyStatus(result.statusCode);
      let status: string;
      let nextAttemptAt: number | null = null;
      if (verdict === 'delivered') {
        status = 'delivered';
        delivered++;
        streak = 0;
        anySuccess = true;
      } else {
        streak++;
        if (verdict === 'terminal' || event.attempts >= event.max_attempts) {
          status = 'dead_letter';
          deadLettered++;
        } else {
          status = 'retrying';
          retried++;
          nextAttemptAt =
            result.finishedAt +
            retryDelayMs(event.attempts, result.retryAfter, { baseMs: options.backoffBaseMs, capMs: options.backoffCapMs }, Date.now());
        }
        if (streak >= options.autoPauseAfter) stop = true;
      }
      const error = result.error ?? (verdict === 'delivered' ? null : `HTTP ${result.statusCode}`);
      records.push({
        event_id: event.event_id,
        status,
        status_code: result.statusCode,
        error,
        next_attempt_at: nextAttemptAt,
        attempt_number: event.attempts,
        trigger: event.replay_count > 0 ? 'replay' : 'scheduled',
        duration_ms: result.finishedAt - result.startedAt,
        request_body_sha256: sha256Hex(body),
        response_body_sha256: result.responseSha256,
        response_excerpt: result.responseExcerpt,
        started_at: result.startedAt,
        finished_at: result.finishedAt,
      });
      heartbeat();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, claimed.length)) }, worker));

  await recordDeliveries(pool, leaseOwner, records);
  const unsent = claimed.filter((e) => !sent.has(e.event_id)).map((e) => e.event_id);
  const released = await releaseClaims(pool, leaseOwner, unsent);
  const full = claimed.length >= options.batchSize;
  // After a full batch the dispatcher goes straight on, so when the next event is due does not matter.
  const snapshot = input.wantSnapshot || !full ? await outboxSnapshot(pool) : null;
  return {
    claimed: claimed.length,
    delivered,
    retried,
    deadLettered,
    released,
    trailingFailures: streak,
    anySuccess,
    snapshot:
      input.wantSnapshot && snapshot
        ? { backlog: snapshot.backlog, inFlight: snapshot.in_flight, oldestDueMs: snapshot.oldest_due_ms }
        : null,
    nextDueInMs: snapshot ? snapshot.next_due_in_ms : 0,
  };
}
