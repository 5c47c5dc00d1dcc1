/**
 * Checks of a run's input, pure functions shared by the workflows (a run started directly, not through the
 * CLI, fails once with the message instead of retrying a bad activity forever) and the CLI (the same
 * message as a usage error, before anything starts). Part of the workflow bundle: no I/O, no libraries.
 */
import { BACKFILL_LIMITS, type BackfillInput } from './backfill';
import { OUTBOX_STATUSES, type ReplayInput } from './replay';

export const INPUT_LIMITS = {
  /** Run keys prefix every ledger key; the CLI's are under 200 bytes. */
  maxRunKeyBytes: 512,
  maxPathBytes: 4096,
  maxMaxAttempts: 1000,
  maxBatchesPerRun: 10_000,
  maxReplayBatchSize: 100_000,
  maxEventTypes: 1000,
  maxEventTypeBytes: 256,
} as const;

function utf8Bytes(text: string): number {
  let n = 0;
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    n += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
  }
  return n;
}

const show = (value: unknown): string => {
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
};

function wholeNumber(name: string, value: unknown, min: number, max: number): string | null {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max) return null;
  return `${name} is ${show(value)}; it must be a whole number from ${min} to ${max}`;
}

/** A run key's problem, named as the field that holds it. */
const prefixed = (field: string, problem: string | null): string | null => (problem === null ? null : problem.replace(/^runKey\b/, field));

function runKeyProblem(runKey: unknown): string | null {
  if (typeof runKey !== 'string' || runKey.trim() === '') return `runKey is ${show(runKey)}; it must be a non-empty string`;
  if (utf8Bytes(runKey) > INPUT_LIMITS.maxRunKeyBytes) {
    return `runKey is ${utf8Bytes(runKey)} bytes long; it must be at most ${INPUT_LIMITS.maxRunKeyBytes} bytes`;
  }
  return null;
}

function absolutePathProblem(name: string, path: unknown): string | null {
  if (typeof path !== 'string' || path === '') return `${name} is ${show(path)}; it must be an absolute path`;
  if (path.includes('\u0000')) return `${name} contains a NUL character`;
  if (!path.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(path)) {
    return `${name} ${show(path)} is relative; it must be an absolute path (workers do not share a working directory)`;
  }
  if (utf8Bytes(path) > INPUT_LIMITS.maxPathBytes) return `${name} is longer than ${INPUT_LIMITS.maxPathBytes} bytes`;
  return null;
}

const first = (...problems: Array<string | null>): string | null => problems.find((p) => p !== null) ?? null;

/** Why a webhookBackfill input cannot run, or null. */
export function backfillInputProblem(input: BackfillInput): string | null {
  if (typeof input !== 'object' || input === null) return 'the input must be one object';
  const problem = first(
    runKeyProblem(input.runKey),
    absolutePathProblem('path', input.path),
    typeof input.dryRun === 'boolean' ? null : `dryRun is ${show(input.dryRun)}; it must be true or false`,
    wholeNumber('maxAttempts', input.maxAttempts, 1, INPUT_LIMITS.maxMaxAttempts),
    wholeNumber('batchSize', input.batchSize, 1, BACKFILL_LIMITS.maxBatchSize),
    input.batchesPerRun === undefined ? null : wholeNumber('batchesPerRun', input.batchesPerRun, 1, INPUT_LIMITS.maxBatchesPerRun),
  );
  if (problem || input.state === undefined) return problem;
  const s = input.state;
  if (typeof s !== 'object' || s === null || typeof s.fingerprint !== 'object' || s.fingerprint === null || typeof s.counters !== 'object') {
    return 'state must be what a continued run carries (fingerprint, offset, nextLine, batches, counters, paused)';
  }
  return first(
    wholeNumber('state.fingerprint.size', s.fingerprint.size, 0, Number.MAX_SAFE_INTEGER),
    wholeNumber('state.offset', s.offset, 0, s.fingerprint.size),
    wholeNumber('state.nextLine', s.nextLine, 1, Number.MAX_SAFE_INTEGER),
    wholeNumber('state.batches', s.batches, 0, Number.MAX_SAFE_INTEGER),
    ...(['processed', 'created', 'enqueued', 'duplicates', 'failed'] as const).map((k) =>
      wholeNumber(`state.counters.${k}`, s.counters?.[k], 0, Number.MAX_SAFE_INTEGER),
    ),
  );
}

