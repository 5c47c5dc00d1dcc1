import type { PoolClient, Pool } from 'pg';
import type { ReplayFilter, ReplayPreview } from '../shared/replay';
import { runbookReplayRunKey } from '../shared/runbook';

/** Hot-path SQL, one small typed function each. Row types keep the tables' snake_case names. */

/** Runs `work` in a transaction on a client of its own: committed if it returns, rolled back if it throws. */
export async function inTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export interface OutboxInsertRows {
  event_id: string[];
  event_type: string[];
  schema_version: string[];
  request_id: string[];
  actor_user_id: string[];
  payload: string[];
}

/**
 * Inserts new events as pending and due now; existing event_ids are left alone. Returns the ids it
 * created, so each line's outcome is known (the progress checkpoints count them line by line).
 */
export async function insertOutboxEvents(
  client: PoolClient,
  rows: OutboxInsertRows,
  maxAttempts: number,
  sourceRun: string,
): Promise<string[]> {
  if (rows.event_id.length === 0) return [];
  const result = await client.query<[string]>({
    rowMode: 'array',
    text: `INSERT INTO webhook_outbox
       (event_id, event_type, schema_version, request_id, actor_user_id, payload,
        status, attempts, max_attempts, next_attempt_at, source_run)
     SELECT e.event_id, e.event_type, e.schema_version, e.request_id, e.actor_user_id, e.payload::jsonb,
            'pending', 0, $7, now(), $8
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
            AS e(event_id, event_type, schema_version, request_id, actor_user_id, payload)
     ON CONFLICT (event_id) DO NOTHING
     RETURNING event_id`,
    values: [rows.event_id, rows.event_type, rows.schema_version, rows.request_id, rows.actor_user_id, rows.payload,
      maxAttempts, sourceRun],
  });
  return result.rows.map((row) => row[0]);
}

/**
 * Dry-run twin of insertOutboxEvents: returns the ids that an execute run would create, remembering
 * them per run so that later batches of the same file see them as duplicates.
 */
export async function rememberDryRunEvents(client: PoolClient, runKey: string, eventIds: string[]): Promise<string[]> {
  if (eventIds.length === 0) return [];
  const result = await client.query<[string]>({
    rowMode: 'array',
    text: `INSERT INTO backfill_dry_run_seen (run_key, event_id)
     SELECT $1, c.event_id FROM unnest($2::text[]) AS c(event_id)
      WHERE NOT EXISTS (SELECT 1 FROM webhook_outbox o WHERE o.event_id = c.event_id)
     ON CONFLICT DO NOTHING
     RETURNING event_id`,
    values: [runKey, eventIds],
  });
  return result.rows.map((row) => row[0]);
}

export interface DryRunState {
  /** Offset up to which the run's ids are recorded (see migrations/014_dry_run_unlogged.sql), or null if none are. */
  coveredTo: number | null;
  /** Whether the database stores text as UTF-8: only then can the worker tell alone that PostgreSQL takes a payload. */
  utf8: boolean;
}

/** Where a dry run's remembered ids stand. */
export async function readDryRunState(db: Pool | PoolClient, runKey: string): Promise<DryRunState> {
  const { rows } = await db.query<{ covered_to: string | null; encoding: string }>(
    `SELECT (SELECT covered_to FROM backfill_dry_run_coverage WHERE run_key = $1) AS covered_to,
            current_setting('server_encoding') AS encoding`,
    [runKey],
  );
  const row = rows[0]!;
  return { coveredTo: row.covered_to === null ? null : Number(row.covered_to), utf8: row.encoding === 'UTF8' };
}

export async function setDryRunCoverage(client: PoolClient, runKey: string, coveredTo: number): Promise<void> {
  await client.query(
    `INSERT INTO backfill_dry_run_coverage (run_key, covered_to) VALUES ($1, $2)
     ON CONFLICT (run_key) DO UPDATE SET covered_to = EXCLUDED.covered_to`,
    [runKey, coveredTo],
  );
}

/** Makes PostgreSQL parse every payload as jsonb, as the outbox insert would; throws on the first it rejects. */
export async function castPayloadsToJsonb(client: PoolClient, payloads: string[]): Promise<void> {
  if (payloads.length === 0) return;
  await client.query(`SELECT count(p::jsonb) FROM unnest($1::text[]) AS p`, [payloads]);
}

export async function castPayloadToJsonb(client: PoolClient, payload: string): Promise<void> {
  await client.query(`SELECT $1::text::jsonb`, [payload]);
}

export interface FailedLineRows {
  line_number: number[];
  byte_offset: number[];
  reason: string[];
  excerpt: string[];
}

export async function insertFailedLines(
  client: PoolClient,
  runKey: string,
  workflowId: string,
  rows: FailedLineRows,
): Promise<void> {
  if (rows.line_number.length === 0) return;
  await client.query(
    `INSERT INTO backfill_failed_lines (run_key, workflow_id, line_number, byte_offset, reason, excerpt)
     SELECT $1, $2, f.line_number, f.byte_offset, f.reason, f.excerpt
       FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[]) AS f(line_number, byte_offset, reason, excerpt)
     ON CONFLICT DO NOTHING`,
    [runKey, workflowId, rows.line_number, rows.byte_offset, rows.reason, rows.excerpt],
  );
}

/**
 * Serialises two executions of the same batch (a retry racing a slow original) for this transaction.
 * Tried rather than waited for in one statement: between tries the connection is idle, so an attempt whose
 * worker died lets go at once (PostgreSQL sees the connection close), and one that is cancelled stops waiting.
 */
