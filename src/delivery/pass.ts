import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { DEAD_LETTER_DELTAS_TO_KEEP, type DeliveryRecord, foldDeadLetterDeltas, outboxSnapshot } from '../db/queries';
import { type DeliverPassInput, type DeliverPassResult, type DispatcherOptions, leaseMsFor } from '../shared/delivery';
import { ClaimQueue, type HeldEvent } from './claims';
import { type DeliveryTarget, postOnce, sha256Hex } from './http';
import type { DeliveryMetrics } from '../metrics';
import { HealthTracker } from './health';
import { Pacer } from './pacer';
import { classifyStatus, retryDelayMs, type Verdict } from './policy';
import { OutcomeRecorder } from './recorder';

type AttemptResult = Awaited<ReturnType<typeof postOnce>>;

export interface PassHooks {
  heartbeat(details: unknown): void;
  cancelled(): boolean;
  /** Identifies the claimant; the random part makes a retried activity a different owner than its dead predecessor. */
  leaseOwnerPrefix: string;
  /** Told about every attempt, when the worker serves metrics. */
  metrics?: DeliveryMetrics;
}

/**
 * One dispatcher pass: claim due events, POST them with bounded concurrency and rate, and record every outcome and
 * attempt. With `input.streamMs`, the pass keeps going for about that long: it claims the next batch while the
 * current one is still being posted and records outcomes in chunks while posting, so the requests never wait for the
 * database or for Temporal to start the next pass. It stops sending once the receiver looks down (see HealthTracker),
 * on cancellation, or when its leases can no longer be kept, and hands back what it claimed but did not send.
 */
export async function deliverPass(pool: Pool, target: DeliveryTarget, input: DeliverPassInput, hooks: PassHooks): Promise<DeliverPassResult> {
  return new Pass(pool, target, input, hooks).run();
}

class Pass {
  private readonly options: DispatcherOptions;
  private readonly leaseOwner: string;
  /** Claiming ends here; passes launched together would otherwise end together, leaving the receiver idle. */
  private readonly claimUntil: number;
  private readonly claims: ClaimQueue;
  private readonly recorder: OutcomeRecorder;
  private readonly health: HealthTracker;
  private readonly pacer: Pacer | null;
  /** Rows a claim asks for at most. */
  private readonly batchSize: number;
  /** Claim more once this few events are left to send. */
  private readonly lowWater: number;
  private readonly tally = { delivered: 0, retried: 0, deadLettered: 0, answered: 0 };
  /** Taken out of the queue, then not sent because the pass stopped meanwhile. */
  private readonly notSent: HeldEvent[] = [];
  /** Senders holding an event until its rate-limit slot. */
  private waitingForSlot = 0;
  /** Send loops running; more start whenever a claim brings events and there are fewer than `concurrency`. */
  private sending = 0;
  private sendersDone: () => void = () => undefined;
  private sendError: unknown;
  /** What was handed back as soon as the pass was asked to stop (see handBackOnStop). */
  private handedBack: Promise<number> | null = null;

  constructor(
    private readonly pool: Pool,
    private readonly target: DeliveryTarget,
    private readonly input: DeliverPassInput,
    private readonly hooks: PassHooks,
  ) {
    const options = input.options;
    const now = Date.now();
    this.options = options;
    this.leaseOwner = `${hooks.leaseOwnerPrefix}/${randomUUID()}`;
    this.claimUntil = now + (input.streamMs ?? 0) * (0.75 + Math.random() * 0.5);
    this.pacer = Pacer.forRate(options.ratePerSecond, input.paceFrom, now);
    this.batchSize = Math.max(1, Math.min(options.batchSize, input.claimRows ?? options.batchSize));
    // Half a batch left is a claim's time of sending or more: the next claim lands before the senders run dry.
    this.lowWater = this.pacer ? Math.max(1, Math.ceil(options.ratePerSecond / 2)) : Math.max(options.concurrency, Math.ceil(this.batchSize / 2));
    this.health = new HealthTracker(input.healthStreak ?? 0, options.autoPauseAfter);
    this.recorder = new OutcomeRecorder(pool, this.leaseOwner, Math.max(1, Math.ceil(options.batchSize / 2)));
    this.claims = new ClaimQueue(pool, this.leaseOwner, {
      batchSize: this.batchSize,
      claimBytes: options.claimBytes,
      leaseMs: input.leaseMs ?? leaseMsFor(options),
      requestTimeoutMs: options.requestTimeoutMs,
      bytesPerEventHint: input.bytesPerEventHint ?? null,
    });
  }

