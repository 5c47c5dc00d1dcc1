import type { Pool } from 'pg';
import { type DeliveryRecord, recordDeliveries } from '../db/queries';

/**
 * Writes a pass's outcomes while later requests are still in flight, one transaction at a time: a chunk once
 * `flushAt` outcomes wait, or once the oldest has waited a second. A write that fails stops the pass (`failed`);
 * its events keep their lease and are taken back once it expires, their attempt logged as lost.
 */
export class OutcomeRecorder {
  private waiting: DeliveryRecord[] = [];
  private writing: Promise<void> | null = null;
  private lastWrite = Date.now();
  error: unknown;
  failed = false;

  constructor(
    private readonly pool: Pool,
    private readonly leaseOwner: string,
    /** Big enough that a write's fixed cost (a transaction) is small, small enough to overlap with posting. */
    private readonly flushAt: number,
  ) {}

  add(record: DeliveryRecord): void {
    this.waiting.push(record);
    this.flush();
  }

  /** Writes whatever still waits; rejects with the first write's failure, if any. */
  async finish(): Promise<void> {
    while (this.writing) await this.writing;
    if (this.failed) throw this.error;
    if (this.waiting.length > 0) await recordDeliveries(this.pool, this.leaseOwner, this.waiting.splice(0));
  }

  private flush(): void {
    if (this.writing || this.failed || this.waiting.length === 0) return;
    if (this.waiting.length < this.flushAt && Date.now() - this.lastWrite < 1000) return;
    const chunk = this.waiting;
    this.waiting = [];
    this.lastWrite = Date.now();
    this.writing = recordDeliveries(this.pool, this.leaseOwner, chunk).then(
      () => {
        this.writing = null;
        this.flush();
      },
      (err: unknown) => {
        this.writing = null;
        this.error = err;
        this.failed = true;
      },
    );
  }
}
