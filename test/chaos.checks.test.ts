import assert from 'node:assert/strict';
import { checkRows } from './chaos/checks';
import { getHarness, resetTables, seedEvents } from './helpers/harness';
import { TestReceiver, type Received } from './helpers/receiver';

function receipt(eventId: string, signed = true): Received {
  const secret = signed ? 's' : null;
  return { eventId, attempt: 1, at: 0, body: '', bytes: 0, headers: {}, grVerifiedWith: secret, standardVerifiedWith: secret };
}

// The chaos trials pass only if these counts are right: each kind of damage they look for, made on purpose.
describe('chaos checks: what a trial counts as lost, doubled or left behind', () => {
  it('a clean drain counts nothing; each kind of damage is counted or named', async () => {
    const { pool } = getHarness();
    await resetTables(pool);
    const receiver = new TestReceiver(['s']);
    const ids = await seedEvents(pool, 'chk', 4);
    await pool.query(`UPDATE webhook_outbox SET status = 'delivered', next_attempt_at = NULL`);
    receiver.received.push(...ids.map((id) => receipt(id)));
    assert.deepEqual(await checkRows({ pool, receiver }, ids), { lost: 0, doubled: 0, resent: 0, problems: [] });

    // chk_0 sent twice (allowed), chk_1 never received signed, chk_2 left leased in flight, chk_3 replayed twice.
    receiver.received.splice(1, 1, receipt('chk_1', false));
    receiver.received.push(receipt('chk_0'));
    await pool.query(
      `UPDATE webhook_outbox SET status = 'in_flight', lease_owner = 'gone', lease_expires_at = now(), attempts = 1 WHERE event_id = 'chk_2'`,
    );
    await pool.query(
      `INSERT INTO webhook_replay_audit (run_key, event_id, previous_status, previous_attempts)
       VALUES ('a', 'chk_3', 'dead_letter', 5), ('b', 'chk_3', 'dead_letter', 5)`,
    );
    await seedEvents(pool, 'extra', 1);
    const check = await checkRows({ pool, receiver }, ids);
    assert.deepEqual({ lost: check.lost, doubled: check.doubled, resent: check.resent }, { lost: 2, doubled: 1, resent: 1 });
    assert.deepEqual(check.problems, [
      '1 requests failed signature verification',
      '1 outbox rows more than the input has events',
      '1 rows still in flight or leased after the drain',
      'attempts counted 1, attempt log rows 0',
    ]);
  });
});
