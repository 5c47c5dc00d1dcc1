/**
 * The status queries on a large outbox: the dispatcher's `stats` snapshot (outboxSnapshot, what
 * `gotong-worker delivery status` shows) and the runbook's verify and confirm polls (outboxMetrics), timed
 * warm on 5,000,000 rows in a realistic mix of statuses. The baseline, in the same run on the same data, is
 * the code before this change: its SQL, without the indexes of migration 011 (dropped inside a transaction
 * that is rolled back).
 *
 *   npm run build && npm run bench:queries -- [--rows 5000000] [--rounds 30] [--reseed]
 *
 * The seeded database (BENCH_DATABASE_URL) is kept between invocations; --reseed builds it again.
 */
import { parseArgs } from 'node:util';
import type { Pool, PoolClient } from 'pg';
import { BENCH_DATABASE_URL } from './common';
import { createPool } from '../src/db/pool';
import { migrate, recreateDatabase } from '../src/db/migrate';
import { EXACT_BACKLOG_LIMIT, outboxMetrics, outboxSnapshot } from '../src/db/queries';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '5000000' },
    rounds: { type: 'string', default: '30' },
    reseed: { type: 'boolean', default: false },
  },
});
const ROWS = Number(values.rows);
const ROUNDS = Number(values.rounds);
const SEED_VERSION = 2;
const CURRENT_RUN = 'bench/backfill-current';
const CURRENT_REPLAY = 'bench/replay-current';

/**
 * Rows in insertion order, oldest first, about 100 ms apart. Most are delivered history. Every 25th is a dead
 * letter. Four in five came from backfill runs of 100,000 rows (`source_run`), the rest from the platform.
 * An incident backlog: the 150,000 rows before the last run are pending and due, with some in flight, and
 * retries (half due, half later) before them. The last 300,000 rows are the backfill run being verified
 * (the size of the one in issue #10), half delivered so far and the rest pending, retrying, in flight or dead. One row in 100 of the oldest two million
 * was reset by the replay run being confirmed (20,000 rows, most delivered since), and others by an older one.
 */
const SEED_SQL = `
WITH s AS (
  SELECT i,
         i > $3 - 300000 AS in_current_run,
         i > $3 - 450000 AND i <= $3 - 300000 AS in_backlog,
         i > $3 - 600000 AND i <= $3 - 450000 AND i % 10 = 0 AS is_retry,
         CASE WHEN i <= 2000000 AND i % 100 = 3 THEN 'current'
              WHEN i <= 2000000 AND i % 100 = 7 THEN 'old' END AS replay
    FROM generate_series($1::int, $2::int) AS i),
t AS (
  SELECT s.*,
         CASE
           WHEN in_current_run THEN CASE WHEN i % 100 < 50 THEN 'delivered' WHEN i % 100 < 90 THEN 'pending'
                                         WHEN i % 100 < 96 THEN 'retrying' WHEN i % 100 < 98 THEN 'in_flight' ELSE 'dead_letter' END
           WHEN replay = 'current' THEN CASE WHEN (i / 100) % 20 < 15 THEN 'delivered' WHEN (i / 100) % 20 < 18 THEN 'pending'
                                             WHEN (i / 100) % 20 = 18 THEN 'retrying' ELSE 'dead_letter' END
           WHEN i % 25 = 0 THEN 'dead_letter'
           WHEN in_backlog THEN CASE WHEN i % 50 = 1 THEN 'in_flight' ELSE 'pending' END
           WHEN is_retry THEN 'retrying'
           ELSE 'delivered'
         END::webhook_status AS status
    FROM s)
INSERT INTO webhook_outbox
  (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, attempts, max_attempts,
   next_attempt_at, lease_owner, lease_expires_at, last_status_code, last_error, last_attempt_at, delivered_at,
   replay_count, last_replayed_at, last_replay_run, source_run, created_at, updated_at)
SELECT 'evt_' || lpad(i::text, 9, '0'), 'contribution_created', '1', 'req_' || i, 'user_' || (i % 1000),
       jsonb_build_object('event_id', 'evt_' || lpad(i::text, 9, '0'), 'event_type', 'contribution_created',
                          'schema_version', '1', 'request_id', 'req_' || i,
                          'actor', jsonb_build_object('user_id', 'user_' || (i % 1000)),
                          'data', jsonb_build_object('amount', i % 100000, 'currency', 'IDR', 'note', repeat('n', 100))),
       status,
       CASE status WHEN 'pending' THEN 0 WHEN 'delivered' THEN 1 WHEN 'dead_letter' THEN 5 ELSE 2 END,
       5,
       CASE status WHEN 'pending' THEN now() - interval '1 minute'
                   WHEN 'retrying' THEN now() + CASE WHEN i % 20 = 0 THEN interval '-5 seconds' ELSE interval '40 seconds' END
                   WHEN 'in_flight' THEN now() - interval '2 minutes' END,
       CASE WHEN status = 'in_flight' THEN 'bench/pass' END,
       CASE WHEN status = 'in_flight' THEN now() + interval '5 minutes' END,
       CASE status WHEN 'delivered' THEN 204 WHEN 'dead_letter' THEN 503 WHEN 'retrying' THEN 503 END,
       CASE WHEN status IN ('dead_letter', 'retrying') THEN 'HTTP 503' END,
       CASE WHEN status <> 'pending' THEN now() - ($3 - i) * interval '100 milliseconds' END,
       CASE WHEN status = 'delivered' THEN now() - ($3 - i) * interval '100 milliseconds' END,
       CASE WHEN replay IS NULL THEN 0 ELSE 1 END,
       CASE WHEN replay IS NOT NULL THEN now() - interval '1 hour' END,
       CASE replay WHEN 'current' THEN '${CURRENT_REPLAY}' WHEN 'old' THEN 'bench/replay-old' END,
       CASE WHEN in_current_run THEN '${CURRENT_RUN}' WHEN i % 5 <> 0 THEN 'bench/backfill-' || (i / 100000) END,
       now() - ($3 - i) * interval '100 milliseconds',
       now() - ($3 - i) * interval '100 milliseconds'
  FROM t`;