  async run(): Promise<DeliverPassResult> {
    // A timer, not the responses, drives heartbeats and lease renewal: a pass waiting for a statement or a slow
    // receiver is alive too, and must neither be timed out nor lose its leases.
    const ticker = setInterval(() => this.tick(), 1000);
    try {
      this.tick();
      const allSent = new Promise<void>((resolve) => (this.sendersDone = resolve));
      await this.claims.claim(Math.max(1, this.rowsWanted()));
      this.startSenders();
      if (this.sending > 0) await allSent;
      if (this.sendError !== undefined) throw this.sendError;
      return await this.finish();
    } finally {
      clearInterval(ticker);
    }
  }

  private tick(): void {
    this.hooks.heartbeat({ answered: this.tally.answered, claimed: this.claims.claimed });
    if (this.hooks.cancelled()) this.handBackOnStop();
    this.claims.renewIfDue(Date.now());
  }

  /**
   * Asked to stop (a cancel, or its worker shutting down): what was claimed and not yet sent goes back now, not once
   * the requests in flight end, which against a hanging receiver is a request timeout away: a supervisor that kills
   * the worker before then (docker's 10 s, a timeout over a pod's 30 s grace) would leave it leased until the lease
   * ran out. If this statement fails, those events wait for their lease, as after a crash.
   */
  private handBackOnStop(): void {
    if (this.handedBack || this.claims.unsent === 0) return;
    this.handedBack = this.claims.release([]).catch(() => 0);
  }

  private get mustStop(): boolean {
    return this.hooks.cancelled() || this.recorder.failed || this.health.receiverDown || this.claims.leaseLost;
  }

  /**
   * Send loops for the events just claimed, up to `concurrency` in all. A loop ends when it finds nothing to send and
   * nothing more to claim (a pass holding its most bytes, say); the next claim starts loops again.
   */
  private startSenders(): void {
    const more = Math.min(this.options.concurrency - this.sending, this.claims.unsent);
    for (let i = 0; i < more; i++) {
      this.sending++;
      void this.sendLoop()
        .catch((err: unknown) => (this.sendError ??= err))
        .finally(() => {
          if (--this.sending === 0) this.sendersDone();
        });
    }
  }

  private claim(): Promise<void> {
    return this.claims.claim(this.rowsWanted()).then(() => this.startSenders());
  }

  /** One of `concurrency` loops: take the next claimed event, wait for its slot, post it, note the outcome. */
  private async sendLoop(): Promise<void> {
    for (;;) {
      if (this.mustStop) return;
      const event = this.claims.take() ?? (await this.waitForEvents());
      if (!event) return;
      this.claimAheadIfLow();
      if ((this.pacer || !this.claims.leaseCovers(Date.now())) && !(await this.readyToSend())) {
        this.notSent.push(event);
        return;
      }
      await this.deliver(event);
    }
  }

  private async waitForEvents(): Promise<HeldEvent | undefined> {
    for (;;) {
      if (this.mustStop) return undefined;
      const event = this.claims.take();
      if (event) return event;
      if (this.claims.claimInProgress) await this.claims.claimLanded();
      else if (this.mayClaim()) await this.claim();
      else return undefined;
    }
  }

  private claimAheadIfLow(): void {
    if (!this.claims.claimInProgress && this.claims.unsent <= this.lowWater && this.mayClaim()) void this.claim();
  }

  private mayClaim(): boolean {
    return (
      !this.claims.drained &&
      !this.claims.claimFailed &&
      this.claims.hasRoom &&
      !this.mustStop &&
      Date.now() < this.claimUntil &&
      this.rowsWanted() > 0
    );
  }

  /** A rate-limited pass claims only what it can send before it stops claiming. */
  private rowsWanted(): number {
    if (!this.pacer) return this.batchSize;
    return Math.min(this.batchSize, this.pacer.slotsBefore(this.claimUntil, Date.now(), this.waitingForSlot) - this.claims.unsent);
  }

