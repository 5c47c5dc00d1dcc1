import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import {
  claimDueEvents,
  type ClaimedEvent,
  type DeliveryRecord,
  outboxSnapshot,
  recordDeliveries,
  releaseClaims,
} from '../db/queries';
import type { DeliverPassInput, DeliverPassResult } from '../shared/delivery';
import { classifyStatus, retryDelayMs } from './policy';
import { type DeliveryTarget, postOnce, sha256Hex } from './http';
import type { DeliveryMetrics } from '../metrics';

export { createDeliveryAgent, type DeliveryTarget } from './http';

export interface PassHooks {
  heartbeat(details: unknown): void;
  cancelled(): boolean;
  /** Identifies the claimant; the random part makes a retried activity a different owner than its dead predecessor. */
  leaseOwnerPrefix: string;
  /** Told about every attempt, when the worker serves metrics. */
  metrics?: DeliveryMetrics;
}

/**
 * One dispatcher pass: claim due events, POST them with bounded concurrency and rate, and record every
 * outcome and attempt. With `input.streamMs`, the pass keeps going for about that long: it claims the next
 * batch while the current one is still being posted and records outcomes in chunks while posting, so the
 * requests never wait for the database or for Temporal to start the next pass. Stops launching requests
 * once `autoPauseAfter` deliveries in a row have failed, or on cancellation, and hands back what it
 * claimed but did not send.
 */
