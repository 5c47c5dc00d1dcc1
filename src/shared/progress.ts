/**
 * Progress checkpoints: a run's exact counters each time another `every` items have been processed.
 * Batches compute them from their per-line (per-row) outcomes and return them with their result, in
 * the ledger, so a retried batch returns the same ones; the workflow keeps the newest in a bounded
 * window that its `progress` query pages through. Pure data and arithmetic: part of the workflow bundle.
 *
 * A checkpoint is a tuple whose first element is the processed count: for a backfill
 * [processed, created, duplicates, failed], for a replay [processed, replayed, skipped]. Batches return
 * them relative to their own start; the workflow adds the counters the batch started from.
 */
export type Checkpoint = number[];

export const PROGRESS_LIMITS = {
  /**
   * A batch returns at most this many checkpoints (its activity result, ledger row and history event stay
   * a few kilobytes); a finer --progress-every is coarsened to a multiple of itself, and the CLI says so.
   */
  maxCheckpointsPerBatch: 250,
  /** Checkpoints a run holds for clients that poll (and carries across continue-as-new). */
  window: 1000,
  /** Checkpoints one `progress` query returns; a client asks again at once while pages come back full. */
  page: 1000,
} as const;

/** What a batch needs to find the checkpoints it crosses. */
export interface CheckpointSpec {
  every: number;
  /** Items the run had processed before this batch. */
  processedBefore: number;
}

/** The `progress` query's argument: the processed count of the last checkpoint the client has printed. */
export interface ProgressQueryArgs {
  after?: number;
}

/**
 * The step a run records checkpoints at: the requested one, or the smallest multiple of it that keeps
 * a batch of `batchSize` items at most `maxCheckpointsPerBatch` checkpoints.
 */
export function checkpointEvery(requested: number, batchSize: number): number {
  const every = Math.max(1, Math.floor(requested));
  return every * Math.max(1, Math.ceil(batchSize / (every * PROGRESS_LIMITS.maxCheckpointsPerBatch)));
}

/**
 * The checkpoints of one batch from its outcomes in processing order (`outcomes[i]` is the kind of the
 * (i+1)-th processed item: an index into the tuple's counts after `processed`), relative to the batch.
 */
export function batchCheckpoints(outcomes: ArrayLike<number>, processed: number, spec: CheckpointSpec, kinds: number): Checkpoint[] {
  const checkpoints: Checkpoint[] = [];
  const counts = new Array<number>(kinds).fill(0);
  // The first item of this batch that lands on a multiple of `every`, counted from the run's start.
  let next = spec.every - (spec.processedBefore % spec.every);
  for (let i = 0; i < processed; i++) {
    const kind = outcomes[i]!;
    counts[kind] = (counts[kind] ?? 0) + 1;
    if (i + 1 === next) {
      checkpoints.push([i + 1, ...counts]);
      next += spec.every;
    }
  }
  return checkpoints;
}

/** The newest checkpoints of a run, absolute, oldest first, at most PROGRESS_LIMITS.window of them. */
export class CheckpointWindow {
  private readonly held: Checkpoint[];

  constructor(carried: Checkpoint[] = []) {
    this.held = carried.slice(-PROGRESS_LIMITS.window);
  }

  /** Adds a batch's relative checkpoints to the counters the batch started from (same tuple layout). */
  add(base: Checkpoint, relative: Checkpoint[] | undefined): void {
    for (const checkpoint of relative ?? []) this.held.push(checkpoint.map((n, i) => n + (base[i] ?? 0)));
    if (this.held.length > PROGRESS_LIMITS.window) this.held.splice(0, this.held.length - PROGRESS_LIMITS.window);
  }

  /** Checkpoints past `after` processed items, oldest first, one page at most; none when `after` is not given. */
  after(after: number | undefined): Checkpoint[] {
    if (after === undefined) return [];
    const page: Checkpoint[] = [];
    for (const checkpoint of this.held) {
      if (checkpoint[0]! <= after) continue;
      page.push(checkpoint);
      if (page.length >= PROGRESS_LIMITS.page) break;
    }
    return page;
  }

  /** Processed count of the oldest checkpoint held, or null: a client that printed less than that minus a step missed some. */
  oldest(): number | null {
    return this.held[0]?.[0] ?? null;
  }

  /** What continue-as-new carries, so a client attached across it misses and repeats nothing. */
  carry(): Checkpoint[] {
    return this.held.slice();
  }
}

/** What the `progress` query adds to a run's counters, for clients that print checkpoint lines. */
export interface CheckpointPage<Counters> {
  /** The step checkpoints are recorded at (see checkpointEvery). */
  checkpointEvery: number;
  /** Checkpoints past the query's `after`, oldest first; empty when the query had no argument. */
  checkpoints: Counters[];
  /** Processed count of the oldest checkpoint the run still holds; null when it holds none. */
  oldestCheckpoint: number | null;
}
