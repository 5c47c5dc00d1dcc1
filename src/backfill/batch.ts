import type { Pool, PoolClient } from 'pg';
import {
  BACKFILL_LIMITS,
  type BackfillBatchInput,
  type BackfillBatchResult,
  type FileFingerprint,
  LINE_OUTCOME,
} from '../shared/backfill';
import { batchCheckpoints } from '../shared/progress';
import {
  beforeBatch,
  castPayloadToJsonb,
  castPayloadsToJsonb,
  type FailedLineRows,
  forgetDryRunEvents,
  insertFailedLines,
  insertOutboxEvents,
  onceInLedger,
  readDryRunState,
  readLedger,
  rememberDryRunEvents,
  setDryRunCoverage,
} from '../db/queries';
import { fingerprintOf, identityProblem, InputFileError, openInputFile, restat, type OpenedInput } from '../input-files';
import { backfillBatchKey } from '../shared/batch-keys';
import { decodeLine, excerptOf, readLineChunks, sanitizeForText } from './lines';
import { type EventFields, storableForSure, validateLine } from './validate';

/** The file is gone, outside the input roots, or changed under a running backfill: retrying cannot help. */
export class BackfillFileError extends InputFileError {
  override name = 'BackfillFileError';
}

/** Opens the file below the input roots, as a batch will, and takes the fingerprint every batch is checked against. */
export async function fingerprintFile(path: string, roots: readonly string[]): Promise<FileFingerprint> {
  const opened = await openInputFile(path, roots);
  try {
    return fingerprintOf(opened);
  } finally {
    await opened.handle.close();
  }
}

/** Opens the run's file for one batch; its identity is checked on the opened handle, which the batch then reads. */
async function openForBatch(input: BackfillBatchInput, roots: readonly string[]): Promise<OpenedInput> {
  const opened = await openInputFile(input.path, roots);
  const problem = identityProblem(input.fingerprint, opened);
  if (problem) {
    await opened.handle.close();
    throw new BackfillFileError(`${input.path} ${problem}; start a new run on a file that is no longer being written`);
  }
  return opened;
}

interface Candidate extends EventFields {
  lineNumber: number;
  byteOffset: number;
  payload: string;
  /** Index of this line among the batch's processed lines: where its outcome goes. */
  ordinal: number;
}

/** Live figures of a batch in flight, shown as its heartbeat details in the Temporal UI. */
export interface BatchHeartbeat {
  /** Lines processed so far (blank lines not counted). */
  lines: number;
  failed: number;
  /** Bytes of the file this batch has read so far, and the offset it has reached. */
  bytes: number;
  offset: number;
}

export interface BatchHooks {
  heartbeat(details: BatchHeartbeat): void;
  /** Throws if the activity was cancelled; called only where stopping loses nothing. */
  throwIfCancelled(): void;
  /** Aborted when the activity is cancelled or timed out: the transaction in flight rolls back. */
  signal?: AbortSignal;
}

/**
 * Processes one batch of a backfill exactly once: its outbox writes, its failed lines and its
 * ledger row commit in one transaction, and a batch already in the ledger returns what it recorded.
 */
export async function runBackfillBatch(
  pool: Pool,
  input: BackfillBatchInput,
  roots: readonly string[],
  hooks: BatchHooks,
): Promise<BackfillBatchResult> {
  const batchKey = backfillBatchKey(input.startOffset);
  const recorded = await readLedger<BackfillBatchResult>(pool, input.runKey, batchKey);
  if (recorded) return recorded;

  hooks.throwIfCancelled();
  const file = await openForBatch(input, roots);
  try {
    // Checked again inside the batch's transaction; this read only spares the usual case a restore transaction.
    if (input.dryRun && (await readDryRunState(pool, input.runKey)).coveredTo !== input.startOffset) {
      if ((await restoreDryRunIds(pool, input, file, hooks)) === 'recorded') {
        return (await readLedger<BackfillBatchResult>(pool, input.runKey, batchKey))!;
      }
    }
    return await onceInLedger(pool, input.runKey, batchKey, async (client) => {
      let writes: WriteMode = { dryRun: false };
      if (input.dryRun) {
        const state = await readDryRunState(client, input.runKey);
        // restoreDryRunIds left them covering up to this batch; anything else means they were lost in between
        // (PostgreSQL restarted): fail this attempt, and the retry restores them first.
        if (state.coveredTo !== input.startOffset) {
          throw new Error(`the dry run's recorded ids no longer reach offset ${input.startOffset} (PostgreSQL restarted?); the retry restores them`);
        }
        writes = { dryRun: true, utf8: state.utf8 };
      }
      const tally = newTally(input.startOffset, input.batchSize);
      const { created, duplicates } = await parseAndWrite(client, file, input, writes, hooks, tally);
      await insertFailedLines(client, input.runKey, input.workflowId, tally.failed);
      if (input.dryRun) await setDryRunCoverage(client, input.runKey, tally.endOffset);
      // Written in place while this batch read it: roll back rather than commit lines read half old, half new.
      const changed = identityProblem(input.fingerprint, await restat(file));
      if (changed) throw new BackfillFileError(`${input.path} ${changed}; start a new run on a file that is no longer being written`);
      const result: BackfillBatchResult = {
        processed: tally.processed,
        created,
        enqueued: created,
        duplicates,
        failed: tally.failed.line_number.length,
        endOffset: tally.endOffset,
        linesConsumed: tally.linesConsumed,
      };
      if (input.checkpoints) {
        result.checkpoints = batchCheckpoints(tally.outcomes, tally.processed, input.checkpoints, 3);
      }
      return result;
    }, hooks.signal);
  } finally {
    await file.handle.close();
  }
}

