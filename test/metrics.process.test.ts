import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { dispatcherWorkflowId } from '../src/shared/delivery';
import { generatedFile } from './helpers/files';
import { TestReceiver, type Action } from './helpers/receiver';
import { CLI, exited, getHarness, resetTables, runCli, statusCounts, uniqueTaskQueue, waitFor, type Harness } from './helpers/harness';
import { freePort } from '../src/dev/local-host';

const SECRET = `whsec_${Buffer.from(`metrics-test-secret-${randomUUID()}`).toString('base64')}`;
const DB_PASSWORD = `db-pass-${randomUUID()}`;


/** The sum of a metric's series whose labels include `labels` (NaN when there is none), from Prometheus text. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const series = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => series[k] === v)) {
      sum += Number(match[3]);
      found = true;
    }
  }
  return found ? sum : Number.NaN;
}

/** Every series of the given metrics, as `name{labels}` -> value, for exact comparison. */
function seriesOf(text: string, names: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (match && names.includes(match[1]!)) out[`${match[1]}${match[2] ?? ''}`] = Number(match[3]);
  }
  return out;
}

const idNumber = (eventId: string) => Number(/_(\d+)$/.exec(eventId)?.[1] ?? -1);

describe('a worker process: Prometheus metrics after a backfill and deliveries, and its structured logs', function () {
  this.timeout(240_000);
  let h: Harness;
  let receiver: TestReceiver;
  let worker: ChildProcess;
  let stderr = '';
  let metricsUrl = '';
  let taskQueue = '';

  const scrape = async () => (await fetch(metricsUrl)).text();
  const cli = (args: string[]) => runCli(args, { GOTONG_TASK_QUEUE: taskQueue });

  before(async () => {
    h = getHarness();
    await resetTables(h.pool);
    await h.env.client.workflow.getHandle(dispatcherWorkflowId(0)).terminate('another test starts its own').catch(() => undefined);
    // Event i: 400 (never retried) when i % 20 == 0, 503 (retried) when i % 20 == 1, else 200.
    receiver = await new TestReceiver([SECRET], (eventId): Action => {
      const i = idNumber(eventId);
      if (i % 20 === 0) return { status: 400 };
      if (i % 20 === 1) return { status: 503 };
      return { status: 200 };
    }).start();
    const port = await freePort();
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
    taskQueue = uniqueTaskQueue('metrics');
    const databaseUrl = new URL(h.databaseUrl);
    // The test cluster trusts local connections, so the password is never checked, only carried.
    databaseUrl.password = DB_PASSWORD;
    worker = spawn(process.execPath, [CLI, 'worker', '--no-migrate', '--dispatchers', '1'], {
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: h.env.address,
        DATABASE_URL: databaseUrl.toString(),
        GOTONG_TASK_QUEUE: taskQueue,
        WEBHOOK_URL: receiver.url,
        WEBHOOK_SECRET: SECRET,
        WEBHOOK_BACKOFF_BASE_MS: '20',
        WEBHOOK_BACKOFF_CAP_MS: '50',
        WEBHOOK_AUTO_PAUSE_AFTER: '25',
        // One auto-pause lasts the whole test, so the count is exact.
        WEBHOOK_AUTO_PAUSE_COOLDOWN_MS: '600000',
        GOTONG_METRICS_PORT: `127.0.0.1:${port}`,
        GOTONG_METRICS_OUTBOX_INTERVAL_MS: '200',
        // The most the worker ever says: nothing it says may carry a secret.
        GOTONG_LOG_LEVEL: 'DEBUG',
        GOTONG_LOG_FORMAT: '',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    worker.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor('the metrics endpoint', async () => (await fetch(metricsUrl).catch(() => null))?.ok === true, 60_000, 100);
    await waitFor('the dispatcher', () => Promise.resolve(/dispatchers (started|running): webhook-dispatcher\/0/.test(stderr)), 60_000, 100);
  });

  after(async () => {
    await h.env.client.workflow.getHandle(dispatcherWorkflowId(0)).terminate('test over').catch(() => undefined);
    if (worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL');
    await exited(worker);
    await receiver.stop();
  });

  // The steps below build on each other, in order: one worker process serves them all.

  it('counts backfill lines and every delivery attempt exactly, and the outbox gauges show what waits', async () => {
    const file = generatedFile(`metrics-${randomUUID()}`, { valid: 100, dupEvery: 10, failEvery: 25 });
    for (const mode of [['--dry-run'], []]) {
      const run = await cli(['webhook-backfill', '--file', file.path, '--max-attempts', '3', '--batch-size', '40', ...mode]);
      assert.equal(run.code, 0, run.stderr);
    }
    // 90 delivered at once; 5 rejected (400) at once; 5 failing (503) three times each.
    await waitFor('deliveries settled', async () => {
      const counts = await statusCounts(h.pool);
      return counts.delivered === 90 && counts.dead_letter === 10;
    }, 120_000, 100);
    assert.equal(receiver.received.length, 110);
    // Durations reach the meter after the counters, in the same flush: once all are there, so are the counts.
    await waitFor('the attempts flushed to the meter', async () => metricValue(await scrape(), 'gotong_delivery_duration_seconds_count') >= 110, 30_000, 200);

    const text = await scrape();
    assert.deepEqual(seriesOf(text, ['gotong_backfill_lines_total', 'gotong_deliveries_total', 'gotong_dead_letters_total']), {
      'gotong_backfill_lines_total{mode="dry_run",result="created"}': 100,
      'gotong_backfill_lines_total{mode="dry_run",result="duplicate"}': 10,
      'gotong_backfill_lines_total{mode="dry_run",result="failed"}': 4,
      'gotong_backfill_lines_total{mode="execute",result="created"}': 100,
      'gotong_backfill_lines_total{mode="execute",result="duplicate"}': 10,
      'gotong_backfill_lines_total{mode="execute",result="failed"}': 4,
      'gotong_deliveries_total{outcome="delivered",status_class="2xx"}': 90,
      'gotong_deliveries_total{outcome="dead_letter",status_class="4xx"}': 5,
      'gotong_deliveries_total{outcome="retrying",status_class="5xx"}': 10,
      'gotong_deliveries_total{outcome="dead_letter",status_class="5xx"}': 5,
      'gotong_dead_letters_total{reason="rejected"}': 5,
      'gotong_dead_letters_total{reason="attempts_exhausted"}': 5,
    });
    assert.equal(metricValue(text, 'gotong_delivery_duration_seconds_count'), 110);
    assert.equal(metricValue(text, 'gotong_delivery_duration_seconds_bucket', { le: '+Inf' }), 110);
    assert.ok(metricValue(text, 'gotong_delivery_duration_seconds_sum') >= 0);
    assert.ok(text.includes('gotong_delivery_duration_seconds_bucket{le="0.005"}'), 'the documented buckets');
    // The SDK's own metrics come from the same endpoint.
    assert.equal(metricValue(text, 'temporal_workflow_completed', { workflow_type: 'webhookBackfill' }), 2);
    assert.ok(metricValue(text, 'temporal_activity_execution_latency_count', { activity_type: 'processBackfillBatch' }) >= 6);

    await waitFor('outbox gauges current', async () => {
      const now = await scrape();
      return metricValue(now, 'gotong_outbox_events', { status: 'dead_letter' }) === 10 && metricValue(now, 'gotong_outbox_due_events') === 0;
    }, 30_000, 200);
    const gauges = seriesOf(await scrape(), ['gotong_outbox_events', 'gotong_outbox_due_events', 'gotong_outbox_oldest_due_age_seconds']);
    assert.deepEqual(gauges, {
      'gotong_outbox_events{status="dead_letter"}': 10,
      'gotong_outbox_events{status="in_flight"}': 0,
      'gotong_outbox_events{status="pending"}': 0,
      'gotong_outbox_events{status="retrying"}': 0,
      gotong_outbox_due_events: 0,
      gotong_outbox_oldest_due_age_seconds: 0,
    });
    assert.equal(metricValue(text, 'gotong_delivery_auto_pauses_total'), Number.NaN, 'a receiver rejecting a share never paused delivery');
  });

  it('counts replay resets, and the replayed deliveries, once the receiver is fixed', async () => {
    receiver.behaviour = () => ({ status: 200 });
    const replay = await cli(['webhook-replay-dlq', '--limit', '100']);
    assert.equal(replay.code, 0, replay.stderr);
    await waitFor('replayed events delivered', async () => (await statusCounts(h.pool)).delivered === 100, 120_000, 100);
    await waitFor('the attempts flushed', async () => metricValue(await scrape(), 'gotong_delivery_duration_seconds_count') >= 120, 30_000, 200);
    const text = await scrape();
    assert.equal(metricValue(text, 'gotong_replay_resets_total'), 10);
    assert.equal(metricValue(text, 'gotong_deliveries_total', { outcome: 'delivered' }), 100);
    assert.equal(metricValue(text, 'gotong_deliveries_total'), 120);
    assert.equal(metricValue(text, 'gotong_delivery_duration_seconds_count'), 120);
    assert.equal(metricValue(text, 'gotong_dead_letters_total'), 10, 'no new dead letters');
  });

  it('counts the auto-pause when the receiver goes down', async () => {
    receiver.behaviour = () => ({ status: 503 });
    const file = generatedFile(`metrics-down-${randomUUID()}`, { valid: 60 });
    const run = await cli(['webhook-backfill', '--file', file.path, '--max-attempts', '3']);
    assert.equal(run.code, 0, run.stderr);
    await waitFor('the auto-pause counted', async () => metricValue(await scrape(), 'gotong_delivery_auto_pauses_total') >= 1, 60_000, 200);
    const status = await runCli(['status', dispatcherWorkflowId(0), '--json']);
    assert.equal((JSON.parse(status.stdout) as { live: { pause_reason: string } }).live.pause_reason, 'receiver-failing');
    assert.equal(metricValue(await scrape(), 'gotong_delivery_auto_pauses_total', { workflowType: 'webhookDispatcher', shard: '0' }), 1);
  });

  it('logs JSON lines on a stderr that is not a terminal, never a secret or the database password', async () => {
    worker.kill('SIGTERM');
    await exited(worker);
    assert.equal(worker.exitCode, 0, stderr.slice(-2000));
    const lines = stderr.trimEnd().split('\n');
    assert.ok(lines.length > 10, `a DEBUG worker has things to say (${lines.length} lines)`);
    const entries = lines.map((line) => {
      try {
        return JSON.parse(line) as { time: string; level: string; source: string; msg: string };
      } catch {
        throw new assert.AssertionError({ message: `not a JSON line: ${line}` });
      }
    });
    for (const e of entries) {
      assert.match(e.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(['trace', 'debug', 'info', 'warn', 'error'].includes(e.level), e.level);
      assert.equal(typeof e.msg, 'string');
      assert.ok(['gotong', 'worker', 'core', 'activity', 'workflow'].includes(e.source), e.source);
    }
    const messages = entries.filter((e) => e.source === 'gotong').map((e) => e.msg);
    assert.ok(messages.some((m) => m.startsWith(`polling task queue '${taskQueue}'`)), messages.join('\n'));
    assert.ok(messages.includes(`serving Prometheus metrics on ${metricsUrl}`), messages.join('\n'));
    assert.ok(messages.includes('worker stopped'));
    assert.ok(entries.some((e) => e.source === 'core'), "the SDK core's lines come through the same logger");
    for (const secret of [SECRET, SECRET.slice('whsec_'.length), DB_PASSWORD]) {
      assert.ok(!stderr.includes(secret), 'a secret reached the log');
    }
    assert.ok(!/Activity not found/.test(entries.filter((e) => e.level === 'warn' || e.level === 'error').map((e) => e.msg).join('\n')));
  });
});
