import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { AppConfig } from '../config';
import { createPool, explainDatabaseError } from '../db/pool';
import { migrate, recreateDatabase } from '../db/migrate';
import { defaultDevServerDbFile, findOrBuildTemporalCli, isPortOpen, startDevServer } from '../dev/temporal-cli';
import { NativeConnection } from '@temporalio/worker';
import { installQuietRuntime, temporalTarget } from '../temporal';
import { createWorker } from '../worker';
import { runBackfill } from './backfill';
import { RunError, type Output } from './errors';

export const SAMPLE_FILE = join(__dirname, '..', '..', '..', 'samples', 'events.ndjson');

/** The demo's own database, recreated on every run so the demo always starts from an empty outbox. Never DATABASE_URL. */
/** Its own task queue too, so a real worker on the same server never picks up the demo's runs. */
const DEMO_TASK_QUEUE = 'gotong-demo';

export const DEMO_DATABASE_URL = process.env.GOTONG_DEMO_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/gotong_demo';


/** The runbook's first two steps on embedded defaults, everything started here and stopped afterwards. */
export async function runDemo(config: AppConfig, opts: { file?: string; keepServer: boolean }, out: Output): Promise<void> {
  const target = temporalTarget();
  const [host, portText] = target.address.split(':');
  const port = Number(portText ?? 7233);
  let server: ChildProcess | undefined;
  if (!(await isPortOpen(host ?? '127.0.0.1', port))) {
    if (!['localhost', '127.0.0.1'].includes(host ?? '')) {
      throw new RunError(`[demo] Temporal at ${target.address} is not reachable, and the demo only starts a local one`);
    }
    const binary = await findOrBuildTemporalCli({ log: (line) => out.err(`[demo] ${line}`) });
    server = await startDevServer({ binary, port, uiPort: port + 1000, dbFile: defaultDevServerDbFile() });
    out.err(`[demo] started a Temporal dev server on 127.0.0.1:${port}, Web UI http://127.0.0.1:${port + 1000}`);
  } else {
    out.err(`[demo] using the Temporal server at ${target.address}`);
  }

  try {
    await recreateDatabase(DEMO_DATABASE_URL);
  } catch (err) {
    throw new RunError(`[demo] ${explainDatabaseError(err, DEMO_DATABASE_URL)} (the demo uses GOTONG_DEMO_DATABASE_URL)`);
  }
  out.err(`[demo] using a fresh demo database, ${DEMO_DATABASE_URL}`);
  const pool = createPool(DEMO_DATABASE_URL, 20);
  try {
    await migrate(pool);
    installQuietRuntime();
    const connection = await NativeConnection.connect(target.connectionOptions);
    const worker = await createWorker({ connection, namespace: target.namespace, taskQueue: DEMO_TASK_QUEUE, pool });
    const running = worker.run();
    try {
      const file = opts.file ?? SAMPLE_FILE;
      for (const dryRun of [true, false]) {
        out.log(`$ gotong-worker webhook-backfill --file ${file}${dryRun ? ' --dry-run' : ''} --progress-every 500`);
        await runBackfill(
          { file, dryRun, progressEvery: 500, maxAttempts: config.defaultMaxAttempts, batchSize: 1000, json: false, taskQueue: DEMO_TASK_QUEUE, databaseUrl: DEMO_DATABASE_URL },
          out,
        );
      }
      const uiPort = port + 1000;
      out.log(`[demo] the runs are in the Temporal UI: http://127.0.0.1:${uiPort}/namespaces/${target.namespace}/workflows`);
    } finally {
      worker.shutdown();
      await running;
      await connection.close();
    }
  } finally {
    await pool.end();
    if (server && !opts.keepServer) server.kill('SIGTERM');
    if (server && opts.keepServer) {
      out.err(`[demo] the dev server keeps running (pid ${server.pid}); stop it with: kill ${server.pid}`);
      server.unref();
    }
  }
}
