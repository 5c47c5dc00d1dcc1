import type { Pool } from 'pg';
import { claimDueEvents, type ClaimedEvent, releaseClaims, renewLeases } from '../db/queries';

/** A claimed event and its payload size, held by a pass until it is answered or handed back. */
export interface HeldEvent extends ClaimedEvent {
  bytes: number;
}

export interface ClaimSettings {
  batchSize: number;
  claimBytes: number;
  leaseMs: number;
  requestTimeoutMs: number;
  /** Payload bytes per event seen by earlier passes (null: unknown). */
  bytesPerEventHint: number | null;
}

/** A request starts only while its event's lease outlasts it by this much. */
const START_MARGIN_MS = 2_000;
/** Leases are renewed once less than a request timeout plus this is left. */
const RENEW_AHEAD_MS = 6_000;

/**
 * The events one pass holds: claims them (bounded in rows and payload bytes), hands them out in claim order, keeps
 * their leases alive while the pass works, and gives back what was never sent.
 *
 * Memory: a claim starts only while the pass holds at most `claimBytes` of payload and brings at most `claimBytes`
 * more (or one event, however large), so a pass never holds more than 2 x `claimBytes`, or `claimBytes` plus its
 * largest event.
 *
 * Leases: a pass knows a lower bound of when its leases expire (the time it sent the claim or renewal, plus the lease:
 * PostgreSQL set the expiry later than that). It renews them ahead of time and sends an event only while that bound
 * is more than a request timeout away, so an event is never posted while another pass may have taken it back.
 */
export class ClaimQueue {
  private queue: HeldEvent[] = [];
  private head = 0;
  private claiming: Promise<void> | null = null;
  private renewing: Promise<void> | null = null;
  /** Claims and renewals run one at a time, so every lease bound below is known when the next statement starts. */
  private leaseStatements: Promise<unknown> = Promise.resolve();
  private validUntil = 0;
  private started = false;
  claimed = 0;
  private claimedBytes = 0;
  heldEvents = 0;
  heldBytes = 0;
  peakHeldBytes = 0;
  /** A claim came back with less than it asked for: nothing more is due. */
  drained = false;
  claimFailed = false;
  leaseLost = false;

  constructor(
    private readonly pool: Pool,
    private readonly leaseOwner: string,
    private readonly settings: ClaimSettings,
  ) {}

  get unsent(): number {
    return this.queue.length - this.head;
  }

  get claimInProgress(): boolean {
    return this.claiming !== null;
  }

  /** The next event to send, in claim order, or undefined when none is held. */
  take(): HeldEvent | undefined {
    return this.head < this.queue.length ? this.queue[this.head++] : undefined;
  }

  /** An event left the pass's hands (answered, or about to be handed back): its payload no longer counts. */
  finished(event: HeldEvent): void {
    this.heldEvents--;
    this.heldBytes -= event.bytes;
  }

  /** Room for another claim without exceeding the memory bound. */
  get hasRoom(): boolean {
    return this.heldBytes <= this.settings.claimBytes;
  }

  /**
   * Claims up to `rows` more events. The pass's first claim rejects on failure (the pass fails and is retried);
   * a later one only ends the pass's claiming: what it holds is still sent and recorded.
   */
  claim(rows: number): Promise<void> {
    if (this.claiming) return this.claiming;
    const first = !this.started;
    this.started = true;
    const limit = this.rowLimit(rows);
    const run = this.leaseStatement(async () => {
      const sentAt = Date.now();
      const claimed = await claimDueEvents(this.pool, limit, this.leaseOwner, this.settings.leaseMs / 1000, this.settings.claimBytes);
      const expiresAfter = sentAt + this.settings.leaseMs;
      this.validUntil = this.heldEvents === 0 ? expiresAfter : Math.min(this.validUntil, expiresAfter);
      this.accept(claimed, limit);
    });
    this.claiming = run.then(
      () => {
        this.claiming = null;
      },
      (err: unknown) => {
        this.claiming = null;
        if (first) throw err;
        this.claimFailed = true;
      },
    );
    return this.claiming;
  }

