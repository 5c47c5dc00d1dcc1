import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../src/activities';
import type { BackfillBatchInput, BackfillBatchResult, BackfillInput, FileFingerprint, BackfillProgress, BackfillSummary } from '../src/shared/backfill';
import { BACKFILL_LIMITS } from '../src/shared/backfill';
import { webhookBackfill } from '../src/workflows/backfill';
import { countersOf, event, generatedFile, inputCopy, tmp } from './helpers/files';
import { FIXTURES, getHarness, outboxCount, resetTables, uniqueTaskQueue, waitFor, withWorker, type Harness } from './helpers/harness';
import { startBackfillRun } from './helpers/start-runs';

const corpus = (name: string) => join(FIXTURES, 'corpus', name);
/** A corpus file where workers may read it. */
const inputFile = (name: string) => inputCopy(corpus(name));
const expectedOf = (name: string) =>
  JSON.parse(readFileSync(corpus(name.replace('.ndjson', '.expected.json')), 'utf8')) as {
    expected_on_empty_outbox: Record<string, number>;
    expected_second_run?: Record<string, number>;
  };

describe('webhookBackfill (real Temporal server, real PostgreSQL)', function () {
  this.timeout(120_000);
  let h: Harness;
  let taskQueue: string;

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('backfill');
  });

  const start = (path: string, opts: Partial<BackfillInput> = {}) => startBackfillRun(taskQueue, path, opts);
  /** Sends `pause` and waits until the run reports itself paused (between batches). */
  async function pauseAndWait(handle: WorkflowHandle<typeof webhookBackfill>): Promise<BackfillProgress> {
    await handle.signal('pause');
    let progress: BackfillProgress | undefined;
    await waitFor('the run to pause', async () => {
      progress = await handle.query<BackfillProgress>('progress');
      return progress.phase === 'paused';
    });
    return progress!;
  }
  async function backfill(path: string, opts: Partial<BackfillInput> = {}): Promise<BackfillSummary> {
    return (await start(path, opts)).result();
  }

  for (const batchSize of [1, 4, 5000]) {
    it(`edge-cases corpus gives the expected counts for dry run, execute and a second run (batch size ${batchSize})`, async () => {
      const expected = expectedOf('edge-cases.ndjson');
      await withWorker(taskQueue, async () => {
        const dry = await backfill(inputFile('edge-cases.ndjson'), { dryRun: true, batchSize });
        assert.deepEqual(countersOf(dry), expected.expected_on_empty_outbox);
        assert.equal(dry.dryRun, true);
        assert.equal(await outboxCount(h.pool), 0, 'a dry run must not write the outbox');
        const seen = await h.pool.query('SELECT 1 FROM backfill_dry_run_seen UNION ALL SELECT 1 FROM backfill_dry_run_coverage');
        assert.equal(seen.rowCount, 0, 'a finished dry run leaves no scratch rows');

        const exec = await backfill(inputFile('edge-cases.ndjson'), { batchSize });
        assert.deepEqual(countersOf(exec), expected.expected_on_empty_outbox);
        assert.equal(await outboxCount(h.pool), expected.expected_on_empty_outbox.created);

        const again = await backfill(inputFile('edge-cases.ndjson'), { batchSize });
        assert.deepEqual(countersOf(again), expected.expected_second_run);
        const dryAgain = await backfill(inputFile('edge-cases.ndjson'), { dryRun: true, batchSize });
        assert.deepEqual(countersOf(dryAgain), expected.expected_second_run, 'dry run agrees with execute on a full outbox');
      });
    });
  }

  it('bom-crlf corpus: BOM and CRLF are accepted', async () => {
    await withWorker(taskQueue, async () => {
      const summary = await backfill(inputFile('bom-crlf.ndjson'));
      assert.deepEqual(countersOf(summary), expectedOf('bom-crlf.ndjson').expected_on_empty_outbox);
      const { rows } = await h.pool.query<{ event_id: string }>('SELECT event_id FROM webhook_outbox ORDER BY event_id');
      assert.deepEqual(rows.map((r) => r.event_id), ['evt_bom0', 'evt_bom1', 'evt_bom2']);
    });
  });

  it('enqueues new events as pending and due, with max_attempts from the run, first occurrence winning', async () => {
    await withWorker(taskQueue, async () => {
      await backfill(inputFile('edge-cases.ndjson'), { maxAttempts: 9, batchSize: 4 });
      const { rows } = await h.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM webhook_outbox
          WHERE status = 'pending' AND attempts = 0 AND max_attempts = 9 AND next_attempt_at <= now()`,
      );
      assert.equal(Number(rows[0]!.n), 22);
      const first = await h.pool.query<{ title: string; actor_user_id: string }>(
        `SELECT payload->'subject'->>'title' AS title, actor_user_id FROM webhook_outbox WHERE event_id = 'evt_dev0025'`,
      );
      assert.equal(first.rows[0]!.title, 'Gotong royong — kerja bakti ✓');
      assert.equal(first.rows[0]!.actor_user_id, 'user_25');
    });
  });

  it('records each failed line with its line number and reason', async () => {
    await withWorker(taskQueue, async () => {
      const handle = await start(inputFile('edge-cases.ndjson'), { batchSize: 3 });
      await handle.result();
      const { rows } = await h.pool.query<{ line_number: string; reason: string }>(
        'SELECT line_number, reason FROM backfill_failed_lines WHERE workflow_id = $1 ORDER BY line_number',
        [handle.workflowId],
      );
      assert.deepEqual(
        rows.map((r) => Number(r.line_number)),
        [24, 25, 26, 27, 28, 29, 30],
      );
      assert.match(rows[0]!.reason, /^invalid JSON/);
      assert.match(rows[1]!.reason, /not a JSON object/);
      assert.match(rows[2]!.reason, /"actor"/);
      assert.match(rows[6]!.reason, /"event_id" must be a non-empty string/);
    });
  });

  it('takes lines PostgreSQL would reject, and pathological lines, as failed without failing the batch', async () => {
    const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
    const lines = [
      event('evt_p1'),
      event('evt_p2', { note: 'has \u0000 NUL' }),
      event('evt_p3').replace('"user_1"', '"\\udc00"'),
      `{"event_id":"evt_p4","event_type":"t","schema_version":"1","request_id":"r","actor":{"user_id":"u"},"n":1e1000000}`,
      event('evt_p4'), // the first *valid* occurrence of evt_p4 wins
      `{"event_id":"evt_p5","event_type":"t","schema_version":"1","request_id":"r","actor":{"user_id":"u"},"deep":${deep}}`,
      event('evt_p6', { blob: 'x'.repeat(BACKFILL_LIMITS.maxLineBytes) }),
      event('x'.repeat(300)),
      '\u0000\u0000',
      event('evt_p7'),
    ];
    const path = join(tmp, `poison-${randomUUID()}.ndjson`);
    writeFileSync(path, lines.join('\n'));
    const expected = { processed: 10, created: 3, enqueued: 3, duplicates: 0, failed: 7 };
    let workflowId = '';
    await withWorker(taskQueue, async () => {
      const dry = await backfill(path, { dryRun: true });
      assert.deepEqual(countersOf(dry), expected);
      const handle = await start(path);
      assert.deepEqual(countersOf(await handle.result()), expected);
      workflowId = handle.workflowId;
    });
    const { rows } = await h.pool.query<{ event_id: string }>('SELECT event_id FROM webhook_outbox ORDER BY event_id');
    assert.deepEqual(rows.map((r) => r.event_id), ['evt_p1', 'evt_p4', 'evt_p7']);
    const reasons = await h.pool.query<{ line_number: string; reason: string }>(
      'SELECT line_number, reason FROM backfill_failed_lines WHERE workflow_id = $1',
      [workflowId],
    );
    assert.equal(reasons.rowCount, 7);
    const byLine = new Map(reasons.rows.map((r) => [Number(r.line_number), r.reason]));
    assert.match(byLine.get(4)!, /PostgreSQL rejected the payload/);
    assert.match(byLine.get(6)!, /PostgreSQL rejected the payload|invalid JSON/);
    assert.match(byLine.get(7)!, /longer than 1048576 bytes/);
    assert.match(byLine.get(8)!, /at most 256 bytes/);
  });

  it('a line PostgreSQL rejects early in a batch does not shadow a valid copy later in the same batch', async () => {
    const lines = Array.from({ length: 1498 }, (_, i) => event(`evt_slice_${i}`));
    lines.splice(9, 0, `{"event_id":"evt_x","event_type":"t","schema_version":"1","request_id":"r","actor":{"user_id":"u"},"n":1e1000000}`);
    lines.splice(1199, 0, event('evt_x'));
    const path = join(tmp, `slices-${randomUUID()}.ndjson`);
    writeFileSync(path, lines.join('\n'));
    const expected = { processed: 1500, created: 1499, enqueued: 1499, duplicates: 0, failed: 1 };
    await withWorker(taskQueue, async () => {
      assert.deepEqual(countersOf(await backfill(path, { dryRun: true, batchSize: 10_000 })), expected);
      assert.deepEqual(countersOf(await backfill(path, { batchSize: 10_000 })), expected);
    });
    const row = await h.pool.query(`SELECT 1 FROM webhook_outbox WHERE event_id = 'evt_x'`);
    assert.equal(row.rowCount, 1);
  });

  it('continues as new with its counters carried, keeping each run short', async () => {
    const file = generatedFile(`can-${randomUUID()}`, { valid: 1000, dupEvery: 97, failEvery: 101, blankEvery: 50 });
    await withWorker(taskQueue, async () => {
      const handle = await start(file.path, { batchSize: 50, batchesPerRun: 5 });
      const summary = await handle.result();
      assert.deepEqual(countersOf(summary), file.expected);

      let runId: string | undefined = handle.firstExecutionRunId;
      const historyLengths: number[] = [];
      while (runId) {
        const history: { events?: unknown[] | null } = await h.env.client.workflow
          .getHandle(handle.workflowId, runId)
          .fetchHistory();
        const events = (history.events ?? []) as Array<{
          workflowExecutionContinuedAsNewEventAttributes?: { newExecutionRunId?: string | null } | null;
        }>;
        historyLengths.push(events.length);
        runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
      }
      const batches = summary.batches;
      assert.equal(historyLengths.length, Math.ceil(batches / 5), `runs: ${historyLengths.join(',')}`);
      // The default batches-per-run must keep a run under 5,000 events at the measured cost per batch.
      const perBatch = Math.max(...historyLengths) / 5;
      assert.ok(
        perBatch * BACKFILL_LIMITS.defaultBatchesPerRun + 50 < 5000,
        `${perBatch} events per batch x ${BACKFILL_LIMITS.defaultBatchesPerRun} batches would exceed 5,000`,
      );
    });
    assert.equal(await outboxCount(h.pool), file.expected.created);
  });

  it('pause holds the run between batches; resume finishes it with exact counts', async () => {
    const file = generatedFile(`pause-${randomUUID()}`, { valid: 300, dupEvery: 10 });
    await withWorker(taskQueue, async () => {
      const handle = await start(file.path, { batchSize: 10 });
      const held = (await pauseAndWait(handle)).processed;
      await new Promise((r) => setTimeout(r, 1500));
      const progress = await handle.query<BackfillProgress>('progress');
      assert.equal(progress.processed, held, 'no batch ran while paused');
      assert.ok(held < file.expected.processed);
      await handle.signal('resume');
      assert.deepEqual(countersOf(await handle.result()), file.expected);
    });
  });

  it('cancellation ends the run with every committed batch fully accounted', async () => {
    const file = generatedFile(`cancel-${randomUUID()}`, { valid: 2000 });
    await withWorker(taskQueue, async () => {
      const handle = await start(file.path, { batchSize: 100 });
      let progress: BackfillProgress;
      do {
        progress = await handle.query<BackfillProgress>('progress');
      } while (progress.processed < 300);
      await handle.cancel();
      await assert.rejects(handle.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        assert.ok(err.cause instanceof CancelledFailure);
        return true;
      });
      const ledger = await h.pool.query<{ created: string }>(
        `SELECT coalesce(sum((result->>'created')::int), 0) AS created FROM batch_ledger WHERE run_key = $1`,
        [`${handle.workflowId}@1`],
      );
      const committed = Number(ledger.rows[0]!.created);
      assert.ok(committed < 2000, 'the run stopped before the end');
      assert.equal(await outboxCount(h.pool), committed, 'the outbox holds exactly what the ledger accounts for');
    });
  });

  it('a retried batch returns its recorded result and writes nothing twice, even when two run at once', async () => {
    const activities = createActivities({ pool: h.pool });
    const env = new MockActivityEnvironment();
    const path = inputFile('edge-cases.ndjson');
    const fingerprint = (await env.run(activities.inspectBackfillFile, path)) as FileFingerprint;
    const input: BackfillBatchInput = {
      runKey: `retry-${randomUUID()}`,
      workflowId: 'webhook-backfill/retry-test',
      path,
      fingerprint,
      startOffset: 0,
      startLine: 1,
      batchSize: 5000,
      dryRun: false,
      maxAttempts: 5,
    };
    const runBatch = (activityEnv: MockActivityEnvironment) =>
      activityEnv.run(activities.processBackfillBatch, input) as Promise<BackfillBatchResult>;
    const [a, b] = await Promise.all([runBatch(new MockActivityEnvironment()), runBatch(new MockActivityEnvironment())]);
    const c = await runBatch(env);
    assert.deepEqual(a, b);
    assert.deepEqual(a, c);
    assert.equal(a.created, 22);
    assert.equal(await outboxCount(h.pool), 22);
    const failed = await h.pool.query('SELECT 1 FROM backfill_failed_lines WHERE run_key = $1', [input.runKey]);
    assert.equal(failed.rowCount, 7);
  });

  it('a reset of a finished run replays every batch from the ledger: same summary, nothing written twice', async () => {
    const file = generatedFile(`reset-${randomUUID()}`, { valid: 500, dupEvery: 7, failEvery: 60 });
    await withWorker(taskQueue, async () => {
      const handle = await start(file.path, { batchSize: 40 });
      const original = await handle.result();
      assert.deepEqual(countersOf(original), file.expected);
      const ledgerBefore = await h.pool.query('SELECT 1 FROM batch_ledger');

      const history = await handle.fetchHistory();
      const firstTaskCompleted = history.events!.find((e) => e.workflowTaskCompletedEventAttributes)!;
      const { runId } = await h.env.client.workflowService.resetWorkflowExecution({
        namespace: h.env.namespace ?? 'default',
        workflowExecution: { workflowId: handle.workflowId, runId: handle.firstExecutionRunId },
        workflowTaskFinishEventId: firstTaskCompleted.eventId,
        requestId: randomUUID(),
        reason: 'test: re-execute every batch',
      });
      const replayed = await h.env.client.workflow.getHandle(handle.workflowId, runId!).result();
      assert.deepEqual(replayed, original);
      assert.equal(await outboxCount(h.pool), file.expected.created);
      const ledgerAfter = await h.pool.query('SELECT 1 FROM batch_ledger');
      assert.equal(ledgerAfter.rowCount, ledgerBefore.rowCount);
    });
  });

  it('fails fast, without retrying, when the file changes under the run', async () => {
    const file = generatedFile(`changed-${randomUUID()}`, { valid: 200 });
    await withWorker(taskQueue, async () => {
      const handle = await start(file.path, { batchSize: 10 });
      await pauseAndWait(handle);
      writeFileSync(file.path, event('evt_other'));
      await handle.signal('resume');
      await assert.rejects(handle.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        assert.match(String((err.cause?.cause as Error | undefined)?.message ?? err.cause?.message), /changed after the backfill started/);
        return true;
      });
    });
  });
});
