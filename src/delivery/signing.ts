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

/** Standard Webhooks: a `whsec_` secret is 24 to 64 random bytes, base64-encoded. */
export const WHSEC_MIN_BYTES = 24;
export const WHSEC_MAX_BYTES = 64;
/** A plain secret shorter than this is accepted with a warning: it is guessable offline from one signed request. */
export const PLAIN_SECRET_MIN_BYTES = 16;

/** A secret that cannot sign; the message names the problem and the fix, never the secret. */
export class SigningSecretError extends Error {}

const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// Control characters or surrounding whitespace in a secret are a paste accident (a newline from a file, a
// quote), and the receiver would compute its signatures with different bytes.
// eslint-disable-next-line no-control-regex
const PASTE_ACCIDENT = /[\u0000-\u001f\u007f]|^\s|\s$/;

/**
 * The key bytes of a signing secret, checked. `whsec_<base64>` (Standard Webhooks) must be strict, canonical
 * base64 (no other characters, padding to a multiple of four, unused bits zero) of 24 to 64 bytes, as a
 * receiver using a Standard Webhooks library decodes it; any other string is used as its UTF-8 bytes.
 */
export function parseSigningSecret(secret: string): { key: Buffer; warning: string | null } {
  if (secret.length === 0) throw new SigningSecretError('is empty; set a whsec_ secret or at least 16 random characters');
  if (secret.startsWith('whsec_')) {
    const encoded = secret.slice('whsec_'.length);
    if (encoded.length === 0) throw new SigningSecretError("has nothing after 'whsec_'; copy the whole secret");
    const key = Buffer.from(encoded, 'base64');
    if (!STRICT_BASE64.test(encoded) || key.toString('base64') !== encoded) {
      throw new SigningSecretError(
        "is not valid base64 after 'whsec_' (only A-Z a-z 0-9 + /, '=' padding to a multiple of 4 characters); copy the secret again",
      );
    }
    if (key.length < WHSEC_MIN_BYTES || key.length > WHSEC_MAX_BYTES) {
      throw new SigningSecretError(
        `decodes to ${key.length} bytes; a whsec_ secret must be ${WHSEC_MIN_BYTES} to ${WHSEC_MAX_BYTES} bytes (Standard Webhooks)`,
      );
    }
    return { key, warning: null };
  }
  if (PASTE_ACCIDENT.test(secret)) {
    throw new SigningSecretError('has control characters or surrounding whitespace; remove them (a newline from a file?)');
  }
  const key = Buffer.from(secret, 'utf8');
  const warning =
    key.length < PLAIN_SECRET_MIN_BYTES
      ? `is only ${key.length} bytes; use at least ${PLAIN_SECRET_MIN_BYTES} random bytes, or a whsec_ secret`
      : null;
  return { key, warning };
}

/**
 * The HMAC key of a secret (see parseSigningSecret; the worker refuses a bad secret at start). Kept as a
 * KeyObject per secret: importing the key for every request is a visible cost at thousands a second.
 */
export function secretKey(secret: string): KeyObject {
  let key = keyCache.get(secret);
  if (!key) {
    key = createSecretKey(parseSigningSecret(secret).key);
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

// Visible ASCII (RFC 9110 field values) except '%', which is the escape and so must itself be escaped.
const HEADER_SAFE = /^[\x21-\x24\x26-\x7e]*$/;

/**
 * A text as a header value: unchanged when it is visible ASCII without '%' (ids as they usually are);
 * otherwise every UTF-8 byte outside visible ASCII, and every '%', becomes %XX. Two different ids never
 * give the same value, and a receiver gets the id back with `decodeURIComponent` (or any percent-decoder
 * reading UTF-8). Space is escaped too: parsers trim it at the ends of a field value.
 */
export function headerSafe(text: string): string {
  if (HEADER_SAFE.test(text)) return text;
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x21 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * The headers of one delivery. `webhook-id` and `X-Request-ID` carry the ids through `headerSafe`, and the
 * Standard Webhooks signature covers exactly the `webhook-id` text sent, as a receiver verifies it.
 */
export function signedHeaders(
  secrets: SigningSecrets,
  eventId: string,
  requestId: string,
  timestamp: number,
  body: Buffer,
): Record<string, string> {
  const webhookId = headerSafe(eventId);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-request-id': headerSafe(requestId),
    'x-gr-signature': grSignature(secrets.current, body),
    'webhook-id': webhookId,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': standardSignature(secrets.current, webhookId, timestamp, body),
  };
  if (secrets.previous) {
    headers['x-gr-signature-previous'] = grSignature(secrets.previous, body);
    headers['webhook-signature'] += ` ${standardSignature(secrets.previous, webhookId, timestamp, body)}`;
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
