import { z } from 'zod';
import { BACKFILL_LIMITS } from '../shared/backfill';
import { sanitizeForText } from './lines';

/** The fields the outbox indexes and delivers by; the payload itself is stored whole. */
export interface EventFields {
  event_id: string;
  event_type: string;
  schema_version: string;
  request_id: string;
  actor_user_id: string;
}

export type LineVerdict = { ok: true; fields: EventFields; payload: string } | { ok: false; reason: string };

const MUST = 'must be a non-empty string';
const nonEmpty = z.string({ error: MUST }).refine((s) => s.trim().length > 0, { error: MUST });

const eventSchema = z.object({
  event_id: nonEmpty.refine((s) => Buffer.byteLength(s, 'utf8') <= BACKFILL_LIMITS.maxEventIdBytes, {
    error: `must be at most ${BACKFILL_LIMITS.maxEventIdBytes} bytes`,
  }),
  event_type: nonEmpty,
  request_id: nonEmpty,
  schema_version: nonEmpty,
  actor: z.object({ user_id: nonEmpty }, { error: 'must be an object with a non-empty user_id' }),
});

/** Validates one non-blank line of a backfill file. Never throws. */
export function validateLine(text: string): LineVerdict {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `invalid JSON: ${clip((err as Error).message)}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    return { ok: false, reason: `not a JSON object (got ${got})` };
  }
  const parsed = eventSchema.safeParse(value);
  if (!parsed.success) {
    const reasons = parsed.error.issues.map((issue) => `"${issue.path.join('.')}" ${issue.message}`);
    return { ok: false, reason: clip(reasons.join('; ')) };
  }
  // Escapes are the only way JSON text can smuggle in what PostgreSQL rejects; skip the walk otherwise.
  if (text.includes('\\u')) {
    const problem = findUnstorableString(value);
    if (problem) return { ok: false, reason: problem };
  }
  const data = parsed.data;
  return {
    ok: true,
    payload: text,
    fields: {
      event_id: data.event_id,
      event_type: data.event_type,
      schema_version: data.schema_version,
      request_id: data.request_id,
      actor_user_id: data.actor.user_id,
    },
  };
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** PostgreSQL's jsonb refuses \u0000 and unpaired surrogates that JSON.parse accepts. */
function findUnstorableString(value: unknown): string | null {
  const check = (s: string): string | null => {
    if (s.includes('\u0000')) return 'contains \\u0000, which PostgreSQL cannot store';
    if (LONE_SURROGATE.test(s)) return 'contains an unpaired UTF-16 surrogate escape, which PostgreSQL cannot store';
    return null;
  };
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item === 'string') {
      const problem = check(item);
      if (problem) return problem;
    } else if (Array.isArray(item)) {
      stack.push(...item);
    } else if (typeof item === 'object' && item !== null) {
      for (const [key, child] of Object.entries(item)) {
        const problem = check(key);
        if (problem) return problem;
        stack.push(child);
      }
    }
  }
  return null;
}

/** Deeper nesting, or a number bigger or finer than this, is left to PostgreSQL to judge (see storableForSure). */
const SURE_DEPTH = 64;
const SURE_NUMBER_CHARS = 100;
const SURE_EXPONENT_DIGITS = 3;

/**
 * Whether PostgreSQL is certain to take this text as jsonb, given that it is a line validateLine passed and that the
 * database stores UTF-8. What JSON.parse takes and jsonb refuses, once validateLine has refused \u0000 and unpaired
 * surrogates: numbers outside numeric's range (an exponent beyond about +-131072, more than 16383 digits after the
 * point, or an exponent beyond +-1000 on older servers) and nesting deep enough to exhaust the server's stack (many
 * thousands of levels). Lines with no number of more than SURE_NUMBER_CHARS characters or an exponent of more than
 * SURE_EXPONENT_DIGITS digits, and no nesting deeper than SURE_DEPTH, are far inside both limits; any other line
 * gets `false`, and the dry run has PostgreSQL parse it, as the insert would. One pass over the text, skipping
 * strings with indexOf: the dry run calls this instead of sending every payload to be parsed.
 */
export function storableForSure(text: string): boolean {
  let depth = 0;
  const end = text.length;
  let i = 0;
  while (i < end) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // The text is valid JSON, so every string closes: find the quote not escaped by an odd run of backslashes.
      let from = i + 1;
      for (;;) {
        const quote = text.indexOf('"', from);
        let backslashes = 0;
        while (text.charCodeAt(quote - 1 - backslashes) === 0x5c) backslashes += 1;
        from = quote + 1;
        if (backslashes % 2 === 0) break;
      }
      i = from;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > SURE_DEPTH) return false;
      i += 1;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth -= 1;
      i += 1;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      let exponentAt = -1;
      for (; j < end; j++) {
        const d = text.charCodeAt(j);
        if (d === 0x65 || d === 0x45) exponentAt = j;
        else if (!((d >= 0x30 && d <= 0x39) || d === 0x2e || d === 0x2b || d === 0x2d)) break;
      }
      if (j - i > SURE_NUMBER_CHARS) return false;
      if (exponentAt >= 0) {
        const sign = text.charCodeAt(exponentAt + 1);
        const digits = j - exponentAt - 1 - (sign === 0x2b || sign === 0x2d ? 1 : 0);
        if (digits > SURE_EXPONENT_DIGITS) return false;
      }
      i = j;
    } else {
      i += 1;
    }
  }
  return true;
}

function clip(message: string, limit = 300): string {
  const clean = sanitizeForText(message);
  return clean.length > limit ? `${clean.slice(0, limit)}…` : clean;
}