  /** Waits for the claim under way (which never rejects once the first claim succeeded). */
  async claimLanded(): Promise<void> {
    await this.claiming;
  }

  /** Waits for the claim or renewal under way, if any. */
  async settle(): Promise<void> {
    while (this.claiming || this.renewing) await (this.claiming ?? this.renewing);
  }

  /** Whether the leases held outlast a request started now. */
  leaseCovers(now: number): boolean {
    return !this.leaseLost && this.validUntil - now >= this.settings.requestTimeoutMs + START_MARGIN_MS;
  }

  /** Renews leases that will soon be too short to start a request under. Called about once a second. */
  renewIfDue(now: number): void {
    if (this.heldEvents > 0 && !this.renewing && !this.leaseLost && this.validUntil - now < this.settings.requestTimeoutMs + RENEW_AHEAD_MS) {
      void this.renew();
    }
  }

  /** Renews now (or joins the renewal under way); resolves to whether a request may start. */
  async renew(): Promise<boolean> {
    this.renewing ??= this.leaseStatement(async () => {
      const sentAt = Date.now();
      await renewLeases(this.pool, this.leaseOwner, this.settings.leaseMs / 1000);
      // Until the old bound passed, no lease of ours can have expired, so the renewal covered all we hold.
      // Later, another pass may have taken some: send nothing more.
      if (Date.now() < this.validUntil) this.validUntil = sentAt + this.settings.leaseMs;
      else this.leaseLost = true;
    })
      // A failed renewal is tried again on the next tick; meanwhile the bound keeps shrinking, and sending stops in time.
      .catch(() => undefined)
      .finally(() => {
        this.renewing = null;
      });
    await this.renewing;
    return this.leaseCovers(Date.now());
  }

  /** Hands back events never sent, uncounting their attempt. */
  async release(extra: HeldEvent[]): Promise<number> {
    const unsent = [...extra, ...this.queue.slice(this.head)];
    this.queue = [];
    this.head = 0;
    for (const event of unsent) this.finished(event);
    const ids = unsent.map((e) => e.event_id);
    // After the claim or renewal under way, which update the same rows: one at a time, they cannot deadlock.
    return this.leaseStatement(() => releaseClaims(this.pool, this.leaseOwner, ids));
  }

  get bytesPerEvent(): number | null {
    return this.claimed > 0 ? Math.round(this.claimedBytes / this.claimed) : null;
  }

  /**
   * Over large payloads, asking for a full batch would make PostgreSQL read and measure every candidate row to
   * return the few that fit in `claimBytes`; ask for about what fits instead.
   */
  private rowLimit(rows: number): number {
    const perEvent = this.bytesPerEvent ?? this.settings.bytesPerEventHint;
    const fitting = perEvent ? Math.ceil((2 * this.settings.claimBytes) / Math.max(1, perEvent)) + 1 : rows;
    return Math.max(1, Math.min(rows, this.settings.batchSize, fitting));
  }

  private accept(claimed: ClaimedEvent[], limit: number): void {
    if (this.head > 0 && this.head >= this.settings.batchSize) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    let bytes = 0;
    for (const row of claimed) {
      const event = row as HeldEvent;
      event.bytes = Buffer.byteLength(event.body);
      bytes += event.bytes;
      this.queue.push(event);
    }
    this.claimed += claimed.length;
    this.claimedBytes += bytes;
    this.heldEvents += claimed.length;
    this.heldBytes += bytes;
    this.peakHeldBytes = Math.max(this.peakHeldBytes, this.heldBytes);
    // Fewer rows than asked for, with room left for another: nothing more was due (rather than cut by bytes).
    const roomForAnother = claimed.length === 0 || this.settings.claimBytes - bytes >= bytes / claimed.length;
    if (claimed.length < limit && roomForAnother) this.drained = true;
  }

  private leaseStatement<T>(statement: () => Promise<T>): Promise<T> {
    const run = this.leaseStatements.then(statement);
    this.leaseStatements = run.catch(() => undefined);
    return run;
  }
}
