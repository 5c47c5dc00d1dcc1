import assert from 'node:assert/strict';
import { Worker, type ReplayResult } from '@temporalio/worker';
import { getHarness } from './helpers/harness';
import { historyFixtures, historyFromJson, historyLeaks, readHistoryFixture, HISTORIES } from './helpers/history-fixtures';

/**
 * A deploy of changed workflow code must not break the runs open at the time. Every recorded history
 * (test/fixtures/histories/<set>/, written by `npm run record-histories`; see CONTRIBUTING.md) replays against the
 * current workflow bundle without a nondeterminism error. The sets, oldest first:
 * - `before-settle`: backfill and replay before cancellation waited for and settled the batch in flight;
 * - `dispatcher-before-v2`: the dispatcher loop before `dispatcher-v2` (commit 3348d5c);
 * - `settle`: backfill and replay after `settle-cancelled-batch`;
 * - dated sets: every workflow type, recorded from the code of that day.
 */
const FIXTURES = historyFixtures();
const WORKFLOW_TYPES = ['webhookBackfill', 'webhookReplayDlq', 'webhookDispatcher', 'webhookRecoveryRunbook'];

describe('recorded workflow histories replay on the current workflow bundle', function () {
  this.timeout(300_000);
  const results = new Map<string, ReplayResult>();

  before(async () => {
    // One replay worker for all of them, each history in turn under the workflow id it ran with.
    const recorded = FIXTURES.map((f) => readHistoryFixture(f));
    const histories = recorded.map((r) => ({ workflowId: r.workflowId, history: historyFromJson(r.history) }));
    let i = 0;
    for await (const result of Worker.runReplayHistories({ workflowBundle: getHarness().workflowBundle }, histories)) {
      results.set(FIXTURES[i++]!.name, result);
    }
  });

  for (const fixture of FIXTURES) {
    it(fixture.name, () => {
      const result = results.get(fixture.name);
      assert.ok(result, `${fixture.name} was not replayed`);
      if (result.error) throw result.error;
    });
  }

  it(`the newest dated set covers every workflow type (${WORKFLOW_TYPES.join(', ')})`, () => {
    const dated = [...new Set(FIXTURES.map((f) => f.name.split('/')[0]!))].filter((set) => /^\d{4}-\d{2}-\d{2}/.test(set)).sort();
    const newest = dated[dated.length - 1];
    assert.ok(newest, `no dated set under ${HISTORIES}: record one with npm run record-histories`);
    const types = new Set(FIXTURES.filter((f) => f.name.startsWith(`${newest}/`)).map((f) => readHistoryFixture(f).workflowType));
    assert.deepEqual([...types].sort(), [...WORKFLOW_TYPES].sort());
  });

  it('no history holds a payload, a secret, a connection string or a URL', () => {
    const leaky = FIXTURES.map((f) => ({ name: f.name, leaks: historyLeaks(readHistoryFixture(f)) })).filter((f) => f.leaks.length > 0);
    assert.deepEqual(leaky, []);
  });

  it('the leak check finds what it looks for (so the test above can fail)', () => {
    const payload = (text: string) => ({ events: [{ input: { payloads: [{ data: Buffer.from(text).toString('base64') }] } }] });
    assert.deepEqual(historyLeaks(payload('{"url":"postgres://u:p@h/db"}')), ['a database connection string']);
    assert.deepEqual(historyLeaks(payload('{"note":"payload-marker"}')), ["an event's payload (the recorder's marker)"]);
    assert.deepEqual(historyLeaks(payload('{"k":"whsec_abc"}')), ['a webhook signing secret']);
    assert.deepEqual(historyLeaks(payload('{"runKey":"webhook-backfill/x@1","batchSize":3}')), []);
  });
});
