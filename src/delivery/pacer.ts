/**
 * Deliveries-per-second slots for one dispatcher shard. Slots continue from the previous pass's next free slot
 * (passed through the workflow), so back-to-back passes keep the rate instead of each starting with a burst. A
 * slot that has passed is not made up for: a late start shifts the schedule rather than sending a burst to catch up.
 */
export class Pacer {
  private next: number;

  constructor(
    private readonly intervalMs: number,
    from: number | null | undefined,
    now: number,
  ) {
    this.next = from ?? now;
  }

  static forRate(ratePerSecond: number, from: number | null | undefined, now: number): Pacer | null {
    return ratePerSecond > 0 ? new Pacer(1000 / ratePerSecond, from, now) : null;
  }

  /** Takes the next slot: the epoch ms at which the caller may start one delivery. */
  take(now: number): number {
    const slot = Math.max(this.next, now);
    this.next = slot + this.intervalMs;
    return slot;
  }

  get nextSlotAt(): number {
    return this.next;
  }

  /** How many slots start before `until` (the caller claims no more events than it can send by then). */
  slotsBefore(until: number, now: number): number {
    const first = Math.max(this.next, now);
    return first >= until ? 0 : Math.floor((until - first) / this.intervalMs) + 1;
  }
}
