/** What one HTTP attempt's result means for the event. Pure, so the rules are unit-tested on their own. */
export type Verdict = 'delivered' | 'retryable' | 'terminal';

/**
 * 2xx delivered; 408, 429, 5xx retryable; 3xx retryable as well: a redirect (never followed) says the
 * configured URL is not the endpoint, the same for every event, like an outage, and once an operator fixes
 * WEBHOOK_URL the waiting events go out without a replay. Any other status is terminal.
 */
export function classifyStatus(status: number): Verdict {
  if (status >= 200 && status < 300) return 'delivered';
  if (status === 408 || status === 429 || status >= 500 || (status >= 300 && status < 400)) return 'retryable';
  return 'terminal';
}

export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

/**
 * Delay before attempt `attempts + 1`: exponential from the base, capped, with "equal jitter" (half fixed,
 * half random) so a receiver coming back is not hit by every event at once yet no retry comes too early.
 */
export function backoffDelayMs(attempts: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exponential = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.max(policy.baseMs, Math.round(exponential / 2 + random() * (exponential / 2)));
}

/** Retry-After as seconds or an HTTP date; null when absent or unreadable. */
export function parseRetryAfterMs(value: string | undefined, nowMs: number): number | null {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? null : Math.max(0, date - nowMs);
}

/** The receiver's Retry-After wins over our backoff, but only within [base, cap]. */
export function retryDelayMs(
  attempts: number,
  retryAfter: string | undefined,
  policy: BackoffPolicy,
  nowMs: number,
  random?: () => number,
): number {
  const asked = parseRetryAfterMs(retryAfter, nowMs);
  if (asked !== null) return Math.min(policy.capMs, Math.max(policy.baseMs, asked));
  return backoffDelayMs(attempts, policy, random);
}
