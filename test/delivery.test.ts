import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import type { DispatcherOptions, DispatcherStats } from '../src/shared/delivery';
import { webhookDispatcher } from '../src/workflows/dispatcher';
import { TestReceiver, type Action } from './helpers/receiver';
import {
  getHarness,
  resetTables,
  seedEvents,
  statusCounts,
  uniqueTaskQueue,
  waitFor,
  withWorker,
  type Harness,
} from './helpers/harness';

const SECRET = 'whsec_' + Buffer.from('test-secret-for-signing-0123456789').toString('base64');
const OLD_SECRET = 'old-plain-secret';
const FAST: Partial<DispatcherOptions> = {
  batchSize: 50,
  concurrency: 16,
  requestTimeoutMs: 2_000,
  backoffBaseMs: 50,
  backoffCapMs: 200,
  maxIdleMs: 200,
};

interface AttemptRow {
  attempt_number: number;
  status_code: number | null;
  error: string | null;
  trigger: string;
  started_at: Date;
  request_body_sha256: string;
  response_body_sha256: string | null;
}

describe('webhookDispatcher: delivery to a real receiver on loopback', function () {
  this.timeout(120_000);
  let h: Harness;
  let receiver: TestReceiver;
  let taskQueue: string;
  let dispatchers: WorkflowHandle[] = [];

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('delivery');
    receiver = await new TestReceiver([SECRET]).start();
    dispatchers = [];
  });
  afterEach(async () => {
    for (const handle of dispatchers) await handle.terminate('test over').catch(() => undefined);
    await receiver.stop();
  });

  async function startDispatcher(options: Partial<DispatcherOptions> = {}) {
    const handle = await h.env.client.workflow.start(webhookDispatcher, {
      taskQueue,
      workflowId: `webhook-dispatcher/test-${randomUUID()}`,
      args: [{ shard: 0, shards: 1, options: { ...FAST, ...options } }],
    });
    dispatchers.push(handle);
    return handle;
  }
  const deliver = <T>(fn: () => Promise<T>, previousSecret?: string) =>
    withWorker(taskQueue, fn, { url: receiver.url, secret: SECRET, previousSecret });

  async function attemptsOf(eventId: string): Promise<AttemptRow[]> {
    const { rows } = await h.pool.query<AttemptRow>(
      'SELECT * FROM webhook_delivery_attempts WHERE event_id = $1 ORDER BY attempt_number',
      [eventId],
    );
    return rows;
  }
  async function rowOf(eventId: string) {
    const { rows } = await h.pool.query<{ status: string; attempts: number; lease_owner: string | null; last_status_code: number | null }>(
      'SELECT status, attempts, lease_owner, last_status_code FROM webhook_outbox WHERE event_id = $1',
      [eventId],
    );
    return rows[0]!;
  }
  const settled = async () => {
    const counts = await statusCounts(h.pool);
    return !counts.pending && !counts.retrying && !counts.in_flight;
  };

  it('delivers with both signatures, X-Request-ID and the stored payload, one attempt each', async () => {
    const ids = await seedEvents(h.pool, 'ok', 20);
    await deliver(async () => {
      await startDispatcher();
      await waitFor('all delivered', settled);
    });
    assert.deepEqual(await statusCounts(h.pool), { delivered: 20 });
    assert.equal(receiver.received.length, 20);
    for (const r of receiver.received) {
      assert.equal(r.grVerifiedWith, SECRET);
      assert.equal(r.standardVerifiedWith, SECRET);
      assert.equal(r.headers['content-type'], 'application/json');
      assert.equal(r.headers['x-request-id'], `req_${r.eventId}`);
      assert.equal((JSON.parse(r.body) as { event_id: string }).event_id, r.eventId);
    }
    const attempts = await attemptsOf(ids[0]!);
    assert.equal(attempts.length, 1);
    assert.equal(attempts[0]!.status_code, 200);
    assert.equal(attempts[0]!.trigger, 'scheduled');
    assert.match(attempts[0]!.request_body_sha256, /^[0-9a-f]{64}$/);
  });

  const scripted: Array<[string, (attempt: number) => Action, string, number[], RegExp | null]> = [
    ['500 then 200: retried, then delivered', (a) => ({ status: a === 1 ? 500 : 200 }), 'delivered', [500, 200], null],
    ['400: terminal, dead-lettered after one attempt', () => ({ status: 400 }), 'dead_letter', [400], null],
    ['408 then 200: retried', (a) => ({ status: a === 1 ? 408 : 200 }), 'delivered', [408, 200], null],
    ['a hanging receiver: timeout, retried', (a) => (a === 1 ? 'hang' : { status: 200 }), 'delivered', [NaN, 200], /timeout after 500 ms/],
    ['a connection reset: retried', (a) => (a === 1 ? 'reset' : { status: 200 }), 'delivered', [NaN, 200], /socket|ECONNRESET|closed/i],
    ['a 301 redirect: not followed, retried', (a) => (a === 1 ? { status: 301, headers: { location: '/elsewhere' } } : { status: 200 }), 'delivered', [301, 200], /HTTP 301 redirect, not followed/],
  ];
  for (const [what, behaviour, status, codes, firstError] of scripted) {
    it(what, async () => {
      receiver.behaviour = (_id, attempt) => behaviour(attempt);
      const [id] = await seedEvents(h.pool, 'scripted', 1);
      await deliver(async () => {
        await startDispatcher({ requestTimeoutMs: 500 });
        await waitFor(status, settled);
      });
      const row = await rowOf(id!);
      assert.equal(row.status, status);
      assert.equal(row.attempts, codes.length);
      assert.equal(row.lease_owner, null);
      const attempts = await attemptsOf(id!);
      assert.deepEqual(attempts.map((a) => a.status_code ?? NaN), codes);
      assert.deepEqual(attempts.map((a) => a.attempt_number), codes.map((_, i) => i + 1));
      if (firstError) assert.match(String(attempts[0]!.error), firstError);
    });
  }

  it('429 with Retry-After: the next attempt waits as asked (within the cap)', async () => {
    receiver.behaviour = (_id, attempt) => (attempt === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 });
    const [id] = await seedEvents(h.pool, 'ra', 1);
    await deliver(async () => {
      await startDispatcher({ backoffCapMs: 5_000 });
      await waitFor('delivered', settled);
    });
    const attempts = await attemptsOf(id!);
    assert.deepEqual(attempts.map((a) => a.status_code), [429, 200]);
    const gap = attempts[1]!.started_at.getTime() - attempts[0]!.started_at.getTime();
    assert.ok(gap >= 1_000, `second attempt ${gap} ms after the first`);
  });

  it('an event that always fails is dead-lettered after exactly max_attempts attempts', async () => {
    receiver.behaviour = () => ({ status: 503 });
    const ids = await seedEvents(h.pool, 'dlq', 5, 4);
    await deliver(async () => {
      await startDispatcher({ autoPauseAfter: 1000 });
      await waitFor('dead-lettered', settled);
    });
    assert.deepEqual(await statusCounts(h.pool), { dead_letter: 5 });
    for (const id of ids) {
      assert.equal((await attemptsOf(id)).length, 4);
      assert.equal((await rowOf(id)).last_status_code, 503);
    }
  });

  it('signs with both secrets while one is rotated out', async () => {
    await receiver.stop();
    receiver = await new TestReceiver([OLD_SECRET]).start(); // a receiver still on the old secret
    await seedEvents(h.pool, 'rotate', 3);
    await deliver(async () => {
      await startDispatcher();
      await waitFor('delivered', settled);
    }, OLD_SECRET);
    assert.deepEqual(await statusCounts(h.pool), { delivered: 3 });
    assert.ok(receiver.received.every((r) => r.grVerifiedWith === OLD_SECRET && r.standardVerifiedWith === OLD_SECRET));
    assert.ok(receiver.received.every((r) => String(r.headers['webhook-signature']).split(' ').length === 2));
  });

  it('pause stops new deliveries, resume continues; stats report what happened', async () => {
    await deliver(async () => {
      const handle = await startDispatcher();
      await handle.signal('pause');
      await waitFor('paused', async () => (await handle.query<DispatcherStats>('stats')).paused);
      await seedEvents(h.pool, 'paused', 30);
      await new Promise((r) => setTimeout(r, 1_500));
      assert.equal(receiver.received.length, 0, 'nothing delivered while paused');
      const stats = await handle.query<DispatcherStats>('stats');
      assert.equal(stats.pauseReason, 'operator');
      await handle.signal('resume');
      await waitFor('delivered', settled);
      await waitFor('stats caught up', async () => (await handle.query<DispatcherStats>('stats')).delivered === 30);
      const after = await handle.query<DispatcherStats>('stats');
      assert.equal(after.paused, false);
      assert.equal(after.backlog, 0);
    });
    assert.equal(receiver.received.length, 30);
  });

  it('pauses itself after N consecutive failures, and a resume signal starts it again', async () => {
    let healthy = false;
    receiver.behaviour = () => (healthy ? { status: 200 } : { status: 502 });
    await seedEvents(h.pool, 'down', 40, 100);
    await deliver(async () => {
      const handle = await startDispatcher({ autoPauseAfter: 10, autoPauseCooldownMs: 60_000, concurrency: 1, batchSize: 5 });
      await waitFor('auto-paused', async () => (await handle.query<DispatcherStats>('stats')).pauseReason === 'receiver-failing');
      const seen = receiver.received.length;
      assert.ok(seen >= 10 && seen < 20, `${seen} requests before pausing`);
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal(receiver.received.length, seen, 'no requests while paused');
      healthy = true;
      await handle.signal('resume');
      await waitFor('delivered', settled);
    });
    assert.deepEqual(await statusCounts(h.pool), { delivered: 40 });
  });

  it('holds the deliveries-per-second limit within 10%', async () => {
    await seedEvents(h.pool, 'rate', 100);
    const rate = 25;
    await deliver(async () => {
      await startDispatcher({ ratePerSecond: rate, batchSize: 500 });
      await waitFor('delivered', settled, 20_000);
    });
    const times = receiver.received.map((r) => r.at).sort((a, b) => a - b);
    const seconds = (times.at(-1)! - times[0]!) / 1000;
    const observed = (times.length - 1) / seconds;
    assert.ok(Math.abs(observed - rate) / rate <= 0.1, `observed ${observed.toFixed(1)}/s against a limit of ${rate}/s`);
    // and never a burst above it: any one-second window holds at most rate + 1 starts
    for (let i = 0; i < times.length; i++) {
      const inWindow = times.filter((t) => t >= times[i]! && t < times[i]! + 1000).length;
      assert.ok(inWindow <= rate + 1, `${inWindow} deliveries within one second`);
    }
  });
});
