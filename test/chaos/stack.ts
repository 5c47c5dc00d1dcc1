import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Pool } from 'pg';
import { createPool } from '../../src/db/pool';
import { ensureDatabase, migrate } from '../../src/db/migrate';
import { findOrBuildTemporalCli, startDevServer } from '../../src/dev/temporal-cli';
import { alive, spawnCli, stderrTail, type Proc } from '../helpers/cli-process';
import { INPUT_ROOT } from '../helpers/files';
import { exited, waitFor } from '../helpers/harness';
import { TestReceiver } from '../helpers/receiver';
import { freePort } from '../../src/dev/local-host';
import { ThrowawayPostgres } from '../helpers/throwaway-postgres';

const SECRET = 'chaos-signing-secret-0123456789abcdef';
const TASK_QUEUE = 'gotong-chaos';

/** Settings every worker of the stack runs with: short leases, so events a killed worker held come back soon. */
const DELIVERY_ENV = {
  WEBHOOK_SECRET: SECRET,
  WEBHOOK_BATCH_SIZE: '100',
  WEBHOOK_CONCURRENCY: '10',
  WEBHOOK_TIMEOUT_MS: '1000',
  GOTONG_LOG_FORMAT: 'json',
};

/** Stops a child with SIGTERM (SIGKILL if it lingers) and resolves once it has exited. */
async function stopChild(child: ChildProcess, graceMs = 20_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  child.kill('SIGTERM');
  await exited(child);
  clearTimeout(timer);
}

/** A Temporal dev server keeping its state in one SQLite file, so it can be stopped and started on it again. */
export class DevServer {
  private child: ChildProcess | undefined;
  private constructor(
    private readonly binary: string,
    readonly port: number,
    private readonly uiPort: number,
    private readonly dbFile: string,
  ) {}

  static async start(binary: string, dbFile: string): Promise<DevServer> {
    const server = new DevServer(binary, await freePort(), await freePort(), dbFile);
    await server.up();
    return server;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private async up(): Promise<void> {
    this.child = await startDevServer({ binary: this.binary, port: this.port, uiPort: this.uiPort, dbFile: this.dbFile });
  }

  /** Stopped (SIGTERM) and started again on the same port and the same SQLite file. */
  async restart(): Promise<void> {
    if (this.child) await stopChild(this.child);
    await this.up();
  }

  async stop(): Promise<void> {
    if (this.child) await stopChild(this.child);
  }

  /** Started again after `stop`, on the same port and SQLite file: the end of an outage. */
  async startAgain(): Promise<void> {
    await this.up();
  }

  killNow(): void {
    this.child?.kill('SIGKILL');
  }
}

/**
 * Everything a chaos trial runs against, all on loopback and all its own: a throwaway PostgreSQL cluster, a
 * Temporal dev server on a SQLite file, a receiver that verifies signatures, and two worker processes serving the
 * same task queues. Each part can be restarted; nothing here touches the machine's own servers.
 */
export class ChaosStack {
  readonly workers: Proc[] = [];
  /** Worker processes this stack killed on purpose (their deaths are not failures). */
  private readonly killed = new Set<Proc>();
  /** Should this process exit before `stop()` (an interrupt, a crash), nothing it started outlives it. */
  private readonly killNow = () => {
    for (const w of this.workers) w.child.kill('SIGKILL');
    this.temporal.killNow();
    this.cluster.stopNow();
    rmSync(this.dir, { recursive: true, force: true });
  };

  private constructor(
    private readonly dir: string,
    readonly cluster: ThrowawayPostgres,
    readonly temporal: DevServer,
    readonly receiver: TestReceiver,
    readonly databaseUrl: string,
    readonly pool: Pool,
  ) {}

  static async start(log: (line: string) => void = () => undefined): Promise<ChaosStack> {
    const binary = await findOrBuildTemporalCli({ log });
    // A few ms a request, so a drain lasts long enough for a fault to land in its middle.
    const receiver = await new TestReceiver([SECRET], () => ({ status: 200, delayMs: 5 })).start();
    receiver.keepBodies = false;
    const dir = mkdtempSync(join(tmpdir(), 'gotong-chaos-'));
    const [cluster, temporal] = await Promise.all([ThrowawayPostgres.start(), DevServer.start(binary, join(dir, 'temporal.sqlite'))]);
    const databaseUrl = cluster.url('gotong_chaos');
    const stack = new ChaosStack(dir, cluster, temporal, receiver, databaseUrl, createPool(databaseUrl, 4));
    process.once('exit', stack.killNow);
    try {
      await ensureDatabase(databaseUrl);
      await migrate(stack.pool);
      log(`PostgreSQL on 127.0.0.1:${cluster.port}, Temporal on ${temporal.address}, receiver on ${receiver.url}`);
      stack.workers.push(stack.spawnWorker(), stack.spawnWorker());
      await stack.workersReady();
    } catch (err) {
      await stack.stop();
      throw err;
    }
    return stack;
  }

  /** Environment of a CLI command run against this stack, whatever the caller's own environment points at. */
  get clientEnv(): Record<string, string> {
    return {
      TEMPORAL_ADDRESS: this.temporal.address,
      TEMPORAL_NAMESPACE: 'default',
      DATABASE_URL: this.databaseUrl,
      GOTONG_TASK_QUEUE: TASK_QUEUE,
      GOTONG_INPUT_ROOTS: INPUT_ROOT,
    };
  }

  private spawnWorker(): Proc {
    return spawnCli(['worker', '--no-migrate', '--dispatchers', '1'], { ...this.clientEnv, ...DELIVERY_ENV, WEBHOOK_URL: this.receiver.url });
  }

  /** Both workers poll, and the dispatcher is running (a worker says so once it made sure of it). */
  private async workersReady(): Promise<void> {
    await waitFor(
      'both workers polling and the dispatcher running',
      async () => {
        this.assertWorkersAlive();
        return this.workers.every((w) => /dispatchers (started|running)/.test(w.stderr));
      },
      120_000,
      100,
    );
  }

  /** Throws, with what it printed, if a worker died that this stack did not kill. */
  assertWorkersAlive(): void {
    for (const [i, w] of this.workers.entries()) {
      if (!alive(w) && !this.killed.has(w)) {
        throw new Error(`worker ${i + 1} died (exit ${w.child.exitCode ?? w.child.signalCode}): ${stderrTail(w)}`);
      }
    }
  }

  /** SIGKILL for worker `index` (0 or 1), then the same worker started again. */
  async killWorker(index: number): Promise<void> {
    const victim = this.workers[index]!;
    this.killed.add(victim);
    victim.child.kill('SIGKILL');
    await exited(victim.child);
    this.workers[index] = this.spawnWorker();
  }

  async restartPostgres(): Promise<void> {
    await this.cluster.restart();
  }

  async restartTemporal(): Promise<void> {
    await this.temporal.restart();
  }

  async stop(): Promise<void> {
    process.removeListener('exit', this.killNow);
    for (const w of this.workers) await stopChild(w.child);
    await this.receiver.stop();
    await this.pool.end().catch(() => undefined);
    await this.temporal.stop();
    await this.cluster.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
