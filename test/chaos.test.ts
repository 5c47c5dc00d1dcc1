import assert from 'node:assert/strict';
import { formatTable, runChaos } from './chaos/trials';

// The short form of `npm run chaos`: the same trials, one of each fault, on a stack of its own (its own PostgreSQL
// cluster and Temporal dev server, not the suite's), on fewer events.
describe('chaos, short form: one trial of each fault', function () {
  this.timeout(300_000);

  it('a worker killed in a backfill, PostgreSQL restarted in a replay, Temporal restarted in a delivery drain: nothing lost or doubled', async () => {
    const results = await runChaos({ trials: 3, seed: 10, events: 2_000, timeLimitMs: 240_000 });
    const table = formatTable(results);
    assert.deepEqual(
      results.map((r) => [r.plan.fault, r.plan.workload]),
      [
        ['kill-worker', 'backfill'],
        ['restart-postgres', 'replay'],
        ['restart-temporal', 'delivery'],
      ],
      table,
    );
    assert.ok(results.every((r) => r.passed), table);
  });
});
