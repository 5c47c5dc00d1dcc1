/**
 * Records real histories of every workflow type, made by one version of the workflow code, for
 * test/workflow-history.test.ts to replay against the current code: a deploy must not break the runs open at the time.
 *
 *   npm run record-histories                      # the current code, into test/fixtures/histories/<today>
 *   npm run record-histories -- --out test/fixtures/histories/<label> \
 *     [--workflows <that version's src/workflows/index.ts> --recorded-from <its commit>]
 *
 * It runs on the test harness (a Temporal dev server of its own, the PostgreSQL database TEST_DATABASE_URL, which it
 * recreates, and a receiver on loopback); activities are always the current ones. What it records:
 * - webhookBackfill: dry run, execute, a run that pauses, resumes and continues as new (every run of the chain),
 *   a run cancelled with a batch in flight;
 * - webhookReplayDlq: dry run, execute, a rate-limited run that continues as new, a run cancelled mid-batch;
 * - webhookDispatcher: a start with partial settings (filled in, continued as new), then an auto-pause and its
 *   probes, pause, a configure update, resume, wake and continue-as-new (every run of the chain);
 * - webhookRecoveryRunbook: all six steps with both manual gates (an Update, a refused signal, a signal), its
 *   waits continuing as new, and its children; a rejection at a gate; a child cancelled from outside (stopped);
 *   the runbook itself cancelled at a gate.
 * Each history is checked for payloads, secrets and connection strings before it is written (see history-fixtures.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { Pool } from 'pg';
import { fingerprintFile } from '../../src/backfill/batch';
import { createDeliveryAgent } from '../../src/delivery/http';
import { inputRootsFromEnvironment } from '../../src/input-files';
import { procedureKey } from '../../src/runbook/procedure';
import { dispatcherWorkflowId, type DispatcherStats } from '../../src/shared/delivery';
import { runbookChildId, type RunbookInput, type RunbookProgress, type StepNumber } from '../../src/shared/runbook';
import { createWorker } from '../../src/worker';
import { event, tmp } from '../helpers/files';
import { getHarness, REPO_ROOT, seedEvents, setUpHarness, statusCounts, tearDownHarness } from '../helpers/harness';
import { historyLeaks, historyToJson, type RecordedHistory } from '../helpers/history-fixtures';
import { TestReceiver } from '../helpers/receiver';

const { values } = parseArgs({ options: { workflows: { type: 'string' }, out: { type: 'string' }, 'recorded-from': { type: 'string' } } });
const OUT = resolve(values.out ?? join(REPO_ROOT, 'test', 'fixtures', 'histories', new Date().toISOString().slice(0, 10)));
const SECRET = 'whsec_cmVjb3JkLWhpc3Rvcmllcy1rZXktMDEyMzQ1Njc4OQ==';
/** In every event the recorder writes: a history containing it holds a payload. */
const PAYLOAD_MARKER = 'payload-marker';

const log = (line: string) => console.error(`[record] ${line}`);

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Holds a batch's lock (as an attempt in flight would), so the batch activity stays in flight until released. */
async function holdBatchLock(pool: Pool, runKey: string, batchKey: string): Promise<() => Promise<void>> {
  const client = await pool.connect();
  await client.query('BEGIN');
  await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`${runKey}\u0001${batchKey}`]);
  return async () => {
    await client.query('COMMIT');
    client.release();
  };
}

