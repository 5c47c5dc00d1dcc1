import { Pool } from 'pg';
import { ConfigError, describeDatabaseUrl } from '../config';
import { maskConnectionSecrets } from './conninfo';

/**
 * Server-side limits every pooled session starts with, so no statement, lock wait or forgotten transaction
 * can hold rows or locks for long after the activity that started it is gone. 0 turns one off (PostgreSQL's
 * own meaning). Migrations lift the statement limit for their own session: an index build may take minutes.
 */
export interface SessionTimeouts {
  /** statement_timeout: the longest any one statement may run. */
  statementMs: number;
  /** lock_timeout: the longest a statement may wait for a lock (a retried batch waiting for its predecessor). */
  lockMs: number;
  /** idle_in_transaction_session_timeout: a session left inside a transaction is closed by the server. */
  idleInTransactionMs: number;
}

export const DEFAULT_SESSION_TIMEOUTS: SessionTimeouts = {
  // Longest legitimate statements: a 20,000-row replay batch or a replay preview over millions of dead
  // letters, a few seconds each; ANALYZE of a large outbox, about as long.
  statementMs: 120_000,
  lockMs: 30_000,
  // A backfill batch keeps its transaction open while it parses the next slice of the file: milliseconds.
  idleInTransactionMs: 60_000,
};

export const SESSION_TIMEOUT_VARIABLES: Record<keyof SessionTimeouts, string> = {
  statementMs: 'GOTONG_DB_STATEMENT_TIMEOUT_MS',
  lockMs: 'GOTONG_DB_LOCK_TIMEOUT_MS',
  idleInTransactionMs: 'GOTONG_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS',
};

/** The session timeouts from the environment; a malformed value is a ConfigError naming the variable. */
export function sessionTimeouts(env: NodeJS.ProcessEnv = process.env): SessionTimeouts {
  const timeouts = { ...DEFAULT_SESSION_TIMEOUTS };
  for (const key of Object.keys(SESSION_TIMEOUT_VARIABLES) as Array<keyof SessionTimeouts>) {
    const name = SESSION_TIMEOUT_VARIABLES[key];
    const raw = env[name];
    if (!raw) continue;
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw)) || Number(raw) > 2_147_483_647) {
      throw new ConfigError(`${name} must be a whole number of milliseconds (0: no limit), not '${raw}'`);
    }
    timeouts[key] = Number(raw);
  }
  return timeouts;
}

export function createPool(databaseUrl: string, max = 10, timeouts: SessionTimeouts = sessionTimeouts()): Pool {
  const pool = new Pool({
    connectionString: databaseUrl,
    max,
    application_name: 'gotong-worker',
    statement_timeout: timeouts.statementMs,
    lock_timeout: timeouts.lockMs,
    idle_in_transaction_session_timeout: timeouts.idleInTransactionMs,
    // A failover can leave connections to the old primary half-open; keepalives find them.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  });
  // A connection that dies (server restart, failover, pg_terminate_backend, a session timeout) makes its
  // client emit 'error'. The pool listens only on idle clients, and an 'error' event nobody listens to
  // kills the process; so every client gets a listener for its whole life. Whoever holds the client sees
  // the failure anyway: its query rejects, and the client is not queryable any more, so the pool drops it
  // on release. Activities then fail and Temporal retries them once the database is back.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  pool.on('error', () => undefined);
  return pool;
}

/** Turns a connection failure into one line that names the fix, with any password masked. */
export function explainDatabaseError(err: unknown, databaseUrl: string): string {
  const e = err as { code?: string; message?: string };
  const where = describeDatabaseUrl(databaseUrl);
  const message = maskConnectionSecrets(e.message ?? String(err));
  if (err instanceof Error && err.name === 'MigrationLockTimeout') return message;
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOTFOUND' || e.code === 'ETIMEDOUT') {
    return `cannot reach PostgreSQL at ${where} (${e.code}); start it, or set DATABASE_URL to a reachable database`;
  }
  if (e.code === '3D000') {
    return `database in ${where} does not exist; create it (createdb) or run 'gotong-worker migrate', which creates it`;
  }
  if (e.code === '28P01' || e.code === '28000') {
    return `PostgreSQL refused the credentials in DATABASE_URL (${where}): ${message}`;
  }
  return `PostgreSQL error at ${where}: ${message}`;
}
