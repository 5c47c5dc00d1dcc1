import assert from 'node:assert/strict';
import { HealthTracker } from '../src/delivery/health';
import { Pacer } from '../src/delivery/pacer';
import { configPatchProblems, DEFAULT_DISPATCHER_OPTIONS, resolveDispatcherOptions, settingProblems } from '../src/shared/delivery';

describe('delivery parts (pure logic)', () => {
  describe('HealthTracker', () => {
    const fresh = { attempts: 1, replay_count: 0 };
    const retry = { attempts: 2, replay_count: 0 };
    const replayed = { attempts: 1, replay_count: 1 };

    it('counts only first attempts of events never sent before', () => {
      assert.equal(HealthTracker.isSample(fresh), true);
      assert.equal(HealthTracker.isSample(retry), false);
      assert.equal(HealthTracker.isSample(replayed), false);
    });

    it('a receiver down: failed first attempts in a row reach the limit, counting the streak the pass started with', () => {
      const health = new HealthTracker(7, 10);
      for (let i = 0; i < 2; i++) health.record(true, false);
      assert.equal(health.receiverDown, false);
      health.record(true, false);
      assert.equal(health.receiverDown, true);
      assert.equal(health.trailingFailures, 3);
      assert.equal(health.samples, 3);
    });

    it('retries failing any number of times never make it look down; any success ends a streak', () => {
      const health = new HealthTracker(0, 3);
      for (let i = 0; i < 1000; i++) health.record(false, false);
      assert.equal(health.receiverDown, false);
      health.record(true, false);
      health.record(true, false);
      health.record(false, true); // a retry that succeeds: the receiver answers
      health.record(true, false);
      assert.equal(health.receiverDown, false);
      assert.equal(health.trailingFailures, 1);
      assert.equal(health.anySuccess, true);
    });

    it('after a success in the pass, the streak it started with no longer counts', () => {
      const health = new HealthTracker(9, 10);
      health.record(true, true);
      health.record(true, false);
      assert.equal(health.receiverDown, false);
    });
  });

  describe('Pacer', () => {
    it('continues from the previous pass: the first slot is the one the last pass left', async () => {
      const from = Date.now() + 150;
      const pacer = new Pacer(100, from, Date.now());
      await pacer.wait(() => false);
      assert.ok(Date.now() >= from, 'waited for the slot the previous pass left');
      assert.ok(pacer.nextSlotAt >= from + 100);
    });

    it('lets callers through one interval apart, whatever happened before (no catching up)', async () => {
      const pacer = new Pacer(30, Date.now() - 10_000, Date.now());
      const started: number[] = [];
      await Promise.all(Array.from({ length: 4 }, () => pacer.wait(() => false).then(() => started.push(Date.now()))));
      for (let i = 1; i < started.length; i++) assert.ok(started[i]! - started[i - 1]! >= 29, `gap ${started[i]! - started[i - 1]!} ms`);
    });

    it('a stopped pass uses no slot', async () => {
      const pacer = new Pacer(1000, 5_000, 0);
      await pacer.wait(() => true);
      assert.equal(pacer.nextSlotAt, 5_000);
    });

    it('a pass stopped while it waits for a distant slot stops waiting within a second, using no slot', async function () {
      // At the lowest rate (0.01/s) a slot is 100 s away: a worker asked to stop must not wait for it.
      this.timeout(5_000);
      const slot = Date.now() + 100_000;
      const pacer = new Pacer(100_000, slot, Date.now());
      let stopped = false;
      const waiting = pacer.wait(() => stopped);
      // Once its turn has begun, it is asleep until the slot.
      await new Promise((resolve) => setImmediate(resolve));
      stopped = true;
      await waiting;
      assert.equal(pacer.nextSlotAt, slot);
    });

    it('counts the slots that start before a time, after those already promised', () => {
      const pacer = new Pacer(1000, 1_000, 0);
      assert.equal(pacer.slotsBefore(1_000, 0), 0);
      assert.equal(pacer.slotsBefore(1_001, 0), 1);
      assert.equal(pacer.slotsBefore(3_500, 0), 3);
      assert.equal(pacer.slotsBefore(3_500, 0, 2), 1);
    });
  });

  describe('dispatcher settings', () => {
    it('fills in defaults and says whether anything was missing', () => {
      assert.deepEqual(resolveDispatcherOptions({ concurrency: 8 }), { options: { ...DEFAULT_DISPATCHER_OPTIONS, concurrency: 8 }, complete: false });
      assert.equal(resolveDispatcherOptions(DEFAULT_DISPATCHER_OPTIONS).complete, true);
    });

    it('refuses values out of bounds, a base above the cap, and settings that are fixed for a run', () => {
      assert.deepEqual(settingProblems(DEFAULT_DISPATCHER_OPTIONS), []);
      assert.deepEqual(settingProblems({ ratePerSecond: 0 }), []);
      assert.match(settingProblems({ ratePerSecond: 0.001 })[0]!, /--rate must be between 0.01 and 10000 \(or 0: no limit\)/);
      assert.match(settingProblems({ batchSize: 1.5 })[0]!, /--batch-size must be a whole number/);
      assert.match(configPatchProblems({ backoffBaseMs: 90_000 }, DEFAULT_DISPATCHER_OPTIONS).join(), /--backoff-base \(90000 ms\) must not exceed --backoff-cap \(60000 ms\)/);
      assert.match(configPatchProblems({ passesPerRun: 5 }, DEFAULT_DISPATCHER_OPTIONS).join(), /passesPerRun is fixed/);
      assert.match(configPatchProblems({ shards: 0 }, DEFAULT_DISPATCHER_OPTIONS).join(), /--shards must be/);
      assert.deepEqual(configPatchProblems({ shards: 3, ratePerSecond: 2 }, DEFAULT_DISPATCHER_OPTIONS), []);
    });
  });
});