/** The commit the current code is at, and whether the work tree differs from it. */
function describeCommit(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit} with uncommitted changes under src/` : commit;
  } catch {
    return '(not a git checkout)';
  }
}

async function main(): Promise<void> {
  await setUpHarness();
  const h = getHarness();
  const client: Client = h.env.client;
  const pool = h.pool;
  const workflowBundle = values.workflows ? await bundleWorkflowCode({ workflowsPath: resolve(values.workflows) }) : h.workflowBundle;
  mkdirSync(OUT, { recursive: true });
  const recordedFrom = values['recorded-from'] ?? (values.workflows ? `workflows at ${values.workflows}` : describeCommit());

  let receiverHealthy = true;
  let rejectShare = (_id: string) => false;
  const receiver = await new TestReceiver([SECRET], (id) => (receiverHealthy && !rejectShare(id) ? { status: 200 } : { status: 503 })).start();
  const agent = createDeliveryAgent(16);
  const taskQueue = 'record';
  const worker = await createWorker({
    connection: h.env.nativeConnection,
    namespace: 'default',
    taskQueue,
    pool,
    workflowBundle,
    delivery: { url: receiver.url, secrets: { current: SECRET }, agent },
  });

  let saved = 0;
  const saveRun = async (name: string, workflowId: string, runId?: string): Promise<string | undefined> => {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    const fixture: RecordedHistory = {
      workflowId,
      runId: started?.originalExecutionRunId ?? '',
      workflowType: started?.workflowType?.name ?? '',
      recordedFrom,
      history: historyToJson(history),
    };
    const leaks = historyLeaks(fixture, [SECRET, receiver.url, h.databaseUrl]);
    if (leaks.length > 0) throw new Error(`${name}: the history holds ${leaks.join(', ')}; it must not be kept (fix the workflow's inputs)`);
    writeFileSync(join(OUT, `${name}.json`), `${JSON.stringify(fixture, null, 1)}\n`);
    saved += 1;
    log(`${name}: ${history.events?.length ?? 0} events`);
    const events = history.events ?? [];
    return events[events.length - 1]?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  };
  /** Every run of a chain of continue-as-new, as <name>.run-<n>; returns how many. */
  const saveChain = async (name: string, workflowId: string, firstRunId: string): Promise<number> => {
    let runId: string | undefined = firstRunId;
    let n = 0;
    while (runId) runId = await saveRun(`${name}.run-${++n}`, workflowId, runId);
    return n;
  };
  const historyHas = async (workflowId: string, key: string, runId?: string) =>
    ((await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? []).some((e) => (e as Record<string, unknown>)[key]);
  const batchInFlight = async (workflowId: string) => {
    // Not found: a child the runbook is still starting.
    const described = await client.workflow.getHandle(workflowId).describe().catch(() => null);
    return (described?.raw.pendingActivities ?? []).some(
      (a) => /Batch$/.test(a.activityType?.name ?? '') && (String(a.state) === '2' || String(a.state) === 'PENDING_ACTIVITY_STATE_STARTED'),
    );
  };

  const line = (id: string) => event(id, { note: PAYLOAD_MARKER });
  const file = join(tmp, 'record.ndjson');
  writeFileSync(file, `${[line('evt_r1'), line('evt_r2'), '{broken', '', line('evt_r1'), line('evt_r3'), line('evt_r4')].join('\n')}\n`);
  const longFile = join(tmp, 'record-long.ndjson');
  const longIds = Array.from({ length: 50 }, (_, i) => `evt_long_${String(i).padStart(2, '0')}`);
  writeFileSync(longFile, `${longIds.map(line).join('\n')}\n`);
  /** Byte offset of the long file's batch n (0-based) at 10 lines a batch. */
  const offsetOfBatch = (n: number) => longIds.slice(0, n * 10).reduce((sum, id) => sum + Buffer.byteLength(line(id)) + 1, 0);

  const backfillArgs = (workflowId: string, path: string, extra: Record<string, unknown> = {}) => [
    { runKey: `${workflowId}@1`, path, dryRun: false, maxAttempts: 5, batchSize: 3, ...extra },
  ];
  const replayArgs = (workflowId: string, extra: Record<string, unknown> = {}) => [
    { runKey: `${workflowId}@1`, filter: { status: 'dead_letter', eventTypes: [] }, limit: 25, dryRun: false, batchSize: 10, ratePerSecond: 0, ...extra },
  ];

  await worker.runUntil(async () => {
    // ---- webhookBackfill ----
    for (const [name, extra] of [['backfill-dry-run', { dryRun: true }], ['backfill-execute', {}]] as const) {
      const workflowId = `webhook-backfill/${name}`;
      await client.workflow.execute('webhookBackfill', { taskQueue, workflowId, args: backfillArgs(workflowId, file, extra) });
      await saveRun(name, workflowId);
    }
    {
      // Paused while its second batch is in flight, resumed, continued as new after every two batches.
      const workflowId = 'webhook-backfill/paused-continued';
      const release = await holdBatchLock(pool, `${workflowId}@1`, `offset:${offsetOfBatch(1)}`);
      const handle = await client.workflow.start('webhookBackfill', {
        taskQueue,
        workflowId,
        args: backfillArgs(workflowId, longFile, { batchSize: 10, batchesPerRun: 2, dryRun: true }),
      });
      await waitUntil('the second batch in flight', async () => (await handle.query<{ batches: number }>('progress')).batches === 1 && (await batchInFlight(workflowId)));
      await handle.signal('pause');
      await waitUntil('the pause seen', async () => (await handle.query<{ phase: string }>('progress')).phase === 'paused');
      await release();
      await waitUntil('two batches done, paused', async () => (await handle.query<{ batches: number }>('progress')).batches === 2);
      await handle.signal('resume');
      await handle.result();
      log(`backfill-paused-continued: ${await saveChain('backfill-paused-continued', workflowId, handle.firstExecutionRunId)} runs`);
    }
    {
      const workflowId = 'webhook-backfill/cancelled';
      const release = await holdBatchLock(pool, `${workflowId}@1`, `offset:${offsetOfBatch(1)}`);
      const handle = await client.workflow.start('webhookBackfill', { taskQueue, workflowId, args: backfillArgs(workflowId, longFile, { batchSize: 10 }) });
      await waitUntil('the second batch in flight', async () => (await handle.query<{ batches: number }>('progress')).batches === 1 && (await batchInFlight(workflowId)));
      await handle.cancel();
      await waitUntil('the batch asked to cancel', () => historyHas(workflowId, 'activityTaskCancelRequestedEventAttributes'));
      await release();
      await handle.result().catch(() => undefined);
      await saveRun('backfill-cancelled', workflowId);
    }

    // ---- webhookReplayDlq ----
    await pool.query(`UPDATE webhook_outbox SET status = 'dead_letter', last_status_code = 500, next_attempt_at = NULL`);
    await pool.query(
      `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, attempts, max_attempts, last_status_code)
       SELECT 'dl_' || i, 't', '1', 'r', 'u', '{}', 'dead_letter', 5, 5, 503 FROM generate_series(1, 90) AS i`,
    );
    for (const [name, extra] of [['replay-dry-run', { dryRun: true }], ['replay-execute', {}]] as const) {
      const workflowId = `webhook-replay/${name}`;
      await client.workflow.execute('webhookReplayDlq', { taskQueue, workflowId, args: replayArgs(workflowId, extra) });
      await saveRun(name, workflowId);
    }
    {
      // Rate-limited (a timer between batches), continued as new after every two batches.
      const workflowId = 'webhook-replay/continued';
      const handle = await client.workflow.start('webhookReplayDlq', { taskQueue, workflowId, args: replayArgs(workflowId, { batchSize: 5, batchesPerRun: 2, ratePerSecond: 500 }) });
      await handle.result();
      log(`replay-continued: ${await saveChain('replay-continued', workflowId, handle.firstExecutionRunId)} runs`);
    }
    {
      const workflowId = 'webhook-replay/cancelled';
      const release = await holdBatchLock(pool, `${workflowId}@1`, 'replay:1');
      const handle = await client.workflow.start('webhookReplayDlq', { taskQueue, workflowId, args: replayArgs(workflowId, { limit: 30 }) });
      await waitUntil('the second batch in flight', async () => (await handle.query<{ batches: number }>('progress')).batches === 1 && (await batchInFlight(workflowId)));
      await handle.cancel();
      await waitUntil('the batch asked to cancel', () => historyHas(workflowId, 'activityTaskCancelRequestedEventAttributes'));
      await release();
      await handle.result().catch(() => undefined);
      await saveRun('replay-cancelled', workflowId);
    }

    // ---- webhookDispatcher ----
    await pool.query('TRUNCATE webhook_outbox CASCADE');
    {
      const workflowId = dispatcherWorkflowId(0);
      receiverHealthy = false;
      await seedEvents(pool, 'rec_dispatch', 30, 50);
      // Partial settings: the first run fills in the rest from the defaults and continues as new at once.
      const handle = await client.workflow.start('webhookDispatcher', {
        taskQueue,
        workflowId,
        args: [{ shard: 0, shards: 1, options: { batchSize: 10, concurrency: 2, backoffBaseMs: 20, backoffCapMs: 50, maxIdleMs: 2_000, autoPauseAfter: 5, autoPauseCooldownMs: 300, passesPerRun: 8 } }],
      });
      const stats = () => client.workflow.getHandle(workflowId).query<DispatcherStats>('stats');
      await waitUntil('an auto-pause and a failed probe', async () => {
        const s = await stats();
        return s.autoPauses >= 1 && s.passes >= 2 && s.paused;
      });
      receiverHealthy = true;
      await waitUntil('the backlog delivered', async () => (await statusCounts(pool)).delivered === 30);
      await client.workflow.getHandle(workflowId).signal('pause');
      await waitUntil('paused', async () => (await stats()).paused);
      await client.workflow.getHandle(workflowId).executeUpdate('configure', { args: [{ concurrency: 3, batchSize: 5 }] });
      const runAtUpdate = (await client.workflow.getHandle(workflowId).describe()).runId;
      await seedEvents(pool, 'rec_dispatch_more', 20, 50);
      await client.workflow.getHandle(workflowId).signal('resume');
      await client.workflow.getHandle(workflowId).signal('wake');
      await waitUntil('the second backlog delivered', async () => (await statusCounts(pool)).delivered === 50);
      // Idle passes (maxIdleMs) reach passesPerRun: the run continues as new, carrying the updated settings.
      await waitUntil('a continue-as-new after the update', async () => (await client.workflow.getHandle(workflowId).describe()).runId !== runAtUpdate);
      await seedEvents(pool, 'rec_dispatch_last', 5, 50);
      await client.workflow.getHandle(workflowId).signal('wake');
      await waitUntil('the last events delivered', async () => (await statusCounts(pool)).delivered === 55);
      await client.workflow.getHandle(workflowId).terminate('recorded');
      log(`dispatcher: ${await saveChain('dispatcher', workflowId, handle.firstExecutionRunId)} runs`);
    }

    // ---- webhookRecoveryRunbook (a dispatcher delivers for steps 3 and 6) ----
    await pool.query('TRUNCATE webhook_outbox CASCADE');
    const dispatcher = await client.workflow.start('webhookDispatcher', {
      taskQueue,
      workflowId: dispatcherWorkflowId(0),
      args: [{ shard: 0, shards: 1, options: { backoffBaseMs: 20, backoffCapMs: 50, maxIdleMs: 100, autoPauseAfter: 100_000 } }],
    });
    const runbookInput = (path: string, extra: Partial<RunbookInput> = {}): RunbookInput => ({
      runKey: `rb-${randomUUID()}`,
      path,
      maxAttempts: 2,
      batchSize: 10,
      replayLimit: 500,
      replayBatchSize: 10,
      approval: 'manual',
      maxFailedRatio: 0.5,
      verifyTimeoutMs: 120_000,
      verifyMaxBacklog: 0,
      verifyMinSuccessRate: 0.5,
      confirmTimeoutMs: 120_000,
      pollMs: 100,
      pollsPerRun: 3,
      ...extra,
    });
    const runbookFile = (name: string, n: number) => {
      const path = join(tmp, `${name}.ndjson`);
      writeFileSync(path, `${Array.from({ length: n }, (_, i) => line(`evt_${name}_${i + 1}`)).join('\n')}\n{broken\n`);
      return path;
    };
    const progress = (workflowId: string) => client.workflow.getHandle(workflowId).query<RunbookProgress>('progress');
    const atGate = (workflowId: string, step: StepNumber) => async () => {
      const p = await progress(workflowId);
      return p.phase === 'awaiting-approval' && p.currentStep === step;
    };
    {
      // All six steps: every tenth event is rejected until the replay, so step 4 finds dead letters to replay.
      const workflowId = 'webhook-runbook/completed';
      rejectShare = (id) => /_\d*0$/.test(id);
      const handle = await client.workflow.start('webhookRecoveryRunbook', { taskQueue, workflowId, args: [runbookInput(runbookFile('rb_done', 30))] });
      await waitUntil('gate 1', atGate(workflowId, 1));
      await handle.signal('approve', { step: 4, reason: 'the wrong gate' });
      await waitUntil('the refused signal seen', async () => (await progress(workflowId)).lastRefusedDecision !== null);
      // The dispatcher is paused while step 3 and step 6 wait, so each of them continues as new before it passes.
      const continuedInStep = async (step: 3 | 6) => {
        const { runId } = await handle.describe();
        await waitUntil(`step ${step} waiting`, async () => (await progress(workflowId)).currentStep === step);
        await waitUntil(`step ${step} continued as new`, async () => (await handle.describe()).runId !== runId);
        await dispatcher.signal('resume');
      };
      await dispatcher.signal('pause');
      await handle.executeUpdate('approve', { args: [{ step: 1, reason: 'recorded' }] });
      await continuedInStep(3);
      await waitUntil('gate 4', atGate(workflowId, 4), 240_000);
      rejectShare = () => false;
      await dispatcher.signal('pause');
      await handle.signal('approve', { step: 4 });
      await continuedInStep(6);
      await handle.result();
      log(`runbook-completed: ${await saveChain('runbook-completed', workflowId, handle.firstExecutionRunId)} runs`);
      for (const step of [1, 2, 4, 5] as const) {
        const child = runbookChildId(workflowId, step);
        await saveRun(`runbook-completed.child-step-${step}`, child);
      }
    }
    {
      const workflowId = 'webhook-runbook/rejected';
      const handle = await client.workflow.start('webhookRecoveryRunbook', { taskQueue, workflowId, args: [runbookInput(runbookFile('rb_rejected', 5))] });
      await waitUntil('gate 1', atGate(workflowId, 1));
      await handle.executeUpdate('reject', { args: [{ step: 1, reason: 'recorded' }] });
      await handle.result().catch(() => undefined);
      await saveRun('runbook-rejected', workflowId);
    }
    {
      // Step 2's child cancelled from outside while its first batch is in flight: RunbookStopped at step 2.
      const workflowId = 'webhook-runbook/child-cancelled';
      const path = runbookFile('rb_child_cancelled', 5);
      const release = await holdBatchLock(pool, `${procedureKey(path, await fingerprintFile(path, inputRootsFromEnvironment()))}/step-2`, 'offset:0');
      const handle = await client.workflow.start('webhookRecoveryRunbook', { taskQueue, workflowId, args: [runbookInput(path, { approval: 'auto' })] });
      const child = runbookChildId(workflowId, 2);
      await waitUntil('step 2 running', async () => (await progress(workflowId)).runningChild?.step === 2);
      await waitUntil('its batch in flight', () => batchInFlight(child));
      await client.workflow.getHandle(child).cancel();
      await waitUntil('the batch asked to cancel', () => historyHas(child, 'activityTaskCancelRequestedEventAttributes'));
      await release();
      await handle.result().catch(() => undefined);
      await saveRun('runbook-child-cancelled', workflowId);
      await saveRun('runbook-child-cancelled.child-step-2', child);
    }
    {
      const workflowId = 'webhook-runbook/cancelled';
      const handle = await client.workflow.start('webhookRecoveryRunbook', { taskQueue, workflowId, args: [runbookInput(runbookFile('rb_cancelled', 5))] });
      await waitUntil('gate 1', atGate(workflowId, 1));
      await handle.cancel();
      await handle.result().catch(() => undefined);
      await saveRun('runbook-cancelled', workflowId);
    }
    await dispatcher.terminate('recorded');
  });
  await agent.close();
  await receiver.stop();
  await tearDownHarness();
  log(`${saved} histories in ${relative(process.cwd(), OUT) || OUT}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
