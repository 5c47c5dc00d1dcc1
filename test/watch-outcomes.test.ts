import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NativeConnection } from '@temporalio/worker';
import { isTemporalUnreachable } from '../src/client/run-ending';
import type { BackfillProgress } from '../src/shared/backfill';
import { createWorker } from '../src/worker';
import { DevServer } from './chaos/stack';
import { alive, spawnCli, stderrTail, summaryOf, type Proc } from './helpers/cli-process';
import { countersOf, event, generatedFile } from './helpers/files';
import { exited, getHarness, resetTables, runCli, uniqueTaskQueue, waitFor, withWorker, type Harness } from './helpers/harness';

const progressLines = (stdout: string) => stdout.split('\n').filter((l) => l.includes('] progress '));

/** The workflow id a run command printed when it started the run. */
const startedId = (proc: Proc) => /started (\S+)/.exec(proc.stderr)?.[1] ?? assert.fail(`no run started: ${stderrTail(proc)}`);

describe('how attached commands end: outages, failures, --json (real executable)', function () {
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

  it('webhook-backfill --json keeps waiting through a Temporal outage, says so on stderr, and ends with the exact summary', async () => {
    // A dev server of the test's own, on a SQLite file: stopping the harness's would break every other test.
    const dir = mkdtempSync(join(tmpdir(), 'gotong-outage-'));
    const server = await DevServer.start(h.temporalCli, join(dir, 'temporal.sqlite'));
    try {
      env.TEMPORAL_ADDRESS = server.address;
      const file = generatedFile(`outage-${randomUUID()}`, { valid: 2000, dupEvery: 7, failEvery: 50 });
      // No worker yet: the run cannot finish before the outage, so the command is certainly waiting through it.
      const backfill = cli(['webhook-backfill', '--file', file.path, '--batch-size', '100', '--progress-every', '500', '--json']);
      await waitFor('the run to start', async () => /started webhook-backfill\//.test(backfill.stderr) || !alive(backfill));
      assert.ok(alive(backfill), stderrTail(backfill));

      await server.stop();
      await waitFor('the outage notice, or the command giving up', async () => /unreachable/.test(backfill.stderr) || !alive(backfill), 120_000);
      assert.match(backfill.stderr, new RegExp(`Temporal at ${server.address} is unreachable \\(.+\\); this command keeps trying.*Ctrl-C`));
      // The reminder comes a minute into the outage: by then the SDK has given up its own retries of the wait for
      // the result (about 40 s), which is where the command used to end saying the run did not finish.
      await waitFor('the reminder that it still waits, or the command giving up', async () => /still unreachable after/.test(backfill.stderr) || !alive(backfill), 180_000);
      assert.ok(alive(backfill), `the command waits through the outage instead of ending: ${stderrTail(backfill)}`);
      assert.doesNotMatch(backfill.stdout + backfill.stderr, /did not finish/);

      await server.startAgain();
      const connection = await NativeConnection.connect({ address: server.address });
      try {
        const worker = await createWorker({ connection, namespace: 'default', taskQueue, pool: h.pool, workflowBundle: h.workflowBundle });
        await worker.runUntil(() => exited(backfill.child));
      } finally {
        await connection.close();
      }
      assert.equal(backfill.child.exitCode, 0, stderrTail(backfill));
      assert.match(backfill.stderr, new RegExp(`Temporal at ${server.address} answers again`));
      const summary = summaryOf(backfill);
      assert.deepEqual(countersOf(summary as never), file.expected);
      assert.equal(progressLines(backfill.stdout).length, Math.floor(file.expected.processed / 500), 'every progress line, printed after the outage');
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a backfill whose file changed: watch and status name that reason, and watch --json ends with it as one object', async () => {
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

  it('webhook-runbook --json on a run terminated at its gate ends with one object: outcome, the step it was at, reason; exit 1', async () => {
    const file = generatedFile(`rb-terminated-${randomUUID()}`, { valid: 30 });
    const runbook = cli(['webhook-runbook', '--file', file.path, '--approval', 'manual', '--json']);
    await waitFor('the run to start', async () => /started webhook-runbook\//.test(runbook.stderr) || !alive(runbook));
    const workflowId = startedId(runbook);
    const handle = h.env.client.workflow.getHandle(workflowId);
    await withWorker(taskQueue, async () => {
      await waitFor('the gate after step 1, seen by the command', async () => /step 1\/6 .*awaiting/.test(runbook.stdout) || !alive(runbook));
      await handle.terminate('the test ends it');
      await exited(runbook.child);
    });
    assert.equal(runbook.child.exitCode, 1, runbook.stderr);
    const last = summaryOf(runbook);
    assert.deepEqual(
      { ...last, run_key: typeof last.run_key },
      { workflow_id: workflowId, run_key: 'string', outcome: 'terminated', stopped_at: 1, reason: 'the test ends it' },
    );
    assert.match(runbook.stderr, /did not finish: the test ends it/);
  });

  it('webhook-runbook --json on a run cancelled at its gate: outcome "cancelled", as the runbook spells it', async () => {
    const file = generatedFile(`rb-cancelled-${randomUUID()}`, { valid: 30 });
    const runbook = cli(['webhook-runbook', '--file', file.path, '--approval', 'manual', '--json']);
    await waitFor('the run to start', async () => /started webhook-runbook\//.test(runbook.stderr) || !alive(runbook));
    const handle = h.env.client.workflow.getHandle(startedId(runbook));
    await withWorker(taskQueue, async () => {
      await waitFor('the gate after step 1, seen by the command', async () => /step 1\/6 .*awaiting/.test(runbook.stdout) || !alive(runbook));
      await handle.cancel();
      await exited(runbook.child);
    });
    assert.equal(runbook.child.exitCode, 1, runbook.stderr);
    const last = summaryOf(runbook);
    assert.equal(last.outcome, 'cancelled', JSON.stringify(last));
    assert.equal(last.stopped_at, 1);
  });
});

describe('what counts as an outage to wait out (pure)', () => {
  const grpcError = (code: number, message: string) => Object.assign(new Error(message), { code });

  it('an unreachable or silent server is; a run that failed, or a certificate that will not pass, is not', () => {
    assert.equal(isTemporalUnreachable(new Error('Failed to get Workflow execution history', { cause: grpcError(14, '14 UNAVAILABLE: No connection established') })), true);
    assert.equal(isTemporalUnreachable(grpcError(4, '4 DEADLINE_EXCEEDED: Deadline exceeded')), true);
    assert.equal(isTemporalUnreachable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:7233'), { code: 'ECONNREFUSED' })), true);
    // Every reconnect fails the same way: waiting would never end.
    assert.equal(isTemporalUnreachable(grpcError(14, '14 UNAVAILABLE: No connection established. Last error: Error: certificate has expired')), false);
    assert.equal(isTemporalUnreachable(grpcError(5, '5 NOT_FOUND: workflow not found')), false);
  });
});
