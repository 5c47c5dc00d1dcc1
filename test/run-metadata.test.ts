import assert from 'node:assert/strict';
import { backfillMetadata, grouped, redactedCommand, replayMetadata } from '../src/shared/run-metadata';

describe('run metadata for the Temporal UI (pure)', () => {
  it('the command line keeps what an operator typed, and redacts anything like a secret or a connection string', () => {
    assert.equal(redactedCommand(['webhook-backfill', '--file', 'tmp/events.ndjson', '--dry-run']), 'gotong-worker webhook-backfill --file tmp/events.ndjson --dry-run');
    assert.equal(
      redactedCommand(['worker', '--database-url', 'postgres://u:pw@db/x', '--webhook-secret=whsec_abc', '--api-key', 'k', '--reason', "it's ok"]),
      "gotong-worker worker --database-url <redacted> --webhook-secret=<redacted> --api-key <redacted> --reason 'it'\\''s ok'",
    );
    assert.equal(redactedCommand(['status', 'postgresql://a@b/c']), 'gotong-worker status <redacted>');
  });

  it('summaries are one line; details hold the options, never the input rows', () => {
    const m = backfillMetadata({ runKey: 'k', path: '/data/a\nb.ndjson', dryRun: true, maxAttempts: 5, batchSize: 100 }, 'gotong-worker webhook-backfill');
    assert.equal(m.staticSummary, 'Backfill a b.ndjson into the outbox (dry run)');
    assert.doesNotMatch(m.staticSummary, /\n/);
    assert.match(m.staticDetails, /- \*\*file\*\*: `\/data\/a b\.ndjson`/);
    const r = replayMetadata({ runKey: 'k', filter: { status: 'dead_letter', eventTypes: ['a', 'b'], statusClass: 5 }, limit: 12000, dryRun: false, batchSize: 10, ratePerSecond: 0 });
    assert.equal(r.staticSummary, 'Replay up to 12,000 dead_letter, type a,b, status 5xx rows (execute)');
    assert.deepEqual(r.typedSearchAttributes.map((p) => [p.key.name, p.value]), [['GotongKind', 'replay'], ['GotongDryRun', false], ['GotongOutcome', 'running']]);
  });

  it('numbers are grouped by thousands without a locale', () => {
    assert.deepEqual([0, 999, 1000, 4194304, -12345].map(grouped), ['0', '999', '1,000', '4,194,304', '-12,345']);
  });
});
