import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Output } from '../src/client/errors';
import { StallNotice, stallNoticeMsFrom, whyNotMoving } from '../src/client/stall';
import { loadConfig } from '../src/config';
import { createPool } from '../src/db/pool';
import type { BackfillProgress } from '../src/shared/backfill';
import { alive, spawnCli, stderrTail, type Proc } from './helpers/cli-process';
import { generatedFile } from './helpers/files';
import { exited, getHarness, resetTables, runCli, uniqueTaskQueue, waitFor, withWorker, type Harness } from './helpers/harness';

/** An Output that keeps what a command would print. */
function captured(): Output & { errors: string[] } {
  const errors: string[] = [];
  return { errors, log: () => undefined, err: (line: string) => void errors.push(line) };
}

describe('attached commands say why a run is not moving (real Temporal, PostgreSQL and executable)', function () {
  this.timeout(180_000);
  let h: Harness;
  let taskQueue: string;
  const procs: Proc[] = [];

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('stall');
  });
  afterEach(async () => {
    for (const proc of procs.splice(0)) {
      if (alive(proc)) proc.child.kill('SIGKILL');
      await exited(proc.child);
    }
  });

  /** Starts a backfill without following it; returns its handle. */
  async function startDetached(lines: number) {
    const file = generatedFile(`stall-${randomUUID()}`, { valid: lines });
    const started = await runCli(['webhook-backfill', '--file', file.path, '--batch-size', '10', '--detach', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
    assert.equal(started.code, 0, started.stderr);
    const workflowId = String((JSON.parse(started.stdout.trim().split('\n').at(-1)!) as { workflow_id: string }).workflow_id);
    return h.env.client.workflow.getHandle(workflowId);
  }

  it('the attached command names the missing worker while nothing polls, and says so when one answers', async () => {
    const file = generatedFile(`stall-cli-${randomUUID()}`, { valid: 40 });
    const backfill = spawnCli(['webhook-backfill', '--file', file.path, '--batch-size', '10', '--json'], {
      TEMPORAL_ADDRESS: h.env.address,
      DATABASE_URL: h.databaseUrl,
      GOTONG_TASK_QUEUE: taskQueue,
      GOTONG_STALL_NOTICE_S: '1',
    });
    procs.push(backfill);
    await waitFor(
      'the stall line',
      async () => /no progress for \d+s: no worker is polling task queue/.test(backfill.stderr) || !alive(backfill),
      60_000,
    );
    assert.ok(alive(backfill), stderrTail(backfill));
    assert.match(backfill.stderr, new RegExp(`no worker is polling task queue '${taskQueue}'; the run waits until one starts \\('gotong-worker worker'\\)`));
    await withWorker(taskQueue, () => exited(backfill.child));
    assert.equal(backfill.child.exitCode, 0, backfill.stderr);
    assert.match(backfill.stderr, /a worker answers after \d+s; following the run/);
  });

  it("webhook-runbook names what holds up its step's backfill: a batch waiting on a lock, then its step going on", async () => {
    const file = generatedFile(`stall-rb-${randomUUID()}`, { valid: 30 });
    // Every dry-run batch reads its coverage row first: with the table locked, the step's batch waits.
    const locker = await h.pool.connect();
    let locked = true;
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE backfill_dry_run_coverage IN ACCESS EXCLUSIVE MODE');
      await withWorker(taskQueue, async () => {
        const runbook = spawnCli(['webhook-runbook', '--file', file.path, '--approval', 'manual'], {
          TEMPORAL_ADDRESS: h.env.address,
          DATABASE_URL: h.databaseUrl,
          GOTONG_TASK_QUEUE: taskQueue,
          GOTONG_STALL_NOTICE_S: '1',
        });
        procs.push(runbook);
        await waitFor(
          'the stall line of the step 1 backfill',
          async () => /\[webhook-backfill\] no progress for \d+s: its processBackfillBatch activity has been running/.test(runbook.stderr) || !alive(runbook),
          60_000,
        );
        assert.ok(alive(runbook), stderrTail(runbook));
        await locker.query('ROLLBACK');
        locked = false;
        // The step's backfill goes on and ends: its step line follows (a "moving again" line only if a look falls before the end).
        await waitFor('the gate after step 1', async () => /step 1\/6 .*awaiting-approval/.test(runbook.stdout) || !alive(runbook), 60_000);
        assert.ok(alive(runbook), stderrTail(runbook));
        // Rejected, not terminated: a run terminated at its gate would go on being listed as awaiting approval.
        const rejected = await runCli(['reject', /started (\S+)/.exec(runbook.stderr)![1]!, '--reason', 'test over'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(rejected.code, 0, rejected.stderr);
        await exited(runbook.child);
      });
    } finally {
      if (locked) await locker.query('ROLLBACK');
      locker.release();
    }
  });

  it('a bad GOTONG_STALL_NOTICE_S is a usage error before anything starts', async () => {
    const file = generatedFile(`stall-bad-${randomUUID()}`, { valid: 5 });
    const result = await runCli(['webhook-backfill', '--file', file.path], { GOTONG_TASK_QUEUE: taskQueue, GOTONG_STALL_NOTICE_S: '0' });
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /GOTONG_STALL_NOTICE_S must be a whole number of seconds from 1 to 86400/);
    const runs: string[] = [];
    for await (const run of h.env.client.workflow.list({ query: `TaskQueue = '${taskQueue}'` })) runs.push(run.workflowId);
    assert.deepEqual(runs, []);
    assert.throws(() => stallNoticeMsFrom({ GOTONG_STALL_NOTICE_S: '1.5' }), /whole number/);
    assert.equal(stallNoticeMsFrom({}), 60_000);
    // Only commands that follow runs read it: a worker host with a bad value still starts.
    assert.doesNotThrow(() => loadConfig({ GOTONG_STALL_NOTICE_S: '0' }));
  });

  it('a database that refuses connections: the batch activity retrying, with its attempt and the innermost failure', async () => {
    const handle = await startDetached(20);
    const out = captured();
    const notice = new StallNotice('webhook-backfill', handle, out, 0);
    // A worker whose database is gone (nothing listens on port 1): every batch fails to connect and is retried.
    const deadPool = createPool('postgres://postgres@127.0.0.1:1/gotong_test', 2);
    try {
      await withWorker(
        taskQueue,
        async () => {
          await waitFor('an activity on its second attempt', async () => {
            const pending = (await handle.describe()).raw.pendingActivities ?? [];
            return pending.some((a) => (a.attempt ?? 1) > 1);
          });
          await notice.observe(undefined);
        },
        undefined,
        { pool: deadPool },
      );
    } finally {
      await deadPool.end();
      await handle.terminate('test over');
    }
    assert.equal(out.errors.length, 1, out.errors.join('\n'));
    assert.match(out.errors[0]!, /^\[webhook-backfill\] no progress for \d+s: its \w+ activity is retrying \(attempt \d+; last failure: .*(ECONNREFUSED|connect)/);
    assert.match(out.errors[0]!, /it goes on by itself once that clears, or cancel the run in the Temporal UI$/);
  });

  it('a paused run: says it is paused and how to resume it, once, then that it was resumed', async () => {
    const handle = await startDetached(200);
    const out = captured();
    const notice = new StallNotice('webhook-backfill', handle, out, 0);
    await handle.signal('pause');
    await withWorker(taskQueue, async () => {
      let progress = await handle.query<BackfillProgress>('progress');
      await waitFor('the run to pause', async () => (progress = await handle.query<BackfillProgress>('progress')).phase === 'paused');
      await notice.observe(progress); // the pause itself is a change
      await notice.observe(progress);
      await notice.observe(progress); // described at most every 15 s: nothing more
      assert.equal(out.errors.length, 1, out.errors.join('\n'));
      assert.match(out.errors[0]!, /no progress for \d+s: the run is paused; it goes on when it gets the 'resume' signal/);
      assert.ok(out.errors[0]!.includes(`temporal workflow signal --workflow-id '${handle.workflowId}' --name resume`));
      await handle.signal('resume');
      await waitFor('the run to go on', async () => (progress = await handle.query<BackfillProgress>('progress')).phase !== 'paused');
      await notice.observe(progress);
      assert.match(out.errors[1] ?? '', /^\[webhook-backfill\] resumed after \d+s; waiting for its next batch$/);
      await handle.result();
    });
  });
});

describe('why a run is not moving, and how often it is said (pure, a stand-in for the server)', () => {
  type Pending = { activityType: { name: string }; attempt: number; lastFailure?: { message: string; cause?: { message: string } }; lastStartedTime?: { seconds: number } };
  /** A handle whose server describes the run with `pending` activities and `pollers` on its task queue. */
  function standIn(state: { pending: Pending[]; pollers: number; status?: string }) {
    return {
      workflowId: "webhook-backfill/it's.ndjson",
      describe: async () => ({ status: { name: state.status ?? 'RUNNING' }, taskQueue: 'q', raw: { pendingActivities: state.pending } }),
      client: {
        options: { namespace: 'prod' },
        connection: { withDeadline: <T>(_deadline: number, fn: () => Promise<T>) => fn() },
        workflowService: { describeTaskQueue: async () => ({ pollers: Array.from({ length: state.pollers }, () => ({ lastAccessTime: null })) }) },
      },
    } as unknown as Parameters<typeof whyNotMoving>[0];
  }
  const heartbeatLost: Pending = {
    activityType: { name: 'processBackfillBatch' },
    attempt: 2,
    lastFailure: { message: 'Activity task timed out', cause: { message: 'activity Heartbeat timeout' } },
  };

  it('no worker comes first: a paused run, or an activity retrying after its worker died, waits for one too', async () => {
    assert.equal((await whyNotMoving(standIn({ pending: [heartbeatLost], pollers: 0 }), undefined))?.key, 'no-worker');
    assert.equal((await whyNotMoving(standIn({ pending: [], pollers: 0 }), 'paused'))?.key, 'no-worker');
    const retrying = await whyNotMoving(standIn({ pending: [heartbeatLost], pollers: 1 }), undefined);
    assert.match(retrying!.text, /^its processBackfillBatch activity is retrying \(attempt 2; last failure: activity Heartbeat timeout\)/);
    const paused = await whyNotMoving(standIn({ pending: [heartbeatLost], pollers: 1 }), 'paused');
    assert.match(paused!.text, /temporal workflow signal --workflow-id 'webhook-backfill\/it'\\''s\.ndjson' --namespace 'prod' --name resume\)$/);
    assert.equal(await whyNotMoving(standIn({ pending: [], pollers: 1, status: 'COMPLETED' }), undefined), null);
  });

  it('a cause is said once, not again as its figures change, and again when the cause changes', async () => {
    const state = { pending: [{ activityType: { name: 'processBackfillBatch' }, attempt: 1, lastStartedTime: { seconds: Math.floor(Date.now() / 1000) - 5 } }] as Pending[], pollers: 1 };
    const errors: string[] = [];
    const notice = new StallNotice('webhook-backfill', standIn(state), { log: () => undefined, err: (l: string) => void errors.push(l) }, 0, {
      diagnoseEveryMs: 0,
      reminderMs: 60_000,
    });
    await notice.observe({ processed: 100 });
    for (let i = 0; i < 3; i++) {
      state.pending[0]!.lastStartedTime = { seconds: state.pending[0]!.lastStartedTime!.seconds - 20 };
      await notice.observe({ processed: 100 });
    }
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0]!, /no progress for \d+s: its processBackfillBatch activity has been running for \d+s \(attempt 1\) without finishing a batch$/);
    for (let attempt = 2; attempt < 5; attempt++) {
      state.pending = [{ ...heartbeatLost, attempt }];
      await notice.observe({ processed: 100 });
    }
    assert.equal(errors.length, 2, errors.join('\n'));
    assert.match(errors[1]!, /retrying \(attempt 2; last failure: activity Heartbeat timeout\)/);
    await notice.observe({ processed: 150 });
    assert.match(errors[2]!, /^\[webhook-backfill\] moving again after \d+s without progress$/);
    notice.close();
    state.pending = [{ ...heartbeatLost, attempt: 9 }];
    await notice.observe({ processed: 150 });
    assert.equal(errors.length, 3, 'nothing after close()');
  });
});
