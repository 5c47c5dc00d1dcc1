import type { ChaosStack } from './stack';

/** What the database and the receiver hold once a trial's events are drained. */
export interface RowCheck {
  /** Events that are not delivered, or that the receiver never got with valid signatures. */
  lost: number;
  /** Rows present more than once: outbox rows per event_id, replay audit rows per event. */
  doubled: number;
  /** Events the receiver got more than once (at-least-once delivery allows it: shown, not a failure). */
  resent: number;
  problems: string[];
}

type Parts = Pick<ChaosStack, 'pool' | 'receiver'>;

async function one(stack: Parts, sql: string): Promise<number> {
  const { rows } = await stack.pool.query<{ n: string | null }>(sql);
  return Number(rows[0]!.n ?? 0);
}

/** Counts, for `ids` (every event the trial must end with), what was lost, doubled or left behind. */
export async function checkRows(stack: Parts, ids: string[]): Promise<RowCheck> {
  const problems: string[] = [];
  const doubled =
    (await one(stack, 'SELECT count(*) - count(DISTINCT event_id) AS n FROM webhook_outbox')) +
    (await one(stack, 'SELECT count(*) - count(DISTINCT event_id) AS n FROM webhook_replay_audit'));

  const { rows } = await stack.pool.query<{ event_id: string }>(`SELECT event_id FROM webhook_outbox WHERE status = 'delivered'`);
  const delivered = new Set(rows.map((r) => r.event_id));
  const verified = new Map<string, number>();
  let unsigned = 0;
  for (const r of stack.receiver.received) {
    if (r.grVerifiedWith && r.standardVerifiedWith) verified.set(r.eventId, (verified.get(r.eventId) ?? 0) + 1);
    else unsigned++;
  }
  const lost = ids.filter((id) => !delivered.has(id) || !verified.has(id)).length;
  const resent = [...verified.values()].filter((n) => n > 1).length;
  if (unsigned > 0) problems.push(`${unsigned} requests failed signature verification`);

  const extra = (await one(stack, 'SELECT count(*) AS n FROM webhook_outbox')) - ids.length;
  if (extra > 0) problems.push(`${extra} outbox rows more than the input has events`);
  const inFlight = await one(stack, `SELECT count(*) AS n FROM webhook_outbox WHERE status = 'in_flight' OR lease_owner IS NOT NULL`);
  if (inFlight > 0) problems.push(`${inFlight} rows still in flight or leased after the drain`);
  // Every attempt counted on its row has one line in the attempt log, however the pass that made it ended.
  const attempts = await one(stack, 'SELECT sum(attempts) AS n FROM webhook_outbox');
  const logged = await one(stack, 'SELECT count(*) AS n FROM webhook_delivery_attempts');
  if (attempts !== logged) problems.push(`attempts counted ${attempts}, attempt log rows ${logged}`);
  return { lost, doubled, resent, problems };
}
