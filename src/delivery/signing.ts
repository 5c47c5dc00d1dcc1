import { createHash, createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * Signs a delivery two ways: the platform's `X-GR-Signature` (hex HMAC-SHA256 of the raw body) and
 * Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over
 * "<id>.<timestamp>.<body>"). With a previous secret (rotation), both secrets sign: Standard Webhooks
 * lists both in one header as its spec allows; the platform header carries the current one and
 * `X-GR-Signature-Previous` the old one, so a receiver on either secret can verify.
 */
export interface SigningSecrets {
  current: string;
  previous?: string;
}

const keyCache = new Map<string, KeyObject>();

/**
 * Standard Webhooks secrets are "whsec_<base64>"; any other string is used as raw UTF-8 key bytes.
 * Kept as a KeyObject per secret: importing the key for every request is a visible cost at thousands a second.
 */
export function secretKey(secret: string): KeyObject {
  let key = keyCache.get(secret);
  if (!key) {
    const bytes = secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret, 'utf8');
    key = createSecretKey(bytes);
    keyCache.set(secret, key);
  }
  return key;
}

export function grSignature(secret: string, body: Buffer): string {
  return `sha256=${createHmac('sha256', secretKey(secret)).update(body).digest('hex')}`;
}

export function standardSignature(secret: string, id: string, timestamp: number, body: Buffer): string {
  const mac = createHmac('sha256', secretKey(secret)).update(`${id}.${timestamp}.`).update(body).digest('base64');
  return `v1,${mac}`;
}

export function signedHeaders(
  secrets: SigningSecrets,
  eventId: string,
  requestId: string,
  timestamp: number,
  body: Buffer,
): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-request-id': requestId,
    'x-gr-signature': grSignature(secrets.current, body),
    'webhook-id': eventId,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': standardSignature(secrets.current, eventId, timestamp, body),
  };
  if (secrets.previous) {
    headers['x-gr-signature-previous'] = grSignature(secrets.previous, body);
    headers['webhook-signature'] += ` ${standardSignature(secrets.previous, eventId, timestamp, body)}`;
  }
  return headers;
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export interface VerifiedBy {
  /** The secret that verified X-GR-Signature (or X-GR-Signature-Previous), or null. */
  gr: string | null;
  /** The secret that verified one of the Standard Webhooks signatures, or null. */
  standard: string | null;
}

/**
 * What a receiver does with a delivery: checks both signature schemes against each secret it knows,
 * in constant time. Used by the demo receiver and the tests' receiver.
 */
export function verifySignatures(secrets: string[], headers: Record<string, string | string[] | undefined>, body: Buffer): VerifiedBy {
  const text = (name: string) => (typeof headers[name] === 'string' ? (headers[name] as string) : '');
  const grHeaders = [text('x-gr-signature'), text('x-gr-signature-previous')].filter(Boolean);
  const standard = text('webhook-signature').split(' ').filter(Boolean);
  const id = text('webhook-id');
  const timestamp = Number(text('webhook-timestamp'));
  let gr: string | null = null;
  let std: string | null = null;
  for (const secret of secrets) {
    const expectGr = grSignature(secret, body);
    if (!gr && grHeaders.some((h) => sameText(h, expectGr))) gr = secret;
    const expectStd = standardSignature(secret, id, timestamp, body);
    if (!std && standard.some((s) => sameText(s, expectStd))) std = secret;
  }
  return { gr, standard: std };
}
