/**
 * JSON for an operator's terminal and scripts. JSON.stringify already escapes C0 controls and lone
 * surrogates; this also escapes what it leaves raw yet a terminal acts on (DEL and C1 controls,
 * bidirectional overrides, line separators), so a line of JSON reads as what it holds. Still valid JSON
 * with the same values.
 */
const RAW_BUT_UNSAFE = /[\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** JSON text with the characters above escaped; the same JSON value. */
export function escapeUnsafeJson(text: string): string {
  return text.replace(RAW_BUT_UNSAFE, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function jsonLine(value: unknown): string {
  return escapeUnsafeJson(JSON.stringify(value));
}

const MAP_KEYS = new Set(['byEventType', 'byStatusCode']);

/**
 * A copy with every object key in snake_case, for the JSON the commands print (the workflows' queries
 * and results use camelCase). Keys of maps whose keys are data (event types, status codes) stay as they are.
 */
export function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (value === null || typeof value !== 'object' || value instanceof Date) return value;
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([key, v]) => [
      key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
      MAP_KEYS.has(key) ? v : snakeKeys(v),
    ]),
  );
}
