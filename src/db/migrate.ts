import { readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, type Pool } from 'pg';
import { ConfigError, describeDatabaseUrl } from '../config';
import { databaseName } from './conninfo';

export const MIGRATIONS_DIR = join(__dirname, '..', '..', '..', 'migrations');

/**
 * A migration whose first line is this marker runs outside a transaction, one statement at a time: the only
 * way to build an index on a big table without blocking writes (CREATE INDEX CONCURRENTLY). Its statements
 * must be idempotent (IF NOT EXISTS): if one fails, the migration is not recorded, and the next run applies
 * it again from the top. An index that a failed concurrent build left INVALID is dropped and built again.
 */
export const NO_TRANSACTION_MARKER = '-- gotong:no-transaction';

/** Default bound on each lock wait of a migration run; GOTONG_MIGRATE_LOCK_TIMEOUT_MS overrides it. */
export const DEFAULT_MIGRATE_LOCK_TIMEOUT_MS = 120_000;

/**
 * Each try of a transactional migration waits this long at most for a table lock. A DDL statement queued
 * for an exclusive lock makes every later query on that table queue behind it, so it must not wait long:
 * it gives up, lets the fleet through, and tries again until the bound.
 */
const DDL_LOCK_TRY_MS = 3_000;

const LOCK_KEY_SQL = `hashtext('gotong-worker:migrate')`;

interface Migration {
  version: number;
  name: string;
  sql: string;
  transactional: boolean;
}

export interface MigrateOptions {
  /** How long to wait for another process's migration, or for a lock a migration needs, before giving up. */
  lockTimeoutMs?: number;
  /** Progress worth telling the operator: what a migration waits for, and who holds it. */
  log?: (line: string) => void;
}

/** A migration gave up waiting for a lock; the message says who holds it and what to do. */
export class MigrationLockTimeout extends Error {
  override name = 'MigrationLockTimeout';
}

export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d+_[\w-]+\.sql$/.test(file))
    .sort()
    .map((file) => {
      const sql = readFileSync(join(dir, file), 'utf8');
      return {
        version: Number(file.split('_')[0]),
        name: file,
        sql,
        transactional: sql.split('\n', 1)[0]!.trim() !== NO_TRANSACTION_MARKER,
      };
    });
}

export function migrateLockTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.GOTONG_MIGRATE_LOCK_TIMEOUT_MS;
  if (!raw) return DEFAULT_MIGRATE_LOCK_TIMEOUT_MS;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) {
    throw new ConfigError(`GOTONG_MIGRATE_LOCK_TIMEOUT_MS must be a whole number of milliseconds >= 1, not '${raw}'`);
  }
  return Number(raw);
}

/** Names of the migrations in `dir` that the database has not applied yet. */
export async function pendingMigrations(pool: Pool, dir = MIGRATIONS_DIR): Promise<string[]> {
  const { rows } = await pool.query<{ version: number }>(
    `SELECT version FROM schema_migrations`,
  ).catch((err: { code?: string }) => {
    if (err.code === '42P01') return { rows: [] as Array<{ version: number }> };
    throw err;
  });
  const done = new Set(rows.map((r) => r.version));
  return listMigrations(dir).filter((m) => !done.has(m.version)).map((m) => m.name);
}

/**
 * Applies pending migrations in order, under a session advisory lock so that workers starting at once take
 * turns. Nothing here waits without a bound, and every wait says what it waits for:
 * - the lock is polled with pg_try_advisory_lock (a session blocked in pg_advisory_lock would hold a snapshot,
 *   and a concurrent index build in the holder's migration waits for every older snapshot: a deadlock);
 *   while another process holds it, `log` names that process, and after `lockTimeoutMs` this gives up;
 * - a transactional migration waits at most a few seconds per try for its table locks, then retries;
 * - the migration session has no statement timeout (index builds on big tables take minutes) and is closed
 *   at the end, so none of its settings leak into a pooled session.
 */