export async function lockBatch(client: PoolClient, runKey: string, batchKey: string, signal?: AbortSignal): Promise<void> {
  const key = `${runKey}\u0001${batchKey}`;
  for (let pauseMs = 50; ; pauseMs = Math.min(pauseMs * 2, 500)) {
    const { rows } = await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked`, [key]);
    if (rows[0]!.locked) return;
    signal?.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}

export async function readLedger<T>(db: Pool | PoolClient, runKey: string, batchKey: string): Promise<T | null> {
  const result = await db.query<{ result: T }>(
    `SELECT result FROM batch_ledger WHERE run_key = $1 AND batch_key = $2`,
    [runKey, batchKey],
  );
  return result.rows[0]?.result ?? null;
}

export async function writeLedger(client: PoolClient, runKey: string, batchKey: string, result: unknown): Promise<void> {
  await client.query(`INSERT INTO batch_ledger (run_key, batch_key, result) VALUES ($1, $2, $3)`, [
    runKey,
    batchKey,
    JSON.stringify(result),
  ]);
}

export async function forgetDryRunEvents(db: Pool | PoolClient, runKey: string): Promise<void> {
  await db.query(
    `WITH coverage AS (DELETE FROM backfill_dry_run_coverage WHERE run_key = $1)
     DELETE FROM backfill_dry_run_seen WHERE run_key = $1`,
    [runKey],
  );
}

export async function analyzeOutbox(pool: Pool): Promise<void> {
  await pool.query('ANALYZE webhook_outbox');
}

/**
 * Refreshes the statistics of the columns delivery changes (status, times, last code, the replay run) when they are
 * due: when more rows changed since the last ANALYZE than autovacuum waits for on this table (50 + 2% of its rows,
 * migration 012), which dead letters piling up during an outage soon are. The rest (payloads, ids, types) keep what
 * the last ANALYZE found: rows change status, they are not added. What a replay selects by and plans on, and what
 * the backlog estimate reads, at 40% of a whole ANALYZE (90 against 200-235 ms on 100,000 rows here; the jsonb
 * payloads are most of the rest), and nothing when they are fresh. An ANALYZE of some columns leaves the change
 * counter as it was (PostgreSQL resets it only for a whole one), so replays re-analyze until autovacuum, due by the
 * same measure, has run its own. Returns whether it analyzed.
 */
export async function analyzeOutboxStatuses(pool: Pool): Promise<boolean> {
  // Backends report their changes to pg_stat_user_tables seconds late (up to about 10 s when idle), so an outage just
  // before a replay may not show there yet; the number of dead letters is known exactly (migration 012), and so is
  // what the statistics believe it is. Either one past autovacuum's measure makes the refresh due.
  const { rows } = await pool.query<{ due: boolean }>(
    `WITH t AS (
       SELECT c.reltuples, s.n_mod_since_analyze, 50 + 0.02 * greatest(s.n_live_tup, c.reltuples) AS threshold
         FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
        WHERE c.oid = 'webhook_outbox'::regclass),
     believed AS (
       SELECT coalesce((SELECT (st.most_common_freqs[array_position(st.most_common_vals::text::text[], 'dead_letter')])::float8
                          FROM pg_stats st
                         WHERE st.schemaname = current_schema() AND st.tablename = 'webhook_outbox' AND st.attname = 'status'), 0)
              * greatest((SELECT reltuples FROM t), 0) AS dead_letters),
     exact AS (SELECT coalesce(sum(delta), 0) AS dead_letters FROM webhook_outbox_dead_letter_deltas)
     SELECT coalesce(t.n_mod_since_analyze > t.threshold, true)
            OR abs((SELECT dead_letters FROM exact) - (SELECT dead_letters FROM believed)) > t.threshold AS due
       FROM t`,
  );
  if (rows[0]?.due === false) return false;
  await pool.query('ANALYZE webhook_outbox (status, updated_at, next_attempt_at, last_status_code, last_replay_run)');
  return true;
}

export interface FailedLineRow {
  run_key: string;
  workflow_id: string;
  line_number: string;
  byte_offset: string;
  reason: string;
  excerpt: string;
  recorded_at: Date;
}

/**
 * Failed lines of the newest run recorded under a workflow id (or of one run key), in file order, each with how
 * many that run recorded in all: counted in the same scan, so a listing cut at `limit` can say what it left out.
 */
export async function listFailedLines(
  pool: Pool,
  ref: { workflowId?: string; runKey?: string },
  limit: number,
): Promise<Array<FailedLineRow & { total: string }>> {
  const result = await pool.query<FailedLineRow & { total: string }>(
    `WITH chosen AS (
       SELECT run_key FROM backfill_failed_lines
        WHERE ($1::text IS NOT NULL AND run_key = $1) OR ($1::text IS NULL AND workflow_id = $2)
        ORDER BY recorded_at DESC LIMIT 1)
     SELECT f.*, count(*) OVER () AS total FROM backfill_failed_lines f JOIN chosen USING (run_key)
      ORDER BY f.line_number LIMIT $3`,
    [ref.runKey ?? null, ref.workflowId ?? null, limit],
  );
  return result.rows;
}

/** Whether a backfill run with this run key has committed a batch: its ledger rows (offset:N, shared/batch-keys) are kept for good. */
export async function backfillRunRecorded(pool: Pool, runKey: string): Promise<boolean> {
  const result = await pool.query<{ recorded: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM batch_ledger WHERE run_key = $1 AND batch_key LIKE 'offset:%') AS recorded`,
    [runKey],
  );
  return result.rows[0]!.recorded;
}

/**
 * Whether a backfill started under this workflow id (its run keys are `<workflow id>@<uuid>`) has committed a batch.
 * Read rarely (a `failed-lines` that found nothing), so a scan of the ledger's keys is fine.
 */
