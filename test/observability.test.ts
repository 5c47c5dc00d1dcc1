import assert from 'node:assert/strict';
import type { MetricCounter, MetricGauge, MetricHistogram, MetricMeter, MetricTags } from '@temporalio/common';
import { jsonLine, snakeKeys } from '../src/client/json';
import { listFilterFrom, visibilityQuery } from '../src/client/list';
import { ConfigError } from '../src/config';
import { logFormatFrom, makeRedactor, OperatorLogger, reclassify, secretsFrom } from '../src/logging';
import { statusClass, WorkerMetrics } from '../src/metrics';
import { metricsAddressFrom, workerObservabilityFrom } from '../src/metrics/settings';

/** A meter that remembers what reached it, to check what WorkerMetrics hands over and when. */
class RecordingMeter implements MetricMeter {
  readonly added: Array<{ name: string; value: number; tags: MetricTags }> = [];
  readonly recorded: Array<{ name: string; value: number }> = [];
  createCounter(name: string): MetricCounter {
    return { name, kind: 'counter', valueType: 'int', add: (value, tags = {}) => this.added.push({ name, value, tags }), withTags: () => assert.fail() };
  }
  createHistogram(name: string): MetricHistogram {
    return { name, kind: 'histogram', valueType: 'float', record: (value) => this.recorded.push({ name, value }), withTags: () => assert.fail() };
  }
  createGauge(name: string): MetricGauge {
    return { name, kind: 'gauge', valueType: 'int', set: () => undefined, withTags: () => assert.fail() };
  }
  withTags(): MetricMeter {
    return this;
  }
}

