import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Pool, PoolClient } from 'pg';
import { fingerprintFile, runBackfillBatch, type BatchHooks } from '../src/backfill/batch';
import { storableForSure, validateLine } from '../src/backfill/validate';
import type { BackfillBatchInput, BackfillBatchResult, BackfillSummary } from '../src/shared/backfill';
import { webhookBackfill } from '../src/workflows/backfill';
import { countersOf, event, INPUT_ROOT, tmp } from './helpers/files';
import { getHarness, outboxCount, resetTables, uniqueTaskQueue, withWorker, type Harness } from './helpers/harness';

const HOOKS: BatchHooks = { heartbeat: () => undefined, throwIfCancelled: () => undefined };
const head = `{"event_id":"evt_n","event_type":"t","schema_version":"1","request_id":"r","actor":{"user_id":"u"}`;

/**
 * A file where every kind of outcome happens in every batch: ids repeated within a batch and across batches, ids
 * already in the outbox (PRESENT), lines failed by the worker's checks, payloads only PostgreSQL can judge (accepted
 * and rejected), and a rejected line whose id comes back valid later (the valid occurrence must win).
 */
const PRESENT = ['evt_3', 'evt_17', 'evt_33'];
function mixedFile(): string {
  const lines: string[] = [];
  for (let i = 0; i < 160; i++) {
    const id = `evt_${(i * 7) % 45}`;
    if (i % 13 === 5) lines.push(`{"event_id":"${id}",`);
    else if (i % 17 === 4) lines.push(JSON.stringify({ event_id: id, event_type: 't', schema_version: '1', request_id: 'r' }));
    else if (i % 19 === 3) lines.push(`${head.replace('evt_n', `evt_big_${i % 3}`)},"n":1e1000000}`);
    else if (i % 23 === 2) lines.push(`${head.replace('evt_n', `evt_huge_${i}`)},"n":1e500,"deep":${'['.repeat(90)}1${']'.repeat(90)}}`);
    else if (i % 29 === 1) lines.push(`${head.replace('evt_n', 'evt_deep')},"deep":${'['.repeat(200_000)}${']'.repeat(200_000)}}`);
    else if (i % 11 === 0) lines.push('');
    else lines.push(event(id, { note: `line ${i} says "[{1e999999}]" \\ and ${'{'.repeat(i % 70)}` }));
  }
  lines.push(event('evt_big_1'), event('evt_deep'));
  const path = join(tmp, `dry-mixed-${randomUUID()}.ndjson`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

/** A pool whose clients fail the first statement matching `when`, as a connection lost at that point would. */
function failingOnce(pool: Pool, when: RegExp): Pool {
  let armed = true;
  return beforeStatements(pool, async (text) => {
    if (!armed || !when.test(text)) return;
    armed = false;
    throw new Error('injected: the connection was lost');
  });
}

/** A pool whose clients run `hook` before each statement, told whether their transaction is open. */
function beforeStatements(pool: Pool, hook: (text: string, values: unknown[] | undefined, inTransaction: boolean) => Promise<void>): Pool {
  const wrapClient = (client: PoolClient) => {
    let inTransaction = false;
    // The client's own query, taken now: an activity's cancellation scope later sets one of its own on the client.
    const query = client.query.bind(client) as (c: unknown, v?: unknown[]) => Promise<unknown>;
    return new Proxy(client, {
      get(target, prop) {
        if (prop === 'query') {
          return async (config: string | { text: string; values?: unknown[] }, values?: unknown[]) => {
            const text = typeof config === 'string' ? config : config.text;
            await hook(text, values ?? (typeof config === 'string' ? undefined : config.values), inTransaction);
            if (text === 'BEGIN') inTransaction = true;
            if (text === 'COMMIT' || text === 'ROLLBACK') inTransaction = false;
            return query(config, values);
          };
        }
        const value: unknown = Reflect.get(target, prop);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  };
  return new Proxy(pool, {
    get(target, prop) {
      if (prop === 'connect') return async () => wrapClient(await target.connect());
      const value: unknown = Reflect.get(target, prop);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe('backfill --dry-run counts exactly what the execute run does', function () {
  this.timeout(180_000);
  let h: Harness;
  const batchStarts: number[] = [];

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    await h.pool.query(
      `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, attempts, max_attempts)
       SELECT id, 't', '1', 'r', 'u', '{}', 'delivered', 1, 5 FROM unnest($1::text[]) AS id`,
      [PRESENT],
    );
  });

  it('storableForSure vouches only for what PostgreSQL takes as jsonb, and leaves big numbers and deep nesting to it', async () => {
    const cases: Array<[string, boolean]> = [
      [event('a'), true],
      [`${head},"n":-12.5e-3,"m":[1,2,{"x":1E+999}]}`, true],
      [`${head},"s":"1e999999 [[[[ \\" ]]]] \\\\","t":"\\\\\\"1e99999"}`, true],
      [`${head},"n":1e1000}`, false],
      [`${head},"n":1e-1000000}`, false],
      [`${head},"n":1e1000000}`, false],
      [`${head},"n":${'9'.repeat(101)}}`, false],
      [`${head},"n":${'9'.repeat(99)}}`, true],
      [`${head},"d":${'['.repeat(63)}${']'.repeat(63)}}`, true],
      [`${head},"d":${'['.repeat(64)}${']'.repeat(64)}}`, false],
      [`${head},"d":${'{"a":'.repeat(70)}1${'}'.repeat(70)}}`, false],
    ];
    for (const [line, sure] of cases) {
      assert.ok(validateLine(line).ok, `the worker's checks pass ${line.slice(0, 80)}`);
      assert.equal(storableForSure(line), sure, line.slice(0, 120));
      if (sure) await h.pool.query('SELECT $1::text::jsonb', [line]);
    }
    // What PostgreSQL refuses is never vouched for.
    for (const line of [`${head},"n":1e1000000}`, `${head},"n":1e-1000000}`, `${head},"d":${'['.repeat(200_000)}${']'.repeat(200_000)}}`]) {
      assert.equal(storableForSure(line), false);
      await assert.rejects(h.pool.query('SELECT $1::text::jsonb', [line]));
    }
  });

  it('batch by batch: same results and checkpoints as execute, with outbox duplicates, a retried batch, racing attempts and lost ids', async () => {
    const path = mixedFile();
    const fingerprint = await fingerprintFile(path, [INPUT_ROOT]);
    const batchOf = (runKey: string, dryRun: boolean, at: { offset: number; line: number; processed: number }): BackfillBatchInput => ({
      runKey,
      workflowId: `webhook-backfill/${runKey}`,
      path,
      fingerprint,
      startOffset: at.offset,
      startLine: at.line,
      batchSize: 9,
      dryRun,
      maxAttempts: 5,
      checkpoints: { every: 2, processedBefore: at.processed },
    });
    /** Runs every batch in turn; `before(n, input)` may disturb the run before batch n, and returns how to run it. */
    const run = async (dryRun: boolean, before?: (n: number, input: BackfillBatchInput) => Promise<Pool | 'race' | void>) => {
      const runKey = `dry-${randomUUID()}`;
      const results: BackfillBatchResult[] = [];
      const at = { offset: 0, line: 1, processed: 0 };
      while (at.offset < fingerprint.size) {
        const input = batchOf(runKey, dryRun, at);
        const how = await before?.(results.length, input);
        let result: BackfillBatchResult;
        if (how === 'race') {
          const [a, b] = await Promise.all([runBackfillBatch(h.pool, input, [INPUT_ROOT], HOOKS), runBackfillBatch(h.pool, input, [INPUT_ROOT], HOOKS)]);
          assert.deepEqual(a, b, 'two attempts at once give one result');
          result = a;
        } else if (how) {
          await assert.rejects(runBackfillBatch(how, input, [INPUT_ROOT], HOOKS), /injected/);
          result = await runBackfillBatch(h.pool, input, [INPUT_ROOT], HOOKS);
        } else {
          result = await runBackfillBatch(h.pool, input, [INPUT_ROOT], HOOKS);
        }
        results.push(result);
        at.offset = result.endOffset;
        at.line += result.linesConsumed;
        at.processed += result.processed;
      }
      const failed = await h.pool.query<{ line_number: string; reason: string }>(
        'SELECT line_number, reason FROM backfill_failed_lines WHERE run_key = $1 ORDER BY line_number',
        [runKey],
      );
      return { results, failed: failed.rows };
    };

    const coverage = async () => (await h.pool.query<{ covered_to: string }>('SELECT covered_to FROM backfill_dry_run_coverage')).rows;
    const dry = await run(true, async (n, input) => {
      switch (n) {
        case 2: // What a PostgreSQL crash does to the unlogged tables: every id the run recorded is gone.
          await h.pool.query('TRUNCATE backfill_dry_run_seen, backfill_dry_run_coverage');
          return;
        case 4: // The attempt dies as it writes its ledger row: its ids and coverage roll back with it, and it is retried.
          return failingOnce(h.pool, /INSERT INTO batch_ledger/);
        case 6: // A restore cut short: the ids of the batches before are partly recorded.
          await h.pool.query('TRUNCATE backfill_dry_run_seen, backfill_dry_run_coverage');
          return failingOnce(h.pool, /INSERT INTO backfill_dry_run_coverage/);
        case 8: // Recorded by a worker from before the coverage row (it records ids only): the coverage lags one batch.
          await h.pool.query('UPDATE backfill_dry_run_coverage SET covered_to = $1', [batchStarts[7]]);
          return;
        case 10:
          return 'race';
        case 12: // Ids from past this batch (cannot happen in order; state from elsewhere): start over from the top.
          await h.pool.query('UPDATE backfill_dry_run_coverage SET covered_to = $1', [input.startOffset + 1]);
          return;
        default:
          batchStarts[n] = input.startOffset;
          assert.deepEqual(await coverage(), n === 0 ? [] : [{ covered_to: String(input.startOffset) }]);
      }
    });
    assert.ok(dry.results.length >= 13, `${dry.results.length} batches`);
    assert.equal(await outboxCount(h.pool), PRESENT.length, 'the dry run wrote nothing to the outbox');
    const exec = await run(false);

    assert.deepEqual(dry.results, exec.results, 'every batch: counters, offsets and per-line checkpoints');
    assert.deepEqual(dry.failed, exec.failed, 'the same failed lines, with the same reasons');
    const total = dry.results.reduce((sum, r) => ({
      created: sum.created + r.created, duplicates: sum.duplicates + r.duplicates, failed: sum.failed + r.failed,
    }), { created: 0, duplicates: 0, failed: 0 });
    assert.ok(total.created > 40 && total.duplicates > 60 && total.failed > 20, JSON.stringify(total));
    assert.ok(exec.failed.some((f) => /PostgreSQL rejected the payload/.test(f.reason)), 'PostgreSQL judged some lines');
    const created = await h.pool.query<{ n: string }>(`SELECT count(*) AS n FROM webhook_outbox WHERE event_id = ANY($1)`, [
      ['evt_huge_2', 'evt_big_1', 'evt_deep', ...PRESENT],
    ]);
    assert.equal(Number(created.rows[0]!.n), 6, 'payloads only PostgreSQL could judge were taken, and valid copies of rejected ids won');
  });
  it('a workflow run across continue-as-new whose ids are lost between batches still counts exactly, and leaves no scratch rows', async () => {
    const path = mixedFile();
    const taskQueue = uniqueTaskQueue('dry-run');
    const runKey = `webhook-backfill/test-${randomUUID()}@1`;
    let lost = false;
    await withWorker(taskQueue, async () => {
      const run = async (key: string, dryRun: boolean) => {
        const workflowId = key.replace(/@1$/, '');
        const summary: BackfillSummary = await h.env.client.workflow.execute(webhookBackfill, {
          taskQueue,
          workflowId,
          args: [{ runKey: key, path, dryRun, maxAttempts: 5, batchSize: 6, batchesPerRun: 4, progressEvery: 3 }],
        });
        const ledger = await h.pool.query<{ result: BackfillBatchResult }>(
          `SELECT result FROM batch_ledger WHERE run_key = $1 ORDER BY (result->>'endOffset')::bigint`, [key],
        );
        return { summary, batches: ledger.rows.map((r) => r.result) };
      };
      const dry = await run(runKey, true);
      assert.ok(lost, 'the ids were lost mid-run');
      const leftovers = await h.pool.query('SELECT 1 FROM backfill_dry_run_seen UNION ALL SELECT 1 FROM backfill_dry_run_coverage');
      assert.equal(leftovers.rowCount, 0, 'a finished dry run leaves no scratch rows');
      const exec = await run(`webhook-backfill/test-${randomUUID()}@1`, false);
      assert.deepEqual(countersOf(dry.summary), countersOf(exec.summary));
      assert.equal(dry.summary.batches, exec.summary.batches);
      assert.ok(dry.summary.batches > 8, 'continued as new at least twice');
      assert.deepEqual(dry.batches, exec.batches, 'each batch, with its checkpoints');
    }, undefined, {
      // What a PostgreSQL crash between two batches does to the unlogged tables, once five batches are in the ledger.
      pool: beforeStatements(h.pool, async (text, values, inTransaction) => {
        if (lost || inTransaction || !text.includes('FROM backfill_dry_run_coverage') || values?.[0] !== runKey) return;
        const ledger = await h.pool.query('SELECT 1 FROM batch_ledger WHERE run_key = $1', [runKey]);
        if ((ledger.rowCount ?? 0) < 5) return;
        lost = true;
        await h.pool.query('TRUNCATE backfill_dry_run_seen, backfill_dry_run_coverage');
      }),
    });
  });
});