/** How a batch writes: into the outbox, or (dry run) only recording ids, with payloads parsed here when `utf8`. */
type WriteMode = { dryRun: false } | { dryRun: true; utf8: boolean };

function newTally(startOffset: number, lines: number): BatchTally {
  return {
    failed: { line_number: [], byte_offset: [], reason: [], excerpt: [] },
    processed: 0,
    linesConsumed: 0,
    endOffset: startOffset,
    outcomes: new Uint8Array(lines),
  };
}

/** Reads the batch's lines and writes them, PostgreSQL writing one slice while this process parses the next. */
async function parseAndWrite(
  client: PoolClient,
  file: OpenedInput,
  input: BackfillBatchInput,
  writes: WriteMode,
  hooks: BatchHooks,
  tally: BatchTally,
): Promise<{ created: number; duplicates: number }> {
  let created = 0;
  let duplicates = 0;
  let writing: Promise<{ created: number; duplicates: number }> | undefined;
  for await (const slice of parseBatch(file, input, hooks, tally)) {
    if (writing) ({ created, duplicates } = addWritten({ created, duplicates }, await writing));
    hooks.throwIfCancelled();
    writing = writeCandidates(client, input, writes, slice, tally);
    // Awaited on the next turn or below; this only keeps a failure from counting as unhandled meanwhile.
    writing.catch(() => undefined);
  }
  if (writing) ({ created, duplicates } = addWritten({ created, duplicates }, await writing));
  return { created, duplicates };
}

/** Lines a chunk of restoreDryRunIds reads in one transaction: bounded, like a batch. */
const RESTORE_CHUNK_LINES = BACKFILL_LIMITS.maxBatchSize;

/**
 * Makes the dry run's recorded ids cover the file up to this batch's start, as the batches before it left them.
 * They live in UNLOGGED tables (migrations/014_dry_run_unlogged.sql), which PostgreSQL empties after a crash; a batch
 * run by a worker from before that migration also leaves its coverage behind. Either way the coverage row says how
 * far the ids are complete, and the lines from there to this batch's start are read again and their ids recorded,
 * exactly as their batches did (same checks, same PostgreSQL parse of doubtful payloads), counting nothing. Each
 * chunk commits with its coverage, so a restore cut short goes on from where it stopped and every attempt stays
 * bounded in time, whatever the file's size. Returns `recorded` if the batch committed meanwhile (a racing attempt).
 */
