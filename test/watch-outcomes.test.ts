import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { BackfillProgress } from '../src/shared/backfill';
import { alive, spawnCli, type Proc } from './helpers/cli-process';
import { event, generatedFile } from './helpers/files';
import { exited, getHarness, resetTables, runCli, uniqueTaskQueue, waitFor, withWorker, type Harness } from './helpers/harness';

describe('how attached commands end (real executable)', function () {
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

  it('a backfill whose file changed: watch and status name that reason, not "Activity task failed"', async () => {
    const file = generatedFile(`changed-${randomUUID()}`, { valid: 200 });
    const detached = await runCli(['webhook-backfill', '--file', file.path, '--batch-size', '10', '--detach'], { GOTONG_TASK_QUEUE: taskQueue });
    assert.equal(detached.code, 0, detached.stderr);
    const workflowId = detached.stdout.trim();
    const handle = h.env.client.workflow.getHandle(workflowId);
    await handle.signal('pause');
    const watcher = cli(['watch', workflowId]);
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

    const status = await runCli(['status', workflowId], { GOTONG_TASK_QUEUE: taskQueue });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^ {2}failure {3}.*changed after the backfill started/m);
    assert.doesNotMatch(status.stdout, /Activity task failed/);
  });
});