describe('observability: pure parts', () => {
  describe('WorkerMetrics', () => {
    it('sums counter increments in memory and hands them over on flush, durations after the counts', () => {
      const meter = new RecordingMeter();
      const metrics = new WorkerMetrics(meter, 3_600_000);
      try {
        for (let i = 0; i < 5; i++) metrics.delivery.recordAttempt('delivered', 204, 12);
        metrics.delivery.recordAttempt('retrying', 503, 1500);
        metrics.delivery.recordAttempt('dead_letter', 503, 7);
        metrics.delivery.recordAttempt('dead_letter', 410, 3);
        metrics.delivery.recordAttempt('retrying', null, 10_000);
        metrics.recordBackfill({ created: 7, duplicates: 2, failed: 1 }, false);
        metrics.recordReplayResets(4);
        assert.deepEqual(meter.added, [], 'nothing crosses into the meter per attempt');
        metrics.flush();
        const byName = (name: string) => meter.added.filter((a) => a.name === name).map((a) => [a.tags, a.value]);
        assert.deepEqual(byName('gotong_deliveries_total'), [
          [{ outcome: 'delivered', status_class: '2xx' }, 5],
          [{ outcome: 'retrying', status_class: '5xx' }, 1],
          [{ outcome: 'dead_letter', status_class: '5xx' }, 1],
          [{ outcome: 'dead_letter', status_class: '4xx' }, 1],
          [{ outcome: 'retrying', status_class: 'none' }, 1],
        ]);
        assert.deepEqual(byName('gotong_dead_letters_total'), [
          [{ reason: 'attempts_exhausted' }, 1],
          [{ reason: 'rejected' }, 1],
        ]);
        assert.deepEqual(byName('gotong_backfill_lines_total'), [
          [{ result: 'created', mode: 'execute' }, 7],
          [{ result: 'duplicate', mode: 'execute' }, 2],
          [{ result: 'failed', mode: 'execute' }, 1],
        ]);
        assert.deepEqual(byName('gotong_replay_resets_total'), [[{}, 4]]);
        assert.deepEqual(meter.recorded.map((r) => r.value), [0.012, 0.012, 0.012, 0.012, 0.012, 1.5, 0.007, 0.003, 10]);
        const count = meter.added.length;
        metrics.flush();
        assert.equal(meter.added.length, count, 'a flush with nothing new adds nothing');
      } finally {
        metrics.close();
      }
    });

    it('names status classes, and none when no response came back', () => {
      assert.deepEqual([200, 302, 429, 503, null].map(statusClass), ['2xx', '3xx', '4xx', '5xx', 'none']);
    });
  });

  describe('metrics settings', () => {
    it('takes a port, or an IP address and port', () => {
      assert.equal(metricsAddressFrom('9464', 'x'), '0.0.0.0:9464');
      assert.equal(metricsAddressFrom(' 127.0.0.1:9464 ', 'x'), '127.0.0.1:9464');
      assert.equal(metricsAddressFrom('[::1]:9464', 'x'), '[::1]:9464');
      for (const bad of ['localhost:9464', '0', '70000', 'abc', '1.2.3:9', '']) {
        assert.throws(() => metricsAddressFrom(bad, '--metrics-port'), (err: unknown) => err instanceof ConfigError && /--metrics-port/.test(String(err)));
      }
    });

    it('is off unless asked for; the flag wins over the environment', () => {
      assert.equal(workerObservabilityFrom({}, undefined).metricsAddress, undefined);
      assert.equal(workerObservabilityFrom({ GOTONG_METRICS_PORT: '9100' }, undefined).metricsAddress, '0.0.0.0:9100');
      assert.equal(workerObservabilityFrom({ GOTONG_METRICS_PORT: '9100' }, '127.0.0.1:9200').metricsAddress, '127.0.0.1:9200');
      assert.equal(workerObservabilityFrom({ GOTONG_METRICS_OUTBOX_INTERVAL_MS: '500' }, undefined).outboxRefreshMs, 500);
      assert.throws(() => workerObservabilityFrom({ GOTONG_METRICS_OUTBOX_INTERVAL_MS: '5' }, undefined), /GOTONG_METRICS_OUTBOX_INTERVAL_MS/);
    });
  });

  describe('logging', () => {
    it('demotes the SDK core warnings that are expected, never raises a level', () => {
      const late = 'Activity not found on completion. This may happen if the activity has already been cancelled but completed anyway.';
      assert.equal(reclassify('WARN', late).level, 'INFO');
      assert.match(reclassify('WARN', late).explanation!, /nothing is lost or counted twice/);
      assert.equal(reclassify('DEBUG', 'Activity not found when recording heartbeat').level, 'DEBUG');
      assert.equal(reclassify('INFO', 'asset workflow-bundle-0d57.js 1.68 MiB [emitted]').level, 'DEBUG');
      assert.deepEqual(reclassify('WARN', 'Activity failed'), { level: 'WARN' });
    });

    it('masks secrets raw, as JSON escapes them and URL-encoded, and any password in a URL', () => {
      const redact = makeRedactor(['s3cr3t"with\\quotes', 'whsec_QUJDRA==']);
      assert.equal(redact('key s3cr3t"with\\quotes here'), 'key *** here');
      assert.equal(redact(JSON.stringify({ k: 's3cr3t"with\\quotes' })), '{"k":"***"}');
      assert.equal(redact('sig whsec_QUJDRA%3D%3D'), 'sig ***');
      assert.equal(redact('at postgres://app:hunter22@db:5432/x and amqp://u:p@h'), 'at postgres://app:***@db:5432/x and amqp://u:***@h');
    });

    it('finds secrets in the environment by name, and the passwords in connection URLs', () => {
      const secrets = secretsFrom({
        WEBHOOK_SECRET: 'signing-secret',
        WEBHOOK_PREVIOUS_SECRET: 'old-signing-secret',
        TEMPORAL_API_KEY: 'api-key-value',
        DATABASE_URL: 'postgres://app:p%40ss-word@db/x',
        WEBHOOK_URL: 'https://hooks.example/in?token=tok-123',
        PATH: '/usr/bin',
        SHORT_SECRET: 'abc',
      });
      assert.deepEqual(secrets.sort(), ['api-key-value', 'old-signing-secret', 'p@ss-word', 'signing-secret', 'token=tok-123'].sort());
    });

    it('writes one JSON object a line off a terminal, readable escaped lines on one', () => {
      const lines: string[] = [];
      const json = new OperatorLogger({ level: 'WARN', format: 'json', secrets: ['hunter2-secret'], write: (l) => lines.push(l) });
      json.info('not shown at WARN');
      json.warn('receiver said \u001b[2J hunter2-secret', { sdkComponent: 'activity', error: new Error('boom\u202e'), n: 10n });
      json.warn('Activity not found on completion. This may happen', { sdkComponent: 'core' });
      assert.equal(lines.length, 1);
      const entry = JSON.parse(lines[0]!) as Record<string, unknown> & { error: { message: string; stack: string } };
      assert.equal(entry.level, 'warn');
      assert.equal(entry.source, 'activity');
      assert.equal(entry.msg, 'receiver said \u001b[2J ***');
      assert.equal(entry.error.message, 'boom\u202e');
      assert.equal(entry.n, '10');
      assert.ok(!lines[0]!.includes('\u202e'), 'bidi controls escaped in the JSON text');

      const text: string[] = [];
      const tty = new OperatorLogger({ level: 'INFO', format: 'text', secrets: [], write: (l) => text.push(l) });
      tty.info('polling \u001b]0;x\u0007', { taskQueue: 'q' });
      assert.match(text[0]!, /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO {2}\[gotong\] polling \\x1b\]0;x\\x07 taskQueue=q$/);
      tty.error('failed', { error: new Error('bad') });
      assert.match(text[1]!, /^\S+ ERROR \[gotong\] failed error=\{ name: 'Error', message: 'bad' \}\n {4}at /);
    });

    it('picks JSON unless stderr is a terminal, or what GOTONG_LOG_FORMAT says', () => {
      assert.equal(logFormatFrom({}, false), 'json');
      assert.equal(logFormatFrom({}, true), 'text');
      assert.equal(logFormatFrom({ GOTONG_LOG_FORMAT: 'json' }, true), 'json');
      assert.equal(logFormatFrom({ GOTONG_LOG_FORMAT: 'TEXT' }, false), 'text');
    });
  });

  describe('JSON for operators', () => {
    it('turns keys to snake_case, except the keys of maps that are data', () => {
      assert.deepEqual(
        snakeKeys({ dryRun: true, oldestDueAgeMs: 1, steps: [{ workflowId: 'w' }], preview: { byEventType: { userSignedUp: 2 }, sampleIds: ['a'] } }),
        { dry_run: true, oldest_due_age_ms: 1, steps: [{ workflow_id: 'w' }], preview: { by_event_type: { userSignedUp: 2 }, sample_ids: ['a'] } },
      );
    });

    it('escapes what a terminal would act on and JSON.stringify leaves raw', () => {
      const line = jsonLine({ t: 'a\u202eb\u2028c\u0085d\u001b' });
      assert.equal(line, '{"t":"a\\u202eb\\u2028c\\u0085d\\u001b"}');
      assert.deepEqual(JSON.parse(line), { t: 'a\u202eb\u2028c\u0085d\u001b' });
    });
  });

  describe('list filters', () => {
    it('build one visibility query per kind from WorkflowType, ExecutionStatus and WorkflowId', () => {
      const all = listFilterFrom({ kind: [], state: [] });
      assert.deepEqual(all.kinds, ['backfill', 'replay', 'runbook', 'dispatcher']);
      assert.equal(visibilityQuery('backfill', all), "WorkflowType = 'webhookBackfill' AND ExecutionStatus != 'ContinuedAsNew'");
      const some = listFilterFrom({ kind: ['runbook', 'replay,runbook'], state: ['running,Failed', 'cancelled'], idPrefix: 'webhook-runbook/x' });
      assert.deepEqual(some.kinds, ['runbook', 'replay']);
      assert.equal(
        visibilityQuery('runbook', some),
        "WorkflowType = 'webhookRecoveryRunbook' AND ExecutionStatus IN ('Running', 'Failed', 'Canceled') AND WorkflowId STARTS_WITH 'webhook-runbook/x'",
      );
    });
    it('--awaiting-approval lists running runbooks only: one terminated at its gate keeps the outcome it last wrote', () => {
      assert.equal(
        visibilityQuery('runbook', listFilterFrom({ kind: ['runbook'], state: [], awaitingApproval: true })),
        "WorkflowType = 'webhookRecoveryRunbook' AND ExecutionStatus = 'Running' AND GotongOutcome = 'awaiting-approval'",
      );
    });
  });
});
