import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { everyoneCanReach, freePort } from '../../src/dev/local-host';

const run = promisify(execFile);

/** The newest PostgreSQL server binaries the distribution installed (initdb, pg_ctl). */
function serverBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL server binaries under ${root} (install the postgresql package)`);
  return join(root, versions[0]!, 'bin');
}

/**
 * A PostgreSQL cluster of the test's own, on a free port, with its data in a temp directory: the one thing a
 * test may restart (never the shared server). PostgreSQL refuses to run as root, so under root every
 * command runs as the `postgres` user. Durability is off: it only ever holds a test's data.
 */
export class ThrowawayPostgres {
  private constructor(
    readonly port: number,
    private readonly dataDir: string,
    private readonly bin: string,
  ) {}

  static async start(): Promise<ThrowawayPostgres> {
    const bin = serverBinDir();
    const base = everyoneCanReach(tmpdir()) ? tmpdir() : '/tmp';
    const dataDir = mkdtempSync(join(base, 'gotong-throwaway-pg-'));
    if (process.getuid?.() === 0) {
      const { stdout } = await run('id', ['-u', 'postgres']);
      const { stdout: gid } = await run('id', ['-g', 'postgres']);
      chownSync(dataDir, Number(stdout.trim()), Number(gid.trim()));
    }
    const cluster = new ThrowawayPostgres(await freePort(), dataDir, bin);
    await cluster.pg('initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    const settings = [
      `-p ${cluster.port}`,
      '-c listen_addresses=127.0.0.1',
      `-c unix_socket_directories=${dataDir}`,
      '-c fsync=off',
      '-c synchronous_commit=off',
      '-c full_page_writes=off',
      '-c max_connections=100',
    ].join(' ');
    await cluster.pg('pg_ctl', ['-D', dataDir, '-l', join(dataDir, 'server.log'), '-w', '-t', '60', '-o', settings, 'start']);
    return cluster;
  }

  url(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  /** `pg_ctl restart -m fast`: every connection is terminated, the server is down for a moment, then back. */
  async restart(): Promise<void> {
    // -l again: without it the new server would write to pg_ctl's stdout, a pipe this process waits on.
    await this.pg('pg_ctl', ['-D', this.dataDir, '-l', join(this.dataDir, 'server.log'), '-m', 'fast', '-w', '-t', '60', 'restart']);
  }

  async stop(): Promise<void> {
    await this.pg('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', '-t', '60', 'stop']).catch(() => undefined);
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** Stops the server and removes its data before this call returns: for a process that is exiting. */
  stopNow(): void {
    const [command, argv] = this.command('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', '-t', '60', 'stop']);
    try {
      execFileSync(command, argv, { cwd: '/', stdio: 'ignore', timeout: 60_000 });
    } catch {
      // Already stopped.
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  private command(tool: string, args: string[]): [string, string[]] {
    const binary = join(this.bin, tool);
    return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', binary, ...args]] : [binary, args];
  }

  private async pg(tool: string, args: string[]): Promise<void> {
    const [command, argv] = this.command(tool, args);
    try {
      await run(command, argv, { cwd: '/', timeout: 120_000 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`${tool} ${args.at(-1)} failed: ${e.stderr?.trim() || e.message}`);
    }
  }
}
