import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import type { WorkflowHandle } from '@temporalio/client';
import { backfillWorkflowId } from '../src/client/backfill';
import type { BackfillInput } from '../src/shared/backfill';
import { webhookBackfill } from '../src/workflows/backfill';
import { generatedFile } from './helpers/files';
import { getHarness, resetTables, runCli, seedEvents, uniqueTaskQueue, withWorker, type Harness } from './helpers/harness';

/** Nothing listens here: a command that tried to reach Temporal or PostgreSQL would fail with a connection error. */
const NOWHERE = { TEMPORAL_ADDRESS: '127.0.0.1:1', DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' };

/** Exit code 1, nothing on stdout, and exactly one line on stderr. */
function assertOneLineFailure(result: { code: number | null; stdout: string; stderr: string }, message: RegExp): void {
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stdout, '');
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line: ${result.stderr}`);
  assert.match(lines[0]!, message);
}

describe('operator commands: status, list, outbox (through the real executable)', function () {
  this.timeout(180_000);

  describe('usage errors: exit 2, one line naming the fix, nothing started', () => {
    const cases: Array<[string, string[], RegExp]> = [
      ['status without an id', ['status'], /^error: missing required argument 'workflow-id'; see 'gotong-worker status --help'$/],
      ['status with an unknown flag', ['status', 'x', '--bogus'], /unknown option '--bogus'/],
      ['list with an unknown kind', ['list', '--kind', 'backfil'], /--kind backfil: use backfill, replay, runbook, dispatcher/],
      ['list with an unknown state', ['list', '--state', 'done'], /--state done: use running, completed, failed, canceled/],
      ['list with a quote in --id-prefix', ['list', '--id-prefix', "x' OR 'a'='a"], /--id-prefix must not contain quotes/],
      ['list --limit 0', ['list', '--limit', '0'], /--limit must be a whole number >= 1/],
      ['outbox with an unknown action', ['outbox', 'purge'], /^error: unknown command 'purge'; see 'gotong-worker outbox --help'$/],
      ['outbox show without an id', ['outbox', 'show'], /missing required argument 'event-id'/],
      ['outbox show with an unknown flag', ['outbox', 'show', 'evt_1', '--paylod'], /unknown option '--paylod'/],
      ['outbox stats --top abc', ['outbox', 'stats', '--top', 'abc'], /--top must be a whole number >= 1/],
      ['worker with a bad --metrics-port', ['worker', '--metrics-port', 'localhost:9464'], /--metrics-port localhost:9464: use a port \(9464\) or an IP address and port/],
      ['worker with a bad GOTONG_LOG_LEVEL', ['worker'], /GOTONG_LOG_LEVEL LOUD: use one of TRACE, DEBUG, INFO, WARN, ERROR/],
    ];
    for (const [what, args, message] of cases) {
      it(what, async () => {
        const extra: Record<string, string> = what.includes('GOTONG_LOG_LEVEL') ? { GOTONG_LOG_LEVEL: 'LOUD' } : {};
        const result = await runCli(args, { ...NOWHERE, ...extra });
        assert.equal(result.code, 2, result.stderr);
        assert.equal(result.stdout, '');
        const lines = result.stderr.trimEnd().split('\n');
        assert.equal(lines.length, 1, `one line: ${result.stderr}`);
        assert.match(lines[0]!, message);
        assert.doesNotMatch(result.stderr, /cannot reach|\n\s+at /, 'failed before connecting, without a stack');
      });
    }
  });

  it('top-level --help has one line per command within 80 columns; <command> --help keeps the full text', async () => {
    const top = await runCli(['--help'], NOWHERE);
    assert.equal(top.code, 0);
    const commands = top.stdout.split('Commands:\n')[1]!.trimEnd().split('\n');
    const expected = ['webhook-backfill', 'webhook-replay-dlq', 'webhook-runbook', 'watch', 'approve', 'reject', 'failed-lines', 'status', 'list', 'outbox', 'worker', 'delivery', 'migrate', 'temporal-server', 'demo', 'help'];
    assert.deepEqual(
      commands.map((line) => /^ {2}(\S+)/.exec(line)?.[1]),
      expected,
      `each line starts a command, none is a wrapped continuation:\n${commands.join('\n')}`,
    );
    for (const line of top.stdout.split('\n')) assert.ok(line.length <= 80, `within 80 columns: ${line}`);
    assert.match(top.stdout, /^ {2}status <workflow-id> +One snapshot of a run: state and counters$/m);
    assert.match(top.stdout, /^ {2}outbox stats\|show +/m);

    const status = await runCli(['status', '--help'], NOWHERE);
    assert.equal(status.code, 0);
    assert.match(status.stdout.replace(/\s+/g, ' '), /or its result once closed\. Exit code 1 when no run has that id\./);
    const show = await runCli(['outbox', 'show', '--help'], NOWHERE);
    for (const flag of ['--payload', '--limit <n>', '--json']) assert.ok(show.stdout.includes(flag), `outbox show --help mentions ${flag}`);
  });

  it('an unreachable server or database is one line and exit 1', async () => {
    assertOneLineFailure(await runCli(['status', 'webhook-backfill/x'], NOWHERE), /cannot reach Temporal at 127\.0\.0\.1:1/);
    assertOneLineFailure(await runCli(['list'], NOWHERE), /cannot reach Temporal at 127\.0\.0\.1:1/);
    assertOneLineFailure(await runCli(['outbox', 'stats'], NOWHERE), /^\[outbox\] cannot reach PostgreSQL at postgres:\/\/postgres@127\.0\.0\.1:1\/none/);
  });

  describe('against the test Temporal server and database', () => {
    let h: Harness;
    let taskQueue: string;
    const started: WorkflowHandle[] = [];

    before(() => {
      h = getHarness();
    });
    beforeEach(async () => {
      await resetTables(h.pool);
      taskQueue = uniqueTaskQueue('opcli');
    });
    afterEach(async () => {
      for (const handle of started.splice(0)) await handle.terminate('test over').catch(() => undefined);
    });

    async function startBackfill(path: string, opts: { paused?: boolean } = {}): Promise<WorkflowHandle> {
      const workflowId = `webhook-backfill/opcli-${randomUUID()}/execute`;
      const input: BackfillInput = { runKey: `${workflowId}@1`, path, dryRun: false, maxAttempts: 5, batchSize: 50 };
      const handle = opts.paused
        ? await h.env.client.workflow.signalWithStart(webhookBackfill, { taskQueue, workflowId, args: [input], signal: 'pause' })
        : await h.env.client.workflow.start(webhookBackfill, { taskQueue, workflowId, args: [input] });
      started.push(handle);
      return handle;
    }

    it('attaching with other options says which ones the running run keeps; the same options say nothing', async () => {
      const file = generatedFile(`opcli-${randomUUID()}`, { valid: 20 });
      const workflowId = backfillWorkflowId(file.path, false);
      const input: BackfillInput = { runKey: `${workflowId}@1`, path: file.path, dryRun: false, maxAttempts: 5, batchSize: 50 };
      // Paused before its first batch, so it is still running when the command attaches.
      started.push(await h.env.client.workflow.signalWithStart(webhookBackfill, { taskQueue, workflowId, args: [input], signal: 'pause' }));
      const env = { GOTONG_TASK_QUEUE: taskQueue };
      const other = await runCli(['webhook-backfill', '--file', file.path, '--max-attempts', '2', '--batch-size', '2000', '--detach'], env);
      assert.equal(other.code, 0, other.stderr);
      assert.match(other.stderr, new RegExp(`attached to running ${workflowId}`));
      assert.match(
        other.stderr,
        /^\[webhook-backfill\] the run keeps the options it was started with: --max-attempts 5 \(this command: 2\), --batch-size 50 \(this command: 2000\); to change them, cancel it and start again$/m,
      );
      const same = await runCli(['webhook-backfill', '--file', file.path, '--max-attempts', '5', '--batch-size', '50', '--detach'], env);
      assert.equal(same.code, 0, same.stderr);
      assert.match(same.stderr, /attached to running/);
      assert.doesNotMatch(same.stderr, /keeps the options/);
    });

    it('status: a completed backfill shows its result; a paused one its live counters; an unknown id is exit 1', async () => {
      const file = generatedFile(`opcli-${randomUUID()}`, { valid: 120, dupEvery: 10, failEvery: 30 });
      const e = file.expected;
      await withWorker(taskQueue, async () => {
        const done = await startBackfill(file.path);
        await done.result();

        const text = await runCli(['status', done.workflowId]);
        assert.equal(text.code, 0, text.stderr);
        assert.equal(text.stderr, '');
        assert.match(text.stdout, new RegExp(`^${done.workflowId}\n {2}kind {6}backfill \\(webhookBackfill\\)\n {2}state {5}completed\n`));
        assert.match(
          text.stdout,
          new RegExp(`^ {2}result {4}processed=${e.processed} created=${e.created} enqueued=${e.enqueued} duplicates=${e.duplicates} failed=${e.failed} dry_run=false batches=3$`, 'm'),
        );

        const json = await runCli(['status', done.workflowId, '--json']);
        assert.equal(json.code, 0, json.stderr);
        const snapshot = JSON.parse(json.stdout) as Record<string, unknown> & { result: Record<string, unknown> };
        assert.equal(snapshot.workflow_id, done.workflowId);
        assert.equal(snapshot.kind, 'backfill');
        assert.equal(snapshot.state, 'completed');
        assert.equal(snapshot.task_queue, taskQueue);
        assert.deepEqual(
          { ...snapshot.result, run_key: undefined },
          { ...e, dry_run: false, batches: 3, run_key: undefined },
        );
        const keys = JSON.stringify(snapshot).match(/"([^"]+)":/g) ?? [];
        for (const key of keys) assert.doesNotMatch(key, /[A-Z]/, `snake_case key ${key}`);

        // Paused before its first batch: running, and its progress query answers for it.
        const paused = await startBackfill(file.path, { paused: true });
        const live = await runCli(['status', paused.workflowId, '--json']);
        assert.equal(live.code, 0, live.stderr);
        const liveSnapshot = JSON.parse(live.stdout) as { state: string; live: Record<string, unknown>; result: unknown };
        assert.equal(liveSnapshot.state, 'running');
        assert.equal(liveSnapshot.result, null);
        assert.equal(liveSnapshot.live.phase, 'paused');
        assert.equal(liveSnapshot.live.processed, 0);
        assert.equal(liveSnapshot.live.bytes_total, statSync(file.path).size);
        const liveText = await runCli(['status', paused.workflowId]);
        assert.match(liveText.stdout, /^ {2}state {5}running, phase paused$/m);
        assert.match(liveText.stdout, /^ {2}counters {2}processed=0 created=0 enqueued=0 duplicates=0 failed=0 dry_run=false bytes=0\/\d+ \(0\.0%\) batches=0$/m);

        // list: the kind's runs, running first, each with its counters; filters by state and id prefix.
        const listed = await runCli(['list', '--kind', 'backfill', '--id-prefix', 'webhook-backfill/opcli-', '--json']);
        assert.equal(listed.code, 0, listed.stderr);
        const rows = listed.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { workflow_id: string; state: string; live: { processed: number } | null; result: { created: number } | null });
        const mine = rows.filter((r) => r.workflow_id === done.workflowId || r.workflow_id === paused.workflowId);
        assert.deepEqual(mine.map((r) => r.state), ['running', 'completed'], 'running runs first');
        assert.equal(mine[0]!.live!.processed, 0);
        assert.equal(mine[1]!.result!.created, e.created);

        const running = await runCli(['list', '--kind', 'backfill', '--state', 'running', '--id-prefix', paused.workflowId]);
        assert.equal(running.code, 0, running.stderr);
        const runningLines = running.stdout.trimEnd().split('\n');
        assert.equal(runningLines.length, 2, running.stdout);
        assert.equal(runningLines[0], 'backfill (webhookBackfill): 1 most recent');
        assert.match(runningLines[1]!, /^ {2}running {4}started \d+s ago +\S+ {2}processed=0 created=0 enqueued=0 duplicates=0 failed=0 dry_run=false bytes=0\/\d+ \(0\.0%\) batches=0$/);
        assert.ok(runningLines[1]!.includes(` ${paused.workflowId}  `));
        const none = await runCli(['list', '--kind', 'replay,runbook', '--id-prefix', `nothing-${randomUUID()}`]);
        assert.equal(none.code, 0, none.stderr);
        assert.deepEqual(none.stdout.trimEnd().split('\n'), ['replay (webhookReplayDlq): none', 'runbook (webhookRecoveryRunbook): none']);
      });

      const unknown = await runCli(['status', 'webhook-backfill/no-such-run']);
      assertOneLineFailure(unknown, /^\[status\] no run with workflow id 'webhook-backfill\/no-such-run' in namespace default; list recent runs with 'gotong-worker list'$/);
    });

    it('status of a run no worker serves says so, after a bounded wait, instead of hanging', async () => {
      const file = generatedFile(`opcli-nobody-${randomUUID()}`, { valid: 10 });
      const handle = await startBackfill(file.path);
      const result = await runCli(['status', handle.workflowId]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^ {2}state {5}running$/m);
      assert.match(result.stdout, new RegExp(`^ {2}counters {2}unavailable: no worker answered the 'progress' query within 5s \\(is a worker polling task queue '${taskQueue}'\\?\\)$`, 'm'));
    });

    it('outbox stats: exact counts by status, due and oldest due age, dead letters by type and code; text is escaped', async () => {
      await seedEvents(h.pool, 'st', 20);
      await h.pool.query(`UPDATE webhook_outbox SET status = 'delivered', next_attempt_at = NULL WHERE event_id IN ('st_0','st_1','st_2','st_3','st_4','st_5','st_6')`);
      await h.pool.query(`UPDATE webhook_outbox SET status = 'dead_letter', next_attempt_at = NULL, last_status_code = 503 WHERE event_id IN ('st_7','st_8','st_9')`);
      await h.pool.query(
        `UPDATE webhook_outbox SET status = 'dead_letter', next_attempt_at = NULL, last_status_code = NULL, event_type = 'evil\u001b]0;owned\u0007\u202e'
          WHERE event_id IN ('st_10','st_11')`,
      );
      await h.pool.query(`UPDATE webhook_outbox SET status = 'dead_letter', next_attempt_at = NULL, last_status_code = 410 WHERE event_id = 'st_12'`);
      await h.pool.query(`UPDATE webhook_outbox SET status = 'retrying', next_attempt_at = now() + interval '1 hour', attempts = 1 WHERE event_id IN ('st_13','st_14')`);
      await h.pool.query(
        `UPDATE webhook_outbox SET status = 'in_flight', attempts = 1, lease_owner = 'x', lease_expires_at = now() - interval '1 second' WHERE event_id = 'st_15'`,
      );
      // Four pending and due; the oldest due for an hour.
      await h.pool.query(`UPDATE webhook_outbox SET next_attempt_at = now() - interval '1 hour' WHERE event_id = 'st_16'`);

      const json = await runCli(['outbox', 'stats', '--json']);
      assert.equal(json.code, 0, json.stderr);
      const stats = JSON.parse(json.stdout) as Record<string, unknown> & { oldest_due_age_seconds: number };
      assert.ok(stats.oldest_due_age_seconds >= 3600 && stats.oldest_due_age_seconds < 3700, String(stats.oldest_due_age_seconds));
      assert.deepEqual(
        { ...stats, oldest_due_age_seconds: undefined },
        {
          total: 20,
          by_status: { pending: 4, in_flight: 1, delivered: 7, retrying: 2, dead_letter: 6 },
          due: 4,
          oldest_due_age_seconds: undefined,
          expired_leases: 1,
          dead_letters_by_event_type: [
            { event_type: 'contribution_created', count: 4 },
            { event_type: 'evil\u001b]0;owned\u0007\u202e', count: 2 },
          ],
          dead_letters_by_status_code: [
            { status_code: 503, count: 3 },
            { status_code: null, count: 2 },
            { status_code: 410, count: 1 },
          ],
        },
      );
      assert.ok(json.stdout.includes('\\u202e'), 'a bidi override is escaped even inside JSON');

      const text = await runCli(['outbox', 'stats', '--top', '1']);
      assert.equal(text.code, 0, text.stderr);
      assert.deepEqual(text.stdout.trimEnd().split('\n'), [
        '[outbox] total=20 pending=4 in_flight=1 delivered=7 retrying=2 dead_letter=6',
        `[outbox] due=4 oldest_due_age_s=${/oldest_due_age_s=([\d.]+)/.exec(text.stdout)![1]} expired_leases=1 (claimed by a worker that stopped; taken up again by the next pass)`,
        '[outbox] dead letters by event type:',
        '          4  contribution_created',
        '  ... and 1 more (--top N, or --json for all)',
        '[outbox] dead letters by last status code:',
        '          3  503',
        '  ... and 2 more (--top N, or --json for all)',
      ]);
      const all = await runCli(['outbox', 'stats']);
      assert.match(all.stdout, /^ {10}2 {2}evil\\x1b\]0;owned\\x07\\u202e$/m, 'event types from the database are escaped');
      assert.match(all.stdout, /^ {10}2 {2}none \(no response: timeout or connection error\)$/m);
      for (const raw of ['\u001b', '\u0007', '\u202e']) assert.ok(!all.stdout.includes(raw), 'no raw control or bidi character');
    });

    it('outbox show: the row and its attempt log, the payload only with --payload; an unknown id is exit 1', async () => {
      await seedEvents(h.pool, 'sh', 1, 3);
      // A number beyond a double's precision: the payload must come back exactly as stored.
      await h.pool.query(`UPDATE webhook_outbox SET payload = payload || '{"amount": 12345678901234567890.5}'::jsonb WHERE event_id = 'sh_0'`);
      await h.pool.query(
        `UPDATE webhook_outbox SET status = 'dead_letter', attempts = 3, next_attempt_at = NULL, last_status_code = 503,
                last_error = 'HTTP 503', last_attempt_at = now() WHERE event_id = 'sh_0'`,
      );
      await h.pool.query(
        `INSERT INTO webhook_delivery_attempts (event_id, attempt_number, trigger, status_code, duration_ms, error, request_body_sha256,
                                               response_body_sha256, response_excerpt, started_at, finished_at)
         VALUES ('sh_0', 1, 'scheduled', NULL, 10000, 'timeout after 10000 ms', 'aa', NULL, NULL, now() - interval '3 minutes', now() - interval '3 minutes'),
                ('sh_0', 2, 'scheduled', 503, 12, 'HTTP 503', 'aa', 'bb', E'busy \\u001b[2J\\u202e', now() - interval '2 minutes', now() - interval '2 minutes'),
                ('sh_0', 3, 'scheduled', 503, 9, 'HTTP 503', 'aa', 'bb', 'busy', now() - interval '1 minute', now() - interval '1 minute')`,
      );

      const text = await runCli(['outbox', 'show', 'sh_0']);
      assert.equal(text.code, 0, text.stderr);
      const lines = text.stdout.trimEnd().split('\n');
      assert.equal(lines[0], 'event sh_0');
      assert.ok(lines.includes('  status            dead_letter'));
      assert.ok(lines.includes('  attempts          3'));
      assert.ok(lines.includes('  last_status_code  503'));
      const attempts = lines.slice(lines.indexOf('attempts (3):') + 1);
      assert.equal(attempts.length, 5, text.stdout);
      assert.match(attempts[0]!, /^ {2}#1 scheduled \S+Z {2}10000 ms {2}no response {2}error: timeout after 10000 ms$/);
      assert.match(attempts[1]!, /^ {2}#2 scheduled \S+Z {5}12 ms {2}HTTP 503$/);
      assert.equal(attempts[2], '      response: busy \\x1b[2J\\u202e');
      assert.match(attempts[3]!, /^ {2}#3 scheduled \S+Z {6}9 ms {2}HTTP 503$/);
      assert.equal(attempts[4], '      response: busy');
      assert.doesNotMatch(text.stdout, /payload|amount/, 'no payload unless asked for');

      const json = await runCli(['outbox', 'show', 'sh_0', '--json', '--payload']);
      assert.equal(json.code, 0, json.stderr);
      assert.match(json.stdout, /"amount": 12345678901234567890\.5/, 'the payload exactly as stored');
      const shown = JSON.parse(json.stdout) as {
        event: Record<string, unknown> & { payload: { event_id: string } };
        attempts: Array<Record<string, unknown>>;
        last_replay: unknown;
      };
      assert.equal(shown.event.event_id, 'sh_0');
      assert.equal(shown.event.status, 'dead_letter');
      assert.equal(shown.event.payload.event_id, 'sh_0');
      assert.deepEqual(shown.attempts.map((a) => [a.attempt_number, a.status_code, a.error]), [
        [1, null, 'timeout after 10000 ms'],
        [2, 503, 'HTTP 503'],
        [3, 503, 'HTTP 503'],
      ]);
      assert.equal(shown.attempts[1]!.response_excerpt, 'busy \u001b[2J\u202e');
      assert.equal(shown.last_replay, null);
      const withoutPayload = JSON.parse((await runCli(['outbox', 'show', 'sh_0', '--json'])).stdout) as { event: Record<string, unknown> };
      assert.equal('payload' in withoutPayload.event, false);

      assertOneLineFailure(
        await runCli(['outbox', 'show', 'sh_missing']),
        /^\[outbox\] no event 'sh_missing' in the outbox; check the id \(event ids are case-sensitive\)$/,
      );
    });

    it('outbox show after a replay names the replay run and what the event was before it', async () => {
      await seedEvents(h.pool, 'rp', 1);
      await h.pool.query(
        `UPDATE webhook_outbox SET status = 'pending', replay_count = 1, last_replayed_at = now(), last_replay_run = 'webhook-replay/x@1' WHERE event_id = 'rp_0'`,
      );
      await h.pool.query(
        `INSERT INTO webhook_replay_audit (run_key, event_id, previous_status, previous_attempts, previous_status_code, previous_error)
         VALUES ('webhook-replay/x@1', 'rp_0', 'dead_letter', 5, 502, 'HTTP 502')`,
      );
      const text = await runCli(['outbox', 'show', 'rp_0']);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^last replay {8}webhook-replay\/x@1 at \S+Z: was dead_letter after 5 attempts, last status 502, error HTTP 502$/m);
      const json = JSON.parse((await runCli(['outbox', 'show', 'rp_0', '--json'])).stdout) as { last_replay: Record<string, unknown> };
      assert.deepEqual({ ...json.last_replay, replayed_at: undefined }, {
        run_key: 'webhook-replay/x@1',
        previous_status: 'dead_letter',
        previous_attempts: 5,
        previous_status_code: 502,
        previous_error: 'HTTP 502',
        replayed_at: undefined,
      });
    });
  });
});