export async function migrate(pool: Pool, dir = MIGRATIONS_DIR, options: MigrateOptions = {}): Promise<string[]> {
  const lockTimeoutMs = options.lockTimeoutMs ?? migrateLockTimeoutMs();
  const log = options.log ?? (() => undefined);
  const session = new Client({
    ...pool.options,
    application_name: `gotong-worker migrate (${hostname()} pid ${process.pid})`.slice(0, 63),
    statement_timeout: 0,
    lock_timeout: 0,
  });
  session.on('error', () => undefined);
  await session.connect();
  const applied: string[] = [];
  let locked = false;
  try {
    await takeMigrationLock(session, lockTimeoutMs, log);
    locked = true;
    await session.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set(
      (await session.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version),
    );
    for (const migration of listMigrations(dir)) {
      if (done.has(migration.version)) continue;
      const waits = new LockWaits(pool, session, migration.name, lockTimeoutMs, log);
      if (migration.transactional) await applyInTransaction(session, migration, waits);
      else await applyStatementByStatement(session, migration, waits);
      applied.push(migration.name);
    }
  } finally {
    if (locked) await session.query(`SELECT pg_advisory_unlock(${LOCK_KEY_SQL})`).catch(() => undefined);
    await session.end().catch(() => undefined);
  }
  return applied;
}

