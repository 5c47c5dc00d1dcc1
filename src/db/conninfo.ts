import { hostname, userInfo } from 'node:os';
import { parse } from 'pg-connection-string';

/**
 * Connection strings in messages, and which database a connection string names.
 *
 * Passwords travel in three places an operator may paste into a message: the URL's user info
 * (`postgres://user:secret@host`), its query (`?password=`, `?sslpassword=`), and libpq's key=value form
 * (`host=db password=secret`). Every message that may quote a connection string goes through these.
 */

const MASK = '***';
const SECRET_PARAM = /^(ssl)?password$/i;

/** A connection string for a message: passwords masked, whatever form they take. */
export function maskConnectionString(connectionString: string): string {
  const asUrl = maskUrl(connectionString) ?? maskUrl(encodeURI(connectionString));
  if (asUrl !== null) return asUrl;
  // URLs the WHATWG parser refuses but the driver takes (`postgres://user:pw@/db?host=/socket`), and key=value strings.
  if (/^[a-z][a-z0-9+.-]*:\/\/\S*$/i.test(connectionString) || /^\s*[a-z_]+\s*=/i.test(connectionString)) {
    return maskConnectionSecrets(connectionString);
  }
  return '(unparseable connection string)';
}

function maskUrl(text: string): string | null {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) return null;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.password) url.password = MASK;
  for (const key of [...url.searchParams.keys()]) {
    if (SECRET_PARAM.test(key)) url.searchParams.set(key, MASK);
  }
  return url.toString();
}

/**
 * Masks passwords wherever they appear in free text (an error message from a driver, say): URL user info,
 * `password=` / `sslpassword=` query parameters and key=value pairs, quoted or not.
 */
export function maskConnectionSecrets(text: string): string {
  return (
    text
      // scheme://user:secret@host: up to the last '@' of the run without spaces, so an '@' in the password is covered.
      .replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*):[^\s]*@/gi, `$1:${MASK}@`)
      // ?password=secret and &sslpassword=secret
      .replace(/([?&](?:ssl)?password=)[^&#\s]*/gi, `$1${MASK}`)
      // password=secret, password = 'a secret', sslpassword='it''s'
      .replace(/(?<![?&\w])((?:ssl)?password)\s*=\s*(?:'(?:[^'\\]|\\.)*'?|\S*)/gi, `$1=${MASK}`)
  );
}

/** Where a connection string leads, as PostgreSQL sees it: the server (host and port) and the database. */
export interface DatabaseIdentity {
  /** `local` for every name of this machine: localhost, 127.0.0.0/8, ::1, a Unix socket, its host name. */
  host: string;
  port: number;
  database: string;
}

const LOCAL_HOSTS = new Set(['', 'localhost', 'localhost.localdomain', '::1', '0:0:0:0:0:0:0:1', hostname().toLowerCase()]);

function normaliseHost(host: string): string {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (LOCAL_HOSTS.has(h) || /^127\.\d+\.\d+\.\d+$/.test(h) || h.startsWith('/')) return 'local';
  return h;
}

/**
 * Reads a connection string the way the `pg` driver does (its own parser, then the same environment
 * defaults: PGHOST, PGPORT, PGDATABASE, then the user name), so that two strings compare equal exactly
 * when the driver would connect both to one database.
 */
export function databaseIdentity(connectionString: string, env: NodeJS.ProcessEnv = process.env): DatabaseIdentity {
  const parsed = parseWithoutFiles(connectionString);
  const user = parsed.user || env.PGUSER || env.USER || userInfo().username;
  return {
    host: normaliseHost(parsed.host || env.PGHOST || 'localhost'),
    port: Number(parsed.port || env.PGPORT || 5432),
    database: parsed.database || env.PGDATABASE || user,
  };
}

/** The database a connection string names, decoded as the driver decodes it; null when it names none. */
export function databaseName(connectionString: string): string | null {
  return parseWithoutFiles(connectionString).database || null;
}

/** The driver's parser, minus sslcert/sslkey/sslrootcert, which it reads from disk and which name no database. */
function parseWithoutFiles(connectionString: string): ReturnType<typeof parse> {
  return parse(connectionString.replace(/([?&])ssl(cert|key|rootcert)=[^&#]*/gi, '$1'));
}

export function isSameDatabase(a: string, b: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const x = databaseIdentity(a, env);
  const y = databaseIdentity(b, env);
  return x.host === y.host && x.port === y.port && x.database === y.database;
}
