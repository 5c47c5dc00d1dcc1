import { hash } from 'node:crypto';
import { Agent } from 'undici';
import type { ClaimedEvent } from '../db/queries';
import { sanitizeForText } from '../backfill/lines';
import { signedHeaders, type SigningSecrets } from './signing';

/**
 * One delivery attempt over HTTP: a signed POST with one overall deadline, a bounded read of the answer,
 * and a record of what happened that is safe to store and to show. Redirects are never followed.
 */

export interface DeliveryTarget {
  url: string;
  secrets: SigningSecrets;
  /** One keep-alive connection pool per worker process, shared by every pass. */
  agent: Agent;
}

export const RESPONSE_EXCERPT_CHARS = 512;
/** Bytes of a response kept; past them the connection is closed rather than drained. */
export const RESPONSE_READ_LIMIT = 64 * 1024;
/** A redirect's Location as kept in the attempt log, at most this many characters. */
export const LOCATION_LOG_CHARS = 1024;

// One-shot hashing: a Hash object per call costs more than hashing a webhook-sized body.
export const sha256Hex = (data: Buffer): string => hash('sha256', data, 'hex');
const EMPTY_SHA256 = sha256Hex(Buffer.alloc(0));

/** Why a response body was not read to its end. */
export type ResponseCutOff = 'size_limit' | 'deadline' | 'connection_lost';

export interface AttemptResult {
  statusCode: number | null;
  /** Why the attempt failed, for a network failure or a redirect; otherwise null (the status says it). */
  error: string | null;
  retryAfter: string | undefined;
  /** Of the bytes read: the whole body, or its first part when `responseCutOff` is set. */
  responseSha256: string | null;
  responseExcerpt: string | null;
  responseCutOff: ResponseCutOff | null;
  /** A 3xx answer's Location header, sanitized and bounded (see `loggableLocation`). */
  location: string | null;
  /** Epoch milliseconds. */
  startedAt: number;
  finishedAt: number;
}

/** undici's own connect timeout, when it is given none. */
const UNDICI_CONNECT_TIMEOUT_MS = 10_000;

/**
 * The worker's delivery connection pool. No cap on connections: the dispatcher's concurrency already bounds
 * the requests in flight, and a request queued here behind a cap would spend its deadline waiting for a socket.
 * Connecting is bounded by the worker's request timeout (`WEBHOOK_TIMEOUT_MS`), not undici's 10 s: an attempt waiting
 * for a connection ends only when undici gives up connecting (see ResponseCollector.expire), so against a host that
 * never answers the connection an attempt lasts about its deadline, not 10 s.
 */
export function createDeliveryAgent(connections: number | null = null, requestTimeoutMs: number = UNDICI_CONNECT_TIMEOUT_MS): Agent {
  const connectTimeout = Math.min(UNDICI_CONNECT_TIMEOUT_MS, requestTimeoutMs);
  const agent = new Agent({ connections, pipelining: 1, keepAliveTimeout: 30_000, connectTimeout });
  connectTimeouts.set(agent, connectTimeout);
  return agent;
}

/**
 * Each agent's connect timeout, for the attempt log: it is the worker's (WEBHOOK_TIMEOUT_MS at start, at most 10 s),
 * while a request's deadline is the dispatcher's (`delivery configure --timeout`), and the two can differ.
 */
const connectTimeouts = new WeakMap<Agent, number>();

/** A WEBHOOK_URL that cannot be used; the message never repeats the URL, which may carry a token. */
export class WebhookUrlError extends Error {}

export interface WebhookEndpoint {
  origin: string;
  path: string;
  /** `Basic ...` from credentials in the URL (RFC 7617, UTF-8), or null. */
  authorization: string | null;
}

function decodedCredential(part: string): string {
  let text: string;
  try {
    text = decodeURIComponent(part);
  } catch {
    throw new WebhookUrlError('WEBHOOK_URL has credentials that are not valid percent-encoding; encode them again');
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(text)) {
    throw new WebhookUrlError('WEBHOOK_URL has credentials with control characters; remove them');
  }
  return text;
}

/**
 * Parses WEBHOOK_URL: http or https with a host, no #fragment (HTTP never sends one: a '#' that belongs to the
 * path or query must be written %23). Credentials in it (`https://user:password@host/...`) are sent as HTTP
 * basic authentication, never as part of the URL, and never appear in a log or an error.
 */