async function takeMigrationLock(session: Client, timeoutMs: number, log: (line: string) => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let reported = '';
  for (;;) {
    const { rows } = await session.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock(${LOCK_KEY_SQL}) AS locked`);
    if (rows[0]!.locked) return;
    const holder = await describeMigrationLockHolder(session);
    const waiting = `waiting for the migration lock held by ${holder ?? 'another session'}`;
    if (Date.now() >= deadline) {
      throw new MigrationLockTimeout(
        `gave up after ${seconds(timeoutMs)} ${waiting}; let that migration finish (or end that session), then try again ` +
          `(GOTONG_MIGRATE_LOCK_TIMEOUT_MS sets the wait; in production run 'gotong-worker migrate' once and start workers with --no-migrate)`,
      );
    }
    if (holder !== reported) {
      log(`${waiting}; up to ${seconds(timeoutMs)}`);
      reported = holder ?? '';
    }
    await sleep(Math.min(500, Math.max(0, deadline - Date.now())));
  }
}

/** "pid 123 (application, since 2026-11-29T04:00:00Z: what it runs)", or null once nobody holds it. */
async function describeMigrationLockHolder(session: Client): Promise<string | null> {
  const { rows } = await session.query<{ pid: number }>(
    `SELECT l.pid FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND ((l.classid::bigint << 32) | l.objid::bigint) = ${LOCK_KEY_SQL}::bigint`,
  );
  if (rows.length === 0) return null;
  return (await describeSessions(session, rows.map((r) => r.pid))) || null;
}

interface SessionRow {
  pid: number;
  application_name: string;
  client_addr: string | null;
  since: Date;
  state: string | null;
  query: string | null;
}

async function describeSessions(db: Client | Pool, pids: number[]): Promise<string> {
  if (pids.length === 0) return '';
  const { rows } = await db.query<SessionRow>(
    `SELECT pid, application_name, client_addr::text, coalesce(xact_start, backend_start) AS since, state,
            left(regexp_replace(query, '\\s+', ' ', 'g'), 80) AS query
       FROM pg_stat_activity WHERE pid = ANY($1::int[]) ORDER BY pid`,
    [pids],
  );
  return rows
    .map((r) => {
      const who = [r.application_name || 'no application_name', r.client_addr ? `from ${r.client_addr}` : null].filter(Boolean).join(' ');
      const doing = r.state === 'active' && r.query ? `: ${r.query}` : r.state ? ` (${r.state})` : '';
      return `pid ${r.pid} (${who}, since ${r.since.toISOString()}${doing})`;
    })
    .join(', ');
}

/**
 * The lock waits of one migration: each statement (a transactional migration is one) may spend the bound
 * waiting, over all its tries; while it runs, another connection looks every half second at which sessions
 * block it, so the operator is told and a give-up message can name them.
 */
class LockWaits {
  private deadline = 0;
  private blockers = '';
  private reported = '';

  constructor(
    private readonly pool: Pool,
    private readonly session: Client,
    private readonly migration: string,
    private readonly timeoutMs: number,
    private readonly log: (line: string) => void,
  ) {}

  /** A new statement: the bound starts again. */
  startStatement(): void {
    this.deadline = Date.now() + this.timeoutMs;
    this.blockers = '';
  }

  remainingMs(): number {
    return Math.max(1, this.deadline - Date.now());
  }

  /** Runs `sql` while watching what blocks it. */
  async run(sql: string): Promise<void> {
    const pid = (this.session as unknown as { processID: number }).processID;
    const looks = new Set<Promise<void>>();
    const watch = setInterval(() => {
      if (looks.size > 0) return;
      const look = this.lookAtBlockers(pid).finally(() => looks.delete(look));
      looks.add(look);
    }, 500);
    try {
      await this.session.query(sql);
    } finally {
      clearInterval(watch);
      await Promise.all(looks);
    }
  }

  private async lookAtBlockers(pid: number): Promise<void> {
    try {
      const { rows } = await this.pool.query<{ pids: number[] }>('SELECT pg_blocking_pids($1) AS pids', [pid]);
      const described = await describeSessions(this.pool, rows[0]?.pids ?? []);
      if (!described) return;
      this.blockers = described;
      if (described !== this.reported) {
        this.reported = described;
        this.log(`migration ${this.migration} is waiting for a lock held by ${described}; up to ${seconds(this.timeoutMs)}`);
      }
    } catch {
      // Only for the message; the migration goes on regardless.
    }
  }

  /** After a lock timeout: waits a moment before the next try, or throws once the bound is spent. */
  async retryAfterLockTimeout(): Promise<void> {
    if (Date.now() < this.deadline) {
      await sleep(Math.min(1_000, this.remainingMs()));
      return;
    }
    throw new MigrationLockTimeout(
      `migration ${this.migration} gave up after ${seconds(this.timeoutMs)} waiting for a lock` +
        `${this.blockers ? ` held by ${this.blockers}` : ''}; end or wait out that session, then run 'gotong-worker migrate' again`,
    );
  }
}

const isLockTimeout = (err: unknown) => (err as { code?: string }).code === '55P03';

async function applyInTransaction(session: Client, migration: Migration, waits: LockWaits): Promise<void> {
  waits.startStatement();
  for (;;) {
    await session.query('BEGIN');
    try {
      await session.query(`SET LOCAL lock_timeout = ${Math.min(DDL_LOCK_TRY_MS, waits.remainingMs())}`);
      await waits.run(migration.sql);
      await session.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
      await session.query('COMMIT');
      return;
    } catch (err) {
      await session.query('ROLLBACK').catch(() => undefined);
      if (isLockTimeout(err)) {
        await waits.retryAfterLockTimeout();
        continue;
      }
      throw new Error(`migration ${migration.name} failed: ${(err as Error).message}`);
    }
  }
}

const CONCURRENT_INDEX = /^CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+("(?:[^"]|"")+"|[\w$]+)/i;

async function applyStatementByStatement(session: Client, migration: Migration, waits: LockWaits): Promise<void> {
  for (const statement of splitSqlStatements(migration.sql)) {
    const index = CONCURRENT_INDEX.exec(statement)?.[1];
    waits.startStatement();
    for (;;) {
      try {
        // A concurrent build only takes a lock that writes do not wait behind, so it may wait the whole bound.
        await session.query(`SET lock_timeout = ${waits.remainingMs()}`);
        if (index) await dropIfInvalid(session, index, waits);
        await waits.run(statement);
        break;
      } catch (err) {
        if (isLockTimeout(err)) {
          await waits.retryAfterLockTimeout();
          continue;
        }
        throw new Error(`migration ${migration.name} failed: ${(err as Error).message}`);
      }
    }
  }
  await session.query('RESET lock_timeout');
  await session.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2) ON CONFLICT DO NOTHING', [
    migration.version,
    migration.name,
  ]);
}

/** A concurrent build that failed (cancelled, timed out, a crash) leaves an INVALID index: IF NOT EXISTS would keep it. */
async function dropIfInvalid(session: Client, index: string, waits: LockWaits): Promise<void> {
  const { rows } = await session.query<{ valid: boolean }>(
    `SELECT i.indisvalid AS valid FROM pg_index i WHERE i.indexrelid = to_regclass($1)`,
    [index],
  );
  if (rows.length === 0 || rows[0]!.valid) return;
  await waits.run(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`);
}

