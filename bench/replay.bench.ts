/**
 * Replay throughput: rows reset per second by the webhookReplayDlq workflow (ledger, audit row per event,
 * progress, exactly once) against a plain batched SQL reset (1,000 rows a statement, SKIP LOCKED) on the
 * same 100,000 dead-letter rows, in the same run.
 *
 *   npm run build && npm run bench:replay -- [--rows 100000] [--rounds 2]
 */
import { parseArgs } from 'node:util';
import { BENCH_DATABASE_URL, benchTemporal } from './common';
import { createPool } from '../src/db/pool';
import { migrate, recreateDatabase } from '../src/db/migrate';
import { webhookReplayDlq } from '../src/workflows/replay';
import { createWorker } from '../src/worker';

const { values } = parseArgs({
  options: { rows: { type: 'string', default: '100000' }, rounds: { type: 'string', default: '2' }, 'batch-size': { type: 'string', default: '20000' } },
});
const ROWS = Number(values.rows);
const ROUNDS = Number(values.rounds);
const BATCH = Number(values['batch-size']);
const DATABASE_URL = BENCH_DATABASE_URL;

async function main(): Promise<void> {
  await recreateDatabase(DATABASE_URL);
  const pool = createPool(DATABASE_URL, 10);
  await migrate(pool);
  const seed = async () => {
    await pool.query('TRUNCATE webhook_outbox, webhook_replay_audit, batch_ledger CASCADE');
    await pool.query(
      `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, attempts,
                                   max_attempts, last_status_code, last_error, next_attempt_at)
       SELECT 'evt_' || i, 'contribution_created', '1', 'req_' || i, 'user_1',
              jsonb_build_object('event_id', 'evt_' || i), 'dead_letter', 5, 5, 503, 'HTTP 503', NULL
         FROM generate_series(1, $1::int) AS i`,
      [ROWS],
    );
    await pool.query('ANALYZE webhook_outbox');
  };

  const { env, workflowBundle } = await benchTemporal();
  const worker = await createWorker({ connection: env.nativeConnection, namespace: 'default', taskQueue: 'bench', pool, workflowBundle });

  const plain: number[] = [];
  const workflow: number[] = [];
  await worker.runUntil(async () => {
    for (let round = 0; round < ROUNDS; round++) {
      await seed();
      let t0 = performance.now();
      for (;;) {
        const result = await pool.query(
          `WITH picked AS (SELECT event_id FROM webhook_outbox WHERE status = 'dead_letter' LIMIT 1000 FOR UPDATE SKIP LOCKED)
           UPDATE webhook_outbox o SET status = 'pending', attempts = 0, last_error = NULL, last_status_code = NULL,
                  next_attempt_at = now(), updated_at = now()
             FROM picked WHERE o.event_id = picked.event_id`,
        );
        if (!result.rowCount) break;
      }
      plain.push(performance.now() - t0);

      await seed();
      t0 = performance.now();
      const id = `webhook-replay/bench-${round}`;
      const summary = await env.client.workflow.execute(webhookReplayDlq, {
        taskQueue: 'bench',
        workflowId: id,
        args: [{ runKey: `${id}@1`, filter: { status: 'dead_letter', eventTypes: [] }, limit: ROWS, dryRun: false, batchSize: BATCH, ratePerSecond: 0 }],
      });
      workflow.push(performance.now() - t0);
      if (summary.replayed !== ROWS) throw new Error(`replayed ${summary.replayed} of ${ROWS}`);
    }
  });
  await env.teardown();
  await pool.end();
  const best = (xs: number[]) => Math.min(...xs);
  const rate = (ms: number) => Math.round((ROWS / ms) * 1000);
  const list = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
  console.log(`rows=${ROWS} rounds=${ROUNDS} workflow batch_size=${BATCH}`);
  console.log(`plain batched SQL reset (1,000 a statement): best ${best(plain).toFixed(0)} ms, ${rate(best(plain))} rows/s (all: ${list(plain)} ms)`);
  console.log(`webhookReplayDlq workflow:                   best ${best(workflow).toFixed(0)} ms, ${rate(best(workflow))} rows/s (all: ${list(workflow)} ms)`);
  console.log(`ratio (workflow / plain): ${(best(plain) / best(workflow)).toFixed(2)}x`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
