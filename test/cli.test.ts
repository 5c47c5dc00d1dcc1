import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { FIXTURES, getHarness, outboxCount, resetTables, runCli, uniqueTaskQueue, withWorker, type Harness } from './helpers/harness';
import { generatedFile, inputCopy } from './helpers/files';

const edgeCases = inputCopy(join(FIXTURES, 'corpus', 'edge-cases.ndjson'));
/** Nothing listens here: a command that tried to reach Temporal would fail with a connection error instead. */
const NOWHERE = { TEMPORAL_ADDRESS: '127.0.0.1:1', DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' };

const COUNTERS = /processed=(\d+) created=(\d+) enqueued=(\d+) duplicates=(\d+) failed=(\d+)/;

describe('gotong-worker CLI', function () {
  this.timeout(120_000);

  describe('usage errors: exit 2, one line naming the fix, nothing started', () => {
    const cases: Array<[string, string[], RegExp]> = [
      ['missing --file', ['webhook-backfill'], /required option '--file <path>'/],
      ['a file that does not exist', ['webhook-backfill', '--file', 'no/such/file.ndjson'], /no such file; pass the path of an NDJSON file/],
      ['a directory', ['webhook-backfill', '--file', FIXTURES], /not a regular file/],
      ['--progress-every 0', ['webhook-backfill', '--file', edgeCases, '--progress-every', '0'], /--progress-every must be a whole number >= 1/],
      ['--max-attempts abc', ['webhook-backfill', '--file', edgeCases, '--max-attempts', 'abc'], /--max-attempts must be a whole number between 1 and 1000/],
      // Past the bound the message gives the real range, not ">= 1" (which a huge number satisfies).
      ['--max-attempts too large', ['webhook-backfill', '--file', edgeCases, '--max-attempts', '9007199254740993'], /--max-attempts must be a whole number between 1 and 1000/],
      ['--batch-size 1.5', ['webhook-backfill', '--file', edgeCases, '--batch-size', '1.5'], /--batch-size must be a whole number >= 1/],
      ['--batch-size too large', ['webhook-backfill', '--file', edgeCases, '--batch-size', '999999'], /--batch-size must be at most 50000/],
      ['an unknown flag', ['webhook-backfill', '--file', edgeCases, '--bogus'], /unknown option '--bogus'/],
      [
        'a misspelt flag',
        ['webhook-backfill', '--file', edgeCases, '--dryrun'],
        /^error: unknown option '--dryrun' \(did you mean --dry-run\?\); see 'gotong-worker webhook-backfill --help'\n$/,
      ],
      ['an unknown command', ['webhook-backfil'], /^error: unknown command 'webhook-backfil' \(did you mean webhook-backfill\?\); see 'gotong-worker --help'\n$/],
      ['an extra argument', ['failed-lines', 'a', 'b'], /^error: too many arguments for 'failed-lines'.*; see 'gotong-worker failed-lines --help'\n$/],
      ['--file twice', ['webhook-backfill', '--file', edgeCases, '--file', edgeCases, '--dry-run'], /^error: --file given twice \('.*edge-cases\.ndjson' and '.*edge-cases\.ndjson'\); pass it once/],
      ['--status twice', ['webhook-replay-dlq', '--status', 'pending', '--status=dead_letter'], /^error: --status given twice \('pending' and 'dead_letter'\); pass it once/],
      ['--limit twice', ['failed-lines', 'webhook-backfill/x/execute', '--limit', '5', '--limit', '7'], /^error: --limit given twice \('5' and '7'\); pass it once/],
      ['--approval twice', ['webhook-runbook', '--file', edgeCases, '--approval', 'manual', '--approval', 'auto'], /^error: --approval given twice/],
      ['--shards twice', ['delivery', 'configure', '--shards', '2', '--shards', '3'], /^error: --shards given twice/],
      [
        "failed-lines on a runbook's id",
        ['failed-lines', 'webhook-runbook/events.ndjson-0123456789'],
        /^error: webhook-runbook\/events\.ndjson-0123456789 is a runbook; .*failed-lines 'webhook-runbook\/events\.ndjson-0123456789\/step-1-backfill-dry-run' \(step 1\) or '.*\/step-2-backfill-execute' \(step 2\)/,
      ],
      ['a bad WEBHOOK_MAX_ATTEMPTS', ['webhook-backfill', '--file', edgeCases], /WEBHOOK_MAX_ATTEMPTS must be a whole number >= 1/],
      // Named as the setting it came from, not as a flag the operator never typed.
      ['a WEBHOOK_MAX_ATTEMPTS over the bound', ['webhook-backfill', '--file', edgeCases], /^error: WEBHOOK_MAX_ATTEMPTS must be a whole number between 1 and 1000/],
      ['approve --step 2 (no gate follows step 2)', ['approve', 'webhook-runbook/x', '--step', '2'], /--step must be 1 or 4 \(the gates follow steps 1 and 4\), not 2/],
    ];
    const settingsOf: Record<string, Record<string, string>> = {
      'a bad WEBHOOK_MAX_ATTEMPTS': { WEBHOOK_MAX_ATTEMPTS: '0' },
      'a WEBHOOK_MAX_ATTEMPTS over the bound': { WEBHOOK_MAX_ATTEMPTS: '2000' },
    };
    for (const [what, args, message] of cases) {
      it(what, async () => {
        const extra = settingsOf[what] ?? {};
        const result = await runCli(args, { ...NOWHERE, ...extra });
        assert.equal(result.code, 2, result.stderr);
        assert.match(result.stderr, message);
        assert.equal(result.stderr.trimEnd().split('\n').length, 1, `one line: ${result.stderr}`);
        assert.equal(result.stdout, '');
        assert.doesNotMatch(result.stderr, /cannot reach|\n\s+at /, 'failed before connecting, without a stack');
      });
    }

    it('flags meant to repeat still take every value', async () => {
      // Past parsing, these commands go on to reach Temporal: the unreachable one says they were accepted.
      for (const args of [
        ['list', '--kind', 'backfill', '--kind', 'replay', '--state', 'running', '--state', 'failed'],
        ['webhook-replay-dlq', '--event-type', 'a', '--event-type', 'b', '--dry-run'],
      ]) {
        const result = await runCli(args, NOWHERE);
        assert.equal(result.code, 1, `${args.join(' ')}: ${result.stderr}`);
        assert.match(result.stderr, /cannot reach Temporal at 127\.0\.0\.1:1/);
      }
    });
  });

  it('--help tells the truth about the flags and exits 0', async () => {
    const result = await runCli(['webhook-backfill', '--help'], NOWHERE);
    assert.equal(result.code, 0);
    for (const flag of ['--file <path>', '--dry-run', '--progress-every <n>', '--max-attempts <n>', '--batch-size <n>', '--json']) {
      assert.ok(result.stdout.includes(flag), `help mentions ${flag}`);
    }
    const top = await runCli(['--help'], NOWHERE);
    for (const command of ['webhook-backfill', 'webhook-replay-dlq', 'webhook-runbook', 'approve', 'reject', 'failed-lines', 'worker', 'delivery', 'migrate', 'temporal-server', 'demo']) {
      assert.ok(top.stdout.includes(command), `top-level help lists ${command}`);
    }
  });

  it('an unreachable Temporal server is one clear line and exit 1, not a stack', async () => {
    const result = await runCli(['webhook-backfill', '--file', edgeCases], NOWHERE);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot reach Temporal at 127\.0\.0\.1:1 .*set TEMPORAL_ADDRESS/);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  });

  it('an unreachable database is one clear line and exit 1', async () => {
    const result = await runCli(['migrate'], NOWHERE);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot reach PostgreSQL at postgres:\/\/postgres@127\.0\.0\.1:1\/none .*set DATABASE_URL/);
  });

  describe('against the test Temporal server and database', () => {
    let h: Harness;
    before(() => {
      h = getHarness();
    });
    beforeEach(async () => {
      await resetTables(h.pool);
    });

    it('a namespace that does not exist is one line naming the fix, exit 1, for a start and for delivery status alike', async () => {
      const env = { TEMPORAL_NAMESPACE: 'no-such-namespace' };
      for (const args of [['webhook-backfill', '--file', edgeCases, '--dry-run'], ['delivery', 'status'], ['list']]) {
        const result = await runCli(args, env);
        assert.equal(result.code, 1, `${args.join(' ')}: ${result.stderr}`);
        assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
        assert.match(result.stderr, /namespace 'no-such-namespace' does not exist on Temporal at \S+: set TEMPORAL_NAMESPACE to one that does/);
      }
    });

    it('migrate reports an up-to-date schema', async () => {
      const result = await runCli(['migrate']);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout.trim(), '[migrate] schema is up to date');
    });

    it("prints the runbook's progress and done lines, and --json as the last line", async () => {
      const taskQueue = uniqueTaskQueue('cli');
      const file = generatedFile(`cli-${randomUUID()}`, { valid: 400, dupEvery: 9, failEvery: 33, blankEvery: 40 });
      await withWorker(taskQueue, async () => {
        const result = await runCli(
          ['webhook-backfill', '--file', file.path, '--dry-run', '--progress-every', '50', '--batch-size', '20', '--json'],
          { GOTONG_TASK_QUEUE: taskQueue },
        );
        assert.equal(result.code, 0, result.stderr);
        const lines = result.stdout.trimEnd().split('\n');
        const e = file.expected;
        assert.equal(
          lines.at(-2),
          `[webhook-backfill] done processed=${e.processed} created=${e.created} enqueued=${e.enqueued} duplicates=${e.duplicates} failed=${e.failed} dry_run=true`,
        );
        const summary = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
        assert.match(String(summary.workflow_id), /^webhook-backfill\/cli-.*\/dry-run$/);
        assert.deepEqual({ ...summary, workflow_id: undefined }, { ...e, dry_run: true, workflow_id: undefined });

        const progress = lines.slice(0, -2);
        assert.ok(progress.length >= 1, 'at least one progress line on a 400-line file');
        let previous = 0;
        for (const line of progress) {
          assert.match(line, /^\[webhook-backfill\] progress processed=\d+ created=\d+ enqueued=\d+ duplicates=\d+ failed=\d+$/);
          const [, processed, created, enqueued, duplicates, failed] = COUNTERS.exec(line)!.map(Number);
          assert.equal(processed, created! + duplicates! + failed!, 'processed = created + duplicates + failed');
          assert.equal(enqueued, created);
          assert.ok(processed! - previous >= 50, 'progress lines are at least --progress-every apart');
          previous = processed!;
        }
        assert.equal(await outboxCount(h.pool), 0);
      });
    });

    it('execute, then failed-lines lists what failed with line numbers', async () => {
      const taskQueue = uniqueTaskQueue('cli');
      await withWorker(taskQueue, async () => {
        const result = await runCli(['webhook-backfill', '--file', edgeCases, '--max-attempts', '3', '--json'], {
          GOTONG_TASK_QUEUE: taskQueue,
        });
        assert.equal(result.code, 0, result.stderr);
        const lines = result.stdout.trimEnd().split('\n');
        assert.equal(lines.at(-2), '[webhook-backfill] done processed=31 created=22 enqueued=22 duplicates=2 failed=7 dry_run=false');
        const { workflow_id } = JSON.parse(lines.at(-1)!) as { workflow_id: string };
        assert.match(result.stderr, /7 failed lines recorded; list them with: gotong-worker failed-lines/);

        const listed = await runCli(['failed-lines', workflow_id, '--json']);
        assert.equal(listed.code, 0, listed.stderr);
        const rows = listed.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { line: number; reason: string });
        assert.deepEqual(rows.map((r) => r.line), [24, 25, 26, 27, 28, 29, 30]);
        const text = await runCli(['failed-lines', workflow_id]);
        assert.match(text.stdout, /^line 24 \(byte \d+\): invalid JSON/m);
        assert.doesNotMatch(text.stdout, /more \(raise --limit\)/, 'nothing left out, nothing said');

        // Cut at --limit: the last line says how many were left out; --json has the total in every row.
        const cut = await runCli(['failed-lines', workflow_id, '--limit', '2']);
        assert.equal(cut.code, 0, cut.stderr);
        const cutLines = cut.stdout.trimEnd().split('\n');
        assert.equal(cutLines.filter((l) => l.startsWith('line ')).length, 2);
        assert.equal(cutLines.at(-1), '... and 5 more (raise --limit)');
        const cutJson = await runCli(['failed-lines', workflow_id, '--limit', '2', '--json']);
        const cutRows = cutJson.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { line: number; total: number });
        assert.deepEqual(cutRows.map((r) => [r.line, r.total]), [[24, 7], [25, 7]]);
        assert.match(cutJson.stderr, /\.\.\. and 5 more \(raise --limit\)/);

        const bogusKey = await runCli(['failed-lines', workflow_id, '--run-key', `${workflow_id}@no-such-run`]);
        assert.equal(bogusKey.code, 1, bogusKey.stderr);
        assert.equal(bogusKey.stdout, '');
        assert.equal(bogusKey.stderr.trimEnd().split('\n').length, 1, bogusKey.stderr);
        assert.match(bogusKey.stderr, /^\[failed-lines\] no backfill run with run key '.*@no-such-run' has recorded a batch/);
      });
      const attempts = await h.pool.query<{ max_attempts: number }>('SELECT DISTINCT max_attempts FROM webhook_outbox');
      assert.deepEqual(attempts.rows, [{ max_attempts: 3 }]);
    });

    it('failed-lines: "none" only for a run that exists; an unknown id is exit 1', async () => {
      const unknown = await runCli(['failed-lines', 'no-such-id']);
      assert.equal(unknown.code, 1, unknown.stderr);
      assert.equal(unknown.stdout, '');
      assert.equal(unknown.stderr.trimEnd().split('\n').length, 1, unknown.stderr);
      assert.match(unknown.stderr, /^\[failed-lines\] no run with workflow id 'no-such-id' in namespace \S+ and no failed lines recorded for it/);

      const taskQueue = uniqueTaskQueue('cli');
      const file = generatedFile(`clean-${randomUUID()}`, { valid: 30 });
      await withWorker(taskQueue, async () => {
        const result = await runCli(['webhook-backfill', '--file', file.path, '--dry-run', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
        assert.equal(result.code, 0, result.stderr);
        const { workflow_id } = JSON.parse(result.stdout.trimEnd().split('\n').at(-1)!) as { workflow_id: string };

        const none = await runCli(['failed-lines', workflow_id]);
        assert.equal(none.code, 0, none.stderr);
        assert.equal(none.stdout, '');
        assert.match(none.stderr, /^\[failed-lines\] none: no run of .* has recorded a failed line\n$/);

        const [{ run_key }] = (await h.pool.query<{ run_key: string }>('SELECT DISTINCT run_key FROM batch_ledger')).rows as [{ run_key: string }];
        const byKey = await runCli(['failed-lines', workflow_id, '--run-key', run_key]);
        assert.equal(byKey.code, 0, byKey.stderr);
        assert.match(byKey.stderr, /^\[failed-lines\] none: run .* recorded no failed lines\n$/);
      });

      // A clean backfill whose history Temporal no longer keeps (retention): its batches in the ledger still say it ran.
      const gone = `webhook-backfill/gone-${randomUUID()}/execute`;
      await h.pool.query(`INSERT INTO batch_ledger (run_key, batch_key, result) VALUES ($1, 'offset:0', '{}')`, [`${gone}@1`]);
      const retained = await runCli(['failed-lines', gone]);
      assert.equal(retained.code, 0, retained.stderr);
      assert.match(retained.stderr, /^\[failed-lines\] none: no run of webhook-backfill\/gone-.* has recorded a failed line\n$/);
    });

    it('starting the same backfill while it runs attaches to the running run instead of starting another', async () => {
      const taskQueue = uniqueTaskQueue('cli');
      const file = generatedFile(`attach-${randomUUID()}`, { valid: 3000, dupEvery: 11 });
      // No worker yet: the first command's run waits, so the second command certainly finds it running.
      const first = runCli(['webhook-backfill', '--file', file.path, '--batch-size', '100', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
      await new Promise((r) => setTimeout(r, 3000));
      const second = runCli(['webhook-backfill', '--file', file.path, '--batch-size', '100', '--json'], { GOTONG_TASK_QUEUE: taskQueue });
      await new Promise((r) => setTimeout(r, 3000));
      const [a, b] = await withWorker(taskQueue, () => Promise.all([first, second]));
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      assert.match(a.stderr, /no worker is polling task queue/);
      assert.match(b.stderr, /attached to running webhook-backfill\//);
      assert.equal(a.stdout.trimEnd().split('\n').at(-1), b.stdout.trimEnd().split('\n').at(-1), 'one run, one summary');
      const summary = JSON.parse(a.stdout.trimEnd().split('\n').at(-1)!) as { created: number };
      assert.equal(summary.created, file.expected.created);
      assert.equal(await outboxCount(h.pool), file.expected.created);
    });
  });
});