export async function deliverPass(
  pool: Pool,
  target: DeliveryTarget,
  input: DeliverPassInput,
  hooks: PassHooks,
): Promise<DeliverPassResult> {
  const { options } = input;
  const leaseOwner = `${hooks.leaseOwnerPrefix}/${randomUUID()}`;
  const passStart = Date.now();
  // Passes launched together would otherwise end together, leaving the receiver idle while they all restart.
  const claimUntil = passStart + (input.streamMs ?? 0) * (0.75 + Math.random() * 0.5);
  // Claimed but not yet sent, in claim order; `head` is the next to send.
  let queue: ClaimedEvent[] = [];
  let head = 0;
  let claimed = 0;
  let drained = false;
  let claimFailed = false;
  let claiming: Promise<void> | null = null;
  let pending: DeliveryRecord[] = [];
  let flushing: Promise<void> | null = null;
  let flushError: unknown;
  let lastFlush = passStart;
  // Big enough that a flush's fixed cost (a transaction) is small, small enough to overlap with posting.
  const flushAt = Math.max(1, Math.ceil(options.batchSize / 2));
  let done = 0;
  let delivered = 0;
  let retried = 0;
  let deadLettered = 0;
  let streak = 0;
  let anySuccess = false;
  let stop = false;
  let launched = 0;
  // Taken for a rate-limit slot, then not sent because the pass stopped meanwhile.
  const abandoned: string[] = [];
  // Crossing into the SDK for every response is measurable at thousands a second; once a second is plenty.
  let lastHeartbeat = 0;
  const heartbeat = () => {
    const now = Date.now();
    if (now - lastHeartbeat < 1000) return;
    lastHeartbeat = now;
    hooks.heartbeat({ done, of: claimed });
  };

  const claimMore = (): Promise<void> => {
    claiming = claimDueEvents(pool, options.batchSize, leaseOwner, input.leaseSeconds).then(
      (rows) => {
        claiming = null;
        claimed += rows.length;
        if (rows.length < options.batchSize) drained = true;
        if (head >= options.batchSize) {
          queue = queue.slice(head);
          head = 0;
        }
        for (const row of rows) queue.push(row);
      },
      (err: unknown) => {
        claiming = null;
        // The first claim's failure fails the pass (and the activity retries it); a later one only ends the
        // streaming: what this pass holds is still sent and recorded, and the next pass claims again.
        if (claimed === 0) throw err;
        claimFailed = true;
      },
    );
    return claiming;
  };
  const mayClaimMore = () => !drained && !claimFailed && !stop && !hooks.cancelled() && Date.now() < claimUntil;

  // Outcomes are written while later requests are in flight, one transaction at a time. A write that fails
  // stops the pass; its events keep their lease and go out again once it expires (at least once).
  const flush = () => {
    if (flushing || pending.length === 0 || flushError !== undefined) return;
    if (pending.length < flushAt && Date.now() - lastFlush < 1000) return;
    const chunk = pending;
    pending = [];
    lastFlush = Date.now();
    flushing = recordDeliveries(pool, leaseOwner, chunk).then(
      () => {
        flushing = null;
        flush();
      },
      (err: unknown) => {
        flushing = null;
        flushError = err;
        stop = true;
      },
    );
  };

  await claimMore();
  // Paced from the first claim's end, as a claim taking a few slots' time must not turn into a burst.
  const paceFrom = Date.now();

  const worker = async () => {
    for (;;) {
      if (stop || hooks.cancelled()) return;
      if (head >= queue.length) {
        if (claiming) await claiming;
        else if (mayClaimMore()) await claimMore();
        else return;
        continue;
      }
      if (!claiming && queue.length - head <= options.concurrency && mayClaimMore()) void claimMore();
      const index = launched++;
      const event = queue[head++]!;
      if (options.ratePerSecond > 0) {
        const slot = paceFrom + (index * 1000) / options.ratePerSecond;
        const wait = slot - Date.now();
        if (wait > 0) {
          heartbeat();
          await new Promise((r) => setTimeout(r, wait));
        }
        if (stop || hooks.cancelled()) {
          abandoned.push(event.event_id);
          return;
        }
      }
      const body = Buffer.from(event.body);
      const result = await postOnce(target, event, body, options.requestTimeoutMs);
      const verdict = result.statusCode === null ? 'retryable' : classifyStatus(result.statusCode);
      let status: string;
      let nextAttemptAt: number | null = null;
      if (verdict === 'delivered') {
        status = 'delivered';
        delivered++;
        streak = 0;
        anySuccess = true;
      } else {
        streak++;
        if (verdict === 'terminal' || event.attempts >= event.max_attempts) {
          status = 'dead_letter';
          deadLettered++;
        } else {
          status = 'retrying';
          retried++;
          nextAttemptAt =
            result.finishedAt +
            retryDelayMs(event.attempts, result.retryAfter, { baseMs: options.backoffBaseMs, capMs: options.backoffCapMs }, Date.now());
        }
        if (streak >= options.autoPauseAfter) stop = true;
      }
      hooks.metrics?.recordAttempt(status, result.statusCode, result.finishedAt - result.startedAt);
      const error = result.error ?? (verdict === 'delivered' ? null : `HTTP ${result.statusCode}`);
      pending.push({
        event_id: event.event_id,
        status,
        status_code: result.statusCode,
        error,
        next_attempt_at: nextAttemptAt,
        attempt_number: event.attempts,
        trigger: event.replay_count > 0 ? 'replay' : 'scheduled',
        duration_ms: result.finishedAt - result.startedAt,
        request_body_sha256: sha256Hex(body),
        response_body_sha256: result.responseSha256,
        response_excerpt: result.responseExcerpt,
        response_cut_off: result.responseCutOff,
        redirect_location: result.location,
        started_at: result.startedAt,
        finished_at: result.finishedAt,
      });
      done++;
      flush();
      heartbeat();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, queue.length)) }, worker));

  // A claim started just before the pass stopped holds events nobody will send: they are released below.
  // Through a function: the compiler cannot see the callbacks that set these, and would narrow them to null.
  const inFlight = () => claiming ?? flushing;
  for (let wait = inFlight(); wait; wait = inFlight()) await wait;
  if (flushError !== undefined) throw flushError;
  if (pending.length > 0) await recordDeliveries(pool, leaseOwner, pending);
  const unsent = [...abandoned, ...queue.slice(head).map((e) => e.event_id)];
  const released = await releaseClaims(pool, leaseOwner, unsent);
  const full = !drained;
  // After a full batch the dispatcher goes straight on, so when the next event is due does not matter.
  const snapshot = input.wantSnapshot || !full ? await outboxSnapshot(pool) : null;
  return {
    claimed,
    full,
    delivered,
    retried,
    deadLettered,
    released,
    trailingFailures: streak,
    anySuccess,
    snapshot:
      input.wantSnapshot && snapshot
        ? { backlog: snapshot.backlog, backlogEstimated: snapshot.backlog_estimated, inFlight: snapshot.in_flight, oldestDueMs: snapshot.oldest_due_ms }
        : null,
    nextDueInMs: snapshot ? snapshot.next_due_in_ms : 0,
  };
}
