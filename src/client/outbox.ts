import type { AppConfig } from '../config';
import { createPool, explainDatabaseError } from '../db/pool';
import {
  deliveryAttempts,
  outboxEvent,
  outboxStats,
  replayAuditEntry,
  type DeliveryAttemptRow,
  type OutboxEventRow,
  type ReplayAuditRow,
} from '../db/queries';
import { OUTBOX_STATUSES } from '../shared/replay';
import { RunError, type Output } from './errors';
import { escapeUnsafeJson, jsonLine } from './json';
import { printable } from './text';

/** Runs `work` with a small pool; a database that cannot be reached is one line naming the fix. */
async function withDatabase<T>(config: AppConfig, label: string, work: (pool: ReturnType<typeof createPool>) => Promise<T>): Promise<T> {
  const pool = createPool(config.databaseUrl, 1);
  try {
    return await work(pool);
  } catch (err) {
    if (err instanceof RunError) throw err;
    const hint = (err as { code?: string }).code === '42P01' ? "the schema is missing; run 'gotong-worker migrate'" : '';
    throw new RunError(`[${label}] ${hint || explainDatabaseError(err, config.databaseUrl)}`);
  } finally {
    await pool.end();
  }
}

const seconds = (value: number | null) => Math.max(0, Math.round((value ?? 0) * 1000) / 1000);

/** `gotong-worker outbox stats`: counts by status, the oldest due event's age, dead letters by event type and status code. */
export async function runOutboxStats(config: AppConfig, opts: { top: number; json: boolean }, out: Output): Promise<void> {
  const row = await withDatabase(config, 'outbox', (pool) => outboxStats(pool));
  const waiting = { pending: Number(row.pending), in_flight: Number(row.in_flight), retrying: Number(row.retrying), dead_letter: Number(row.dead_letter) };
  const total = Number(row.total);
  const byStatus: Record<string, number> = {};
  for (const status of OUTBOX_STATUSES) {
    byStatus[status] = status === 'delivered' ? total - Object.values(waiting).reduce((a, b) => a + b, 0) : waiting[status];
  }
  const stats = {
    total,
    by_status: byStatus,
    due: Number(row.due),
    oldest_due_age_seconds: seconds(row.oldest_due_seconds),
    expired_leases: Number(row.expired_leases),
    dead_letters_by_event_type: row.dead_by_type,
    dead_letters_by_status_code: row.dead_by_code.map((c) => ({ status_code: c.status_code, count: c.count })),
  };
  if (opts.json) {
    out.log(jsonLine(stats));
    return;
  }
  out.log(`[outbox] total=${total} ${OUTBOX_STATUSES.map((s) => `${s}=${byStatus[s]}`).join(' ')}`);
  out.log(
    `[outbox] due=${stats.due} oldest_due_age_s=${stats.oldest_due_age_seconds} expired_leases=${stats.expired_leases}` +
      (stats.expired_leases > 0 ? ' (claimed by a worker that stopped; taken up again by the next pass)' : ''),
  );
  const top = <T extends { count: number }>(title: string, rows: T[], label: (row: T) => string) => {
    if (rows.length === 0) return;
    out.log(`[outbox] dead letters by ${title}:`);
    for (const r of rows.slice(0, opts.top)) out.log(`  ${String(r.count).padStart(9)}  ${printable(label(r))}`);
    if (rows.length > opts.top) out.log(`  ... and ${rows.length - opts.top} more (--top N, or --json for all)`);
  };
  top('event type', stats.dead_letters_by_event_type, (r) => r.event_type);
  top('last status code', stats.dead_letters_by_status_code, (r) => (r.status_code === null ? 'none (no response: timeout or connection error)' : String(r.status_code)));
}

const at = (d: Date | null) => (d ? d.toISOString() : null);

function eventJson(row: OutboxEventRow): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) {
    if (key !== 'payload') json[key] = value instanceof Date ? value.toISOString() : value;
  }
  return json;
}

/**
 * The event as one JSON object. The payload goes in as PostgreSQL's own text of it: parsing it here would
 * round numbers beyond a double's precision, and an operator inspecting an event must see what is stored.
 */
function eventJsonText(row: OutboxEventRow): string {
  const text = jsonLine(eventJson(row));
  return row.payload === undefined ? text : `${text.slice(0, -1)},"payload":${escapeUnsafeJson(row.payload)}}`;
}

function attemptJson(a: DeliveryAttemptRow): Record<string, unknown> {
  return { ...a, started_at: at(a.started_at), finished_at: at(a.finished_at) };
}

function replayJson(r: ReplayAuditRow): Record<string, unknown> {
  return { ...r, replayed_at: at(r.replayed_at) };
}

/** `gotong-worker outbox show <event_id>`: the row and its attempt log; the payload only with --payload. */
export async function runOutboxShow(
  config: AppConfig,
  eventId: string,
  opts: { payload: boolean; limit: number; json: boolean },
  out: Output,
): Promise<void> {
  const shown = await withDatabase(config, 'outbox', async (pool) => {
    const event = await outboxEvent(pool, eventId, opts.payload);
    if (!event) return null;
    const [attempts, lastReplay] = await Promise.all([
      deliveryAttempts(pool, eventId, opts.limit),
      event.last_replay_run ? replayAuditEntry(pool, event.last_replay_run, eventId) : Promise.resolve(null),
    ]);
    return { event, attempts, lastReplay };
  });
  if (!shown) {
    throw new RunError(`[outbox] no event '${printable(eventId)}' in the outbox; check the id (event ids are case-sensitive)`);
  }
  const { event, attempts, lastReplay } = shown;
  if (opts.json) {
    const rest = jsonLine({ attempts: attempts.map(attemptJson), last_replay: lastReplay ? replayJson(lastReplay) : null });
    out.log(`{"event":${eventJsonText(event)},${rest.slice(1)}`);
    return;
  }
  const field = (name: string, value: unknown) => {
    if (value === null || value === undefined) return;
    const text = value instanceof Date ? value.toISOString() : String(value);
    out.log(`  ${name.padEnd(17)} ${printable(text)}`);
  };
  out.log(`event ${printable(event.event_id)}`);
  for (const [key, value] of Object.entries(event)) if (key !== 'event_id' && key !== 'payload') field(key, value);
  if (lastReplay) {
    out.log(
      `last replay        ${printable(lastReplay.run_key)} at ${lastReplay.replayed_at.toISOString()}: was ${lastReplay.previous_status} ` +
        `after ${lastReplay.previous_attempts} attempts, last status ${lastReplay.previous_status_code ?? 'none'}` +
        (lastReplay.previous_error ? `, error ${printable(lastReplay.previous_error)}` : ''),
    );
  }
  out.log(`attempts (${attempts.length}${attempts.length === opts.limit ? `, the first ${opts.limit}; --limit N for more` : ''}):`);
  for (const a of attempts) {
    const status = a.status_code === null ? 'no response' : `HTTP ${a.status_code}`;
    out.log(
      `  #${a.attempt_number} ${a.trigger.padEnd(9)} ${a.started_at.toISOString()} ${String(a.duration_ms).padStart(6)} ms  ${status}` +
        (a.error && a.error !== `HTTP ${a.status_code}` ? `  error: ${printable(a.error)}` : ''),
    );
    if (a.response_excerpt) out.log(`      response: ${printable(a.response_excerpt)}`);
  }
  if (event.payload !== undefined) {
    out.log('payload:');
    out.log(`  ${printable(event.payload)}`);
  }
}
