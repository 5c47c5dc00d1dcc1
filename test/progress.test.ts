import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { Pool } from 'pg';
import { createActivities } from '../src/activities';
import { formatCounters, formatReplayCounters } from '../src/client/counters';
import type { Output } from '../src/client/errors';
import { CheckpointFollower, type FollowableProgress, printChildProgress } from '../src/client/watch';
import { runReplayBatch } from '../src/replay/batch';
import type { BackfillBatchInput, BackfillBatchResult, BackfillCounters, BackfillProgress, FileFingerprint } from '../src/shared/backfill';
import { batchCheckpoints, checkpointEvery, CheckpointWindow, PROGRESS_LIMITS } from '../src/shared/progress';
import type { ReplayBatchInput, ReplayBatchResult } from '../src/shared/replay';
import { webhookBackfill } from '../src/workflows/backfill';
import { webhookReplayDlq } from '../src/workflows/replay';
import { event, tmp } from './helpers/files';
import { CLI, exited, getHarness, resetTables, runCli, seedEvents, uniqueTaskQueue, waitFor, withWorker, type Harness } from './helpers/harness';

type Kind = 'created' | 'duplicate' | 'failed' | 'blank';

interface MixedFile {
  path: string;
  /** What each physical line is, decided when it was written: the reference the output is checked against. */
  kinds: Kind[];
  /** Ids of the file that are already in the outbox before the run (duplicates on first sight). */
  preexisting: string[];
}

/**
 * A file of `physicalLines` lines mixing new events, duplicates (of the line before, and of one 1,500 new
 * events back: another write slice or batch), broken JSON, payloads PostgreSQL refuses though they pass our
 * checks (numbers beyond `numeric`), ids already in the outbox, and blank lines.
 */
function mixedFile(name: string, physicalLines: number, opts: { blanks?: boolean; refused?: boolean; preexisting?: boolean } = {}): MixedFile {
  const text: string[] = [];
  const kinds: Kind[] = [];
  const created: string[] = [];
  const preexisting: string[] = [];
  let fresh = 0;
  for (let i = 1; i <= physicalLines; i++) {
    if (opts.blanks && i % 40 === 0) {
      text.push(i % 80 === 0 ? '  \t' : '');
      kinds.push('blank');
    } else if (i % 33 === 0) {
      text.push(`{"event_id": "evt_${name}_broken_${i}"`);
      kinds.push('failed');
    } else if (opts.refused && i % 97 === 0) {
      text.push(event(`evt_${name}_huge_${i}`).replace(/}$/, ',"amount":1e400000}'));
      kinds.push('failed');
    } else if (i % 9 === 0 && created.length > 0) {
      const far = i % 18 === 0 && created.length > 1500;
      text.push(event(created[far ? created.length - 1500 : created.length - 1]!, { again: true }));
      kinds.push('duplicate');
    } else {
      const id = `evt_${name}_${fresh++}`;
      text.push(event(id, { subject: { title: `item ${i}` } }));
      if (opts.preexisting && fresh % 50 === 7) {
        preexisting.push(id);
        kinds.push('duplicate');
      } else {
        created.push(id);
        kinds.push('created');
      }
    }
  }
  const path = join(tmp, `${name}.ndjson`);
  writeFileSync(path, `${text.join('\n')}\n`);
  return { path, kinds, preexisting };
}

/** The counters at each multiple of `every` processed lines, counted line by line from the reference. */
function expectedBackfillLines(kinds: Kind[], every: number): { lines: string[]; total: BackfillCounters } {
  const c = { processed: 0, created: 0, enqueued: 0, duplicates: 0, failed: 0 };
  const lines: string[] = [];
  for (const kind of kinds) {
    if (kind === 'blank') continue;
    c.processed += 1;
    if (kind === 'created') {
      c.created += 1;
      c.enqueued += 1;
    } else if (kind === 'duplicate') c.duplicates += 1;
    else c.failed += 1;
    if (c.processed % every === 0) lines.push(`[webhook-backfill] progress ${formatCounters(c)}`);
  }
  return { lines, total: c };
}

