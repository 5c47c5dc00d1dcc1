/**
 * Receiver health as a pass sees it. Auto-pause must mean "the receiver is down", never "some events keep failing",
 * so only first attempts of events never sent before are a sample: a receiver that rejects a fixed share of events
 * fails their retries every time, and those retries come due together; counting them made a healthy receiver look
 * down after every backoff round. A success of any attempt shows the receiver answers, so it ends a streak.
 * Replayed events are not samples either: they failed before, and replaying them into a receiver that still
 * rejects them must not stop everyone else's deliveries.
 */
export class HealthTracker {
  /** Failed samples since the last success (or, before any, counting from the streak the pass started with). */
  private streak = 0;
  anySuccess = false;
  samples = 0;

  constructor(
    /** Failed first attempts in a row when the pass started (the dispatcher's streak so far). */
    private readonly streakBefore: number,
    /** The streak at which the receiver counts as down. */
    private readonly limit: number,
  ) {}

  static isSample(event: { attempts: number; replay_count: number }): boolean {
    return event.attempts === 1 && event.replay_count === 0;
  }

  record(sample: boolean, delivered: boolean): void {
    if (sample) this.samples++;
    if (delivered) {
      this.streak = 0;
      this.anySuccess = true;
    } else if (sample) {
      this.streak++;
    }
  }

  /** Failed samples since this pass's last success, or since its start when it had none. */
  get trailingFailures(): number {
    return this.streak;
  }

  /** The receiver looks down: stop sending, so it gets at most `limit` failed first attempts in a row. */
  get receiverDown(): boolean {
    return (this.anySuccess ? this.streak : this.streakBefore + this.streak) >= this.limit;
  }
}
