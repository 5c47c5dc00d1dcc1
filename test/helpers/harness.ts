import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { Pool } from 'pg';
import { createPool } from '../../src/db/pool';
import { migrate, recreateDatabase } from '../../src/db/migrate';
import { FAST_DEV_SERVER_ARGS, findOrBuildTemporalCli } from '../../src/dev/temporal-cli';
import { createWorker } from '../../src/worker';
import { createDeliveryAgent } from '../../src/delivery/http';

export interface Harness {
  env: TestWorkflowEnvironment;
  pool: Pool;
  databaseUrl: string;
  workflowBundle: WorkflowBundleWithSourceMap;
  temporalCli: string;
  /** The dev server's Web UI (test/ui.browser.test.ts drives it). */
  uiUrl: string;
}

let harness: Harness | undefined;

export const REPO_ROOT = join(__dirname, '..', '..', '..');
export const FIXTURES = join(REPO_ROOT, 'test', 'fixtures');
export const CLI = join(REPO_ROOT, 'bin', 'gotong-worker.js');

export function getHarness(): Harness {
  if (!harness) throw new Error('test harness not set up (mochaGlobalSetup did not run)');
  return harness;
}

function testDatabaseUrl(): string {
  return process.env.TEST_DATABASE_URL ?? `postgres://postgres@127.0.0.1:5432/gotong_test`;
}


export async function setUpHarness(): Promise<void> {
  // Worker state changes and expected activity failures would drown the test report at INFO.
  // The Rust core's lines are forwarded to that logger too, as the worker does (src/temporal.ts); otherwise the core
  // prints its expected warnings (a task completed after its run closed) straight into the report.
  const level = (process.env.TEST_LOG_LEVEL as 'ERROR' | undefined) ?? 'ERROR';
  Runtime.install({ logger: new DefaultLogger(level), telemetryOptions: { logging: { filter: { core: level, other: 'ERROR' }, forward: {} } } });
  const temporalCli = await findOrBuildTemporalCli({ log: (line) => console.error(`[test setup] ${line}`) });
  const databaseUrl = testDatabaseUrl();
  // A database of the tests' own, dropped and created fresh for every test run.
  await recreateDatabase(databaseUrl);
  const pool = createPool(databaseUrl, 20);
  await migrate(pool);
  const uiPort = await freePort();
  const [env, workflowBundle] = await Promise.all([
    TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: temporalCli },
        ip: '127.0.0.1',
        // FAST_DEV_SERVER_ARGS also registers the project's search attributes, as every dev server it starts does.
        extraArgs: FAST_DEV_SERVER_ARGS,
        // The dev server logs at warn and error what the suite does on purpose (workers stopped mid-poll, queries to
        // closed runs, slow calls under load); TEST_TEMPORAL_LOG_LEVEL=warn brings them back when debugging the server.
        log: { format: 'pretty', level: process.env.TEST_TEMPORAL_LOG_LEVEL ?? 'never' },
        ui: true,
        uiPort,
      },
    }),
    bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: quietLogger }),
  ]);
  harness = { env, pool, databaseUrl, workflowBundle, temporalCli, uiUrl: `http://127.0.0.1:${uiPort}` };
}

/** A port nothing listens on now (the OS picks it), for the dev server's UI. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function tearDownHarness(): Promise<void> {
  if (!harness) return;
  await harness.env.teardown();
  await harness.pool.end();
  harness = undefined;
}

const quietLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => console.warn(message),
  error: (message: string) => console.error(message),
};

export async function resetTables(pool: Pool): Promise<void> {
  await pool.query(
    `TRUNCATE webhook_outbox, webhook_delivery_attempts, batch_ledger, backfill_failed_lines, backfill_dry_run_seen, backfill_dry_run_coverage,
              webhook_replay_audit, webhook_replay_selection CASCADE`,
  );
}

let queueCounter = 0;
export function uniqueTaskQueue(prefix: string): string {
  queueCounter += 1;
  return `${prefix}-${process.pid}-${queueCounter}-${Date.now()}`;
}

/** Runs `fn` while an in-process worker serves `taskQueue` (delivering to `delivery` when given). */
export async function withWorker<T>(
  taskQueue: string,
  fn: () => Promise<T>,
  /** requestTimeoutMs: the worker's WEBHOOK_TIMEOUT_MS, which bounds connecting (see createDeliveryAgent). */
  delivery?: { url: string; secret: string; previousSecret?: string; requestTimeoutMs?: number },
  /** Another database than the harness's (a pool the caller owns). */
  options: { pool?: Pool } = {},
): Promise<T> {
  const { env, workflowBundle } = getHarness();
  const pool = options.pool ?? getHarness().pool;
  const agent = delivery ? createDeliveryAgent(64, delivery.requestTimeoutMs) : undefined;
  const worker = await createWorker({
    connection: env.nativeConnection,
    namespace: env.namespace ?? 'default',
    taskQueue,
    pool,
    workflowBundle,
    delivery:
      delivery && agent
        ? { url: delivery.url, secrets: { current: delivery.secret, previous: delivery.previousSecret }, agent }
        : undefined,
  });
  try {
    return await worker.runUntil(fn);
  } finally {
    await agent?.close();
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real executable, as an operator would, against the test Temporal server and database. */
export function runCli(args: string[], extraEnv: Record<string, string> = {}, timeoutMs = 120_000): Promise<CliResult> {
  const h = harness;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...(h ? { TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: h.databaseUrl } : {}),
    ...extraEnv,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export async function outboxCount(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM webhook_outbox');
  return Number(rows[0]!.n);
}

/**
 * Inserts `count` due events straight into the outbox, as a backfill would; or, as `dead_letter`, events whose
 * attempts ran out on 503s (what a replay takes back).
 */
export async function seedEvents(
  pool: Pool,
  prefix: string,
  count: number,
  maxAttempts = 5,
  status: 'pending' | 'dead_letter' = 'pending',
): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}_${i}`);
  const dead = status === 'dead_letter';
  await pool.query(
    `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload,
                                 status, attempts, max_attempts, next_attempt_at, last_status_code, last_error)
     SELECT id, 'contribution_created', '1', 'req_' || id, 'user_1',
            jsonb_build_object('event_id', id, 'event_type', 'contribution_created', 'schema_version', '1',
                               'request_id', 'req_' || id, 'actor', jsonb_build_object('user_id', 'user_1')),
            $3::webhook_status, CASE WHEN $4::boolean THEN $2::int ELSE 0 END, $2::int, CASE WHEN $4 THEN NULL ELSE now() END,
            CASE WHEN $4 THEN 503 END, CASE WHEN $4 THEN 'HTTP 503' END
       FROM unnest($1::text[]) AS id`,
    [ids, maxAttempts, status, dead],
  );
  return ids;
}

export async function statusCounts(pool: Pool): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ status: string; n: string }>(
    'SELECT status, count(*) AS n FROM webhook_outbox GROUP BY status',
  );
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Resolves once a child process has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
}