/**
 * Splits a migration into statements at semicolons outside comments, quoted strings, quoted identifiers and
 * dollar-quoted bodies. Each statement starts at its first code: comments before it are dropped.
 */
export function splitSqlStatements(sql: string): string[] {
  const statements: string[] = [];
  // Where the current statement's first code (not comment, not space) starts; -1 before there is any.
  let start = -1;
  let i = 0;
  const code = () => {
    if (start < 0) start = i;
  };
  const push = (end: number) => {
    if (start >= 0) statements.push(sql.slice(start, end).trim());
    start = -1;
  };
  while (i < sql.length) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const eol = sql.indexOf('\n', i);
      i = eol === -1 ? sql.length : eol + 1;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === "'" || c === '"') {
      code();
      const backslashes = c === "'" && /[eE]/.test(sql[i - 1] ?? '') && !/[\w$]/.test(sql[i - 2] ?? '');
      i++;
      while (i < sql.length) {
        if (backslashes && sql[i] === '\\') i += 2;
        else if (sql[i] === c && sql[i + 1] === c) i += 2;
        else if (sql[i] === c) break;
        else i++;
      }
      i++;
    } else if (c === '$' && !/[\w$]/.test(sql[i - 1] ?? '')) {
      const tag = /^\$([A-Za-z_][\w]*)?\$/.exec(sql.slice(i))?.[0];
      code();
      if (tag) {
        const close = sql.indexOf(tag, i + tag.length);
        i = close === -1 ? sql.length : close + tag.length;
      } else {
        i++;
      }
    } else if (c === ';') {
      push(i);
      i++;
    } else {
      if (!/\s/.test(c)) code();
      i++;
    }
  }
  push(sql.length);
  return statements;
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** Creates the database named in the URL if it is missing, so a fresh machine needs no manual createdb. */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl);
  const name = databaseName(databaseUrl);
  if (!name) return false;
  const probe = new Client({ connectionString: databaseUrl });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return false;
  } catch (err) {
    if ((err as { code?: string }).code !== '3D000') throw err;
  } finally {
    await probe.end().catch(() => undefined);
  }
  url.pathname = '/postgres';
  const admin = new Client({ connectionString: url.toString() });
  admin.on('error', () => undefined);
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
  } catch (err) {
    // Another process created it between our probe and now.
    if ((err as { code?: string }).code !== '42P04') throw err;
  } finally {
    await admin.end();
  }
  return true;
}

/**
 * Drops and creates the database named in the URL. Only for databases this tool owns outright:
 * the test database, the demo's and the benchmarks'; never DATABASE_URL.
 */
export async function recreateDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  // Decoded as the driver decodes it, so what is dropped is exactly the database a connection would reach.
  const name = (databaseName(databaseUrl) ?? '').replace(/"/g, '""');
  if (!name) throw new Error(`no database named in ${describeDatabaseUrl(databaseUrl)}`);
  url.pathname = '/postgres';
  const admin = new Client({ connectionString: url.toString() });
  admin.on('error', () => undefined);
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
}
