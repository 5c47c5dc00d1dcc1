/**
 * What the operator views cost on a large outbox: the metrics gauges' refresh (outboxDepth) and `outbox stats`
 * (outboxStats), against the plain `SELECT status, count(*) ... GROUP BY status` every operator would first write,
 * in the same run on the same table. Mostly delivered history, 1% dead letters, 0.1% pending.
 *
 *   npm run build && node dist/bench/outbox-stats.bench.js [--rows 2000000] [--rounds 5]
 */
import { parseArgs } from 'node:util';
import { BENCH_DATABASE_URL } from './common';
import { createPool } from '../src/db/pool';
import { migrate, recreateDatabase } from '../src/db/migrate';
import { outboxDepth, outboxStats } from '../src/db/queries';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '2000000' }, rounds: { type: 'string', default: '5' } } });
const ROWS = Number(values.rows);
const ROUNDS = Number(values.rounds);

async function main(): Promise<void> {
  await recreateDatabase(BENCH_DATABASE_URL);
  const pool = createPool(BENCH_DATABASE_URL, 1);
  try {
    await migrate(pool);
    const seedStart = Date.now();
    await pool.query(
      `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, attempts,
                                   max_attempts, next_attempt_at, last_status_code, delivered_at)
       SELECT 'evt_' || i, (ARRAY['contribution_created', 'member_joined', 'vouch_submitted'])[1 + i % 3], '1', 'req_' || i,
              'user_' || (i % 997),
              jsonb_build_object('event_id', 'evt_' || i, 'event_type', 'contribution_created', 'schema_version', '1',
                                 'request_id', 'req_' || i, 'actor', jsonb_build_object('user_id', 'user_1'),
                                 'subject', jsonb_build_object('title', repeat('x', 200))),
              CASE WHEN i % 100 = 0 THEN 'dead_letter'::webhook_status WHEN i % 1000 = 1 THEN 'pending' ELSE 'delivered' END,
              1, 5, CASE WHEN i % 1000 = 1 THEN now() END, CASE WHEN i % 100 = 0 THEN 503 ELSE 200 END, now()
         FROM generate_series(1, $1::int) AS i`,
      [ROWS],
    );
    await pool.query('VACUUM ANALYZE webhook_outbox');
    const { rows } = await pool.query<{ size: string }>(`SELECT pg_size_pretty(pg_total_relation_size('webhook_outbox')) AS size`);
    console.log(`rows=${ROWS} table=${rows[0]!.size} seeded in ${((Date.now() - seedStart) / 1000).toFixed(0)} s, rounds=${ROUNDS}`);

    const time = async (work: () => Promise<unknown>) => {
      const all: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const start = process.hrtime.bigint();
        await work();
        all.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
      return all;
    };
    const naive = await time(() => pool.query('SELECT status, count(*) FROM webhook_outbox GROUP BY status'));
    const stats = await time(() => outboxStats(pool));
    const depth = await time(() => outboxDepth(pool));
    const best = (xs: number[]) => Math.min(...xs);
    const line = (name: string, xs: number[]) =>
      console.log(`${name.padEnd(44)} best ${best(xs).toFixed(1)} ms (all: ${xs.map((x) => x.toFixed(1)).join(', ')})`);
    line('GROUP BY status (baseline, whole table)', naive);
    line('outbox stats (outboxStats)', stats);
    line('metrics gauges refresh (outboxDepth)', depth);
    console.log(
      `ratio of bests: outbox stats ${(best(naive) / best(stats)).toFixed(1)}x the baseline's speed, gauges ${(best(naive) / best(depth)).toFixed(0)}x`,
    );
  } finally {
    await pool.end();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
