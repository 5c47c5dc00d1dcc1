/**
 * Records the histories of webhookBackfill and webhookReplayDlq runs (finished, dry-run, continued as new,
 * cancelled mid-batch) made by a given version of the workflow code, for test/workflow-history.test.ts to
 * replay against the current code: a deploy must not break the runs open at the time.
 *
 *   npm run build && DATABASE_URL=postgres://…/scratch node dist/test/tools/record-histories.js \
 *     --workflows <path to that version's src/workflows/index.ts> --out test/fixtures/histories/<label>
 *
 * It recreates DATABASE_URL's database: point it at a scratch one. Activities are the current ones.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime } from '@temporalio/worker';
import type { Pool } from 'pg';
import { createPool } from '../../src/db/pool';
import { migrate, recreateDatabase } from '../../src/db/migrate';
import { FAST_DEV_SERVER_ARGS, findOrBuildTemporalCli } from '../../src/dev/temporal-cli';
import { createWorker } from '../../src/worker';
import { event, tmp } from '../helpers/files';

const { values } = parseArgs({ options: { workflows: { type: 'string' }, out: { type: 'string' } } });
if (!values.workflows || !values.out) throw new Error('usage: record-histories --workflows <src/workflows/index.ts> --out <dir>');
const DATABASE_URL = process.env.DATABASE_URL;
if (!DATABASE_URL) throw new Error('set DATABASE_URL to a scratch database (it is recreated)');

async function waitUntil(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('timed out');
}

async function holdLock(pool: Pool, runKey: string, batchKey: string) {
  const client = await pool.connect();
  await client.query('BEGIN');
  await client.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`${runKey}\u0001${batchKey}`]);
  return async () => {
    await client.query('COMMIT');
    client.release();
  };
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  await recreateDatabase(DATABASE_URL!);
  const pool = createPool(DATABASE_URL!, 10);
  await migrate(pool);
  const temporalCli = await findOrBuildTemporalCli();
  const env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: temporalCli }, ip: '127.0.0.1', extraArgs: FAST_DEV_SERVER_ARGS },
  });
  const workflowBundle = await bundleWorkflowCode({ workflowsPath: resolve(values.workflows!) });
  const taskQueue = 'record';
  const worker = await createWorker({ connection: env.nativeConnection, namespace: 'default', taskQueue, pool, workflowBundle });
  const out = resolve(values.out!);
  mkdirSync(out, { recursive: true });
  const client = env.client;

  const file = join(tmp, 'record.ndjson');
  writeFileSync(file, [event('evt_r1'), event('evt_r2'), '{broken', '', event('evt_r1'), event('evt_r3'), event('evt_r4')].join('\n'));
  const longFile = join(tmp, 'record-long.ndjson');
  writeFileSync(longFile, `${Array.from({ length: 50 }, (_, i) => event(`evt_long_${String(i).padStart(2, '0')}`)).join('\n')}\n`);
  const secondBatch = Array.from({ length: 10 }, (_, i) => Buffer.byteLength(event(`evt_long_${String(i).padStart(2, '0')}`)) + 1).reduce((a, b) => a + b);

  // The message as plain JSON (enum names, 64-bit numbers as strings, bytes in base64): History.fromObject
  // reads it back exactly. (historyFromJSON cannot be used here: npm installs two copies of protobufjs 8.)
  const save = async (name: string, workflowId: string, runId?: string) => {
    const history = temporal.api.history.v1.History.fromObject(await client.workflow.getHandle(workflowId, runId).fetchHistory());
    const json = temporal.api.history.v1.History.toObject(history, { longs: String, enums: String, bytes: String });
    writeFileSync(join(out, `${name}.json`), `${JSON.stringify(json, null, 1)}\n`);
    console.error(`[record] ${name}: ${history.events.length} events`);
  };
  const backfillArgs = (workflowId: string, path: string, extra: Record<string, unknown> = {}) => [
    { runKey: `${workflowId}@1`, path, dryRun: false, maxAttempts: 5, batchSize: 3, ...extra },
  ];
  const replayArgs = (workflowId: string, extra: Record<string, unknown> = {}) => [
    { runKey: `${workflowId}@1`, filter: { status: 'dead_letter', eventTypes: [] }, limit: 25, dryRun: false, batchSize: 10, ratePerSecond: 0, ...extra },
  ];

  await worker.runUntil(async () => {
    for (const [name, extra] of [['backfill-dry-run', { dryRun: true }], ['backfill-execute', {}]] as const) {
      const workflowId = `webhook-backfill/${name}`;
      await client.workflow.execute('webhookBackfill', { taskQueue, workflowId, args: backfillArgs(workflowId, file, extra) });
      await save(name, workflowId);
    }
    {
      const workflowId = 'webhook-backfill/continued';
      const handle = await client.workflow.start('webhookBackfill', { taskQueue, workflowId, args: backfillArgs(workflowId, file, { batchSize: 2, batchesPerRun: 2, dryRun: true }) });
      await handle.result();
      await save('backfill-continued-first-run', workflowId, handle.firstExecutionRunId);
    }
    {
      const workflowId = 'webhook-backfill/cancelled';
      const release = await holdLock(pool, `${workflowId}@1`, `offset:${secondBatch}`);
      const handle = await client.workflow.start('webhookBackfill', { taskQueue, workflowId, args: backfillArgs(workflowId, longFile, { batchSize: 10 }) });
      await waitUntil(async () => ((await handle.query<{ batches: number }>('progress')).batches ?? 0) >= 1);
      await new Promise((r) => setTimeout(r, 1000));
      await handle.cancel();
      await new Promise((r) => setTimeout(r, 1000));
      await release();
      await handle.result().catch(() => undefined);
      await save('backfill-cancelled', workflowId);
    }

    await pool.query(`UPDATE webhook_outbox SET status = 'dead_letter', last_status_code = 500`);
    await pool.query(
      `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, attempts, max_attempts, last_status_code)
       SELECT 'dl_' || i, 't', '1', 'r', 'u', '{}', 'dead_letter', 5, 5, 503 FROM generate_series(1, 60) AS i`,
    );
    for (const [name, extra] of [['replay-dry-run', { dryRun: true }], ['replay-execute', {}]] as const) {
      const workflowId = `webhook-replay/${name}`;
      await client.workflow.execute('webhookReplayDlq', { taskQueue, workflowId, args: replayArgs(workflowId, extra) });
      await save(name, workflowId);
    }
    {
      const workflowId = 'webhook-replay/cancelled';
      const release = await holdLock(pool, `${workflowId}@1`, 'replay:1');
      const handle = await client.workflow.start('webhookReplayDlq', { taskQueue, workflowId, args: replayArgs(workflowId, { limit: 30 }) });
      await waitUntil(async () => ((await handle.query<{ batches: number }>('progress')).batches ?? 0) >= 1);
      await new Promise((r) => setTimeout(r, 1000));
      await handle.cancel();
      await new Promise((r) => setTimeout(r, 1000));
      await release();
      await handle.result().catch(() => undefined);
      await save('replay-cancelled', workflowId);
    }
  });
  await env.teardown();
  await pool.end();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
