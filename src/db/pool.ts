import { Pool } from 'pg';
import { describeDatabaseUrl } from '../config';

export function createPool(databaseUrl: string, max = 10): Pool {
  const pool = new Pool({ connectionString: databaseUrl, max, application_name: 'gotong-worker' });
  // An idle client losing its connection must not crash the worker; the next query reconnects.
  pool.on('error', () => undefined);
  return pool;
}

/** Turns a connection failure into one line that names the fix. */
export function explainDatabaseError(err: unknown, databaseUrl: string): string {
  const e = err as { code?: string; message?: string };
  const where = describeDatabaseUrl(databaseUrl);
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOTFOUND' || e.code === 'ETIMEDOUT') {
    return `cannot reach PostgreSQL at ${where} (${e.code}); start it, or set DATABASE_URL to a reachable database`;
  }
  if (e.code === '3D000') {
    return `database in ${where} does not exist; create it (createdb) or run 'gotong-worker migrate', which creates it`;
  }
  if (e.code === '28P01' || e.code === '28000') {
    return `PostgreSQL refused the credentials in DATABASE_URL (${where}): ${e.message ?? ''}`;
  }
  return `PostgreSQL error at ${where}: ${e.message ?? String(err)}`;
}
