import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { NativeConnection } from '@temporalio/worker';
import { describeDatabaseUrl, type AppConfig } from '../config';
import { createPool, explainDatabaseError } from '../db/pool';
import { migrate, recreateDatabase } from '../db/migrate';
import { createDeliveryAgent } from '../delivery/http';
import { DemoReceiver } from '../dev/demo-receiver';
import { EmbeddedPostgresError, startEmbeddedPostgres } from '../dev/embedded-postgres';
import { databaseIdentity, isSameDatabase } from '../db/conninfo';
import { registerMissingSearchAttributes } from '../search-attributes';
import { defaultDevServerDbFile, findOrBuildTemporalCli, isPortOpen, startDevServer } from '../dev/temporal-cli';
import { dispatcherWorkflowId, type DispatcherOptions } from '../shared/delivery';
import type { RunbookProgress } from '../shared/runbook';
import { explainTemporalError, installQuietRuntime, temporalTarget } from '../temporal';
import { createWorker, ensureDispatchers } from '../worker';
import { RunError, UsageError, type Output } from './errors';
import { runbookWorkflowId, runRunbook, temporalUiUrl } from './runbook';
import { resolveBackfillFile } from './backfill';

export const SAMPLE_FILE = join(__dirname, '..', '..', '..', 'samples', 'events.ndjson');

/** The demo's own namespace and task queue: its runs and its dispatcher never meet a real worker's. */
export const DEMO_NAMESPACE = 'gotong-demo';
const DEMO_TASK_QUEUE = 'gotong-demo';
const DEMO_DATABASE = 'gotong_demo';

/** Quick retries, so the rejected share is dead-lettered within seconds and the demo moves on. */
const DEMO_DISPATCHER: Partial<DispatcherOptions> = { backoffBaseMs: 200, backoffCapMs: 1_000, maxIdleMs: 500, autoPauseAfter: 10_000 };

/**
 * The demo's database: GOTONG_DEMO_DATABASE_URL, else a `gotong_demo` database beside DATABASE_URL's.
 * The demo drops and recreates it, so it refuses (a usage error, before anything starts) one that is
 * DATABASE_URL's own, whatever the spelling: localhost, 127.0.0.1 or ::1, the default port or 5432,
 * percent-encoded names, a host= parameter all lead to the same database.
 */
export function demoDatabaseUrl(config: AppConfig): string {
  const chosen = process.env.GOTONG_DEMO_DATABASE_URL;
  let url: string;
  if (chosen) {
    url = chosen;
  } else {
    const beside = new URL(config.databaseUrl);
    beside.pathname = `/${DEMO_DATABASE}`;
    url = beside.toString();
  }
  let same: boolean;
  try {
    same = isSameDatabase(url, config.databaseUrl);
  } catch {
    throw new UsageError(`${chosen ? 'GOTONG_DEMO_DATABASE_URL' : 'DATABASE_URL'} is not a valid connection string (${describeDatabaseUrl(url)})`);
  }
  if (same) {
    const { host, port, database } = databaseIdentity(config.databaseUrl);
    const where = `${host === 'local' ? 'this machine' : host}:${port}/${database}`;
    throw new UsageError(
      chosen
        ? `GOTONG_DEMO_DATABASE_URL names DATABASE_URL's own database (${where}), which the demo would drop; point it at another database`
        : `DATABASE_URL's database is ${DEMO_DATABASE} (${where}), which the demo would drop; set GOTONG_DEMO_DATABASE_URL to another database`,
    );
  }
  return url;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'EHOSTUNREACH', 'EAI_AGAIN']);
function isUnreachable(err: unknown): boolean {
  const e = err as { code?: string; errors?: unknown[] };
  return UNREACHABLE.has(e.code ?? '') || (Array.isArray(e.errors) && e.errors.some(isUnreachable));
}

