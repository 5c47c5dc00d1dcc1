import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { DEV_SERVER_SEARCH_ATTRIBUTE_ARGS } from '../shared/run-metadata';

const run = promisify(execFile);

/** The newest Temporal CLI that `go install` accepts; it embeds Server 1.29.1 and UI 2.42.1. */
export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';

/**
 * Dev-server flags that make activity round trips and SQLite writes cheap (see DESIGN.md), and register the project's
 * search attributes (every dev server the project starts has them: the demo's, `temporal-server`'s, the tests').
 */
export const FAST_DEV_SERVER_ARGS = [
  '--dynamic-config-value', 'system.enableActivityEagerExecution=true',
  '--sqlite-pragma', 'journal_mode=WAL',
  '--sqlite-pragma', 'synchronous=OFF',
  ...DEV_SERVER_SEARCH_ATTRIBUTE_ARGS,
];

type Log = (line: string) => void;

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function isTemporalCli(path: string): Promise<boolean> {
  try {
    const { stdout } = await run(path, ['--version'], { timeout: 20_000 });
    return /temporal version/i.test(stdout);
  } catch {
    return false;
  }
}

async function goBinDir(): Promise<string | null> {
  try {
    const { stdout } = await run('go', ['env', 'GOBIN', 'GOPATH'], { timeout: 30_000 });
    const [gobin, gopath] = stdout.split('\n').map((s) => s.trim());
    if (gobin) return gobin;
    if (gopath) return join(gopath.split(delimiter)[0]!, 'bin');
    return null;
  } catch {
    return null;
  }
}

/**
 * Finds the Temporal CLI: TEMPORAL_CLI_PATH, then PATH, then Go's bin directory; builds it there
 * with `go install` when it is nowhere, so clones and CI on one machine share one build.
 */
export async function findOrBuildTemporalCli(opts: { explicitPath?: string; log?: Log } = {}): Promise<string> {
  const log = opts.log ?? (() => undefined);
  const explicitPath = opts.explicitPath ?? process.env.TEMPORAL_CLI_PATH;
  if (explicitPath) {
    if (isExecutable(explicitPath) && (await isTemporalCli(explicitPath))) return explicitPath;
    throw new Error(`TEMPORAL_CLI_PATH=${explicitPath} is not a runnable Temporal CLI; fix the path or unset it`);
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, 'temporal');
    if (isExecutable(candidate) && (await isTemporalCli(candidate))) return candidate;
  }
  const binDir = await goBinDir();
  if (!binDir) {
    throw new Error('no Temporal CLI found and Go is not installed to build it; install Go or set TEMPORAL_CLI_PATH');
  }
  const built = join(binDir, 'temporal');
  if (isExecutable(built) && (await isTemporalCli(built))) return built;
  log(`building the Temporal CLI (${TEMPORAL_CLI_MODULE}) into ${binDir}; the first build takes about 3-4 minutes`);
  await new Promise<void>((resolve, reject) => {
    const child = spawn('go', ['install', TEMPORAL_CLI_MODULE], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`go install exited with ${code}`))));
  });
  if (!isExecutable(built)) throw new Error(`go install finished but ${built} is missing`);
  return built;
}

export function isPortOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export interface DevServerOptions {
  binary: string;
  ip?: string;
  port?: number;
  uiPort?: number;
  /** SQLite file; the server keeps its state across restarts in it. */
  dbFile?: string;
  stdio?: 'inherit' | 'ignore';
  /** Namespaces to create at start, besides `default`. */
  namespaces?: string[];
}

/** Starts `temporal server start-dev` and resolves once its gRPC port accepts connections. */
export async function startDevServer(opts: DevServerOptions): Promise<ChildProcess> {
  const ip = opts.ip ?? '127.0.0.1';
  const port = opts.port ?? 7233;
  const args = ['server', 'start-dev', '--ip', ip, '--port', String(port), '--ui-port', String(opts.uiPort ?? port + 1000)];
  if (opts.dbFile) {
    mkdirSync(dirname(opts.dbFile), { recursive: true });
    args.push('--db-filename', opts.dbFile);
  }
  for (const namespace of opts.namespaces ?? []) args.push('--namespace', namespace);
  args.push(...FAST_DEV_SERVER_ARGS);
  const child = spawn(opts.binary, args, { stdio: ['ignore', opts.stdio ?? 'ignore', opts.stdio ?? 'ignore'] });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`temporal server start-dev exited with ${child.exitCode}`);
    if (await isPortOpen(ip, port)) return child;
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGTERM');
  throw new Error(`temporal server start-dev did not open ${ip}:${port} within 60 s`);
}

export function defaultDevServerDbFile(cwd = process.cwd()): string {
  return join(cwd, '.gotong', 'temporal-dev.sqlite');
}
