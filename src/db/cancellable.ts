import { Client, type Pool, type PoolClient } from 'pg';

/**
 * Database work that stops in PostgreSQL when its caller stops.
 *
 * When a Temporal activity is cancelled or times out, its retry may start on another worker at once. If the
 * first attempt's statement kept running in PostgreSQL it would hold its locks (a batch's advisory lock, the
 * rows it updates) beside the retry and make it wait or time out. So, when the activity's AbortSignal fires:
 *
 * - every statement running on a client checked out through the scope is cancelled in PostgreSQL
 *   (`pg_cancel_backend` of its backend pid, from a connection of its own: the pool may be exhausted);
 * - those clients are closed instead of going back to the pool, so a cancel that arrives late can never hit
 *   another activity's statement on a reused connection;
 * - a client whose statement is still running a few seconds later (a dead server does not answer cancels)
 *   has its socket closed, so the awaiting code gets an error instead of hanging.
 *
 * Statements started after the abort run normally: an activity may still wind down (roll back, hand back
 * what it claimed), and every statement is bounded by the pool's statement_timeout anyway.
 *
 * Two ways in, for code that takes a client or a pool:
 *   await withClient(pool, signal, (client) => client.query(...));
 *   runBackfillBatch(cancellablePool(pool, ctx.cancellationSignal), input, hooks);   // at an activity's boundary
 * The second hands the activity's code a Pool whose `connect` and `query` go through one such scope; the
 * code itself is unchanged.
 */

/** How long a cancelled statement may take to end before its connection is closed under it. */
const CANCEL_GRACE_MS = 5_000;

class CancelScope {
  private readonly checkedOut = new Set<PoolClient>();
  private readonly doomed = new WeakSet<PoolClient>();

  private readonly onAbort = () => void this.cancelAll();

  constructor(
    private readonly pool: Pool,
    private readonly signal: AbortSignal | undefined,
  ) {
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Stops listening: the scope's work is over. */
  dispose(): void {
    this.signal?.removeEventListener('abort', this.onAbort);
  }

  async connect(): Promise<PoolClient> {
    const client = await this.pool.connect();
    this.checkedOut.add(client);
    const release = client.release.bind(client);
    client.release = (err?: Error | boolean) => {
      this.checkedOut.delete(client);
      release(this.doomed.has(client) ? true : err);
    };
    return client;
  }

  /** `pool.query`'s contract: one statement on a client of its own, released (and discarded on error) after. */
  async query(...args: unknown[]): Promise<unknown> {
    const client = await this.connect();
    try {
      const result: unknown = await (client.query as (...a: unknown[]) => Promise<unknown>).apply(client, args);
      client.release();
      return result;
    } catch (err) {
      client.release(err instanceof Error ? err : true);
      throw err;
    }
  }

  private async cancelAll(): Promise<void> {
    const busy = [...this.checkedOut];
    if (busy.length === 0) return;
    for (const client of busy) this.doomed.add(client);
    const pids = busy.map(backendPid).filter((pid): pid is number => pid !== null);
    const hardStop = setTimeout(() => {
      for (const client of busy) if (this.checkedOut.has(client)) void client.end().catch(() => undefined);
    }, CANCEL_GRACE_MS);
    hardStop.unref();
    await cancelBackends(this.pool, pids).catch(() => undefined);
  }
}

function backendPid(client: PoolClient): number | null {
  const pid = (client as unknown as { processID?: number | null }).processID;
  return typeof pid === 'number' ? pid : null;
}

/** pg_cancel_backend from a fresh connection with the pool's settings: the pool itself may have no free client. */
async function cancelBackends(pool: Pool, pids: number[]): Promise<void> {
  if (pids.length === 0) return;
  const canceller = new Client({ ...pool.options, application_name: 'gotong-worker (cancel)', connectionTimeoutMillis: CANCEL_GRACE_MS });
  canceller.on('error', () => undefined);
  try {
    await canceller.connect();
    await canceller.query('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
  } finally {
    await canceller.end().catch(() => undefined);
  }
}

/** Runs `fn` on a client of `pool`; if `signal` aborts meanwhile, its statement is cancelled in PostgreSQL. */
export async function withClient<T>(pool: Pool, signal: AbortSignal | undefined, fn: (client: PoolClient) => Promise<T>): Promise<T> {
  const scope = new CancelScope(pool, signal);
  try {
    const client = await scope.connect();
    try {
      const result = await fn(client);
      client.release();
      return result;
    } catch (err) {
      // Whatever state `fn` left the session in (a transaction open, a broken connection), it is not reused.
      client.release(true);
      throw err;
    }
  } finally {
    scope.dispose();
  }
}

/**
 * The same pool seen through one cancellation scope: `connect()` and `query()` are tracked and cancelled
 * in PostgreSQL when `signal` aborts; everything else is the pool's own. For activity boundaries: pass the
 * result where the activity's code expects a Pool.
 */
export function cancellablePool(pool: Pool, signal: AbortSignal | undefined): Pool {
  if (!signal) return pool;
  const scope = new CancelScope(pool, signal);
  const connect = () => scope.connect();
  const query = (...args: unknown[]) => scope.query(...args);
  return new Proxy(pool, {
    get(target, property, receiver) {
      if (property === 'connect') return connect;
      if (property === 'query') return query;
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
