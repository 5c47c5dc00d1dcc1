import { NativeConnection } from '@temporalio/worker';
import type { AppConfig } from '../config';
import { createPool, explainDatabaseError } from '../db/pool';
import { ensureDatabase, migrate } from '../db/migrate';
import { listFailedLines } from '../db/queries';
import { findOrBuildTemporalCli, isPortOpen, startDevServer } from '../dev/temporal-cli';
import { explainTemporalError, installQuietRuntime, temporalTarget } from '../temporal';
import { createWorker, ensureDispatchers } from '../worker';
import { createDeliveryAgent } from '../delivery/dispatch';
import { describeDifferences } from '../delivery/fleet';
import { Client, Connection } from '@temporalio/client';
import { RunError, type Output } from './errors';

export async function runMigrate(config: AppConfig, out: Output): Promise<void> {
  try {
    if (await ensureDatabase(config.databaseUrl)) out.log('[migrate] created the database');
  } catch (err) {
    throw new RunError(`[migrate] ${explainDatabaseError(err, config.databaseUrl)}`);
  }
  const pool = createPool(config.databaseUrl, 1);
  try {
    const applied = await migrate(pool);
    out.log(applied.length ? `[migrate] applied ${applied.join(', ')}` : '[migrate] schema is up to date');
  } catch (err) {
    throw new RunError(`[migrate] ${explainDatabaseError(err, config.databaseUrl)}`);
  } finally {
    await pool.end();
  }
}

export async function runFailedLines(
  config: AppConfig,
  opts: { workflowId: string; runKey?: string; limit: number; json: boolean },
  out: Output,
): Promise<void> {
  const pool = createPool(config.databaseUrl, 1);
  try {
    const rows = await listFailedLines(pool, { workflowId: opts.workflowId, runKey: opts.runKey }, opts.limit).catch(
      (err: unknown) => {
        throw new RunError(`[failed-lines] ${explainDatabaseError(err, config.databaseUrl)}`);
      },
    );
    if (rows.length === 0) {
      out.err(`[failed-lines] no failed lines recorded for ${opts.runKey ?? opts.workflowId}`);
      return;
    }
    for (const row of rows) {
      if (opts.json) {
        out.log(
          JSON.stringify({
            run_key: row.run_key,
            line: Number(row.line_number),
            byte_offset: Number(row.byte_offset),
            reason: row.reason,
            excerpt: row.excerpt,
          }),
        );
      } else {
        out.log(`line ${row.line_number} (byte ${row.byte_offset}): ${row.reason}\n    ${row.excerpt}`);
      }
    }
  } finally {
    await pool.end();
  }
}

export async function runWorker(
  config: AppConfig,
  /** dispatchers: 0 none, a number to set how many shards run, undefined to keep how many run (at least one). */
  opts: { migrate: boolean; dispatchers?: number },
  out: Output,
): Promise<void> {
  const pool = createPool(config.databaseUrl, 20);
  try {
    try {
      if (opts.migrate) {
        await ensureDatabase(config.databaseUrl);
        await migrate(pool);
      } else {
        await pool.query('SELECT 1 FROM webhook_outbox LIMIT 1');
      }
    } catch (err) {
      const hint = (err as { code?: string }).code === '42P01' ? "the schema is missing; run 'gotong-worker migrate'" : '';
      throw new RunError(`[worker] ${hint || explainDatabaseError(err, config.databaseUrl)}`);
    }
    const target = temporalTarget();
    installQuietRuntime();
    let connection: NativeConnection;
    try {
      connection = await NativeConnection.connect(target.connectionOptions);
    } catch (err) {
      throw new RunError(`[worker] ${explainTemporalError(err, target.address)}`);
    }
    const agent = config.webhook ? createDeliveryAgent() : undefined;
    try {
      const delivery =
        config.webhook && agent
          ? {
              url: config.webhook.url,
              secrets: { current: config.webhook.secret, previous: config.webhook.previousSecret },
              agent,
            }
          : undefined;
      const worker = await createWorker({ connection, namespace: target.namespace, taskQueue: config.taskQueue, pool, delivery });
      out.err(`[worker] polling task queue '${config.taskQueue}' on ${target.address} (namespace ${target.namespace})`);
      const running = worker.run();
      if (!config.webhook) {
        out.err('[worker] delivery is off on this worker: set WEBHOOK_URL and WEBHOOK_SECRET to deliver the outbox');
      } else if (opts.dispatchers !== 0) {
        const client = new Client({ connection: await Connection.connect(target.connectionOptions), namespace: target.namespace });
        try {
          const result = await ensureDispatchers(client, config.taskQueue, opts.dispatchers, config.dispatcher);
          out.err(`[worker] dispatchers ${result.started ? 'started' : 'running'}: ${result.ids.join(', ')}`);
          if (result.differences.length > 0) out.err(`[worker] ${describeDifferences(result.differences)}`);
        } catch (err) {
          // The worker itself is fine: it keeps serving its task queues.
          out.err(`[worker] could not check the delivery dispatchers: ${(err as Error).message}; see 'gotong-worker delivery status'`);
        } finally {
          await client.connection.close();
        }
      }
      // Runs until SIGINT/SIGTERM, which the Temporal runtime turns into a graceful shutdown.
      await running;
    } finally {
      await connection.close();
      await agent?.close();
    }
  } finally {
    await pool.end();
  }
}

export async function runTemporalServer(
  opts: { port: number; uiPort: number; dbFile: string },
  out: Output,
): Promise<void> {
  if (await isPortOpen('127.0.0.1', opts.port)) {
    throw new RunError(`[temporal-server] port ${opts.port} is already in use (a server is running?); pass --port`);
  }
  const binary = await findOrBuildTemporalCli({ log: (line) => out.err(`[temporal-server] ${line}`) });
  const child = await startDevServer({ binary, port: opts.port, uiPort: opts.uiPort, dbFile: opts.dbFile, stdio: 'inherit' });
  out.err(`[temporal-server] ${binary} serving 127.0.0.1:${opts.port}, Web UI http://127.0.0.1:${opts.uiPort} (Ctrl-C stops it)`);
  const stop = () => child.kill('SIGTERM');
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
}
