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

function clip(message: string, limit = 300): string {
  const clean = sanitizeForText(message);
  return clean.length > limit ? `${clean.slice(0, limit)}…` : clean;
}
