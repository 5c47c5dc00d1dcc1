/** How long a sender waiting for its slot goes without looking whether its pass was stopped. */
const STOP_CHECK_MS = 1_000;

/**
 * Deliveries-per-second slots for one dispatcher shard. Slots continue from the previous pass's next free slot
 * (passed through the workflow), so back-to-back passes keep the rate instead of each starting with a burst.
 * Callers go through one at a time, each waiting for its own slot once the one before has gone: after a stall (a
 * busy event loop, a slow claim) the senders resume one interval apart, never together, and a slot that has passed
 * is not made up for.
 */
export class Pacer {
  private next: number;
  private queue: Promise<void> = Promise.resolve();

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

  /** Resolves once the caller may start one delivery; at once, without using a slot, when `stopped()` says so. */
  wait(stopped: () => boolean): Promise<void> {
    const turn = this.queue.then(async () => {
      if (stopped()) return;
      // A timer may fire a millisecond before the wall clock reaches its slot: wait again until it has. At low rates a
      // slot is up to 100 s away, so the wait looks up every second: a pass asked to stop (its worker shutting down)
      // must not outlast a supervisor's grace period asleep.
      for (let wait = this.next - Date.now(); wait > 0; wait = this.next - Date.now()) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(wait, STOP_CHECK_MS)));
        if (stopped()) return;
      }
      if (stopped()) return;
      this.next = Math.max(this.next, Date.now()) + this.intervalMs;
    });
    this.queue = turn;
    return turn;
  }

  get nextSlotAt(): number {
    return this.next;
  }

  /** How many slots start before `until`, counting `waiting` callers already in line (the caller claims no more). */
  slotsBefore(until: number, now: number, waiting = 0): number {
    const first = Math.max(this.next, now) + waiting * this.intervalMs;
    return first >= until ? 0 : Math.floor((until - first) / this.intervalMs) + 1;
  }
}