async function seedPreexisting(pool: Pool, ids: string[]): Promise<void> {
  await pool.query(
    `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, attempts, max_attempts)
     SELECT id, 'contribution_created', '1', 'req', 'user_1', '{}'::jsonb, 'delivered', 1, 5 FROM unnest($1::text[]) AS id`,
    [ids],
  );
}

/** `count` dead letters (and a few delivered rows no replay selects). */
async function seedDeadLetters(pool: Pool, prefix: string, count: number): Promise<string[]> {
  const ids = await seedEvents(pool, prefix, count);
  await pool.query(`UPDATE webhook_outbox SET status = 'dead_letter', attempts = 5, last_status_code = 503 WHERE event_id = ANY($1)`, [ids]);
  await seedEvents(pool, `${prefix}_ok`, 7);
  await pool.query(`UPDATE webhook_outbox SET status = 'delivered' WHERE event_id LIKE $1`, [`${prefix}_ok_%`]);
  return ids;
}

function expectedReplayLines(processed: number, every: number): string[] {
  const lines: string[] = [];
  for (let p = every; p <= processed; p += every) {
    lines.push(`[webhook-replay-dlq] progress ${formatReplayCounters({ processed: p, replayed: p, enqueued: p, skipped: 0, failed: 0 })}`);
  }
  return lines;
}

const progressLines = (stdout: string) => stdout.split('\n').filter((l) => l.includes('] progress '));
const lastLines = (stdout: string, n: number) => stdout.trimEnd().split('\n').slice(-n);

/** A CLI process whose output can be watched while it runs (for signals and for waiting on a line). */
function startCli(args: string[], env: Record<string, string>): { child: ChildProcess; stdout: () => string; stderr: () => string } {
  const h = getHarness();
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: h.databaseUrl, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return { child, stdout: () => stdout, stderr: () => stderr };
}

const recorder = (): Output & { logs: string[]; errs: string[] } => {
  const logs: string[] = [];
  const errs: string[] = [];
  return { logs, errs, log: (l) => logs.push(l), err: (l) => errs.push(l) };
};

describe('progress checkpoints: pure parts', () => {
  it('checkpointEvery keeps the requested step unless a batch would hold more than the cap, then a multiple of it', () => {
    assert.equal(checkpointEvery(200, 10_000), 200);
    assert.equal(checkpointEvery(100, 20_000), 100);
    assert.equal(checkpointEvery(1, 10_000), 40);
    assert.equal(checkpointEvery(3, 10_000), 42);
    for (const [every, batch] of [[1, 50_000], [7, 10_000], [100, 50_000], [1, 1]] as const) {
      const step = checkpointEvery(every, batch);
      assert.equal(step % every, 0, 'a multiple of the requested step');
      assert.ok(Math.ceil(batch / step) <= PROGRESS_LIMITS.maxCheckpointsPerBatch, `${every}/${batch}: at most the cap a batch`);
    }
  });

  it('batchCheckpoints counts outcomes up to each multiple of the step, counted from the run start', () => {
    // 0 created, 1 duplicate, 2 failed; the run had processed 7 before this batch, step 5: items 3, 8, 13.
    const outcomes = [0, 1, 0, 2, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0];
    assert.deepEqual(batchCheckpoints(outcomes, outcomes.length, { every: 5, processedBefore: 7 }, 3), [
      [3, 2, 1, 0],
      [8, 5, 2, 1],
      [13, 9, 2, 2],
    ]);
    assert.deepEqual(batchCheckpoints(outcomes, 2, { every: 5, processedBefore: 0 }, 3), []);
  });

  it('CheckpointWindow adds batch bases, pages after a position, and keeps only the newest', () => {
    const window = new CheckpointWindow();
    window.add([0, 0, 0, 0], [[10, 9, 1, 0]]);
    window.add([15, 12, 2, 1], [[5, 5, 0, 0], [15, 14, 1, 0]]);
    assert.deepEqual(window.after(0), [[10, 9, 1, 0], [20, 17, 2, 1], [30, 26, 3, 1]]);
    assert.deepEqual(window.after(10), [[20, 17, 2, 1], [30, 26, 3, 1]]);
    assert.deepEqual(window.after(undefined), [], 'no argument, no checkpoints');
    const big = new CheckpointWindow();
    big.add([0], Array.from({ length: PROGRESS_LIMITS.window + 5 }, (_, i) => [i + 1]));
    assert.equal(big.oldest(), 6);
    assert.equal(new CheckpointWindow(big.carry()).oldest(), 6, 'carried across continue-as-new as it was');
  });
});