async function seeded(pool: Pool): Promise<boolean> {
  try {
    const { rows } = await pool.query<{ rows: string; version: number }>('SELECT rows, version FROM bench_seed');
    return Number(rows[0]?.rows) === ROWS && rows[0]?.version === SEED_VERSION;
  } catch {
    return false;
  }
}

async function seed(pool: Pool): Promise<void> {
  const chunk = 250_000;
  const started = performance.now();
  for (let from = 1; from <= ROWS; from += chunk) {
    await pool.query(SEED_SQL, [from, Math.min(ROWS, from + chunk - 1), ROWS]);
    process.stderr.write(`\rseeded ${Math.min(ROWS, from + chunk - 1).toLocaleString('en')} rows`);
  }
  process.stderr.write(`\nvacuum analyze...\n`);
  // As a table that has been live for a while looks: vacuumed (visibility map set) and analyzed.
  await pool.query('VACUUM (ANALYZE) webhook_outbox');
  await pool.query(`CREATE TABLE bench_seed AS SELECT $1::bigint AS rows, $2::int AS version`, [ROWS, SEED_VERSION]);
  process.stderr.write(`seeded in ${Math.round((performance.now() - started) / 1000)} s\n`);
}

/** The SQL of outboxSnapshot and outboxMetrics before this change, for the baseline. */
const BEFORE_SNAPSHOT = `SELECT
   (SELECT count(*) FROM webhook_outbox WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()) AS backlog,
   (SELECT count(*) FROM webhook_outbox WHERE status = 'in_flight') AS in_flight,
   (SELECT extract(epoch FROM now() - min(next_attempt_at)) * 1000 FROM webhook_outbox
     WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()) AS oldest_due_ms,
   (SELECT greatest(0, extract(epoch FROM least(
       (SELECT min(next_attempt_at) FROM webhook_outbox WHERE status IN ('pending', 'retrying')),
       (SELECT min(lease_expires_at) FROM webhook_outbox WHERE status = 'in_flight')) - now()) * 1000)) AS next_due_in_ms`;
const beforeMetrics = (column: string | null) => {
  const of = column ? `AND ${column} = $1` : '';
  const perRun = column
    ? `(SELECT count(*) FROM webhook_outbox WHERE status IN ('pending', 'retrying') ${of})
         + (SELECT count(*) FROM webhook_outbox WHERE status = 'in_flight' ${of}) AS waiting,
       (SELECT count(*) FROM webhook_outbox WHERE status = 'dead_letter' ${of}) AS dead_lettered`
    : 'NULL AS waiting, NULL AS dead_lettered';
  return `SELECT (SELECT count(*) FROM webhook_outbox WHERE status = 'dead_letter') AS dead_letters, ${perRun}`;
};

interface Timing {
  median: number;
  p95: number;
  max: number;
}

async function time(rounds: number, run: () => Promise<unknown>): Promise<Timing> {
  for (let i = 0; i < 3; i++) await run();
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await run();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!;
  return { median: at(0.5), p95: at(0.95), max: samples[samples.length - 1]! };
}

