import { spawn, type ChildProcess } from 'node:child_process';
import { Client } from 'pg';
import { CLI } from './harness';

/** A `gotong-worker` process spawned as an operator would, with what it printed so far. */
export interface Proc {
  child: ChildProcess;
  stdout: string;
  stderr: string;
}

/** Starts the real executable with `env` over this process's environment; output is collected, not shown. */
export function spawnCli(args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const proc: Proc = { child, stdout: '', stderr: '' };
  child.stdout!.on('data', (d: Buffer) => (proc.stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (proc.stderr += d.toString()));
  return proc;
}

export const alive = (p: Proc) => p.child.exitCode === null && p.child.signalCode === null;

/** The `--json` summary a run command prints as its last line. */
export function summaryOf(proc: Proc): Record<string, unknown> {
  const last = proc.stdout.trimEnd().split('\n').at(-1) ?? '';
  return JSON.parse(last) as Record<string, unknown>;
}

/** The last lines a process wrote to stderr, on one line, for a failure message. */
export function stderrTail(proc: Proc, lines = 5): string {
  return proc.stderr.trim().split('\n').slice(-lines).join(' | ');
}

/** Runs one statement on a connection of its own: the pools' connections are what fault tests terminate. */
export async function adminQuery<T extends Record<string, unknown>>(databaseUrl: string, sql: string, values: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: databaseUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}
