import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool } from 'pg';
import { analyzeOutboxStatuses, EXACT_BACKLOG_LIMIT, outboxMetrics, outboxSnapshot } from '../src/db/queries';
import { getHarness, REPO_ROOT, resetTables, seedEvents, waitFor } from './helpers/harness';

/**
 * Sets the status of the events whose ids are given, as deliveries would have left them: a due time only
 * while they wait (`due` is an SQL expression for it), a lease while in flight.
 */
async function setStatus(pool: Pool, ids: string[], status: string, due = 'next_attempt_at'): Promise<void> {
  await pool.query(
    `UPDATE webhook_outbox SET status = $2::webhook_status,
            next_attempt_at = CASE WHEN $2 IN ('pending', 'retrying', 'in_flight') THEN ${due} END,
            lease_owner = CASE WHEN $2 = 'in_flight' THEN 'test' END,
            lease_expires_at = CASE WHEN $2 = 'in_flight' THEN now() + interval '1 minute' END
      WHERE event_id = ANY($1::text[])`,
    [ids, status],
  );
}

describe('status queries on the outbox (stats snapshot, runbook polls)', function () {
  this.timeout(60_000);
  let pool: Pool;
  before(() => {
    pool = getHarness().pool;
  });
  beforeEach(async () => {
    await resetTables(pool);
  });

  it('the stats snapshot counts a backlog exactly up to the limit, and says when it estimates beyond it', async () => {
    const ids = await seedEvents(pool, 'snap', 600);
    await setStatus(pool, ids.slice(0, 40), 'in_flight');
    await setStatus(pool, ids.slice(40, 100), 'retrying', `now() + interval '1 hour'`);
    await setStatus(pool, ids.slice(100, 150), 'delivered');
    const small = await outboxSnapshot(pool);
    assert.deepEqual({ backlog: small.backlog, estimated: small.backlog_estimated, inFlight: small.in_flight }, { backlog: 450, estimated: false, inFlight: 40 });
    assert.ok(small.oldest_due_ms >= 0 && small.next_due_in_ms === 0);

    await seedEvents(pool, 'big', EXACT_BACKLOG_LIMIT + 5_000);
    await pool.query('ANALYZE webhook_outbox');
    const big = await outboxSnapshot(pool);
    const due = 450 + EXACT_BACKLOG_LIMIT + 5_000;
    assert.equal(big.backlog_estimated, true);
    assert.ok(big.backlog > EXACT_BACKLOG_LIMIT, `${big.backlog} is above the limit`);
    // Statistics fresh from ANALYZE: the planner's estimate is close (it is exact only by luck).
    assert.ok(Math.abs(big.backlog - due) <= due * 0.1, `estimate ${big.backlog} within 10% of ${due}`);
    assert.equal(big.in_flight, 40);
  });

  it("the runbook's polls count one run's events exactly, by where they stand", async () => {
    const created = await seedEvents(pool, 'run', 300);
    const other = await seedEvents(pool, 'other', 100);
    await pool.query(`UPDATE webhook_outbox SET source_run = 'run-A' WHERE event_id = ANY($1::text[])`, [created]);
    await pool.query(`UPDATE webhook_outbox SET source_run = 'run-B' WHERE event_id = ANY($1::text[])`, [other]);
    await setStatus(pool, created.slice(0, 120), 'delivered');
    await setStatus(pool, created.slice(120, 150), 'dead_letter');
    await setStatus(pool, created.slice(150, 170), 'in_flight');
    await setStatus(pool, created.slice(170, 200), 'retrying');
    await setStatus(pool, other.slice(0, 10), 'dead_letter');
    // A replay reset 50 of run A's events earlier: 25 were delivered since, 25 are dead letters again.
    await pool.query(`UPDATE webhook_outbox SET last_replay_run = 'replay-1' WHERE event_id = ANY($1::text[])`, [created.slice(95, 145)]);

    assert.deepEqual(await outboxMetrics(pool, { column: 'source_run', key: 'run-A' }), { dead_letters: '40', waiting: '150', dead_lettered: '30' });
    assert.deepEqual(await outboxMetrics(pool, { column: 'last_replay_run', key: 'replay-1' }), { dead_letters: '40', waiting: '0', dead_lettered: '25' });
    assert.deepEqual(await outboxMetrics(pool, null), { dead_letters: '40', waiting: null, dead_lettered: null });
  });

  it('the dead-letter count stays exact through inserts, updates, replays, deletes and truncation, and folds its changes', async () => {
    const exact = async () => Number((await pool.query<{ n: string }>(`SELECT count(*) AS n FROM webhook_outbox WHERE status = 'dead_letter'`)).rows[0]!.n);
    const counted = async () => Number((await outboxMetrics(pool, null)).dead_letters);
    const check = async (step: string, expected: number) => {
      assert.equal(await exact(), expected, step);
      assert.equal(await counted(), expected, step);
    };
    await check('empty', 0);
    const ids = await seedEvents(pool, 'dl', 500);
    await check('pending rows inserted', 0);
    await setStatus(pool, ids.slice(0, 200), 'dead_letter');
    await check('200 dead-lettered', 200);
    await pool.query(`INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, max_attempts)
                      SELECT 'born_dead_' || i, 't', '1', 'r', 'u', '{}', 'dead_letter', 1 FROM generate_series(1, 30) i`);
    await check('30 inserted as dead letters', 230);
    const client = await pool.connect();
    try {
      // A transaction that rolls back leaves no trace in the count.
      await client.query('BEGIN');
      await client.query(`UPDATE webhook_outbox SET status = 'dead_letter' WHERE status = 'pending'`);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    await check('a rolled-back change', 230);
    await setStatus(pool, ids.slice(0, 120), 'pending');
    await check('120 replayed', 110);
    await pool.query(`DELETE FROM webhook_outbox WHERE event_id LIKE 'born_dead_%' AND event_id < 'born_dead_2'`);
    await check('some deleted', 99);
    // Many small changes, then a reader folds them into one row without changing the sum.
    for (const id of ids.slice(300, 400)) await setStatus(pool, [id], 'dead_letter');
    for (let i = 0; i < 1_000; i++) await pool.query(`INSERT INTO webhook_outbox_dead_letter_deltas (delta) VALUES (0)`);
    await check('after 1,100 more changes', 199);
    const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM webhook_outbox_dead_letter_deltas');
    assert.equal(rows[0]!.n, '1', 'folded into one row');
    await check('after folding', 199);
    await pool.query('TRUNCATE webhook_outbox CASCADE');
    await check('truncated', 0);
  });

  // The README's command that sets the count right after writes that bypassed the triggers.
  const resync = () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const command = /`(BEGIN; LOCK webhook_outbox [^`]*webhook_outbox_dead_letter_deltas[^`]*COMMIT;)`/.exec(readme);
    assert.ok(command, "the README's re-sync command");
    return command[1]!;
  };
  for (const [what, statement] of [
    ['a truncation', () => 'TRUNCATE webhook_outbox CASCADE'],
    ["the README's re-sync command", resync],
  ] as const) {
    it(`the dead-letter count stays exact when ${what} meets a reader folding the changes`, async () => {
      await seedEvents(pool, 'fold', 10, 5, 'dead_letter');
      for (let i = 0; i < 1_000; i++) await pool.query(`INSERT INTO webhook_outbox_dead_letter_deltas (delta) VALUES (0)`);
      const waitingOnLock = (like: string) =>
        waitFor(`a statement like ${like} waiting for a lock`, async () => {
          const { rows } = await pool.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`, [like]);
          return rows.length > 0;
        });
      // Holds one change row, so the fold stops half-way with the others deleted but not yet committed.
      const holder = await pool.connect();
      try {
        await holder.query('BEGIN');
        await holder.query('SELECT 1 FROM webhook_outbox_dead_letter_deltas ORDER BY ctid DESC LIMIT 1 FOR UPDATE');
        const folding = outboxMetrics(pool, null);
        await waitingOnLock('WITH gone AS (DELETE FROM webhook_outbox_dead_letter_deltas%');
        const sql = statement();
        const resetting = pool.query(sql);
        await waitingOnLock(`${sql.slice(0, 40)}%`);
        await holder.query('COMMIT');
        await Promise.all([folding, resetting]);
      } finally {
        holder.release();
      }
      const exact = Number((await pool.query<{ n: string }>(`SELECT count(*) AS n FROM webhook_outbox WHERE status = 'dead_letter'`)).rows[0]!.n);
      assert.equal(Number((await outboxMetrics(pool, null)).dead_letters), exact);
    });
  }

  it('a replay refreshes the status statistics only when autovacuum would: fresh ones are kept, dead letters piled up since are not', async () => {
    const ids = await seedEvents(pool, 'stats', 2_000);
    // Statistics reach pg_stat_user_tables when the writing backend reports them (within seconds, not at commit).
    const reported = async (column: 'n_live_tup' | 'n_mod_since_analyze', atLeast: number) => {
      const { rows } = await pool.query<{ n: string }>(`SELECT ${column} AS n FROM pg_stat_user_tables WHERE relname = 'webhook_outbox'`);
      return Number(rows[0]?.n ?? 0) >= atLeast;
    };
    await waitFor('the insert reported', () => reported('n_live_tup', 2_000));
    await pool.query('ANALYZE webhook_outbox');
    assert.equal(await analyzeOutboxStatuses(pool), false, 'statistics just refreshed are left alone');
    const deadLetterShare = async () => {
      const { rows } = await pool.query<{ share: number | null }>(
        `SELECT (most_common_freqs[array_position(most_common_vals::text::text[], 'dead_letter')])::float8 AS share
           FROM pg_stats WHERE tablename = 'webhook_outbox' AND attname = 'status'`,
      );
      return rows[0]?.share ?? 0;
    };
    assert.equal(await deadLetterShare(), 0);
    // Dead letters whose writers have not reported them to pg_stat_user_tables yet (that takes seconds): the exact
    // count (migration 012's changes) against what the statistics believe makes the refresh due all the same.
    await pool.query('INSERT INTO webhook_outbox_dead_letter_deltas (delta) VALUES (500)');
    assert.equal(await analyzeOutboxStatuses(pool), true, 'the exact count disagrees with the statistics');
    await pool.query('DELETE FROM webhook_outbox_dead_letter_deltas WHERE delta = 500');
    assert.equal(await analyzeOutboxStatuses(pool), false, 'and agrees again');
    // A receiver outage: a quarter of the outbox dead-lettered since the last ANALYZE, far past 50 + 2%.
    await setStatus(pool, ids.slice(0, 500), 'dead_letter');
    await waitFor('the dead-lettering reported', () => reported('n_mod_since_analyze', 500));
    assert.equal(await analyzeOutboxStatuses(pool), true, 'statistics from before the outage are refreshed');
    assert.ok(Math.abs((await deadLetterShare()) - 0.25) < 0.01, `dead_letter share ${await deadLetterShare()} after the refresh`);
    // An ANALYZE of some columns leaves the change counter to autovacuum's own ANALYZE, due by the same measure.
    await pool.query('ANALYZE webhook_outbox');
    assert.equal(await analyzeOutboxStatuses(pool), false, 'left alone once a whole ANALYZE has run');
  });

  it("migration 011's partial indexes serve the per-run polls (the planner can prove their predicates)", async () => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SET LOCAL enable_seqscan = off');
      await client.query('SET LOCAL enable_bitmapscan = off');
      for (const [column, index] of [
        ['source_run', 'webhook_outbox_source_run_open_idx'],
        ['last_replay_run', 'webhook_outbox_replay_run_open_idx'],
      ] as const) {
        const plan = await client.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN SELECT count(*) FILTER (WHERE status <> 'dead_letter'), count(*) FILTER (WHERE status = 'dead_letter')
             FROM webhook_outbox WHERE ${column} = 'k' AND status <> 'delivered'`,
        );
        assert.match(plan.rows.map((r) => r['QUERY PLAN']).join('\n'), new RegExp(`Index Only Scan using ${index}`));
      }
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});