async function restoreDryRunIds(pool: Pool, input: BackfillBatchInput, file: OpenedInput, hooks: BatchHooks): Promise<'recorded' | void> {
  const batchKey = backfillBatchKey(input.startOffset);
  // Reading again is not this batch's progress: leave the heartbeat details as they were.
  const quiet: BatchHooks = { ...hooks, heartbeat: () => undefined };
  for (;;) {
    hooks.throwIfCancelled();
    const outcome = await beforeBatch(pool, input.runKey, batchKey, async (client) => {
      const state = await readDryRunState(client, input.runKey);
      let from = state.coveredTo;
      if (from === input.startOffset) return 'covered' as const;
      if (from === null || from > input.startOffset) {
        // Nothing recorded, or ids from past this batch (cannot come from this run's own order): start over.
        await forgetDryRunEvents(client, input.runKey);
        from = 0;
      }
      if (from < input.startOffset) {
        const chunk: BackfillBatchInput = {
          ...input,
          startOffset: from,
          // Line numbers only label failed lines, which a restore does not record.
          startLine: 1,
          batchSize: RESTORE_CHUNK_LINES,
          fingerprint: { ...input.fingerprint, size: input.startOffset },
          checkpoints: undefined,
        };
        const tally = newTally(from, RESTORE_CHUNK_LINES);
        await parseAndWrite(client, file, chunk, { dryRun: true, utf8: state.utf8 }, quiet, tally);
        // Coverage only ever holds line boundaries of this file, so a chunk always moves on; never loop in place.
        if (tally.endOffset <= from) throw new Error(`restoring the dry run's ids made no progress at offset ${from}`);
        from = tally.endOffset;
      }
      await setDryRunCoverage(client, input.runKey, from);
      return from === input.startOffset ? ('covered' as const) : ('partly' as const);
    }, hooks.signal);
    if (outcome !== 'partly') return outcome === 'recorded' ? 'recorded' : undefined;
  }
}

function addWritten(a: { created: number; duplicates: number }, b: { created: number; duplicates: number }) {
  return { created: a.created + b.created, duplicates: a.duplicates + b.duplicates };
}

/** Lines per write statement: big enough to amortise a round trip, small enough to overlap parsing with writing. */
const WRITE_SLICE = 1000;

interface BatchTally {
  failed: FailedLineRows;
  processed: number;
  linesConsumed: number;
  endOffset: number;
  /** LINE_OUTCOME of each processed line, in file order: the checkpoints are counted from these. */
  outcomes: Uint8Array;
}

/**
 * Reads and validates the batch's lines, yielding the valid ones in file order, in slices; failures and
 * counts accumulate in `tally`. Slices are written in order, so a later slice sees an earlier one's rows
 * as duplicates, just as a later batch does. The batch ends at `batchSize` processed lines or at
 * `maxBatchBytes` read, blank lines included, so a file of nothing but newlines is read in bounded batches.
 * Every read heartbeats and stops for cancellation, also in the middle of one very long line.
 */
async function* parseBatch(
  file: OpenedInput,
  input: BackfillBatchInput,
  hooks: BatchHooks,
  tally: BatchTally,
): AsyncGenerator<Candidate[]> {
  const { failed } = tally;
  const addFailure = (lineNumber: number, byteOffset: number, reason: string, raw: Buffer | null) => {
    tally.outcomes[tally.processed - 1] = LINE_OUTCOME.failed;
    failed.line_number.push(lineNumber);
    failed.byte_offset.push(byteOffset);
    failed.reason.push(reason);
    failed.excerpt.push(excerptOf(raw));
  };
  let slice: Candidate[] = [];
  let sliceLines = 0;
  let bytes = 0;
  reading: for await (const lines of readLineChunks(file.handle, {
    startOffset: input.startOffset,
    startLine: input.startLine,
    endOffset: input.fingerprint.size,
    maxLineBytes: BACKFILL_LIMITS.maxLineBytes,
  })) {
    hooks.throwIfCancelled();
    for (const line of lines) {
      tally.linesConsumed += 1;
      tally.endOffset = line.nextOffset;
      bytes += line.byteLength;
      const decoded = decodeLine(line.bytes, BACKFILL_LIMITS.maxLineBytes);
      if (decoded.kind === 'blank') {
        // Blank lines are not processed, but they are read: they count toward the batch's bytes.
        if (bytes >= BACKFILL_LIMITS.maxBatchBytes) break reading;
        continue;
      }
      tally.processed += 1;
      sliceLines += 1;
      if (decoded.kind === 'invalid') {
        addFailure(line.lineNumber, line.byteOffset, decoded.reason, line.bytes ?? line.head ?? null);
      } else {
        const verdict = validateLine(decoded.text);
        if (verdict.ok) {
          const candidate = verdict.fields as Candidate;
          candidate.payload = verdict.payload;
          candidate.lineNumber = line.lineNumber;
          candidate.byteOffset = line.byteOffset;
          candidate.ordinal = tally.processed - 1;
          slice.push(candidate);
        } else {
          addFailure(line.lineNumber, line.byteOffset, verdict.reason, line.bytes);
        }
      }
      if (tally.processed >= input.batchSize || bytes >= BACKFILL_LIMITS.maxBatchBytes) break reading;
      if (sliceLines >= WRITE_SLICE) {
        yield slice;
        slice = [];
        sliceLines = 0;
      }
    }
    hooks.heartbeat({ lines: tally.processed, failed: failed.line_number.length, bytes, offset: tally.endOffset });
  }
  if (slice.length > 0) yield slice;
}