describe('progress lines at every --progress-every, exact (real executable, Temporal and PostgreSQL)', function () {
  this.timeout(300_000);
  let h: Harness;
  let taskQueue: string;

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('progress');
  });

  it('a 4,128-line file with --progress-every 200: exactly 20 lines, each the line-by-line count at 200, 400, ... (dry run and execute)', async () => {
    const name = `p4128-${randomUUID()}`;
    const file = mixedFile(name, 4128, { blanks: true, refused: true, preexisting: true });
    await seedPreexisting(h.pool, file.preexisting);
    const expected = expectedBackfillLines(file.kinds, 200);
    assert.equal(expected.lines.length, 20, 'the reference itself: 4,025 processed lines');
    assert.ok(expected.total.duplicates > 0 && expected.total.failed > 0);
    await withWorker(taskQueue, async () => {
      for (const mode of ['--dry-run', '--max-attempts'] as const) {
        const args = ['webhook-backfill', '--file', file.path, '--progress-every', '200', '--json'];
        const result = await runCli(mode === '--dry-run' ? [...args, mode] : [...args, mode, '3'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(result.code, 0, result.stderr);
        const dryRun = mode === '--dry-run';
        assert.deepEqual(progressLines(result.stdout), expected.lines, `${mode}: every checkpoint, in order, exact`);
        const [done, json] = lastLines(result.stdout, 2);
        assert.equal(done, `[webhook-backfill] done ${formatCounters(expected.total)} dry_run=${dryRun}`);
        assert.deepEqual(JSON.parse(json!).processed, expected.total.processed);
        assert.deepEqual(result.stdout.trimEnd().split('\n'), [...expected.lines, done, json], 'progress lines, then the summary, nothing else');
      }
    });
    const { rows } = await h.pool.query<{ n: string }>('SELECT count(*) AS n FROM webhook_outbox WHERE source_run IS NOT NULL');
    assert.equal(Number(rows[0]!.n), expected.total.created);
  });

  it('a 100,000-line file with --progress-every 1000 prints 100 exact lines across ten batches', async () => {
    const file = mixedFile(`p100k-${randomUUID()}`, 100_000);
    const expected = expectedBackfillLines(file.kinds, 1000);
    assert.equal(expected.lines.length, 100);
    await withWorker(taskQueue, async () => {
      const result = await runCli(['webhook-backfill', '--file', file.path, '--progress-every', '1000'], { GOTONG_TASK_QUEUE: taskQueue });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.stdout.trimEnd().split('\n'), [...expected.lines, `[webhook-backfill] done ${formatCounters(expected.total)} dry_run=false`]);
    });
  });

  it('--progress-every 1 with 10,000-line batches is coarsened to a multiple of 1, said on stderr, and still exact', async () => {
    const file = mixedFile(`p1-${randomUUID()}`, 1000, { blanks: true });
    const step = checkpointEvery(1, 10_000);
    const expected = expectedBackfillLines(file.kinds, step);
    await withWorker(taskQueue, async () => {
      const result = await runCli(['webhook-backfill', '--file', file.path, '--progress-every', '1', '--dry-run'], { GOTONG_TASK_QUEUE: taskQueue });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, new RegExp(`--progress-every 1 with --batch-size 10000 .* printing every ${step} lines instead`));
      assert.deepEqual(progressLines(result.stdout), expected.lines);
    });
  });

  it('replay: a selection of dead letters with --progress-every prints every checkpoint, dry run and execute alike', async () => {
    await seedDeadLetters(h.pool, 'dl', 2345);
    const expected = expectedReplayLines(2000, 100);
    await withWorker(taskQueue, async () => {
      for (const dryRun of [true, false]) {
        const args = ['webhook-replay-dlq', '--limit', '2000', '--progress-every', '100', '--batch-size', '300'];
        const result = await runCli(dryRun ? [...args, '--dry-run'] : args, { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(result.code, 0, result.stderr);
        assert.deepEqual(progressLines(result.stdout), expected, `dry run ${dryRun}`);
        assert.equal(lastLines(result.stdout, 1)[0], `[webhook-replay-dlq] done processed=2000 replayed=2000 enqueued=2000 skipped=0 failed=0 dry_run=${dryRun}`);
      }
    });
  });

  it('replay: 100,000 dead letters with --progress-every 1000 print 100 lines', async () => {
    await seedDeadLetters(h.pool, 'big', 100_000);
    await withWorker(taskQueue, async () => {
      const result = await runCli(['webhook-replay-dlq', '--limit', '100000', '--progress-every', '1000'], { GOTONG_TASK_QUEUE: taskQueue });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.stdout.trimEnd().split('\n'), [
        ...expectedReplayLines(100_000, 1000),
        '[webhook-replay-dlq] done processed=100000 replayed=100000 enqueued=100000 skipped=0 failed=0 dry_run=false',
      ]);
    });
  });

  it('replay: a row that changes under a batch is skipped, and the checkpoints count it at its position', async () => {
    const ids = await seedDeadLetters(h.pool, 'race', 10);
    // Selection order is by updated_at: give each row its own, so the 4th is known.
    await h.pool.query(`UPDATE webhook_outbox SET updated_at = now() - make_interval(secs => 100 - (split_part(event_id, '_', 2))::int) WHERE event_id = ANY($1)`, [ids]);
    const holder = await h.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM webhook_outbox WHERE event_id = $1 FOR UPDATE`, [ids[3]]);
      const runKey = `race-${randomUUID()}`;
      const batch = runReplayBatch(h.pool, {
        runKey,
        batchNumber: 0,
        filter: { status: 'dead_letter', eventTypes: [] },
        size: 10,
        checkpoints: { every: 2, processedBefore: 0 },
      }, []);
      // The batch has selected the rows and waits for the lock on the 4th; it changes meanwhile.
      await waitFor('the batch to wait for the row lock', async () => {
        const { rows } = await h.pool.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
        return rows.length > 0;
      });
      await holder.query(`UPDATE webhook_outbox SET status = 'delivered', updated_at = now() WHERE event_id = $1`, [ids[3]]);
      await holder.query('COMMIT');
      const result: ReplayBatchResult = await batch;
      assert.deepEqual({ selected: result.selected, replayed: result.replayed }, { selected: 10, replayed: 9 });
      assert.deepEqual(result.checkpoints, [
        [2, 2, 0],
        [4, 3, 1],
        [6, 5, 1],
        [8, 7, 1],
        [10, 9, 1],
      ]);
    } finally {
      holder.release();
    }
  });

  it('across continue-as-new an attached client prints every checkpoint once, in order; a late one from where it attaches', async () => {
    const file = mixedFile(`can-${randomUUID()}`, 1200, { blanks: true });
    const expected = expectedBackfillLines(file.kinds, 10);
    const workflowId = `webhook-backfill/can-${randomUUID()}`;
    const handle = await h.env.client.workflow.start(webhookBackfill, {
      taskQueue,
      workflowId,
      args: [{ runKey: `${workflowId}@1`, path: file.path, dryRun: true, maxAttempts: 5, batchSize: 50, progressEvery: 10, batchesPerRun: 2 }],
    });
    type P = BackfillProgress & FollowableProgress<BackfillCounters>;
    const early = recorder();
    const follower = new CheckpointFollower<BackfillCounters, P>(handle, 'webhook-backfill', formatCounters, early, { from: 'beginning', print: true });
    const late = recorder();
    const lateFollower = new CheckpointFollower<BackfillCounters, P>(handle, 'webhook-backfill', formatCounters, late, { from: 'now', print: true });
    await withWorker(taskQueue, async () => {
      let closed = false;
      const result = handle.result().finally(() => (closed = true));
      await waitFor('half the file', async () => ((await follower.poll().catch(() => undefined))?.processed ?? 0) >= 500, 60_000, 20);
      // Held while the late client attaches, so where it attaches is known; a run already done holds nothing.
      await handle.signal('pause').catch(() => undefined);
      await waitFor('the run to hold', async () => ['paused', 'done'].includes((await handle.query<BackfillProgress>('progress')).phase));
      const lateAt = (await lateFollower.poll()).processed;
      await handle.signal('resume').catch(() => undefined);
      while (!closed) {
        await follower.poll().catch(() => undefined);
        await lateFollower.poll().catch(() => undefined);
        await new Promise((r) => setTimeout(r, 20));
      }
      await result;
      await follower.poll();
      await lateFollower.poll();
      assert.deepEqual(early.logs, expected.lines, 'every checkpoint once, in order, across the continue-as-new runs');
      assert.deepEqual(early.errs, []);
      assert.match(late.errs[0]!, new RegExp(`attached at processed=${lateAt}: progress lines from here on`));
      assert.deepEqual(late.logs, expected.lines.filter((l) => Number(/processed=(\d+)/.exec(l)![1]) > Math.floor(lateAt / 10) * 10));
    });
    const last = await h.env.client.workflow.getHandle(workflowId).describe();
    assert.notEqual(last.runId, handle.firstExecutionRunId, 'the run continued as new');
  });

  it("printChildProgress prints a backfill's and a replay's checkpoint lines in the runbook's shape until they close", async () => {
    const file = mixedFile(`child-${randomUUID()}`, 700, { blanks: true });
    const expected = expectedBackfillLines(file.kinds, 50);
    await seedDeadLetters(h.pool, 'child', 230);
    const backfillId = `webhook-backfill/child-${randomUUID()}`;
    const replayId = `webhook-replay/child-${randomUUID()}`;
    const out = recorder();
    await withWorker(taskQueue, async () => {
      const backfill = await h.env.client.workflow.start(webhookBackfill, {
        taskQueue,
        workflowId: backfillId,
        args: [{ runKey: `${backfillId}@1`, path: file.path, dryRun: true, maxAttempts: 5, batchSize: 60, progressEvery: 50 }],
      });
      await printChildProgress(backfill, 'backfill', out);
      const replay = await h.env.client.workflow.start(webhookReplayDlq, {
        taskQueue,
        workflowId: replayId,
        args: [{ runKey: `${replayId}@1`, filter: { status: 'dead_letter', eventTypes: [] }, limit: 1000, dryRun: false, batchSize: 70, ratePerSecond: 0, progressEvery: 25 }],
      });
      await printChildProgress(replay, 'replay', out);
    });
    assert.deepEqual(out.logs, [...expected.lines, ...expectedReplayLines(230, 25)]);
    assert.deepEqual(out.errs, []);
  });

  it('batch heartbeats carry live counts: lines, failed, bytes and offset (backfill), rows in flight (replay)', async () => {
    const file = mixedFile(`hb-${randomUUID()}`, 300, { blanks: true });
    const expected = expectedBackfillLines(file.kinds, 100).total;
    const activities = createActivities({ pool: h.pool });
    const env = new MockActivityEnvironment();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const fingerprint = (await env.run(activities.inspectBackfillFile, file.path)) as FileFingerprint;
    const input: BackfillBatchInput = {
      runKey: `hb-${randomUUID()}`,
      workflowId: 'webhook-backfill/hb',
      path: file.path,
      fingerprint,
      startOffset: 0,
      startLine: 1,
      batchSize: 5000,
      dryRun: true,
      maxAttempts: 5,
      checkpoints: { every: 100, processedBefore: 0 },
    };
    const result = (await env.run(activities.processBackfillBatch, input)) as BackfillBatchResult;
    assert.deepEqual(beats.at(-1), { lines: expected.processed, failed: expected.failed, bytes: fingerprint.size, offset: fingerprint.size });
    assert.equal(result.checkpoints?.length, Math.floor(expected.processed / 100));

    await seedDeadLetters(h.pool, 'hb', 5);
    const replayEnv = new MockActivityEnvironment();
    const replayBeats: unknown[] = [];
    replayEnv.on('heartbeat', (d: unknown) => replayBeats.push(d));
    const replayInput: ReplayBatchInput = {
      runKey: `hb-${randomUUID()}`,
      batchNumber: 3,
      filter: { status: 'dead_letter', eventTypes: [] },
      size: 5,
      checkpoints: { every: 1, processedBefore: 40 },
    };
    await replayEnv.run(activities.replayBatch, replayInput);
    assert.deepEqual(replayBeats[0], { batch: 3, rows: 5, processedBefore: 40 });
  });
});

describe('watch, --detach, Ctrl-C and the terminal bar (real executable)', function () {
  this.timeout(300_000);
  let h: Harness;
  let taskQueue: string;

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('watch');
  });

  it('--detach prints the id and how to watch or cancel, exits 0 at once, and the run goes on to completion', async () => {
    const file = mixedFile(`detach-${randomUUID()}`, 500, { blanks: true });
    const expected = expectedBackfillLines(file.kinds, 100).total;
    // No worker polls yet: the run cannot have finished when the command returns.
    const result = await runCli(['webhook-backfill', '--file', file.path, '--detach'], { GOTONG_TASK_QUEUE: taskQueue });
    assert.equal(result.code, 0, result.stderr);
    const workflowId = result.stdout.trim();
    assert.match(workflowId, /^webhook-backfill\/detach-.*\/execute$/);
    assert.match(result.stderr, new RegExp(`watch it: +gotong-worker watch '${workflowId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`));
    assert.match(result.stderr, /cancel it: +temporal workflow cancel --workflow-id 'webhook-backfill\//);
    const handle = h.env.client.workflow.getHandle(workflowId);
    assert.equal((await handle.describe()).status.name, 'RUNNING');
    const summary = await withWorker(taskQueue, () => handle.result());
    assert.deepEqual({ ...summary, dryRun: undefined, runKey: undefined, batches: undefined }, { ...expected, dryRun: undefined, runKey: undefined, batches: undefined });

    const runbook = await runCli(['webhook-runbook', '--file', file.path, '--detach', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
    assert.equal(runbook.code, 0, runbook.stderr);
    const { workflow_id } = JSON.parse(runbook.stdout.trim()) as { workflow_id: string };
    assert.match(workflow_id, /^webhook-runbook\/detach-/);
    assert.match(runbook.stderr, /approve a gate: gotong-worker approve 'webhook-runbook\//);
    await h.env.client.workflow.getHandle(workflow_id).terminate('test over');
  });

  it('Ctrl-C on an attached client detaches: exit 130, the commands on stderr, and the run still completes', async () => {
    const file = mixedFile(`sigint-${randomUUID()}`, 400);
    const expected = expectedBackfillLines(file.kinds, 100).total;
    const cli = startCli(['webhook-backfill', '--file', file.path], { GOTONG_TASK_QUEUE: taskQueue });
    await waitFor('the run to start', async () => /started webhook-backfill\//.test(cli.stderr()));
    cli.child.kill('SIGINT');
    await exited(cli.child);
    assert.equal(cli.child.exitCode, 130, cli.stderr());
    assert.match(cli.stderr(), /detached from webhook-backfill\/.*: the run goes on \(it was not cancelled\)/);
    assert.match(cli.stderr(), /watch it: +gotong-worker watch 'webhook-backfill\//);
    assert.match(cli.stderr(), /cancel it: +temporal workflow cancel --workflow-id 'webhook-backfill\//);
    const workflowId = /started (\S+)/.exec(cli.stderr())![1]!;
    const summary = await withWorker(taskQueue, () => h.env.client.workflow.getHandle(workflowId).result());
    assert.equal(summary.created, expected.created);
  });

  it('watch <id> prints the lines and the summary of a run it attaches to, then of a finished one; an unknown id is exit 1', async () => {
    const file = mixedFile(`watch-${randomUUID()}`, 4128, { blanks: true });
    const expected = expectedBackfillLines(file.kinds, 200);
    const started = await runCli(['webhook-backfill', '--file', file.path, '--progress-every', '200', '--dry-run', '--detach'], { GOTONG_TASK_QUEUE: taskQueue });
    assert.equal(started.code, 0, started.stderr);
    const workflowId = started.stdout.trim();
    const handle = h.env.client.workflow.getHandle(workflowId);
    // Held before its first batch, so `watch` certainly attaches at processed=0 and owes every line.
    await handle.signal('pause');
    const watcher = startCli(['watch', workflowId, '--json'], { GOTONG_TASK_QUEUE: taskQueue });
    await withWorker(taskQueue, async () => {
      await waitFor('watch to attach', async () => /attached at processed=0/.test(watcher.stderr()));
      await handle.signal('resume');
      await exited(watcher.child);
    });
    assert.equal(watcher.child.exitCode, 0, watcher.stderr());
    const done = `[webhook-backfill] done ${formatCounters(expected.total)} dry_run=true`;
    const lines = watcher.stdout().trimEnd().split('\n');
    assert.deepEqual(lines.slice(0, -1), [...expected.lines, done]);
    assert.equal((JSON.parse(lines.at(-1)!) as { workflow_id: string }).workflow_id, workflowId);

    const finished = await withWorker(taskQueue, () => runCli(['watch', workflowId], { GOTONG_TASK_QUEUE: taskQueue }));
    assert.equal(finished.code, 0, finished.stderr);
    assert.equal(finished.stdout.trimEnd(), done, 'a finished run: its summary');
    assert.match(finished.stderr, /completed/);

    const unknown = await runCli(['watch', 'webhook-backfill/no-such-run']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no run with workflow id webhook-backfill\/no-such-run/);
  });

  it('on a terminal (a pseudo-terminal from script(1)) a progress bar with rate and ETA, then the summary', async () => {
    const script = spawnSync('script', ['--version'], { encoding: 'utf8' });
    assert.equal(script.status, 0, "script(1) from util-linux runs the CLI under a pseudo-terminal: install it (Debian: 'apt-get install bsdutils')");
    const file = mixedFile(`tty-${randomUUID()}`, 3000, { blanks: true });
    const expected = expectedBackfillLines(file.kinds, 200);
    const command = ['stty', 'cols', '250', ';', process.execPath, CLI, 'webhook-backfill', '--file', file.path, '--progress-every', '200', '--batch-size', '500']
      .map((w) => (w === ';' ? w : `'${w}'`))
      .join(' ');
    const result = await withWorker(taskQueue, () =>
      new Promise<{ code: number | null; out: string }>((resolve, reject) => {
        const child = spawn('script', ['-qfec', command, '/dev/null'], {
          env: { ...process.env, TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: h.databaseUrl, GOTONG_TASK_QUEUE: taskQueue, TERM: 'xterm' },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, out }));
      }),
    );
    assert.equal(result.code, 0, result.out);
    const screen = result.out.replace(/\r/g, '\n');
    assert.match(screen, /\[webhook-backfill\] .*\d+% [\d.]+ MiB\/[\d.]+ MiB \| [\d,]+ lines\/s \| ETA \S+ \| processed=\d+ /, 'the bar: position, rate, ETA, counters');
    assert.match(screen, /100% /, 'it reaches the end');
    const done = `[webhook-backfill] done ${formatCounters(expected.total)} dry_run=false`;
    const lastBar = screen.lastIndexOf('100% ');
    assert.ok(screen.indexOf(done) > lastBar, 'the summary follows the bar');
    assert.doesNotMatch(screen, /\] progress processed=/, 'no plain progress lines on a terminal');
  });
});
