import type { PoolClient, Pool } from 'pg';

/** Hot-path SQL, one small typed function each. Row types keep the tables' snake_case names. */

export interface OutboxInsertRows {
  event_id: string[];
  event_type: string[];
  schema_version: string[];
  request_id: string[];
  actor_user_id: string[];
  payload: string[];
}

/** Inserts new events as pending and due now; existing event_ids are left alone. Returns how many were created. */
export async function insertOutboxEvents(
  client: PoolClient,
  rows: OutboxInsertRows,
  maxAttempts: number,
  sourceRun: string,
): Promise<number> {
  if (rows.event_id.length === 0) return 0;
  const result = await client.query(
    `INSERT INTO webhook_outbox
       (event_id, event_type, schema_version, request_id, actor_user_id, payload,
        status, attempts, max_attempts, next_attempt_at, source_run)
     SELECT e.event_id, e.event_type, e.schema_version, e.request_id, e.actor_user_id, e.payload::jsonb,
            'pending', 0, $7, now(), $8
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
            AS e(event_id, event_type, schema_version, request_id, actor_user_id, payload)
     ON CONFLICT (event_id) DO NOTHING`,
    [rows.event_id, rows.event_type, rows.schema_version, rows.request_id, rows.actor_user_id, rows.payload,
      maxAttempts, sourceRun],
  );
  return result.rowCount ?? 0;
}

/**
 * Dry-run twin of insertOutboxEvents: counts the ids that an execute run would create, remembering
 * them per run so that later batches of the same file see them as duplicates.
 */
export async function rememberDryRunEvents(client: PoolClient, runKey: string, eventIds: string[]): Promise<number> {
  if (eventIds.length === 0) return 0;
  const result = await client.query(
    `INSERT INTO backfill_dry_run_seen (run_key, event_id)
     SELECT $1, c.event_id FROM unnest($2::text[]) AS c(event_id)
      WHERE NOT EXISTS (SELECT 1 FROM webhook_outbox o WHERE o.event_id = c.event_id)
     ON CONFLICT DO NOTHING`,
    [runKey, eventIds],
  );
  return result.rowCount ?? 0;
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

/** Serialises two executions of the same batch (a retry racing a slow original) for this transaction. */
export async function lockBatch(client: PoolClient, runKey: string, batchKey: string): Promise<void> {
  await client.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`${runKey}\u0001${batchKey}`]);
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

export async function forgetDryRunEvents(pool: Pool, runKey: string): Promise<void> {
  await pool.query(`DELETE FROM backfill_dry_run_seen WHERE run_key = $1`, [runKey]);
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

/** Failed lines of the newest run recorded under a workflow id (or of one run key), in file order. */
export async function listFailedLines(
  pool: Pool,
  ref: { workflowId?: string; runKey?: string },
  limit: number,
): Promise<FailedLineRow[]> {
  const result = await pool.query<FailedLineRow>(
    `WITH chosen AS (
       SELECT run_key FROM backfill_failed_lines
        WHERE ($1::text IS NOT NULL AND run_key = $1) OR ($1::text IS NULL AND workflow_id = $2)
        ORDER BY recorded_at DESC LIMIT 1)
     SELECT f.* FROM backfill_failed_lines f JOIN chosen USING (run_key)
      ORDER BY f.line_number LIMIT $3`,
    [ref.runKey ?? null, ref.workflowId ?? null, limit],
  );
  return result.rows;
}