/** First occurrence in the batch wins; later ones are duplicates (earlier batches are already in the database). */
function firstOccurrences(candidates: Candidate[]): Candidate[] {
  const seen = new Set<string>();
  const unique: Candidate[] = [];
  for (const candidate of candidates) {
    if (seen.has(candidate.event_id)) continue;
    seen.add(candidate.event_id);
    unique.push(candidate);
  }
  return unique;
}

/**
 * Records each written line's outcome: a first occurrence whose id the write returned was created; every
 * other line (an id already in the outbox, or repeated in the slice) is a duplicate.
 */
function recordOutcomes(candidates: Candidate[], unique: Candidate[], createdIds: string[], outcomes: Uint8Array): void {
  const created = new Set(createdIds);
  for (const candidate of candidates) outcomes[candidate.ordinal] = LINE_OUTCOME.duplicate;
  for (const candidate of unique) {
    if (created.has(candidate.event_id)) outcomes[candidate.ordinal] = LINE_OUTCOME.created;
  }
}

function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  // Class 22: data exception (bad jsonb, numeric overflow); class 54: program limit (nesting depth).
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('54'));
}

/**
 * Writes the batch's valid lines. If PostgreSQL rejects a payload that passed our own checks, the
 * culprits are found one by one, recorded as failed, and the rest written: one line never fails its batch.
 */
async function writeCandidates(
  client: PoolClient,
  input: BackfillBatchInput,
  writes: WriteMode,
  candidates: Candidate[],
  tally: BatchTally,
): Promise<{ created: number; duplicates: number }> {
  const { failed } = tally;
  let remaining = candidates;
  for (;;) {
    const unique = firstOccurrences(remaining);
    // The payloads PostgreSQL must parse to say whether it takes them: all of an insert's, and those of a dry run
    // that this process cannot vouch for (nearly always none, so a dry run sends only ids).
    let parsed = unique;
    await client.query('SAVEPOINT batch_write');
    try {
      let createdIds: string[];
      if (writes.dryRun) {
        if (writes.utf8) parsed = unique.filter((c) => !storableForSure(c.payload));
        if (parsed.length > 0) await castPayloadsToJsonb(client, parsed.map((c) => c.payload));
        createdIds = await rememberDryRunEvents(client, input.runKey, unique.map((c) => c.event_id));
      } else {
        createdIds = await insertOutboxEvents(client, columnsOf(unique), input.maxAttempts, input.runKey);
      }
      await client.query('RELEASE SAVEPOINT batch_write');
      recordOutcomes(remaining, unique, createdIds, tally.outcomes);
      return { created: createdIds.length, duplicates: remaining.length - createdIds.length };
    } catch (err) {
      if (!isDataError(err)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT batch_write');
      const rejected = await findRejectedPayloads(client, parsed);
      if (rejected.size === 0) throw err;
      for (const [candidate, reason] of rejected) {
        tally.outcomes[candidate.ordinal] = LINE_OUTCOME.failed;
        failed.line_number.push(candidate.lineNumber);
        failed.byte_offset.push(candidate.byteOffset);
        failed.reason.push(reason);
        failed.excerpt.push(excerptOf(Buffer.from(candidate.payload.slice(0, 400))));
      }
      remaining = remaining.filter((c) => !rejected.has(c));
    }
  }
}

async function findRejectedPayloads(client: PoolClient, unique: Candidate[]): Promise<Map<Candidate, string>> {
  const rejected = new Map<Candidate, string>();
  for (const candidate of unique) {
    await client.query('SAVEPOINT one_line');
    try {
      await castPayloadToJsonb(client, candidate.payload);
      await client.query('RELEASE SAVEPOINT one_line');
    } catch (err) {
      if (!isDataError(err)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT one_line');
      rejected.set(candidate, sanitizeForText(`PostgreSQL rejected the payload: ${(err as Error).message}`).slice(0, 300));
    }
  }
  return rejected;
}

function columnsOf(candidates: Candidate[]) {
  return {
    event_id: candidates.map((c) => c.event_id),
    event_type: candidates.map((c) => c.event_type),
    schema_version: candidates.map((c) => c.schema_version),
    request_id: candidates.map((c) => c.request_id),
    actor_user_id: candidates.map((c) => c.actor_user_id),
    payload: candidates.map((c) => c.payload),
  };
}
