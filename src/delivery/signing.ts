import { createHash, createHmac, createSecretKey, type KeyObject } from 'node:crypto';

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
