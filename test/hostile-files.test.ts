import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { PoolClient } from 'pg';
import { fingerprintFile, runBackfillBatch } from '../src/backfill/batch';
import { readLineChunks } from '../src/backfill/lines';
import { formatStepLine } from '../src/client/runbook';
import { defaultInputRoots, parseInputRoots } from '../src/input-files';
import { BACKFILL_LIMITS, type BackfillInput, type BackfillProgress } from '../src/shared/backfill';
import { backfillInputProblem, replayInputProblem } from '../src/shared/input-checks';
import type { ReplayInput, ReplayProgress } from '../src/shared/replay';
import type { RunbookStep } from '../src/shared/runbook';
import { webhookBackfill } from '../src/workflows/backfill';
import { webhookReplayDlq } from '../src/workflows/replay';
import { createWorker } from '../src/worker';
import { countersOf, event, INPUT_ROOT, tmp } from './helpers/files';
import { getHarness, outboxCount, resetTables, runCli, seedEvents, uniqueTaskQueue, waitFor, withWorker, type Harness } from './helpers/harness';
import { startBackfillRun, startReplayRun } from './helpers/start-runs';

/** Nothing listens here: a command that got past its checks would fail to connect instead of exiting 2. */
const NOWHERE = { TEMPORAL_ADDRESS: '127.0.0.1:1', DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' };
/** Control, bidi and separator characters a terminal acts on; `\n` separates output lines. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

const fileIn = (name: string) => join(tmp, `${name}-${randomUUID()}`);
const mkfifo = (path: string) => execFileSync('mkfifo', [path]);

/** The workflow failed once, for good: a non-retryable failure matching `message`, and no activity ran twice. */
async function failsOnce(handle: WorkflowHandle, message: RegExp, type?: string): Promise<void> {
  await assert.rejects(handle.result(), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError, String(err));
    const failure = err.cause instanceof ActivityFailure ? err.cause.cause : err.cause;
    assert.ok(failure instanceof ApplicationFailure, `an application failure, not ${String(failure)}`);
    assert.equal(failure.nonRetryable, true, 'non-retryable');
    assert.match(failure.message, message);
    if (type) assert.equal(failure.type, type);
    return true;
  });
  const history = await handle.fetchHistory();
  for (const e of history.events ?? []) {
    if (e.activityTaskStartedEventAttributes) assert.equal(e.activityTaskStartedEventAttributes.attempt, 1, 'no activity was retried');
  }
  assert.equal((await handle.describe()).status.name, 'FAILED');
}

async function ledgerSums(h: Harness, runKey: string): Promise<{ batches: number; created: number; processed: number; replayed: number }> {
  const { rows } = await h.pool.query<{ n: string; created: string; processed: string; replayed: string }>(
    `SELECT count(*) AS n, coalesce(sum((result->>'created')::int), 0) AS created,
            coalesce(sum((result->>'processed')::int), 0) AS processed, coalesce(sum((result->>'replayed')::int), 0) AS replayed
       FROM batch_ledger WHERE run_key = $1`,
    [runKey],
  );
  const r = rows[0]!;
  return { batches: Number(r.n), created: Number(r.created), processed: Number(r.processed), replayed: Number(r.replayed) };
}

/** Holds the ledger lock of one batch, as a slow earlier attempt of it would, until `release`. */
async function holdBatchLock(h: Harness, runKey: string, batchKey: string): Promise<{ release: () => Promise<void> }> {
  const client: PoolClient = await h.pool.connect();
  await client.query('BEGIN');
  await client.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`${runKey}\u0001${batchKey}`]);
  let released = false;
  return {
    release: async () => {
      if (released) return;
      released = true;
      await client.query('COMMIT');
      client.release();
    },
  };
}

type PendingActivity = { activityType?: { name?: string | null } | null; attempt?: number | null; lastHeartbeatTime?: { seconds?: unknown; nanos?: number | null } | null };

async function pendingActivity(handle: WorkflowHandle, type: string): Promise<PendingActivity | undefined> {
  const { raw } = await handle.describe();
  return (raw.pendingActivities as PendingActivity[] | null | undefined)?.find((a) => a.activityType?.name === type);
}
const heartbeatAt = (a: PendingActivity | undefined) =>
  a?.lastHeartbeatTime ? `${String(a.lastHeartbeatTime.seconds)}.${a.lastHeartbeatTime.nanos ?? 0}` : null;