/** Runs `fn` on one client inside a transaction that has dropped migration 011's indexes, then rolls back. */
async function withoutNewIndexes<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('DROP INDEX webhook_outbox_source_run_open_idx, webhook_outbox_replay_run_open_idx');
    return await fn(client);
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

async function main(): Promise<void> {
  const pool = createPool(BENCH_DATABASE_URL, 4, { statementMs: 0, lockMs: 0, idleInTransactionMs: 0 });
  try {
    if (values.reseed || !(await seeded(pool).catch(() => false))) {
      await pool.end();
      await recreateDatabase(BENCH_DATABASE_URL);
      const fresh = createPool(BENCH_DATABASE_URL, 4, { statementMs: 0, lockMs: 0, idleInTransactionMs: 0 });
      await migrate(fresh);
      await seed(fresh);
      await fresh.end();
      return main();
    }
    await migrate(pool);
    const { rows: mix } = await pool.query<{ status: string; n: string }>(
      'SELECT status, count(*) AS n FROM webhook_outbox GROUP BY 1 ORDER BY 1',
    );
    const { rows: exact } = await pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM webhook_outbox WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()`,
    );
    const snapshot = await outboxSnapshot(pool);
    console.log(`rows=${ROWS} rounds=${ROUNDS} (warm: 3 untimed runs first) database=${new URL(BENCH_DATABASE_URL).pathname.slice(1)}`);
    console.log(`status mix: ${mix.map((r) => `${r.status}=${Number(r.n).toLocaleString('en')}`).join(' ')}`);
    console.log(
      `backlog: counted ${Number(exact[0]!.n).toLocaleString('en')}, snapshot reports ${snapshot.backlog.toLocaleString('en')} ` +
        `(${snapshot.backlog_estimated ? `an estimate: more than ${EXACT_BACKLOG_LIMIT.toLocaleString('en')} due` : 'exact'})`,
    );

    const source = { column: 'source_run', key: CURRENT_RUN } as const;
    const replay = { column: 'last_replay_run', key: CURRENT_REPLAY } as const;
    const cases: Array<{ name: string; after: () => Promise<unknown>; before: (c: PoolClient) => Promise<unknown> }> = [
      { name: 'stats snapshot (outboxSnapshot)', after: () => outboxSnapshot(pool), before: (c) => c.query(BEFORE_SNAPSHOT) },
      { name: 'all dead letters (outboxMetrics)', after: () => outboxMetrics(pool, null), before: (c) => c.query(beforeMetrics(null)) },
      {
        name: 'verify poll: one backfill run',
        after: () => outboxMetrics(pool, source),
        before: (c) => c.query(beforeMetrics('source_run'), [CURRENT_RUN]),
      },
      {
        name: 'confirm poll: one replay run',
        after: () => outboxMetrics(pool, replay),
        before: (c) => c.query(beforeMetrics('last_replay_run'), [CURRENT_REPLAY]),
      },
    ];
    const measure = async (state: string) => {
      const table: string[][] = [[state, 'before median', 'before p95', 'after median', 'after p95', 'after max', 'speed-up']];
      for (const c of cases) {
        const before = await withoutNewIndexes(pool, (client) => time(Math.max(5, Math.ceil(ROUNDS / 3)), () => c.before(client)));
        const after = await time(ROUNDS, c.after);
        table.push([c.name, ms(before.median), ms(before.p95), ms(after.median), ms(after.p95), ms(after.max),
          `${(before.median / after.median).toFixed(0)}x`]);
      }
      const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
      for (const r of table) console.log(r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
    };

    // A table that has been quiet for a while: vacuumed, every page all-visible, so counts read indexes only.
    await pool.query('VACUUM webhook_outbox');
    await measure('vacuumed');
    // During an incident: the dispatcher keeps updating the backlog and the run being verified, and fresh dead
    // letters pile up, so their pages are not all-visible (every counted row costs a heap visit) and hold
    // dead row versions. Simulated by touching those rows once; VACUUM afterwards restores the quiet state.
    await pool.query(
      `UPDATE webhook_outbox SET updated_at = updated_at
        WHERE status IN ('pending', 'retrying', 'in_flight')
           OR (status = 'dead_letter' AND event_id > 'evt_' || lpad(($1::int - 500000)::text, 9, '0'))`,
      [ROWS],
    );
    await measure('incident (rows churned)');
    await pool.query('VACUUM webhook_outbox');
  } finally {
    await pool.end().catch(() => undefined);
  }
}

const ms = (value: number) => `${value.toFixed(1)} ms`;

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