/** Creates the namespace when the server lacks it, and waits until the server serves it (under a second). */
async function ensureNamespace(connection: Connection, namespace: string): Promise<void> {
  const probe = () => connection.workflowService.describeTaskQueue({ namespace, taskQueue: { name: DEMO_TASK_QUEUE }, taskQueueType: 1 });
  try {
    await probe();
    return;
  } catch {
    // Missing (or not served yet): register it below.
  }
  await connection.workflowService
    .registerNamespace({ namespace, workflowExecutionRetentionPeriod: msToTs('3 days') })
    .catch((err: { code?: number }) => {
      if (err.code !== 6) throw err; // 6: it exists already
    });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await probe();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * The runbook's six steps on embedded defaults: a Temporal dev server (found or built, started if none is
 * reachable), PostgreSQL at DATABASE_URL's server or else an embedded one, a worker with a dispatcher, and a
 * receiver that rejects a share of events until the replay step. Everything it starts, it stops.
 */
export async function runDemo(config: AppConfig, opts: { file?: string; keepServer: boolean }, out: Output): Promise<void> {
  const file = resolveBackfillFile(opts.file ?? SAMPLE_FILE);
  let databaseUrl = demoDatabaseUrl(config);
  const cleanup: Array<() => Promise<unknown> | void> = [];
  const target = temporalTarget();
  const [host, portText] = target.address.split(':');
  const port = Number(portText ?? 7233);
  let server: ChildProcess | undefined;
  try {
    // 1. Temporal.
    if (!(await isPortOpen(host ?? '127.0.0.1', port))) {
      if (!['localhost', '127.0.0.1'].includes(host ?? '')) {
        throw new RunError(`[demo] Temporal at ${target.address} is not reachable, and the demo only starts a local one`);
      }
      const binary = await findOrBuildTemporalCli({ log: (line) => out.err(`[demo] ${line}`) });
      server = await startDevServer({ binary, port, uiPort: port + 1000, dbFile: defaultDevServerDbFile(), namespaces: [DEMO_NAMESPACE] });
      out.err(`[demo] started a Temporal dev server on 127.0.0.1:${port}, Web UI http://127.0.0.1:${port + 1000}`);
    } else {
      out.err(`[demo] using the Temporal server at ${target.address} (namespace ${DEMO_NAMESPACE})`);
    }
    let connection: Connection;
    try {
      connection = await Connection.connect({ ...target.connectionOptions, connectTimeout: '5s' });
    } catch (err) {
      throw new RunError(`[demo] ${explainTemporalError(err, target.address)}`);
    }
    cleanup.push(() => connection.close());
    await ensureNamespace(connection, DEMO_NAMESPACE);
    try {
      const added = await registerMissingSearchAttributes(connection.operatorService, DEMO_NAMESPACE);
      if (added.length > 0) out.err(`[demo] registered the search attributes ${added.join(', ')} on namespace ${DEMO_NAMESPACE}`);
    } catch (err) {
      // Only the UI's filters depend on them: the demo runs without.
      out.err(`[demo] could not register the search attributes (${(err as Error).message}); the UI cannot filter the demo's runs by them`);
    }
    const client = new Client({ connection, namespace: DEMO_NAMESPACE });

    // 2. PostgreSQL: a fresh demo database, on DATABASE_URL's server or an embedded one.
    try {
      await recreateDatabase(databaseUrl);
    } catch (err) {
      if (!isUnreachable(err) || process.env.GOTONG_DEMO_DATABASE_URL) {
        throw new RunError(`[demo] ${explainDatabaseError(err, databaseUrl)} (the demo uses GOTONG_DEMO_DATABASE_URL, else DATABASE_URL's server)`);
      }
      out.err(`[demo] no PostgreSQL reachable at ${describeDatabaseUrl(databaseUrl)}; starting an embedded one`);
      const embedded = await startEmbeddedPostgres((line) => out.err(`[demo] ${line}`)).catch((err: unknown) => {
        if (!(err instanceof EmbeddedPostgresError)) throw err;
        throw new RunError(
          `[demo] the embedded PostgreSQL did not start: ${err.message}; start a PostgreSQL server and set DATABASE_URL ` +
            `(or GOTONG_DEMO_DATABASE_URL) to it`,
        );
      });
      cleanup.push(() => embedded.stop());
      databaseUrl = `${embedded.serverUrl}/${DEMO_DATABASE}`;
      await recreateDatabase(databaseUrl);
    }
    out.err(`[demo] using a fresh demo database, ${describeDatabaseUrl(databaseUrl)}`);
    const pool = createPool(databaseUrl, 20);
    cleanup.push(() => pool.end());
    await migrate(pool);

    // 3. The receiver, a worker that delivers to it, and the dispatcher.
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const receiver = await new DemoReceiver(secret).start();
    cleanup.push(() => receiver.stop());
    out.err(`[demo] receiver on ${receiver.url}: verifies signatures, answers 503 to about one event in eight until the replay step`);
    installQuietRuntime();
    const nativeConnection = await NativeConnection.connect(target.connectionOptions);
    cleanup.push(() => nativeConnection.close());
    const agent = createDeliveryAgent();
    cleanup.push(() => agent.close());
    const worker = await createWorker({
      connection: nativeConnection,
      namespace: DEMO_NAMESPACE,
      taskQueue: DEMO_TASK_QUEUE,
      pool,
      delivery: { url: receiver.url, secrets: { current: secret }, agent },
    });
    // Cleanup runs in reverse: the worker stops (finishing its activities) before the dispatcher is terminated.
    cleanup.push(() => client.workflow.getHandle(dispatcherWorkflowId(0)).terminate('demo over').catch(() => undefined));
    const running = worker.run();
    // Awaited in the cleanup: a worker failing before then must not be an unhandled rejection that skips the cleanup.
    running.catch(() => undefined);
    cleanup.push(async () => {
      worker.shutdown();
      await running;
    });
    await client.workflow
      .getHandle(dispatcherWorkflowId(0))
      .terminate('a new demo run starts its own dispatcher')
      .catch(() => undefined);
    await ensureDispatchers(client, DEMO_TASK_QUEUE, 1, DEMO_DISPATCHER);
    // A run left behind by an interrupted demo points at a database that was just recreated.
    await client.workflow
      .getHandle(runbookWorkflowId(file))
      .terminate('a new demo run replaces it')
      .catch(() => undefined);

    // 4. The runbook, with manual gates that the demo approves as an operator would.
    out.log(`$ gotong-worker webhook-runbook --file ${file} --approval manual --max-attempts 3 --poll-interval 500ms`);
    const approved = new Set<number>();
    const approve = async (p: RunbookProgress, handle: WorkflowHandle) => {
      if (p.phase !== 'awaiting-approval' || p.currentStep === null || approved.has(p.currentStep)) return;
      if (p.currentStep === 4) {
        receiver.fix();
        out.log('[demo] the receiver is fixed now (it accepts every event)');
      }
      out.log(`[demo] approving, as an operator would: gotong-worker approve '${handle.workflowId}'`);
      await handle.signal('approve', { step: p.currentStep, reason: 'demo' });
      approved.add(p.currentStep);
    };
    const report = await runRunbook(
      {
        file,
        replayLimit: 500,
        approval: 'manual',
        maxFailedRatio: '0.01',
        verifyTimeout: '2m',
        confirmTimeout: '2m',
        verifyMaxBacklog: 0,
        minSuccessRate: '0.5',
        pollInterval: '500ms',
        progressEvery: 500,
        batchSize: 500,
        maxAttempts: 3,
        json: false,
        taskQueue: DEMO_TASK_QUEUE,
        namespace: DEMO_NAMESPACE,
      },
      out,
      { onProgress: approve },
    );
    out.log(
      `[demo] receiver: ${receiver.accepted} accepted, ${receiver.rejected} answered 503 before the fix, ${receiver.badSignatures} bad signatures; ` +
        `dead letters ${report.steps[2]?.verify?.deadLettered ?? 0} after step 3, ${report.steps[5]?.confirm?.deadLetters ?? 'n/a'} at the end`,
    );
    const ui = temporalUiUrl(target.address, DEMO_NAMESPACE, runbookWorkflowId(file));
    if (ui) {
      const hint = server && !opts.keepServer ? " (add --keep-server to browse it now, or start the server later with 'gotong-worker temporal-server')" : '';
      out.log(`[demo] the run in the Temporal UI: ${ui}${hint}`);
    }
  } finally {
    for (const step of cleanup.reverse()) await Promise.resolve(step()).catch(() => undefined);
    if (server && !opts.keepServer) server.kill('SIGTERM');
    if (server && opts.keepServer) {
      out.err(`[demo] the dev server keeps running (pid ${server.pid}); stop it with: kill ${server.pid}`);
      server.unref();
    }
  }
}
