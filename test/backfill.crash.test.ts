import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { BackfillProgress } from '../src/shared/backfill';
import { webhookBackfill } from '../src/workflows/backfill';
import { countersOf, generatedFile } from './helpers/files';
import { CLI, getHarness, outboxCount, resetTables, uniqueTaskQueue, type Harness, exited } from './helpers/harness';

/** A worker in its own process, as in production, so that it can be killed without warning. */
function startWorkerProcess(h: Harness, taskQueue: string): ChildProcess {
  return spawn(process.execPath, [CLI, 'worker', '--no-migrate'], {
    env: { ...process.env, TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: h.databaseUrl, GOTONG_TASK_QUEUE: taskQueue },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}


describe('backfill under worker crashes (SIGKILL)', function () {
  this.timeout(240_000);
  let h: Harness;
  const children: ChildProcess[] = [];

  before(async () => {
    h = getHarness();
    await resetTables(h.pool);
  });
  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await Promise.all(children.map(exited));
  });

  it('kill the worker twice mid-run: the summary equals a clean run, no event inserted or counted twice', async () => {
    const taskQueue = uniqueTaskQueue('crash');
    const file = generatedFile(`crash-${randomUUID()}`, { valid: 60_000, dupEvery: 13, failEvery: 997, blankEvery: 500 });
    const workflowId = `webhook-backfill/crash-${randomUUID()}`;
    const handle = await h.env.client.workflow.start(webhookBackfill, {
      taskQueue,
      workflowId,
      args: [{ runKey: `${workflowId}@1`, path: file.path, dryRun: false, maxAttempts: 5, batchSize: 1000 }],
    });

    const progressAt = async (): Promise<number> =>
      (await handle.query<BackfillProgress>('progress').catch(() => undefined))?.processed ?? 0;

    for (const killAt of [8_000, 35_000]) {
      const worker = startWorkerProcess(h, taskQueue);
      children.push(worker);
      const deadline = Date.now() + 120_000;
      while ((await progressAt()) < killAt) {
        assert.ok(Date.now() < deadline, `the run did not reach ${killAt} lines`);
        await new Promise((r) => setTimeout(r, 50));
      }
      worker.kill('SIGKILL');
      await exited(worker);
    }
    const survivor = startWorkerProcess(h, taskQueue);
    children.push(survivor);

    const summary = await handle.result();
    assert.deepEqual(countersOf(summary), file.expected);
    assert.equal(await outboxCount(h.pool), file.expected.created);
    const ledger = await h.pool.query<{ n: string; created: string }>(
      `SELECT count(*) AS n, sum((result->>'created')::int) AS created FROM batch_ledger WHERE run_key = $1`,
      [`${workflowId}@1`],
    );
    assert.equal(Number(ledger.rows[0]!.n), summary.batches, 'one ledger row per batch');
    assert.equal(Number(ledger.rows[0]!.created), file.expected.created);
    const failedLines = await h.pool.query('SELECT 1 FROM backfill_failed_lines WHERE run_key = $1', [`${workflowId}@1`]);
    assert.equal(failedLines.rowCount, file.expected.failed);
  });
});