  /** Waits for the event's rate-limit slot and makes sure its lease outlasts the request. */
  private async readyToSend(): Promise<boolean> {
    if (this.pacer) {
      this.waitingForSlot++;
      await this.pacer.wait(() => this.mustStop);
      this.waitingForSlot--;
      if (this.mustStop) return false;
    }
    return this.claims.leaseCovers(Date.now()) || (await this.claims.renew());
  }

  private async deliver(event: HeldEvent): Promise<void> {
    const body = Buffer.from(event.body);
    // One copy of the payload is enough while the request is in flight.
    event.body = '';
    const result = await postOnce(this.target, event, body, this.options.requestTimeoutMs);
    const verdict = result.statusCode === null ? 'retryable' : classifyStatus(result.statusCode);
    this.health.record(HealthTracker.isSample(event), verdict === 'delivered');
    const record = this.outcome(event, body, result, verdict);
    this.hooks.metrics?.recordAttempt(record.status, record.status_code, record.duration_ms);
    this.recorder.add(record);
    this.claims.finished(event);
    this.tally.answered++;
  }

  /** What one attempt means for its event, as the row that records it. */
  private outcome(event: HeldEvent, body: Buffer, result: AttemptResult, verdict: Verdict): DeliveryRecord {
    let status: 'delivered' | 'dead_letter' | 'retrying';
    let nextAttemptAt: number | null = null;
    if (verdict === 'delivered') {
      status = 'delivered';
      this.tally.delivered++;
    } else if (verdict === 'terminal' || event.attempts >= event.max_attempts) {
      status = 'dead_letter';
      this.tally.deadLettered++;
    } else {
      status = 'retrying';
      this.tally.retried++;
      const policy = { baseMs: this.options.backoffBaseMs, capMs: this.options.backoffCapMs };
      nextAttemptAt = result.finishedAt + retryDelayMs(event.attempts, result.retryAfter, policy, Date.now());
    }
    return {
      event_id: event.event_id,
      status,
      status_code: result.statusCode,
      error: result.error ?? (verdict === 'delivered' ? null : `HTTP ${result.statusCode}`),
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
    };
  }

  /**
   * Each statement that dead-letters events adds a row to the dead-letter count's changes (migration 012). Readers
   * fold them, but an outbox whose dead letters nobody reads for weeks (no runbook) would grow a row per such
   * statement, and the first reader would sum them all: the passes that add them keep them few. Housekeeping, so a
   * failure is left to the next pass.
   */
  private async foldDeadLetterCount(): Promise<void> {
    try {
      await foldDeadLetterDeltas(this.pool, DEAD_LETTER_DELTAS_TO_KEEP);
    } catch {
      // The outcomes are recorded; the changes stay until a later fold.
    }
  }

  private async finish(): Promise<DeliverPassResult> {
    // A claim that landed after the pass stopped holds events nobody will send: they are handed back with the rest.
    await this.claims.settle();
    let released = (await this.handedBack) ?? 0;
    try {
      released += await this.claims.release(this.notSent);
    } catch (err) {
      // A failed outcome write is the error to report; both usually mean the database is unreachable.
      if (!this.recorder.failed) throw err;
    }
    await this.recorder.finish();
    if (this.tally.deadLettered > 0) await this.foldDeadLetterCount();
    const full = !this.claims.drained;
    // After a full batch the dispatcher goes straight on, so when the next event is due does not matter.
    const snapshot = this.input.wantSnapshot || !full ? await outboxSnapshot(this.pool) : null;
    return {
      claimed: this.claims.claimed,
      full,
      delivered: this.tally.delivered,
      retried: this.tally.retried,
      deadLettered: this.tally.deadLettered,
      released,
      trailingFailures: this.health.trailingFailures,
      anySuccess: this.health.anySuccess,
      firstAttempts: this.health.samples,
      stoppedForHealth: this.health.receiverDown,
      nextSlotAt: this.pacer?.nextSlotAt ?? null,
      peakHeldBytes: this.claims.peakHeldBytes,
      bytesPerEvent: this.claims.bytesPerEvent,
      snapshot:
        this.input.wantSnapshot && snapshot
          ? { backlog: snapshot.backlog, backlogEstimated: snapshot.backlog_estimated, inFlight: snapshot.in_flight, oldestDueMs: snapshot.oldest_due_ms }
          : null,
      nextDueInMs: snapshot ? snapshot.next_due_in_ms : 0,
    };
  }
}