export function parseWebhookUrl(text: string): WebhookEndpoint {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new WebhookUrlError('WEBHOOK_URL is not a URL; give an absolute http:// or https:// URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new WebhookUrlError('WEBHOOK_URL must be an http:// or https:// URL');
  }
  if (!url.hostname) throw new WebhookUrlError('WEBHOOK_URL has no host; give an absolute http:// or https:// URL');
  if (url.hash || text.includes('#')) {
    throw new WebhookUrlError("WEBHOOK_URL has a #fragment, which HTTP never sends; remove it (write a '#' of the path or query as %23)");
  }
  let authorization: string | null = null;
  if (url.username || url.password) {
    const user = decodedCredential(url.username);
    if (user.includes(':')) throw new WebhookUrlError("WEBHOOK_URL has a user name with ':', which basic authentication cannot carry");
    const password = decodedCredential(url.password);
    authorization = `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
  }
  return { origin: url.origin, path: `${url.pathname}${url.search}`, authorization };
}

// `request(url)` parses the URL again for every request; a worker posts thousands a second to one URL.
const endpoints = new WeakMap<DeliveryTarget, WebhookEndpoint>();
function endpointOf(target: DeliveryTarget): WebhookEndpoint {
  let endpoint = endpoints.get(target);
  if (!endpoint) {
    endpoint = parseWebhookUrl(target.url);
    endpoints.set(target, endpoint);
  }
  return endpoint;
}

/**
 * A Location header fit for the attempt log: its raw bytes with anything outside visible ASCII as %XX (so no
 * control character reaches a terminal or a query), credentials masked, at most LOCATION_LOG_CHARS characters.
 */
export function loggableLocation(value: string | string[] | undefined): string | null {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return null;
  const masked = raw.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#]*@/, '$1***@');
  let text = '';
  // Header values arrive as latin1, one character per byte on the wire.
  for (const byte of Buffer.from(masked, 'latin1')) {
    text += byte >= 0x21 && byte <= 0x7e ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    if (text.length > LOCATION_LOG_CHARS) break;
  }
  return text.length > LOCATION_LOG_CHARS ? `${text.slice(0, LOCATION_LOG_CHARS - 3)}...` : text;
}

/** The attempt's deadline passed: the collector aborted the request (its reason, so it is told apart from a failure). */
class DeadlineExceeded extends Error {}
/** The answer went past the read limit: the collector aborted the request, closing the connection. */
class ResponseOverLimit extends Error {}

/** What an attempt's response turned out to be, as `ResponseCollector` gathered it. */
export interface CollectedResponse {
  /** Null when no response headers arrived (a network failure or the deadline). */
  statusCode: number | null;
  /** The failure that ended the attempt early, if any: before the headers, or while the body was arriving. */
  error: Error | null;
  retryAfter: string | undefined;
  location: string | undefined;
  /** At most the read limit of the body, as it arrived. */
  body: Buffer;
  /** Why the body is partial, or null when it was read to its end. */
  cutOff: ResponseCutOff | null;
  /** The deadline ended the attempt (before or after the headers). */
  deadlineHit: boolean;
  /**
   * undici never handed the request to a connection before the attempt ended: not one byte of it was sent. A
   * receiver whose host drops the connection attempt (a firewall, a host gone) ends here at the deadline.
   */
  neverSent: boolean;
}

/**
 * Receives one attempt's response from undici's dispatch API: the status, the two headers the log keeps, and at most
 * `limit` bytes of the body, within one overall deadline. A request through undici's promise API costs a response
 * stream, its events, a promise and an abort-signal listener per attempt; this costs an object and a timer
 * (bench/http.bench.ts). Past `limit` bytes, or at the deadline, it aborts the request, which closes the connection: a
 * receiver streaming 100 MB costs 64 KiB, not 100 MB and their time. It settles once, whatever undici calls after.
 */
export class ResponseCollector {
  private statusCode: number | null = null;
  private retryAfter: string | undefined;
  private location: string | undefined;
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private overLimit = false;
  private deadlineHit = false;
  private abortRequest: ((reason: Error) => void) | null = null;
  private connected = false;
  private readonly timer: NodeJS.Timeout;
  private settled = false;

  constructor(
    private readonly limit: number,
    timeoutMs: number,
    private readonly settle: (response: CollectedResponse) => void,
  ) {
    this.timer = setTimeout(() => this.expire(), timeoutMs);
  }

  onConnect(abort: (reason: Error) => void): void {
    this.abortRequest = abort;
    // A request whose deadline passed while it waited for a connection is aborted here, and undici then writes none of
    // it (it checks for the abort right after this call): still unsent.
    if (this.deadlineHit) {
      abort(new DeadlineExceeded());
      return;
    }
    this.connected = true;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[] | string[] | null): boolean {
    // undici hands informational answers (102 Processing, 103 Early Hints) to the handler too; only the final one
    // counts, else a receiver that sends a 103 and then fails would look like a terminal answer.
    if (statusCode < 200) return true;
    this.statusCode = statusCode;
    if (rawHeaders) {
      for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
        const name = rawHeaders[i]!;
        // Only two names matter; most headers are told apart by their length without decoding them.
        if (name.length !== 11 && name.length !== 8) continue;
        // Header values arrive as latin1, one character per byte on the wire.
        const lower = name.toString('latin1').toLowerCase();
        if (lower === 'retry-after') this.retryAfter ??= rawHeaders[i + 1]!.toString('latin1');
        else if (lower === 'location') this.location ??= rawHeaders[i + 1]!.toString('latin1');
      }
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.settled) return false;
    if (chunk.length > this.limit - this.kept) {
      this.chunks.push(chunk.subarray(0, this.limit - this.kept));
      this.kept = this.limit;
      this.overLimit = true;
      const abort = this.abortRequest;
      this.finish(null);
      abort?.(new ResponseOverLimit());
      return false;
    }
    this.chunks.push(chunk);
    this.kept += chunk.length;
    return true;
  }

  onComplete(): void {
    this.finish(null);
  }

  onError(err: Error): void {
    this.finish(err);
  }

  onUpgrade(): void {
    this.finish(new Error('unexpected protocol upgrade'));
  }

  private expire(): void {
    this.deadlineHit = true;
    // Still waiting for a connection, the attempt keeps its place until undici gives the request up (its connect
    // timeout, set to about this deadline) or connects (onConnect then aborts it, unsent). Settling now instead would
    // free the sender to post the next event while this request still held a connecting socket: against a host that
    // drops connection attempts, sockets would pile up far past the pass's concurrency.
    this.abortRequest?.(new DeadlineExceeded());
  }

  private finish(error: Error | null): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    const failed = error !== null;
    this.settle({
      statusCode: this.statusCode,
      error,
      retryAfter: this.retryAfter,
      location: this.location,
      body: this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks),
      cutOff: this.overLimit ? 'size_limit' : !failed ? null : this.deadlineHit ? 'deadline' : 'connection_lost',
      deadlineHit: this.deadlineHit,
      neverSent: !this.connected,
    });
    // undici may keep an aborted request (and so this handler) until its next connection: hold nothing big meanwhile.
    this.chunks.length = 0;
    this.abortRequest = null;
  }
}

/**
 * POSTs one event, within `timeoutMs` overall: from the start (a pooled connection, connecting, sending)
 * through the response headers to the end of the (bounded) body. The status decides the outcome; the body
 * is only evidence, so a 2xx whose body is over 64 KiB or still arriving at the deadline is delivered,
 * with `responseCutOff` saying why the body is partial.
 */
export async function postOnce(target: DeliveryTarget, event: ClaimedEvent, body: Buffer, timeoutMs: number): Promise<AttemptResult> {
  const startedAt = Date.now();
  const headers = signedHeaders(target.secrets, event.event_id, event.request_id, Math.floor(startedAt / 1000), body);
  const response = await new Promise<CollectedResponse>((resolve) => {
    const collector = new ResponseCollector(RESPONSE_READ_LIMIT, timeoutMs, resolve);
    try {
      const { origin, path, authorization } = endpointOf(target);
      if (authorization) headers.authorization = authorization;
      // undici reports every failure, a closed agent included, through the collector's onError.
      target.agent.dispatch({ origin, path, method: 'POST', headers, body }, collector);
    } catch (err) {
      collector.onError(err instanceof Error ? err : new Error(String(err)));
    }
  });
  const finishedAt = Date.now();
  const status = response.statusCode;
  if (status === null) {
    return {
      statusCode: null,
      error:
        response.neverSent && (response.deadlineHit || isConnectTimeout(response.error))
          ? `timeout after ${response.deadlineHit ? timeoutMs : (connectTimeouts.get(target.agent) ?? timeoutMs)} ms, before a connection to the receiver was ready (the request was not sent)`
          : response.deadlineHit
            ? `timeout after ${timeoutMs} ms, before the response headers were complete`
            : describeNetworkError(response.error, timeoutMs),
      retryAfter: undefined,
      responseSha256: null,
      responseExcerpt: null,
      responseCutOff: null,
      location: null,
      startedAt,
      finishedAt,
    };
  }
  const empty = response.body.length === 0;
  const redirect = status >= 300 && status < 400;
  return {
    statusCode: status,
    error: redirect ? `HTTP ${status} redirect, not followed (its Location is in the attempt log)` : null,
    retryAfter: response.retryAfter,
    responseSha256: empty ? EMPTY_SHA256 : sha256Hex(response.body),
    responseExcerpt: empty ? '' : sanitizeForText(response.body.toString('utf8').slice(0, RESPONSE_EXCERPT_CHARS)),
    responseCutOff: response.cutOff,
    location: redirect ? loggableLocation(response.location) : null,
    startedAt,
    finishedAt,
  };
}

/** undici gave up connecting (see createDeliveryAgent): like the deadline, but its timer may fire first. */
const isConnectTimeout = (err: Error | null) => (err as { code?: string } | null)?.code === 'UND_ERR_CONNECT_TIMEOUT';

export function describeNetworkError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; code?: string; message?: string };
  if (e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') {
    return `timeout after ${timeoutMs} ms`;
  }
  // Never echo the URL: it may carry a token.
  return `${e.code ?? e.name ?? 'error'}: ${(e.message ?? String(err)).replace(/https?:\/\/\S+/g, '<receiver>')}`.slice(0, 300);
}