function timestampProblem(name: string, value: unknown): string | null {
  if (value === undefined) return null;
  if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) return `${name} is ${show(value)}; it must be an ISO 8601 timestamp`;
  return null;
}

/** Why a webhookReplayDlq input cannot run, or null. */
export function replayInputProblem(input: ReplayInput): string | null {
  if (typeof input !== 'object' || input === null) return 'the input must be one object';
  const f = input.filter;
  const filterProblem =
    typeof f !== 'object' || f === null
      ? 'filter must be an object with at least a status'
      : first(
          (OUTBOX_STATUSES as readonly unknown[]).includes(f.status)
            ? null
            : `filter.status is ${show(f.status)}; it must be one of ${OUTBOX_STATUSES.join(', ')}`,
          Array.isArray(f.eventTypes) &&
            f.eventTypes.length <= INPUT_LIMITS.maxEventTypes &&
            f.eventTypes.every((t) => typeof t === 'string' && t !== '' && utf8Bytes(t) <= INPUT_LIMITS.maxEventTypeBytes)
            ? null
            : `filter.eventTypes must be a list of at most ${INPUT_LIMITS.maxEventTypes} non-empty names of at most ${INPUT_LIMITS.maxEventTypeBytes} bytes`,
          timestampProblem('filter.since', f.since),
          timestampProblem('filter.until', f.until),
          f.since !== undefined && f.until !== undefined && Date.parse(f.since) >= Date.parse(f.until)
            ? 'filter.since must be earlier than filter.until'
            : null,
          f.statusCode === undefined ? null : wholeNumber('filter.statusCode', f.statusCode, 100, 599),
          f.statusClass === undefined ? null : wholeNumber('filter.statusClass', f.statusClass, 1, 5),
          f.statusCode !== undefined && f.statusClass !== undefined ? 'give filter.statusCode or filter.statusClass, not both' : null,
          f.eventIdsPath === undefined ? null : absolutePathProblem('filter.eventIdsPath', f.eventIdsPath),
          f.selectedBy === undefined ? null : prefixed('filter.selectedBy', runKeyProblem(f.selectedBy)),
        );
  return first(
    runKeyProblem(input.runKey),
    filterProblem,
    wholeNumber('limit', input.limit, 1, Number.MAX_SAFE_INTEGER),
    typeof input.dryRun === 'boolean' ? null : `dryRun is ${show(input.dryRun)}; it must be true or false`,
    wholeNumber('batchSize', input.batchSize, 1, INPUT_LIMITS.maxReplayBatchSize),
    typeof input.ratePerSecond === 'number' && Number.isFinite(input.ratePerSecond) && input.ratePerSecond >= 0
      ? null
      : `ratePerSecond is ${show(input.ratePerSecond)}; it must be a number >= 0 (0: no limit)`,
    input.batchesPerRun === undefined ? null : wholeNumber('batchesPerRun', input.batchesPerRun, 1, INPUT_LIMITS.maxBatchesPerRun),
    input.keepSelection === undefined || typeof input.keepSelection === 'boolean' ? null : `keepSelection is ${show(input.keepSelection)}; it must be true or false`,
    input.state === undefined
      ? null
      : typeof input.state !== 'object' || input.state === null || typeof input.state.counters !== 'object'
        ? 'state must be what a continued run carries (counters, batches, paused)'
        : first(
            wholeNumber('state.batches', input.state.batches, 0, Number.MAX_SAFE_INTEGER),
            ...(['processed', 'replayed', 'enqueued', 'skipped', 'failed'] as const).map((k) =>
              wholeNumber(`state.counters.${k}`, input.state?.counters?.[k], 0, Number.MAX_SAFE_INTEGER),
            ),
          ),
  );
}
