import { Client, type Pool, type PoolClient } from 'pg';

/**
 * Database work that stops in PostgreSQL when its caller stops.
 *
 * When a Temporal activity times out, its retry may start on another worker at once. If the first attempt's
 * statement kept running in PostgreSQL it would hold its locks (a batch's advisory lock, the rows it updates)
 * beside the retry and make it wait or time out. So when the activity's AbortSignal fires, every statement
 * that was running on a client checked out through the scope, and still runs:
 * - is cancelled in PostgreSQL (`pg_cancel_backend` of its backend pid, from a connection of its own: the
 *   pool may be exhausted);
 * - its client is closed instead of going back to the pool, so a cancel that arrives late can never hit
 *   another activity's statement on a reused connection;
 * - and if it still runs a few seconds later (a server gone without closing the socket does not answer
 *   cancels), its socket is closed, so the awaiting code gets an error instead of hanging.
 *
 * When: at once if the attempt is over on the server's side (Temporal's TIMED_OUT, NOT_FOUND, RESET...: a
 * retry may already run) or for a plain abort; after STATEMENT_GRACE_MS if the activity was asked to stop
 * (CANCELLED, WORKER_SHUTDOWN), which its own code does between statements, rolling back or handing back
 * what it claimed: a short statement in flight then finishes, and only one still running is cancelled.
 * Statements started after the abort run normally (that wind-down), bounded by the pool's statement_timeout.
 *
 * Two ways in, for code that takes a client or a pool:
 *   await withClient(pool, signal, (client) => client.query(...));
 *   runBackfillBatch(cancellablePool(pool, ctx.cancellationSignal), input, hooks);   // at an activity's boundary
 * The second hands the activity's code a Pool whose `connect` and `query` go through one such scope; the
 * code itself is unchanged. An activity learns of a cancellation when it heartbeats.
 */

/** How long a statement of an activity asked to stop may go on before it is cancelled. */
const STATEMENT_GRACE_MS = 3_000;
/** How long a cancelled statement may take to end before its connection is closed under it. */
const CANCEL_GRACE_MS = 5_000;
/** Temporal's cancellation reasons that ask the activity to stop, rather than say its attempt is already over. */
const WIND_DOWN_REASONS = new Set(['CANCELLED', 'WORKER_SHUTDOWN']);

interface Tracked {
  /** Statements sent and not yet answered. */
  running: number;
  /** Counts statements sent, so a statement can be told from the next one on the same client. */
  sent: number;
}

type Query = (...args: unknown[]) => unknown;

class CancelScope {
  private readonly checkedOut = new Map<PoolClient, Tracked>();
  private readonly doomed = new WeakSet<PoolClient>();
  private readonly onAbort = () => this.aborted();

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
    const tracked: Tracked = { running: 0, sent: 0 };
    this.checkedOut.set(client, tracked);
    // Own properties over the prototype's, for this checkout only: removed again on release.
    const query = client.query as unknown as Query;
    (client as unknown as { query: Query }).query = (...args: unknown[]) => {
      const result = query.apply(client, args);
      if (!(result instanceof Promise)) return result;
      tracked.running++;
      tracked.sent++;
      return result.finally(() => tracked.running--);
    };
    const release = client.release.bind(client);
    client.release = (err?: Error | boolean) => {
      this.checkedOut.delete(client);
      delete (client as unknown as { query?: Query }).query;
      release(this.doomed.has(client) ? true : err);
    };
    return client;
  }

  /** `pool.query`'s contract: one statement on a client of its own, released (and discarded on error) after. */
  async query(...args: unknown[]): Promise<unknown> {
    const client = await this.connect();
    try {
      const result: unknown = await (client.query as unknown as Query)(...args);
      client.release();
      return result;
    } catch (err) {
      client.release(err instanceof Error ? err : true);
      throw err;
    }
  }

  private aborted(): void {
    const reason = (this.signal?.reason as { message?: unknown } | undefined)?.message;
    const graceMs = typeof reason === 'string' && WIND_DOWN_REASONS.has(reason) ? STATEMENT_GRACE_MS : 0;
    // The statements running now; any started later belongs to the wind-down.
    const running = [...this.checkedOut].filter(([, t]) => t.running > 0).map(([client, t]) => ({ client, sent: t.sent }));
    if (running.length === 0) return;
    const later = setTimeout(() => {
      const stillRunning = running
        .filter(({ client, sent }) => {
          const t = this.checkedOut.get(client);
          return t !== undefined && t.running > 0 && t.sent === sent;
        })
        .map(({ client }) => client);
      void this.cancel(stillRunning);
    }, graceMs);
    later.unref();
  }

  private async cancel(clients: PoolClient[]): Promise<void> {
    if (clients.length === 0) return;
    for (const client of clients) this.doomed.add(client);
    const hardStop = setTimeout(() => {
      for (const client of clients) if (this.checkedOut.has(client)) void client.end().catch(() => undefined);
    }, CANCEL_GRACE_MS);
    hardStop.unref();
    const pids = clients.map(backendPid).filter((pid): pid is number => pid !== null);
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