export async function backfillRunsRecordedUnder(pool: Pool, workflowId: string): Promise<boolean> {
  const result = await pool.query<{ recorded: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM batch_ledger WHERE left(run_key, length($1) + 1) = $1 || '@' AND batch_key LIKE 'offset:%') AS recorded`,
    [workflowId],
  );
  return result.rows[0]!.recorded;
}

// ---- delivery ----

export interface ClaimedEvent {
  event_id: string;
  request_id: string;
  body: string;
  attempts: number;
  max_attempts: number;
  replay_count: number;
}

/** Written as the attempt-log row of an attempt whose pass ended without recording it (a crash, a lost lease). */
export const LOST_ATTEMPT_ERROR =
  'no outcome recorded: the pass that claimed this attempt ended without recording it (worker lost or timed out); the request may have reached the receiver';

/**
 * Claims due events for one pass: expired leases (a dead pass's) first, then pending/retrying rows by due time; at
 * most `limit` rows and, past the first row, at most `maxBytes` of payload as sent. The attempt is counted here, so
 * a crash mid-request still uses it up; an expired lease's attempt, which its pass never recorded, is logged now as
 * lost, so every counted attempt has exactly one attempt-log row.
 */
export async function claimDueEvents(
  pool: Pool,
  limit: number,
  leaseOwner: string,
  leaseSeconds: number,
  maxBytes: number = Number.MAX_SAFE_INTEGER,
): Promise<ClaimedEvent[]> {
  // `= ANY(ARRAY(...))` rather than a join: with stale statistics the planner could otherwise pick a plan that
  // scans the outbox once per claimed row.
  const result = await pool.query<ClaimedEvent>(
    `WITH expired AS (
       SELECT event_id, 0 AS rank, octet_length(payload::text) AS bytes FROM webhook_outbox
        WHERE status = 'in_flight' AND lease_expires_at <= now()
        ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED),
     ready AS (
       SELECT event_id, 1 AS rank, octet_length(payload::text) AS bytes FROM webhook_outbox
        WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()
        ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED),
     ranked AS (
       SELECT event_id, rank, row_number() OVER w AS n, sum(bytes) OVER w AS upto
         FROM (SELECT * FROM expired UNION ALL SELECT * FROM ready) c
       -- In the order the two scans return them (expired first, each by due time): no sort needed.
       WINDOW w AS (ROWS UNBOUNDED PRECEDING)),
     due AS (SELECT event_id, rank FROM ranked WHERE n <= $1 AND (n = 1 OR upto <= $4)),
     lost AS (
       INSERT INTO webhook_delivery_attempts
         (event_id, attempt_number, trigger, status_code, duration_ms, error, request_body_sha256, started_at, finished_at)
       SELECT o.event_id, o.attempts, CASE WHEN o.replay_count > 0 THEN 'replay' ELSE 'scheduled' END, NULL, 0, $5,
              encode(sha256(convert_to(o.payload::text, 'UTF8')), 'hex'), o.updated_at, now()
         FROM webhook_outbox o
        WHERE o.event_id = ANY(ARRAY(SELECT event_id FROM due WHERE rank = 0)))
     UPDATE webhook_outbox o
        SET status = 'in_flight', attempts = o.attempts + 1, lease_owner = $2,
            lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
      WHERE o.event_id = ANY(ARRAY(SELECT event_id FROM due))
     RETURNING o.event_id, o.request_id, o.payload::text AS body, o.attempts, o.max_attempts, o.replay_count`,
    [limit, leaseOwner, leaseSeconds, maxBytes, LOST_ATTEMPT_ERROR],
  );
  return result.rows;
}

/**
 * Extends the leases a pass holds. Returns how many it still held: an event whose lease expired meanwhile may have
 * been taken by another pass, which then owns it.
 */
export async function renewLeases(pool: Pool, leaseOwner: string, leaseSeconds: number): Promise<number> {
  const result = await pool.query(
    `UPDATE webhook_outbox SET lease_expires_at = now() + make_interval(secs => $2)
      WHERE status = 'in_flight' AND lease_owner = $1`,
    [leaseOwner, leaseSeconds],
  );
  return result.rowCount ?? 0;
}

/**
 * One HTTP attempt and what it means for its event; row keys match the columns they land in.
 * Times are epoch milliseconds: cheaper to write and to parse than ISO strings, thousands of times a second.
 */
export interface DeliveryRecord {
  event_id: string;
  /** The event's new status. */
  status: string;
  status_code: number | null;
  error: string | null;
  next_attempt_at: number | null;
  attempt_number: number;
  trigger: 'scheduled' | 'replay';
  duration_ms: number;
  request_body_sha256: string;
  response_body_sha256: string | null;
  response_excerpt: string | null;
  /** Why the response body was read only in part ('size_limit', 'deadline', 'connection_lost'), or null. */
  response_cut_off: string | null;
  /** A 3xx answer's Location, sanitized and bounded; redirects are never followed. */
  redirect_location: string | null;
  started_at: number;
  finished_at: number;
}

/**
 * Writes outcomes and their attempt-log rows in one transaction. An outcome only lands while the lease is still
 * ours: if it expired and another pass re-claimed the event, that pass owns the row now and has logged this attempt
 * as lost, so the attempt row is written only with the outcome it belongs to.
 * The rows travel as one JSON document: PostgreSQL parses it far faster than the client escapes arrays.
 * One statement parses it once for both tables (two statements each parsed it again).
 */
export async function recordDeliveries(pool: Pool, leaseOwner: string, records: DeliveryRecord[]): Promise<number> {
  if (records.length === 0) return 0;
  return inTransaction(pool, async (client) => {
    // Delivery is at-least-once: if PostgreSQL crashed before flushing this, the leases would expire and
    // the events be delivered again, which receivers dedupe by event_id. Not waiting for the flush keeps
    // the commit off the dispatcher's critical path.
    await client.query('SET LOCAL synchronous_commit = off');
    const { rows } = await client.query<{ updated: string }>(
      `WITH r AS MATERIALIZED (
         SELECT r.event_id, r.status, r.status_code, r.error, r.attempt_number, r.trigger, r.duration_ms,
                r.request_body_sha256, r.response_body_sha256, r.response_excerpt, r.response_cut_off,
                r.redirect_location, to_timestamp(r.next_attempt_at / 1000) AS next_attempt_at,
                to_timestamp(r.started_at / 1000) AS started_at, to_timestamp(r.finished_at / 1000) AS finished_at
           FROM json_to_recordset($1::json)
                AS r(event_id text, status webhook_status, status_code int, error text, next_attempt_at float8,
                     attempt_number int, trigger text, duration_ms int, request_body_sha256 text,
                     response_body_sha256 text, response_excerpt text, response_cut_off text,
                     redirect_location text, started_at float8, finished_at float8)),
       outcome AS (
         UPDATE webhook_outbox o
            SET status = r.status, last_status_code = r.status_code, last_error = r.error,
                last_attempt_at = r.finished_at, next_attempt_at = r.next_attempt_at,
                delivered_at = CASE WHEN r.status = 'delivered' THEN r.finished_at ELSE o.delivered_at END,
                lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
           FROM r
          WHERE o.event_id = r.event_id AND o.lease_owner = $2
         RETURNING o.event_id),
       logged AS (
         INSERT INTO webhook_delivery_attempts
           (event_id, attempt_number, trigger, status_code, duration_ms, error, request_body_sha256,
            response_body_sha256, response_excerpt, response_cut_off, redirect_location, started_at, finished_at)
         SELECT r.event_id, attempt_number, trigger, status_code, duration_ms, error, request_body_sha256,
                response_body_sha256, response_excerpt, response_cut_off, redirect_location, started_at, finished_at
           FROM r JOIN outcome USING (event_id))
       SELECT count(*) AS updated FROM outcome`,
      [JSON.stringify(records), leaseOwner],
    );
    return Number(rows[0]!.updated);
  });
}

/** Gives back claimed events that were never sent (pause, cancel), uncounting the attempt claimed for them. */
export async function releaseClaims(pool: Pool, leaseOwner: string, eventIds: string[]): Promise<number> {
  if (eventIds.length === 0) return 0;
  const result = await pool.query(
    `UPDATE webhook_outbox
        SET status = CASE WHEN attempts > 1 THEN 'retrying'::webhook_status ELSE 'pending'::webhook_status END,
            attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL,
            next_attempt_at = coalesce(next_attempt_at, now()), updated_at = now()
      WHERE lease_owner = $1 AND event_id = ANY($2::text[])`,
    [leaseOwner, eventIds],
  );
  return result.rowCount ?? 0;
}

export interface OutboxSnapshot {
  /** Events due now (pending or retrying, next_attempt_at <= now()). */
  backlog: number;
  /**
   * True when `backlog` is PostgreSQL's estimate rather than a count: above EXACT_BACKLOG_LIMIT due events,
   * counting them would cost one index entry (and often a heap visit) each, on every snapshot.
   */
  backlog_estimated: boolean;
  in_flight: number;
  oldest_due_ms: number;
  /** Milliseconds until the next event becomes due (0: something is due now), or null when nothing waits. */
  next_due_in_ms: number | null;
}

/** Due events counted exactly up to here; past it the backlog figure is an estimate. */
export const EXACT_BACKLOG_LIMIT = 10_000;

/**
 * The dispatcher's `stats` figures. Each part reads a bounded number of index entries whatever the size of
 * the outbox: in-flight rows are bounded by the dispatchers' claims, the oldest and next due times are the
 * first entries of their indexes, and the backlog is counted only up to EXACT_BACKLOG_LIMIT.
 */
export async function outboxSnapshot(pool: Pool): Promise<OutboxSnapshot> {
  const { rows } = await pool.query<{ due_counted: string; in_flight: string; oldest_due_ms: string | null; next_due_in_ms: string | null }>(
    `SELECT
       (SELECT count(*) FROM (SELECT 1 FROM webhook_outbox
          WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now() LIMIT $1) AS due) AS due_counted,
       (SELECT count(*) FROM webhook_outbox WHERE status = 'in_flight') AS in_flight,
       (SELECT extract(epoch FROM now() - min(next_attempt_at)) * 1000 FROM webhook_outbox
         WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()) AS oldest_due_ms,
       (SELECT greatest(0, extract(epoch FROM least(
           (SELECT min(next_attempt_at) FROM webhook_outbox WHERE status IN ('pending', 'retrying')),
           (SELECT min(lease_expires_at) FROM webhook_outbox WHERE status = 'in_flight')) - now()) * 1000)) AS next_due_in_ms`,
    [EXACT_BACKLOG_LIMIT + 1],
  );
  const row = rows[0]!;
  const inFlight = Number(row.in_flight);
  const counted = Number(row.due_counted);
  const estimated = counted > EXACT_BACKLOG_LIMIT;
  return {
    backlog: estimated ? Math.max(counted, (await estimatedDueRows(pool)) - inFlight) : counted,
    backlog_estimated: estimated,
    in_flight: inFlight,
    oldest_due_ms: row.oldest_due_ms === null ? 0 : Math.round(Number(row.oldest_due_ms)),
    next_due_in_ms: row.next_due_in_ms === null ? null : Math.ceil(Number(row.next_due_in_ms)),
  };
}

/**
 * The planner's estimate of the rows with next_attempt_at <= now(), from the column's statistics (refreshed by
 * ANALYZE after every backfill and by autovacuum). Only rows that wait for delivery have a next_attempt_at
 * (pending and retrying, plus the in-flight ones, which the caller subtracts): delivered and dead-lettered rows
 * have none. The status is left out of the question on purpose: the planner would take it as independent of
 * the time and multiply the two shares, underestimating by as much as the share of waiting rows.
 */
async function estimatedDueRows(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ 'QUERY PLAN': Array<{ Plan: { 'Plan Rows': number } }> }>(
    `EXPLAIN (FORMAT JSON) SELECT 1 FROM webhook_outbox WHERE next_attempt_at <= now()`,
  );
  return Math.round(rows[0]!['QUERY PLAN'][0]!.Plan['Plan Rows']);
}

// ---- dead-letter replay ----


/**
 * The WHERE clause a replay selects by, appending its parameters to `params`. `withSelection: false` leaves out the
 * kept rows of `filter.selectedBy`: for re-checking rows already selected from them (they never change).
 */
function replayPredicate(filter: ReplayFilter, eventIds: string[] | null, params: unknown[], withSelection = true): string {
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const where = [`o.status = ${param(filter.status)}::webhook_status`];
  // An in-flight row with a live lease is being delivered right now: never touch it.
  if (filter.status === 'in_flight') where.push('o.lease_expires_at <= now()');
  if (filter.eventTypes.length > 0) where.push(`o.event_type = ANY(${param(filter.eventTypes)}::text[])`);
  if (filter.since) where.push(`o.updated_at >= ${param(filter.since)}::timestamptz`);
  if (filter.until) where.push(`o.updated_at < ${param(filter.until)}::timestamptz`);
  if (filter.statusCode !== undefined) where.push(`o.last_status_code = ${param(filter.statusCode)}::int`);
  if (filter.statusClass !== undefined) where.push(`o.last_status_code / 100 = ${param(filter.statusClass)}::int`);
  if (eventIds) where.push(`o.event_id = ANY(${param(eventIds)}::text[])`);
  if (filter.selectedBy !== undefined && withSelection) {
    where.push(`EXISTS (SELECT 1 FROM webhook_replay_selection s WHERE s.run_key = ${param(filter.selectedBy)} AND s.event_id = o.event_id)`);
  }
  return where.join(' AND ');
}

/**
 * What a replay of `filter` would reset, up to `limit` rows in the order an execute takes them. With `keepAs`, the
 * counted rows are kept under that run key (replacing what it kept before), for an execute's `filter.selectedBy`.
 */
export async function previewReplay(
  pool: Pool,
  filter: ReplayFilter,
  eventIds: string[] | null,
  limit: number,
  keepAs?: string,
): Promise<ReplayPreview> {
  if (keepAs === undefined) return previewStatement(pool, filter, eventIds, limit);
  return inTransaction(pool, async (client) => {
    // Its own rows from an earlier attempt, and rows no finish deleted (a terminated runbook's) once a month old: a
    // runbook whose gate stays open that long finds them gone and says so (ReplaySelectionGone) at step 5.
    await client.query(`DELETE FROM webhook_replay_selection WHERE run_key = $1 OR kept_at < now() - interval '30 days'`, [keepAs]);
    const preview = await previewStatement(client, filter, eventIds, limit, keepAs);
    // The execute selects by these rows at once (the runbook's auto mode goes straight on): statistics that have not
    // seen them yet would plan it for one row. The table holds only open runbooks' rows (finishRunbookRun).
    await client.query('ANALYZE webhook_replay_selection');
    return { ...preview, selectionKept: true };
  });
}

async function previewStatement(
  db: Pool | PoolClient,
  filter: ReplayFilter,
  eventIds: string[] | null,
  limit: number,
  keepAs?: string,
): Promise<ReplayPreview> {
  const params: unknown[] = [];
  const where = replayPredicate(filter, eventIds, params);
  params.push(limit);
  const n = `$${params.length}`;
  let keep = '';
  if (keepAs !== undefined) {
    params.push(keepAs);
    keep = `, kept AS (INSERT INTO webhook_replay_selection (run_key, event_id) SELECT $${params.length}, event_id FROM m)`;
  }
  // One row past the limit tells whether the limit cut the selection. The bound rounds the newest matched change up to
  // the next millisecond, the precision an ISO timestamp (and --until) carries: rows that change later are past it.
  const { rows } = await db.query<{
    matched: string;
    by_type: Record<string, number>;
    by_code: Record<string, number>;
    sample: string[];
    changed_before: string | null;
    more: boolean;
  }>(
    `WITH upto AS (SELECT o.event_id, o.event_type, o.last_status_code, o.updated_at,
                          row_number() OVER (ORDER BY o.updated_at, o.event_id) AS n
                     FROM webhook_outbox o
                    WHERE ${where} ORDER BY o.updated_at, o.event_id LIMIT ${n}::bigint + 1),
          m AS (SELECT * FROM upto WHERE n <= ${n}::bigint)${keep}
     SELECT (SELECT count(*) FROM m) AS matched,
            (SELECT coalesce(json_object_agg(event_type, n), '{}') FROM
               (SELECT event_type, count(*) AS n FROM m GROUP BY 1) t) AS by_type,
            (SELECT coalesce(json_object_agg(code, n), '{}') FROM
               (SELECT coalesce(last_status_code::text, 'none') AS code, count(*) AS n FROM m GROUP BY 1) t) AS by_code,
            (SELECT coalesce(json_agg(event_id ORDER BY n), '[]') FROM (SELECT event_id, n FROM m ORDER BY n LIMIT 10) t) AS sample,
            (SELECT to_char((date_trunc('milliseconds', max(updated_at)) + interval '1 millisecond') AT TIME ZONE 'UTC',
                            'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM m) AS changed_before,
            EXISTS (SELECT 1 FROM upto WHERE n > ${n}::bigint) AS more`,
    params,
  );
  const row = rows[0]!;
  return {
    matched: Number(row.matched),
    byEventType: row.by_type,
    byStatusCode: row.by_code,
    sampleIds: row.sample,
    // Only rows that keep their time while they wait can be bounded by it: a pending or retrying row's time moves
    // with every claim and outcome, so a bound would leave out the very rows counted.
    ...(row.changed_before !== null && (filter.status === 'dead_letter' || filter.status === 'delivered') ? { changedBefore: row.changed_before } : {}),
    moreBeyondLimit: row.more,
  };
}

/**
 * One replay batch inside the caller's transaction: select up to `size` matching rows this run has not
 * reset yet, then reset those that still match once locked (the rest changed meanwhile and are skipped),
 * writing an audit row for each. Returns how many were selected and how many reset, and the positions
 * (1-based, in selection order) of the skipped ones, so progress checkpoints are exact row by row.
 */
export async function replaySelectAndReset(
  client: PoolClient,
  runKey: string,
  filter: ReplayFilter,
  eventIds: string[] | null,
  size: number,
): Promise<{ selected: number; replayed: number; skippedOrdinals: number[] }> {
  const params: unknown[] = [runKey];
  const where = replayPredicate(filter, eventIds, params);
  // The lock re-check leaves out the kept rows: the candidates came from them, and planned as a join with the
  // candidate array on statistics that did not know the run's kept rows yet, it probed the outbox once per kept
  // row per candidate (a 20,000-row batch over 40,000 kept rows took 67 s).
  const recheck = replayPredicate(filter, eventIds, params, false);
  params.push(size);
  // Rows this run reset already: last_replay_run names only the newest run that reset a row, and a row this run
  // reset, then another replay, then delivery dead-lettered again would be reset a second time; its audit row
  // (run, event) then broke the batch on the primary key, retried forever. The audit is what this run did. Only a
  // row some replay has reset can be in it: a dead letter never replayed (most of them) costs no probe.
  const notThisRunsYet = `o.last_replay_run IS DISTINCT FROM $1
        AND (o.last_replay_run IS NULL
             OR NOT EXISTS (SELECT 1 FROM webhook_replay_audit a WHERE a.run_key = $1 AND a.event_id = o.event_id))`;
  // `= ANY(ARRAY(...))` rather than a join: with stale statistics (a table truncated, or grown since its last
  // ANALYZE) the planner could pick a nested loop that scans the whole table once per candidate.
  // One statement: `candidates` is the selection; `locked` re-checks each candidate once its row lock is
  // held (PostgreSQL re-evaluates the condition on the newest row version), so a row that changed since
  // it was selected is skipped, not reset. Oldest change first: dead letters walk their own index.
  // Ties broken by event_id, exactly as previewReplay orders: a delivery pass dead-letters its events in one
  // statement, so they share updated_at, and a --limit that cut through them reset other rows than the dry
  // run had listed at the gate.
  // The skipped positions are looked for only when something was skipped (an initplan runs when needed).
  // A batch's plan is costed far above jit_above_cost (20,000 rows through five CTEs), so PostgreSQL compiled it
  // each time: 28-37 ms of a 300-435 ms batch here, for expressions it then ran once per row (BENCHMARKS.md, replay).
  await client.query('SET LOCAL jit = off');
  const { rows } = await client.query<{ selected: string; replayed: string; skipped_ordinals: number[] }>(
    `WITH candidates AS (
       SELECT o.event_id, row_number() OVER (ORDER BY o.updated_at, o.event_id)::int AS ordinal FROM webhook_outbox o
        WHERE ${where} AND ${notThisRunsYet}
        ORDER BY o.updated_at, o.event_id LIMIT $${params.length}),
     locked AS (
       SELECT o.event_id, o.status, o.attempts, o.last_status_code, o.last_error FROM webhook_outbox o
        WHERE o.event_id = ANY(ARRAY(SELECT event_id FROM candidates)) AND ${recheck} AND ${notThisRunsYet}
        FOR UPDATE),
     reset AS (
       UPDATE webhook_outbox w
          SET status = 'pending', attempts = 0, last_status_code = NULL, last_error = NULL,
              next_attempt_at = now(), lease_owner = NULL, lease_expires_at = NULL,
              replay_count = w.replay_count + 1, last_replayed_at = now(), last_replay_run = $1, updated_at = now()
         FROM locked WHERE w.event_id = locked.event_id
       RETURNING locked.event_id, locked.status, locked.attempts, locked.last_status_code, locked.last_error),
     audit AS (
       INSERT INTO webhook_replay_audit (run_key, event_id, previous_status, previous_attempts, previous_status_code, previous_error)
       SELECT $1, event_id, status, attempts, last_status_code, last_error FROM reset
       RETURNING 1),
     counts AS (SELECT (SELECT count(*) FROM candidates) AS selected, (SELECT count(*) FROM audit) AS replayed)
     SELECT selected, replayed,
            CASE WHEN selected = replayed THEN '{}'::int[]
                 ELSE (SELECT coalesce(array_agg(c.ordinal ORDER BY c.ordinal), '{}') FROM candidates c
                        WHERE NOT EXISTS (SELECT 1 FROM reset r WHERE r.event_id = c.event_id)) END AS skipped_ordinals
       FROM counts`,
    params,
  );
  const row = rows[0]!;
  return { selected: Number(row.selected), replayed: Number(row.replayed), skippedOrdinals: row.skipped_ordinals };
}

/**
 * Runs one batch exactly once: `work` and the ledger row commit in one transaction, under a lock on
 * (run, batch); a batch already in the ledger returns what it recorded without running again.
 * Two attempts of one batch (a retry beside an attempt Temporal gave up on) are serialised by the lock:
 * the later one waits for the earlier one's commit or rollback, then finds its ledger row or does the work.
 * When `signal` aborts (the activity was cancelled or timed out) the batch rolls back instead of committing.
 */
export async function onceInLedger<T>(
  pool: Pool,
  runKey: string,
  batchKey: string,
  work: (client: PoolClient) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const recorded = await readLedger<T>(pool, runKey, batchKey);
  if (recorded) return recorded;
  // Statement cancellation on abort (src/db/pool.ts) plugs in here, for the client, while this transaction is open.
  return inTransaction(pool, async (client) => {
    await lockBatch(client, runKey, batchKey, signal);
    const raced = await readLedger<T>(client, runKey, batchKey);
    if (raced) return raced;
    const result = await work(client);
    await writeLedger(client, runKey, batchKey, result);
    signal?.throwIfAborted();
    return result;
  });
}

/**
 * Work that prepares a batch, committed on its own under the batch's lock (so an attempt racing it waits), unless
 * the batch is already in the ledger: then nothing runs and this returns `recorded`.
 */
export async function beforeBatch<T>(
  pool: Pool,
  runKey: string,
  batchKey: string,
  work: (client: PoolClient) => Promise<T>,
  signal?: AbortSignal,
): Promise<T | 'recorded'> {
  return inTransaction(pool, async (client) => {
    await lockBatch(client, runKey, batchKey, signal);
    if (await readLedger(client, runKey, batchKey)) return 'recorded' as const;
    const result = await work(client);
    signal?.throwIfAborted();
    return result;
  });
}

/**
 * What a batch committed, if it did: waits for any transaction still running that batch (an attempt that
 * was cancelled or lost with its worker) to commit or roll back, then reads the ledger.
 */
export async function settledBatch<T>(pool: Pool, runKey: string, batchKey: string): Promise<T | null> {
  return inTransaction(pool, async (client) => {
    await lockBatch(client, runKey, batchKey);
    return readLedger<T>(client, runKey, batchKey);
  });
}

// ---- recovery runbook ----

export interface OutboxMetricsRow {
  dead_letters: string;
  waiting: string | null;
  dead_lettered: string | null;
}

/**
 * All dead letters, and where one run's events stand: those a backfill created (`source_run`) or a replay
 * reset (`last_replay_run`). Every figure is an exact count (the runbook's gates compare them), and none reads
 * more than it counts, however large the delivered history is:
 * - all dead letters: the sum of the per-statement changes that migration 012's trigger records;
 * - one run: its open rows (not delivered) in the partial (run, status) index of migration 011.
 */
export async function outboxMetrics(pool: Pool, run: { column: 'source_run' | 'last_replay_run'; key: string } | null): Promise<OutboxMetricsRow> {
  // One pass over the run's open rows gives both of its figures.
  const perRun = run
    ? `SELECT count(*) FILTER (WHERE status <> 'dead_letter') AS waiting, count(*) FILTER (WHERE status = 'dead_letter') AS dead_lettered
         FROM webhook_outbox WHERE ${run.column} = $1 AND status <> 'delivered'`
    : 'SELECT NULL AS waiting, NULL AS dead_lettered';
  const { rows } = await pool.query<OutboxMetricsRow & { deltas: string }>(
    `SELECT d.dead_letters, d.deltas, r.waiting, r.dead_lettered
       FROM (SELECT coalesce(sum(delta), 0) AS dead_letters, count(*) AS deltas FROM webhook_outbox_dead_letter_deltas) AS d,
            (${perRun}) AS r`,
    run ? [run.key] : [],
  );
  const { deltas, ...metrics } = rows[0]!;
  if (Number(deltas) > DEAD_LETTER_DELTAS_TO_KEEP) await foldDeadLetterDeltas(pool);
  return metrics;
}

/** Past this many rows of changes, the next reader (or delivery pass that dead-lettered) folds them into one. */
export const DEAD_LETTER_DELTAS_TO_KEEP = 1_000;

/**
 * Replaces the recorded changes with their sum when there are more than `keep` of them, in one statement: changes
 * committed meanwhile are not seen by its DELETE and stay; two callers folding at once each delete (and re-add) a
 * disjoint share.
 */
export async function foldDeadLetterDeltas(pool: Pool, keep = 0): Promise<void> {
  await pool.query(
    `WITH gone AS (DELETE FROM webhook_outbox_dead_letter_deltas
                    WHERE (SELECT count(*) FROM webhook_outbox_dead_letter_deltas) > $1 RETURNING delta)
     INSERT INTO webhook_outbox_dead_letter_deltas (delta) SELECT sum(delta) FROM gone HAVING count(*) > 0`,
    [keep],
  );
}

export interface RunbookRunRow {
  run_key: string;
  procedure_key: string;
  workflow_id: string;
  workflow_run_id: string;
  baseline: string;
  baseline_from: 'measured' | 'option' | 'earlier-run';
  continues: string | null;
  outcome: 'running' | 'completed' | 'stopped' | 'cancelled';
  stopped_at: number | null;
  reason: string | null;
  started_at: Date;
}

/** Serialises the runs that begin on one procedure, until the caller's transaction ends. */
export async function lockRunbookProcedure(client: PoolClient, procedureKey: string): Promise<void> {
  await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`runbook:${procedureKey}`]);
}

export async function findRunbookRun(client: PoolClient, runKey: string): Promise<RunbookRunRow | null> {
  const { rows } = await client.query<RunbookRunRow>('SELECT * FROM runbook_runs WHERE run_key = $1', [runKey]);
  return rows[0] ?? null;
}

export async function latestRunbookRun(client: PoolClient, procedureKey: string): Promise<RunbookRunRow | null> {
  const { rows } = await client.query<RunbookRunRow>(
    'SELECT * FROM runbook_runs WHERE procedure_key = $1 ORDER BY started_at DESC LIMIT 1',
    [procedureKey],
  );
  return rows[0] ?? null;
}

export async function countDeadLetters(client: PoolClient): Promise<number> {
  const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM webhook_outbox WHERE status = 'dead_letter'`);
  return Number(rows[0]!.n);
}

export async function insertRunbookRun(
  client: PoolClient,
  row: Pick<RunbookRunRow, 'run_key' | 'procedure_key' | 'workflow_id' | 'workflow_run_id' | 'baseline_from' | 'continues'> & { baseline: number },
): Promise<void> {
  await client.query(
    `INSERT INTO runbook_runs (run_key, procedure_key, workflow_id, workflow_run_id, baseline, baseline_from, continues)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [row.run_key, row.procedure_key, row.workflow_id, row.workflow_run_id, row.baseline, row.baseline_from, row.continues],
  );
}

/** A reset run keeps its run key; the row points at the newest run of it. */
export async function setRunbookRunId(client: PoolClient, runKey: string, workflowRunId: string): Promise<void> {
  await client.query('UPDATE runbook_runs SET workflow_run_id = $2 WHERE run_key = $1', [runKey, workflowRunId]);
}

export async function finishRunbookRun(
  pool: Pool,
  runKey: string,
  outcome: 'completed' | 'stopped' | 'cancelled',
  stoppedAt: number | null,
  reason: string | null,
): Promise<void> {
  await pool.query(
    `WITH forgotten AS (DELETE FROM webhook_replay_selection WHERE run_key = $5)
     UPDATE runbook_runs SET outcome = $2, stopped_at = $3, reason = $4, finished_at = now() WHERE run_key = $1`,
    [runKey, outcome, stoppedAt, reason, runbookReplayRunKey(runKey, 4)],
  );
}

/** Whether the dry run `runKey` kept any rows (see previewReplay's `keepAs`). */
export async function replaySelectionKept(db: Pool | PoolClient, runKey: string): Promise<boolean> {
  const { rows } = await db.query<{ kept: boolean }>('SELECT EXISTS (SELECT 1 FROM webhook_replay_selection WHERE run_key = $1) AS kept', [runKey]);
  return rows[0]!.kept;
}

// ---- operator views: metrics gauges, `outbox stats`, `outbox show` ----

export interface OutboxDepthRow {
  pending: string;
  retrying: string;
  in_flight: string;
  dead_letter: string;
  due: string;
  oldest_due_seconds: number | null;
}

/**
 * How many events wait, by status, for the metrics gauges. Each count has the predicate of a partial index
 * (due, in-flight, dead-letter), so it reads the rows that wait, never the delivered history.
 */
export async function outboxDepth(pool: Pool): Promise<OutboxDepthRow> {
  const { rows } = await pool.query<OutboxDepthRow>(
    `SELECT
       (SELECT count(*) FROM webhook_outbox WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM webhook_outbox WHERE status = 'retrying') AS retrying,
       (SELECT count(*) FROM webhook_outbox WHERE status = 'in_flight') AS in_flight,
       (SELECT count(*) FROM webhook_outbox WHERE status = 'dead_letter') AS dead_letter,
       (SELECT count(*) FROM webhook_outbox WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()) AS due,
       (SELECT extract(epoch FROM now() - min(next_attempt_at))::float8 FROM webhook_outbox
         WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()) AS oldest_due_seconds`,
  );
  return rows[0]!;
}

export interface OutboxStatsRow extends OutboxDepthRow {
  total: string;
  expired_leases: string;
  dead_by_type: Array<{ event_type: string; count: number }>;
  dead_by_code: Array<{ status_code: number | null; count: number }>;
}

/**
 * Everything `outbox stats` shows, in one statement so that every figure comes from the same snapshot.
 * The total counts the whole table (delivered = total - the rest); the other counts read partial indexes.
 */
export async function outboxStats(pool: Pool): Promise<OutboxStatsRow> {
  const { rows } = await pool.query<OutboxStatsRow>(
    `SELECT
       (SELECT count(*) FROM webhook_outbox) AS total,
       (SELECT count(*) FROM webhook_outbox WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM webhook_outbox WHERE status = 'retrying') AS retrying,
       (SELECT count(*) FROM webhook_outbox WHERE status = 'in_flight') AS in_flight,
       (SELECT count(*) FROM webhook_outbox WHERE status = 'dead_letter') AS dead_letter,
       (SELECT count(*) FROM webhook_outbox WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()) AS due,
       (SELECT extract(epoch FROM now() - min(next_attempt_at))::float8 FROM webhook_outbox
         WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()) AS oldest_due_seconds,
       (SELECT count(*) FROM webhook_outbox WHERE status = 'in_flight' AND lease_expires_at <= now()) AS expired_leases,
       (SELECT coalesce(json_agg(json_build_object('event_type', event_type, 'count', n) ORDER BY n DESC, event_type), '[]')
          FROM (SELECT event_type, count(*) AS n FROM webhook_outbox WHERE status = 'dead_letter' GROUP BY 1) t) AS dead_by_type,
       (SELECT coalesce(json_agg(json_build_object('status_code', last_status_code, 'count', n)
                                 ORDER BY n DESC, last_status_code NULLS LAST), '[]')
          FROM (SELECT last_status_code, count(*) AS n FROM webhook_outbox WHERE status = 'dead_letter' GROUP BY 1) t) AS dead_by_code`,
  );
  return rows[0]!;
}

export interface OutboxEventRow {
  event_id: string;
  event_type: string;
  schema_version: string;
  request_id: string;
  actor_user_id: string;
  status: string;
  attempts: number;
  max_attempts: number;
  next_attempt_at: Date | null;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  last_status_code: number | null;
  last_error: string | null;
  last_attempt_at: Date | null;
  delivered_at: Date | null;
  replay_count: number;
  last_replayed_at: Date | null;
  last_replay_run: string | null;
  source_run: string | null;
  created_at: Date;
  updated_at: Date;
  /** Only when asked for: the stored payload as JSON text. */
  payload?: string;
}

/** One outbox row by event id; the payload only when asked for. */
export async function outboxEvent(pool: Pool, eventId: string, withPayload: boolean): Promise<OutboxEventRow | null> {
  const { rows } = await pool.query<OutboxEventRow>(
    `SELECT event_id, event_type, schema_version, request_id, actor_user_id, status::text AS status, attempts,
            max_attempts, next_attempt_at, lease_owner, lease_expires_at, last_status_code, last_error,
            last_attempt_at, delivered_at, replay_count, last_replayed_at, last_replay_run, source_run,
            created_at, updated_at${withPayload ? ', payload::text AS payload' : ''}
       FROM webhook_outbox WHERE event_id = $1`,
    [eventId],
  );
  return rows[0] ?? null;
}

export interface DeliveryAttemptRow {
  attempt_number: number;
  trigger: string;
  status_code: number | null;
  duration_ms: number;
  error: string | null;
  request_body_sha256: string;
  response_body_sha256: string | null;
  response_excerpt: string | null;
  started_at: Date;
  finished_at: Date;
}

/** An event's attempt log, oldest first (attempt numbers start again at 1 after a replay). */
export async function deliveryAttempts(pool: Pool, eventId: string, limit: number): Promise<DeliveryAttemptRow[]> {
  const { rows } = await pool.query<DeliveryAttemptRow>(
    `SELECT attempt_number, trigger, status_code, duration_ms, error, request_body_sha256, response_body_sha256,
            response_excerpt, started_at, finished_at
       FROM webhook_delivery_attempts WHERE event_id = $1
      ORDER BY started_at, attempt_number LIMIT $2`,
    [eventId, limit],
  );
  return rows;
}

export interface ReplayAuditRow {
  run_key: string;
  previous_status: string;
  previous_attempts: number;
  previous_status_code: number | null;
  previous_error: string | null;
  replayed_at: Date;
}

/** What one replay run found when it reset an event (a primary-key lookup). */
export async function replayAuditEntry(pool: Pool, runKey: string, eventId: string): Promise<ReplayAuditRow | null> {
  const { rows } = await pool.query<ReplayAuditRow>(
    `SELECT run_key, previous_status::text AS previous_status, previous_attempts, previous_status_code, previous_error, replayed_at
       FROM webhook_replay_audit WHERE run_key = $1 AND event_id = $2`,
    [runKey, eventId],
  );
  return rows[0] ?? null;
}
