import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { BackfillProgress } from '../src/shared/backfill';
import { alive, spawnCli, stderrTail, summaryOf, type Proc } from './helpers/cli-process';
import { countersOf, event, generatedFile } from './helpers/files';
import { exited, getHarness, resetTables, runCli, uniqueTaskQueue, waitFor, withWorker, type Harness } from './helpers/harness';

/** The workflow id a run command printed when it started the run. */
const startedId = (proc: Proc) => /started (\S+)/.exec(proc.stderr)?.[1] ?? assert.fail(`no run started: ${stderrTail(proc)}`);

describe('how attached commands end: failures, --json (real executable)', function () {
  this.timeout(300_000);
  let h: Harness;
  let taskQueue: string;
  let env: Record<string, string>;
  const started: Proc[] = [];
  const cli = (args: string[], extra: Record<string, string> = {}) => {
    const proc = spawnCli(args, { ...env, ...extra });
    started.push(proc);
    return proc;
  };

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('outcomes');
    env = { TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: h.databaseUrl, GOTONG_TASK_QUEUE: taskQueue };
  });
  afterEach(async () => {
    for (const proc of started.splice(0)) {
      if (alive(proc)) proc.child.kill('SIGKILL');
      await exited(proc.child);
    }
  });

  it('a backfill whose file changed: watch and status name that reason, not "Activity task failed", and watch --json ends with it as one object', async () => {
    const file = generatedFile(`changed-${randomUUID()}`, { valid: 200 });
    const detached = await runCli(['webhook-backfill', '--file', file.path, '--batch-size', '10', '--detach'], { GOTONG_TASK_QUEUE: taskQueue });
    assert.equal(detached.code, 0, detached.stderr);
    const workflowId = detached.stdout.trim();
    const handle = h.env.client.workflow.getHandle(workflowId);
    await handle.signal('pause');
    const watcher = cli(['watch', workflowId, '--json']);
    await withWorker(taskQueue, async () => {
      await waitFor('the run to pause after taking the fingerprint', async () => (await handle.query<BackfillProgress>('progress')).phase === 'paused');
      await waitFor('watch to attach', async () => /attached at processed=0/.test(watcher.stderr) || !alive(watcher));
      writeFileSync(file.path, event('evt_other'));
      await handle.signal('resume');
      await exited(watcher.child);
    });
    assert.equal(watcher.child.exitCode, 1, watcher.stderr);
    assert.match(watcher.stderr, /did not finish: .*changed after the backfill started \(size \d+ -> \d+/);
    assert.doesNotMatch(watcher.stderr, /Activity task failed/);
    const last = summaryOf(watcher);
    assert.equal(last.workflow_id, workflowId);
    assert.equal(last.status, 'failed');
    assert.match(String(last.error), /changed after the backfill started/);
    assert.deepEqual(countersOf(last as never), { processed: 0, created: 0, enqueued: 0, duplicates: 0, failed: 0 });
    assert.equal(last.dry_run, false);

    const status = await runCli(['status', workflowId], { GOTONG_TASK_QUEUE: taskQueue });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^ {2}failure {3}.*changed after the backfill started/m);
    assert.doesNotMatch(status.stdout, /Activity task failed/);
  });

  it('webhook-backfill --json on a run cancelled under it ends with one object: counters so far, status and error; exit 1', async () => {
    const file = generatedFile(`cancelled-${randomUUID()}`, { valid: 300 });
    const backfill = cli(['webhook-backfill', '--file', file.path, '--batch-size', '100', '--json']);
    await waitFor('the run to start', async () => /started webhook-backfill\//.test(backfill.stderr) || !alive(backfill));
    const workflowId = startedId(backfill);
    const handle = h.env.client.workflow.getHandle(workflowId);
    await handle.signal('pause');
    await withWorker(taskQueue, async () => {
      await waitFor('the run to pause', async () => (await handle.query<BackfillProgress>('progress')).phase === 'paused');
      await handle.cancel();
      await exited(backfill.child);
    });
    assert.equal(backfill.child.exitCode, 1, backfill.stderr);
    const last = summaryOf(backfill);
    assert.deepEqual(
      { ...last, error: undefined },
      { workflow_id: workflowId, processed: 0, created: 0, enqueued: 0, duplicates: 0, failed: 0, dry_run: false, status: 'canceled', error: undefined },
    );
    assert.match(String(last.error), /cancel/i);
    assert.match(backfill.stderr, /did not finish: .*cancel/i);
  });
});