/** Waits until the activity has heartbeaten twice (two different recorded times) while on its first attempt. */
async function heartbeatsTwice(handle: WorkflowHandle, type: string): Promise<void> {
  let first: string | null = null;
  await waitFor(`${type} to heartbeat twice while it waits`, async () => {
    const pending = await pendingActivity(handle, type);
    const at = heartbeatAt(pending);
    if (pending) assert.equal(pending.attempt, 1, `${type} was not retried while it waited`);
    if (at === null) return false;
    first ??= at;
    return at !== first;
  }, 60_000, 250);
}

describe('hostile input files (real Temporal server, real PostgreSQL)', function () {
  this.timeout(180_000);
  let h: Harness;
  let taskQueue: string;

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('hostile');
  });

  const startBackfill = (path: string, opts: Partial<BackfillInput> = {}) => startBackfillRun(taskQueue, path, opts, 'hostile');
  const startReplay = (input: Partial<ReplayInput> = {}) => startReplayRun(taskQueue, {}, input, 'hostile');
  /** A worker whose input roots are given explicitly (the others use the default). */
  async function withRoots<T>(inputRoots: string[], fn: () => Promise<T>): Promise<T> {
    const worker = await createWorker({
      connection: h.env.nativeConnection,
      namespace: h.env.namespace ?? 'default',
      taskQueue,
      pool: h.pool,
      workflowBundle: h.workflowBundle,
      inputRoots,
    });
    return worker.runUntil(fn);
  }

  describe('input roots', () => {
    it('the default roots are the installation’s samples/ and tmp/, and the tests write below tmp/', () => {
      assert.deepEqual(parseInputRoots(undefined), defaultInputRoots());
      assert.deepEqual(parseInputRoots(''), defaultInputRoots());
      assert.ok(defaultInputRoots().includes(INPUT_ROOT));
      assert.deepEqual(parseInputRoots('/srv/a:/srv/b/'), ['/srv/a', '/srv/b']);
      assert.throws(() => parseInputRoots('/srv/a:relative/dir'), /GOTONG_INPUT_ROOTS entries must be absolute paths.*relative\/dir/);
    });

    it('a workflow started directly on a file outside the roots fails once, naming the setting; nothing is read', async () => {
      await withWorker(taskQueue, async () => {
        for (const path of ['/etc/shadow', '/etc/passwd', join(INPUT_ROOT, '..', 'package.json')]) {
          await failsOnce(await startBackfill(path), /is outside the directories this worker may read \(GOTONG_INPUT_ROOTS=/, 'InputFileError');
        }
        // A file that does not exist outside the roots fails the same way: no probing of what exists there.
        await failsOnce(await startBackfill(`/etc/no-such-file-${randomUUID()}`), /is outside the directories this worker may read/);
        // `..` does not climb out either.
        await failsOnce(await startBackfill(join(tmp, '..', '..', 'package.json')), /is outside the directories this worker may read/);
      });
      assert.equal(await outboxCount(h.pool), 0);
      const failedLines = await h.pool.query('SELECT 1 FROM backfill_failed_lines');
      assert.equal(failedLines.rowCount, 0, 'nothing of those files reached failed-lines');
    });

    it('a symbolic link inside a root that points out of it (file or directory) is refused', async () => {
      const fileLink = fileIn('passwd-link');
      symlinkSync('/etc/passwd', fileLink);
      const dirLink = fileIn('etc-link');
      symlinkSync('/etc', dirLink);
      const inside = fileIn('inside.ndjson');
      writeFileSync(inside, `${event('evt_via_link')}\n`);
      const goodLink = fileIn('good-link');
      symlinkSync(inside, goodLink);
      await withWorker(taskQueue, async () => {
        await failsOnce(await startBackfill(fileLink), /resolves \(through a symbolic link\) to a file outside the directories this worker may read \(GOTONG_INPUT_ROOTS=/);
        await failsOnce(await startBackfill(join(dirLink, 'passwd')), /resolves \(through a symbolic link\) to a file outside/);
        // A link that stays inside the roots is followed.
        const summary = await (await startBackfill(goodLink)).result();
        assert.deepEqual(countersOf(summary), { processed: 1, created: 1, enqueued: 1, duplicates: 0, failed: 0 });
      });
    });

    it('a device, a FIFO and a directory inside the roots are refused at once, without blocking', async () => {
      const fifo = fileIn('fifo');
      mkfifo(fifo);
      const dir = fileIn('dir');
      mkdirSync(dir);
      // /dev is a root for this worker only, so that /dev/zero gets past the roots and meets the file-type check.
      await withRoots([INPUT_ROOT, '/dev'], async () => {
        await failsOnce(await startBackfill('/dev/zero'), /\/dev\/zero is a device, not a regular file/, 'InputFileError');
        await failsOnce(await startBackfill(fifo), /is a FIFO, not a regular file/);
        await failsOnce(await startBackfill(dir), /is a directory, not a regular file/);
        await failsOnce(
          await startReplay({ filter: { status: 'dead_letter', eventTypes: [], eventIdsPath: fifo } }),
          /is a FIFO, not a regular file/,
        );
        await failsOnce(
          await startReplay({ dryRun: true, filter: { status: 'dead_letter', eventTypes: [], eventIdsPath: '/dev/zero' } }),
          /is a device, not a regular file/,
        );
      });
    });

    it('--event-ids files follow the same rules on the worker: outside the roots, or linked out of them, fail once', async () => {
      const link = fileIn('ids-link');
      symlinkSync('/etc/passwd', link);
      await seedEvents(h.pool, 'dl', 3);
      await withWorker(taskQueue, async () => {
        const outside = (eventIdsPath: string, dryRun: boolean) =>
          startReplay({ dryRun, filter: { status: 'dead_letter', eventTypes: [], eventIdsPath } });
        await failsOnce(await outside('/etc/passwd', true), /\/etc\/passwd is outside the directories this worker may read \(GOTONG_INPUT_ROOTS=/);
        await failsOnce(await outside('/etc/passwd', false), /is outside the directories this worker may read/);
        await failsOnce(await outside(link, false), /resolves \(through a symbolic link\) to a file outside/);
      });
      const replayed = await h.pool.query('SELECT 1 FROM webhook_replay_audit');
      assert.equal(replayed.rowCount, 0);
    });

    it('the CLI gives the same answers early: one line, exit 2, nothing started', async () => {
      const link = fileIn('cli-link');
      symlinkSync('/etc/passwd', link);
      const fifo = fileIn('cli-fifo');
      mkfifo(fifo);
      const cases: Array<[string[], RegExp, Record<string, string>?]> = [
        [['webhook-backfill', '--file', '/etc/passwd', '--dry-run'], /--file \/etc\/passwd: outside the directories workers may read: GOTONG_INPUT_ROOTS=.*add its directory to GOTONG_INPUT_ROOTS/],
        [['webhook-backfill', '--file', link], /outside the directories workers may read \(it resolves to \/etc\/passwd\)/],
        [['webhook-backfill', '--file', fifo], /not a regular file/],
        [['webhook-runbook', '--file', '/etc/passwd'], /--file \/etc\/passwd: outside the directories workers may read/],
        [['webhook-replay-dlq', '--event-ids', '/etc/passwd'], /--event-ids \/etc\/passwd: outside the directories workers may read/],
        [['webhook-replay-dlq', '--event-ids', link, '--dry-run'], /it resolves to \/etc\/passwd/],
        [['webhook-replay-dlq', '--event-ids', fifo], /not a regular file/],
        [['webhook-backfill', '--file', '/etc/passwd'], /GOTONG_INPUT_ROOTS entries must be absolute paths/, { GOTONG_INPUT_ROOTS: 'inputs' }],
        [['webhook-backfill', '--file', join(tmp, 'x'), '--max-attempts', '5000'], /--max-attempts must be a whole number between 1 and 1000/],
        [['webhook-replay-dlq', '--batch-size', '500000'], /--batch-size is 500000; it must be a whole number from 1 to 100000/],
      ];
      writeFileSync(join(tmp, 'x'), `${event('evt_x')}\n`);
      for (const [args, message, env] of cases) {
        const result = await runCli(args, { ...NOWHERE, ...env });
        assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
        assert.match(result.stderr, message);
        assert.equal(result.stderr.trim().split('\n').length, 1, 'one line');
        assert.doesNotMatch(result.stderr, /cannot reach|\n\s+at /);
      }
      // An explicit root admits what the default refuses.
      const allowed = await runCli(['webhook-backfill', '--file', '/etc/hostname'], { ...NOWHERE, GOTONG_INPUT_ROOTS: '/etc' });
      assert.equal(allowed.code, 1, 'got past the checks to the (unreachable) server');
      assert.match(allowed.stderr, /cannot reach Temporal/);
    });
  });

  describe('the file under a running backfill', () => {
    async function pauseAfterFirstBatch(handle: WorkflowHandle<typeof webhookBackfill>): Promise<void> {
      await waitFor('a first batch', async () => (await handle.query<BackfillProgress>('progress')).batches >= 1, 60_000, 20);
      await handle.signal('pause');
      // Paused means "after the batch in flight": the file must not change under a batch that is still reading it (on a
      // busy machine one was, and it met the swap between its checks and its open, failing with another true message).
      await waitFor('paused with no batch in flight', async () => {
        const progress = await handle.query<BackfillProgress>('progress');
        const { raw } = await handle.describe();
        return progress.phase === 'paused' && (raw.pendingActivities ?? []).length === 0;
      }, 60_000, 20);
    }

    for (const swap of ['another file of the same size and mtime', 'a symbolic link out of the roots'] as const) {
      it(`${swap} renamed over it fails the run for good; committed batches stay exactly accounted`, async () => {
        const path = fileIn('swapped.ndjson');
        const lines = Array.from({ length: 2000 }, (_, i) => event(`evt_swap_${String(i).padStart(5, '0')}`));
        writeFileSync(path, `${lines.join('\n')}\n`);
        const original = statSync(path);
        const replacement = `${path}.new`;
        if (swap === 'a symbolic link out of the roots') {
          symlinkSync('/etc/passwd', replacement);
        } else {
          writeFileSync(replacement, `${lines.map((l) => l.replace('evt_swap_', 'evt_evil_')).join('\n')}\n`);
          execFileSync('touch', ['-r', path, replacement]);
          assert.equal(statSync(replacement).size, original.size);
          assert.equal(statSync(replacement).mtimeMs, original.mtimeMs, 'same size and mtime: only the inode tells');
        }
        await withWorker(taskQueue, async () => {
          const handle = await startBackfill(path, { batchSize: 100 });
          await pauseAfterFirstBatch(handle);
          renameSync(replacement, path);
          await handle.signal('resume');
          await failsOnce(
            handle,
            swap === 'a symbolic link out of the roots'
              ? /resolves \(through a symbolic link\) to a file outside/
              : /swapped.*was replaced by another file during the backfill \(device:inode \d+:\d+ -> \d+:\d+\); start a new run/,
          );
          const progress = await handle.query<BackfillProgress>('progress');
          const ledger = await ledgerSums(h, `${handle.workflowId}@1`);
          assert.ok(progress.batches >= 1 && progress.batches < 20);
          assert.equal(ledger.batches, progress.batches);
          assert.equal(ledger.created, progress.created);
          assert.equal(await outboxCount(h.pool), progress.created, 'the outbox holds exactly the committed batches');
        });
        const evil = await h.pool.query(`SELECT 1 FROM webhook_outbox WHERE event_id LIKE 'evt_evil_%'`);
        assert.equal(evil.rowCount, 0, 'not one line of the replacement was read');
      });
    }
  });

  describe('batches are bounded whatever the lines look like', () => {
    it('50 MB of newlines: bounded batches by bytes, processed=0, finishes', async () => {
      const path = fileIn('newlines.ndjson');
      const size = 50_000_000;
      writeFileSync(path, Buffer.alloc(size, 0x0a));
      try {
        await withWorker(taskQueue, async () => {
          const handle = await startBackfill(path, { batchSize: BACKFILL_LIMITS.maxBatchSize });
          const summary = await handle.result();
          assert.deepEqual(countersOf(summary), { processed: 0, created: 0, enqueued: 0, duplicates: 0, failed: 0 });
          assert.equal(summary.batches, Math.ceil(size / BACKFILL_LIMITS.maxBatchBytes));
          const { rows } = await h.pool.query<{ end_offset: number; lines: number }>(
            `SELECT (result->>'endOffset')::bigint::float8 AS end_offset, (result->>'linesConsumed')::int AS lines
               FROM batch_ledger WHERE run_key = $1 ORDER BY 1`,
            [`${handle.workflowId}@1`],
          );
          assert.deepEqual(rows.map((r) => r.end_offset), [BACKFILL_LIMITS.maxBatchBytes, size]);
          assert.equal(rows.reduce((n, r) => n + r.lines, 0), size, 'every newline is a line, numbered as an editor would');
        });
      } finally {
        rmSync(path, { force: true });
      }
    });

    it('a 20 MB single line: one failed line with an excerpt, the lines around it kept, and the run finishes', async () => {
      const path = fileIn('long-line.ndjson');
      const long = `{"event_id": "evt_long", "pad": "${'x'.repeat(20 * 1024 * 1024)}"}`;
      writeFileSync(path, `${event('evt_before')}\n${long}\n${event('evt_after')}\n`);
      try {
        await withWorker(taskQueue, async () => {
          const handle = await startBackfill(path);
          const summary = await handle.result();
          assert.deepEqual(countersOf(summary), { processed: 3, created: 2, enqueued: 2, duplicates: 0, failed: 1 });
          const failed = await h.pool.query<{ line_number: string; reason: string; excerpt: string }>(
            'SELECT line_number, reason, excerpt FROM backfill_failed_lines WHERE run_key = $1',
            [`${handle.workflowId}@1`],
          );
          assert.equal(failed.rowCount, 1);
          assert.equal(failed.rows[0]!.line_number, '2');
          assert.equal(failed.rows[0]!.reason, `line is longer than ${BACKFILL_LIMITS.maxLineBytes} bytes`);
          assert.match(failed.rows[0]!.excerpt, /^\{"event_id": "evt_long", "pad": "x+…$/);
        });
      } finally {
        rmSync(path, { force: true });
      }
    });

    it('while it reads a 20 MB line a batch heartbeats every read, can be cancelled mid-line, and holds at most a few MiB', async () => {
      const path = fileIn('long-line-2.ndjson');
      writeFileSync(path, `${'y'.repeat(20 * 1024 * 1024)}\n`);
      try {
        // The reader alone: after every read (garbage collected), its buffers stay far below the line's size.
        setFlagsFromString('--expose-gc');
        const gc = runInNewContext('gc') as () => void;
        const handle = await open(path, 'r');
        let reads = 0;
        let peak = 0;
        try {
          gc();
          const base = process.memoryUsage().arrayBuffers;
          for await (const lines of readLineChunks(handle, { startOffset: 0, startLine: 1, endOffset: statSync(path).size, maxLineBytes: BACKFILL_LIMITS.maxLineBytes })) {
            reads += 1;
            gc();
            peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
            for (const line of lines) assert.equal(line.bytes, null);
          }
        } finally {
          await handle.close();
        }
        assert.ok(reads >= 20, `one yield per 1 MiB read (${reads})`);
        assert.ok(peak < 4 * 1024 * 1024, `peak ${peak} bytes of buffers while reading a 20 MiB line`);

        // The batch: a heartbeat per read, and a cancellation noticed in the middle of the line rolls it back.
        const roots = defaultInputRoots();
        const fingerprint = await fingerprintFile(path, roots);
        const input = { runKey: `long-${randomUUID()}`, workflowId: 'webhook-backfill/long', path, fingerprint, startOffset: 0, startLine: 1, batchSize: 100, dryRun: false, maxAttempts: 5 };
        let heartbeats = 0;
        const complete = await runBackfillBatch(h.pool, input, roots, { heartbeat: () => (heartbeats += 1), throwIfCancelled: () => undefined });
        assert.equal(complete.failed, 1);
        assert.ok(heartbeats >= 20, `heartbeats while the line was skipped: ${heartbeats}`);

        const cancelled = { ...input, runKey: `long-cancelled-${randomUUID()}` };
        let checks = 0;
        await assert.rejects(
          runBackfillBatch(h.pool, cancelled, roots, {
            heartbeat: () => undefined,
            throwIfCancelled: () => {
              if (++checks === 5) throw new CancelledFailure('test cancel');
            },
          }),
          CancelledFailure,
        );
        assert.equal((await ledgerSums(h, cancelled.runKey)).batches, 0, 'the cancelled batch left nothing');
      } finally {
        rmSync(path, { force: true });
      }
    });
  });

  describe('text from files is shown escaped', () => {
    it('failed-lines, the replay dry run and runbook step lines escape control characters; --json keeps the text', async () => {
      const path = fileIn('escapes.ndjson');
      const hostile = [
        '\u001b]0;pwned\u0007{not json',
        '{"x": "\u009b31m", "\u202emoc.evil": 1}',
        '\u001b[2J\u001b[H\u2028{"event_id": 1}',
      ];
      const evil = event('evt_\u001b[31mred', { event_type: 'evil\u001b[2Jtype' });
      writeFileSync(path, [...hostile, evil].join('\n'));
      await withWorker(taskQueue, async () => {
        const backfill = await runCli(['webhook-backfill', '--file', path, '--json'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(backfill.code, 0, backfill.stderr);
        const { workflow_id } = JSON.parse(backfill.stdout.trimEnd().split('\n').at(-1)!) as { workflow_id: string };

        const text = await runCli(['failed-lines', workflow_id]);
        assert.equal(text.code, 0, text.stderr);
        assert.doesNotMatch(text.stdout, RAW_CONTROL);
        assert.ok(text.stdout.includes('\\x1b]0;pwned\\x07{not json'), text.stdout);
        assert.ok(text.stdout.includes('\\x9b31m') && text.stdout.includes('\\u202emoc.evil'), text.stdout);
        assert.ok(text.stdout.includes('\\x1b[2J\\x1b[H\\u2028'), text.stdout);

        const json = await runCli(['failed-lines', workflow_id, '--json']);
        const rows = json.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { excerpt: string });
        assert.deepEqual(rows.map((r) => r.excerpt), hostile, 'JSON output carries the exact text, JSON-escaped');

        await h.pool.query(`UPDATE webhook_outbox SET status = 'dead_letter', last_status_code = 500`);
        const dry = await runCli(['webhook-replay-dlq', '--dry-run'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(dry.code, 0, dry.stderr);
        assert.doesNotMatch(dry.stdout, RAW_CONTROL);
        assert.match(dry.stdout, /by event_type: evil\\x1b\[2Jtype=1$/m);
        assert.match(dry.stdout, /sample event_ids: evt_\\x1b\[31mred$/m);
      });

      const step: RunbookStep = { number: 4, name: 'replay dry-run', status: 'failed', message: 'still dead-lettered by type: evil\u001b[2Jtype=1' };
      assert.equal(formatStepLine(step, 'rb'), '[webhook-runbook] step 4/6 replay dry-run: failed: still dead-lettered by type: evil\\x1b[2Jtype=1');
      const approved: RunbookStep = { number: 1, name: 'backfill dry-run', status: 'passed', gate: { approvedBy: 'operator', reason: 'ok\u001b]0;x\u0007' } };
      assert.doesNotMatch(formatStepLine(approved, 'rb'), RAW_CONTROL);
    });
  });

  describe('a run started directly validates its own input', () => {
    const backfillCases: Array<[string, Partial<BackfillInput>, RegExp]> = [
      ['maxAttempts 0', { maxAttempts: 0 }, /maxAttempts is 0; it must be a whole number from 1 to 1000/],
      ['an over-long run key', { runKey: 'k'.repeat(600) }, /runKey is 600 bytes long; it must be at most 512 bytes/],
      ['batch size 0', { batchSize: 0 }, /batchSize is 0; it must be a whole number from 1 to 50000/],
      ['batch size over the maximum', { batchSize: 50_001 }, /batchSize is 50001/],
      ['a relative path', { path: 'tmp/events.ndjson' }, /path "tmp\/events.ndjson" is relative; it must be an absolute path/],
      ['a fractional maxAttempts', { maxAttempts: 2.5 }, /maxAttempts is 2.5/],
    ];
    const replayCases: Array<[string, Partial<ReplayInput>, RegExp]> = [
      ['limit 0', { limit: 0 }, /limit is 0; it must be a whole number from 1/],
      ['an unknown status', { filter: { status: 'lost' as never, eventTypes: [] } }, /filter\.status is "lost"; it must be one of pending, in_flight, delivered, retrying, dead_letter/],
      ['batch size 0', { batchSize: 0 }, /batchSize is 0/],
      ['a negative rate', { ratePerSecond: -1 }, /ratePerSecond is -1/],
      ['a relative id file', { filter: { status: 'dead_letter', eventTypes: [], eventIdsPath: 'ids.txt' } }, /filter\.eventIdsPath "ids.txt" is relative/],
      ['since after until', { filter: { status: 'dead_letter', eventTypes: [], since: '2026-02-02T00:00:00Z', until: '2026-02-01T00:00:00Z' } }, /filter\.since must be earlier than filter\.until/],
      ['an over-long run key', { runKey: 'é'.repeat(300) }, /runKey is 600 bytes long/],
      ['an empty selection key', { filter: { status: 'dead_letter', eventTypes: [], selectedBy: ' ' } }, /filter\.selectedBy is " "; it must be a non-empty string/],
      ['a keepSelection that is not a boolean', { keepSelection: 'yes' as never }, /keepSelection is "yes"; it must be true or false/],
    ];

    it('the checks are pure and pass what the CLI builds', () => {
      assert.equal(backfillInputProblem({ runKey: 'k', path: '/a', dryRun: false, maxAttempts: 5, batchSize: 10 }), null);
      assert.equal(replayInputProblem({ runKey: 'k', filter: { status: 'dead_letter', eventTypes: ['a'] }, limit: 5, dryRun: true, batchSize: 20_000, ratePerSecond: 0 }), null);
      // What the runbook builds for steps 4 and 5.
      assert.equal(replayInputProblem({ runKey: 'rb/step-4', filter: { status: 'dead_letter', eventTypes: [] }, limit: 5, dryRun: true, batchSize: 10, ratePerSecond: 0, keepSelection: true }), null);
      assert.equal(
        replayInputProblem({ runKey: 'rb/step-5', filter: { status: 'dead_letter', eventTypes: [], until: '2026-11-29T22:12:25.717Z', selectedBy: 'rb/step-4' }, limit: 5, dryRun: false, batchSize: 10, ratePerSecond: 0 }),
        null,
      );
    });

    it('each bad input fails the run once, non-retryably, with a clear message and no activity', async () => {
      const path = fileIn('valid.ndjson');
      writeFileSync(path, `${event('evt_valid')}\n`);
      await withWorker(taskQueue, async () => {
        for (const [what, opts, message] of backfillCases) {
          const handle = await startBackfill(path, opts);
          await failsOnce(handle, new RegExp(`^webhookBackfill cannot run: ${message.source}`), 'InvalidInput');
          const history = await handle.fetchHistory();
          assert.ok(!(history.events ?? []).some((e) => e.activityTaskScheduledEventAttributes), `${what}: no activity scheduled`);
        }
        for (const [what, opts, message] of replayCases) {
          const handle = await startReplay(opts);
          await failsOnce(handle, new RegExp(`^webhookReplayDlq cannot run: ${message.source}`), 'InvalidInput');
          const history = await handle.fetchHistory();
          assert.ok(!(history.events ?? []).some((e) => e.activityTaskScheduledEventAttributes), `${what}: no activity scheduled`);
        }
      });
      assert.equal(await outboxCount(h.pool), 0);
    });
  });

  describe('cancellation waits for the batch in flight', () => {
    it('backfill: a batch held on its lock heartbeats on its first attempt; after cancel the counters equal the outbox and the ledger', async () => {
      const path = fileIn('cancel.ndjson');
      const lines = Array.from({ length: 1000 }, (_, i) => event(`evt_cancel_${String(i).padStart(4, '0')}`));
      writeFileSync(path, `${lines.join('\n')}\n`);
      const batchSize = 100;
      const secondBatch = lines.slice(0, batchSize).reduce((n, l) => n + Buffer.byteLength(l) + 1, 0);
      await withWorker(taskQueue, async () => {
        const workflowId = `webhook-backfill/hostile-${randomUUID()}`;
        const runKey = `${workflowId}@1`;
        const lock = await holdBatchLock(h, runKey, `offset:${secondBatch}`);
        try {
          const handle = await h.env.client.workflow.start(webhookBackfill, {
            taskQueue,
            workflowId,
            args: [{ runKey, path, dryRun: false, maxAttempts: 5, batchSize }],
          });
          await waitFor('the first batch', async () => (await handle.query<BackfillProgress>('progress')).batches === 1);
          await heartbeatsTwice(handle, 'processBackfillBatch');
          await handle.cancel();
          // The batch stops waiting for its lock once it hears of the cancellation and reports itself cancelled;
          // the run then settles that batch, which waits for the lock (the transaction it stands for) to end.
          await waitFor('the batch to end cancelled', async () =>
            ((await handle.fetchHistory()).events ?? []).some((e) => e.activityTaskCanceledEventAttributes),
          );
          await waitFor('the run to settle the batch', async () => (await pendingActivity(handle, 'settleBatch')) !== undefined);
          await lock.release();
          await assert.rejects(handle.result(), (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof CancelledFailure);
          const progress = await handle.query<BackfillProgress>('progress');
          const ledger = await ledgerSums(h, runKey);
          assert.deepEqual(countersOf(progress), { processed: ledger.processed, created: ledger.created, enqueued: ledger.created, duplicates: 0, failed: 0 });
          assert.equal(await outboxCount(h.pool), progress.created);
          assert.equal(progress.batches, ledger.batches);
          assert.ok(progress.created >= batchSize && progress.created < lines.length, `stopped part-way: ${progress.created}`);
          const history = await handle.fetchHistory();
          assert.ok((history.events ?? []).some((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'settleBatch'), 'settled the batch in flight');
        } finally {
          await lock.release();
        }
      });
    });

    it('replay: cancelled while a batch commits, the counters equal the reset rows and the ledger', async () => {
      await seedEvents(h.pool, 'dl', 300);
      await h.pool.query(`UPDATE webhook_outbox SET status = 'dead_letter', attempts = 5, last_status_code = 500`);
      await withWorker(taskQueue, async () => {
        const workflowId = `webhook-replay/hostile-${randomUUID()}`;
        const runKey = `${workflowId}@1`;
        const lock = await holdBatchLock(h, runKey, 'replay:1');
        try {
          const handle = await h.env.client.workflow.start(webhookReplayDlq, {
            taskQueue,
            workflowId,
            args: [{ runKey, filter: { status: 'dead_letter', eventTypes: [] }, limit: 300, dryRun: false, batchSize: 100, ratePerSecond: 0 }],
          });
          await waitFor('the first batch', async () => (await handle.query<ReplayProgress>('progress')).batches === 1);
          await heartbeatsTwice(handle, 'replayBatch');
          // Released at once: the batch may commit before it hears of the cancellation, or roll back after.
          await handle.cancel();
          await lock.release();
          await assert.rejects(handle.result(), (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof CancelledFailure);
          const progress = await handle.query<ReplayProgress>('progress');
          const ledger = await ledgerSums(h, runKey);
          const reset = await h.pool.query('SELECT 1 FROM webhook_outbox WHERE last_replay_run = $1', [runKey]);
          assert.equal(progress.replayed, ledger.replayed);
          assert.equal(reset.rowCount, progress.replayed);
          assert.equal(progress.batches, ledger.batches);
          assert.ok(progress.replayed === 100 || progress.replayed === 200, `one or two batches: ${progress.replayed}`);
        } finally {
          await lock.release();
        }
      });
    });
  });

  describe('a replay preview over 2,000,000 dead letters', () => {
    afterEach(async () => {
      await resetTables(h.pool);
    });

    it('completes once, on its first attempt, with exact figures', async () => {
      await h.pool.query(
        `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload,
                                     status, attempts, max_attempts, last_status_code, last_error, updated_at)
         SELECT 'dl_' || i, 'type_' || (i % 7), '1', 'req_' || i, 'user_1', '{}'::jsonb,
                'dead_letter', 5, 5, 500 + (i % 4), 'HTTP 500', now() - make_interval(secs => i / 1000.0)
           FROM generate_series(1, 2000000) AS i`,
      );
      await h.pool.query('ANALYZE webhook_outbox');
      await withWorker(taskQueue, async () => {
        const handle = await startReplay({ dryRun: true, limit: 2_000_000 });
        const summary = await handle.result();
        assert.equal(summary.processed, 2_000_000);
        assert.equal(Object.values(summary.preview!.byEventType).reduce((a, b) => a + b, 0), 2_000_000);
        assert.equal(summary.preview!.byEventType.type_0, 285_714);
        assert.deepEqual(summary.preview!.byStatusCode, { '500': 500_000, '501': 500_000, '502': 500_000, '503': 500_000 });
        assert.equal(summary.preview!.sampleIds[0], 'dl_2000000', 'the oldest first');
        const history = await handle.fetchHistory();
        const started = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes);
        assert.equal(started.length, 1);
        assert.equal(started[0]!.activityTaskStartedEventAttributes!.attempt, 1);
      });
    });
  });
});
