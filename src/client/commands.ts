import { delimiter } from 'node:path';
import type { NativeConnection as WorkerConnection } from '@temporalio/worker';
import type { AppConfig } from '../config';
import { createPool, explainDatabaseError } from '../db/pool';
import { ensureDatabase, migrate, pendingMigrations } from '../db/migrate';
import { findOrBuildTemporalCli, isPortOpen, startDevServer } from '../dev/temporal-cli';
import { checkSearchAttributes } from '../search-attributes';
import { explainTemporalError, installWorkerRuntime, temporalTarget } from '../temporal';
import type { OperatorLogger } from '../logging';
import { WorkerMetrics } from '../metrics';
import { startOutboxGauges } from '../metrics/outbox';
import type { WorkerObservability } from '../metrics/settings';
import { Client, Connection } from '@temporalio/client';
import { AlreadyReported, RunError, type Output } from './errors';
import { resolveDispatcherOptions } from '../shared/delivery';

export async function runMigrate(config: AppConfig, out: Output): Promise<void> {
  try {
    if (await ensureDatabase(config.databaseUrl)) out.log('[migrate] created the database');
  } catch (err) {
    throw new RunError(`[migrate] ${explainDatabaseError(err, config.databaseUrl)}`);
  }
  const pool = createPool(config.databaseUrl, 1);
  try {
    const applied = await migrate(pool, undefined, { log: (line) => out.err(`[migrate] ${line}`) });
    out.log(applied.length ? `[migrate] applied ${applied.join(', ')}` : '[migrate] schema is up to date');
  } catch (err) {
    throw new RunError(`[migrate] ${explainDatabaseError(err, config.databaseUrl)}`);
  } finally {
    await pool.end();
  }
}

export interface WorkerCommandOptions extends WorkerObservability {
  migrate: boolean;
  /** 0: none; a number: how many shards run; undefined: keep how many run (at least one). */
  dispatchers?: number;
}

/**
 * `gotong-worker worker`: runs until SIGINT/SIGTERM. Everything it says goes through `logger` (the Temporal
 * runtime's, shared with the SDK), so its stderr is one stream of JSON lines when not on a terminal; a
 * failure is logged there too and then ends the command with exit code 1.
 */
export async function runWorker(config: AppConfig, opts: WorkerCommandOptions, logger: OperatorLogger): Promise<void> {
  try {
    await runWorkerUntilStopped(config, opts, logger);
  } catch (err) {
    if (!(err instanceof RunError)) throw err;
    logger.error(err.message);
    throw new AlreadyReported();
  }
}

async function runWorkerUntilStopped(config: AppConfig, opts: WorkerCommandOptions, logger: OperatorLogger): Promise<void> {
  // Loaded here, not at the top: every other command would pay for the worker's native runtime at start.
  const { NativeConnection, Runtime } = await import('@temporalio/worker');
  const { createWorker, ensureDispatchers } = await import('../worker');
  const { createDeliveryAgent } = await import('../delivery/http');
  const { describeDifferences } = await import('../delivery/fleet');
  const pool = createPool(config.databaseUrl, 20);
  let stopSignals: (() => void) | undefined;
  try {
    let pending: string[] = [];
    try {
      if (opts.migrate) {
        await ensureDatabase(config.databaseUrl);
        await migrate(pool, undefined, { log: (line) => logger.info(line) });
      } else {
        await pool.query('SELECT 1 FROM webhook_outbox LIMIT 1');
        pending = await pendingMigrations(pool);
      }
    } catch (err) {
      const hint = (err as { code?: string }).code === '42P01' ? "the schema is missing; run 'gotong-worker migrate'" : '';
      throw new RunError(hint || explainDatabaseError(err, config.databaseUrl));
    }
    // This release's code reads and writes what its migrations create: polling without them would take runs it can
    // only fail (a missing table retried for ever), while the workers of the release before still serve them.
    if (pending.length > 0) {
      throw new RunError(
        `the database lacks migrations this release needs: ${pending.join(', ')}; run 'gotong-worker migrate' ` +
          '(once per deploy, before the workers; or wait for the one under way), then start this worker again',
      );
    }
    const target = temporalTarget();
    try {
      installWorkerRuntime({ logger, metricsAddress: opts.metricsAddress });
    } catch (err) {
      throw new RunError(
        `cannot serve metrics on ${opts.metricsAddress} (${(err as Error).message}); ` +
          'choose another --metrics-port or GOTONG_METRICS_PORT, or unset it',
      );
    }
    stopSignals = announceStopSignals(logger);
    const meter = Runtime.instance().metricMeter;
    const metrics = opts.metricsAddress ? new WorkerMetrics(meter) : undefined;
    const stopGauges = opts.metricsAddress
      ? startOutboxGauges(pool, meter, opts.outboxRefreshMs, (err) =>
          logger.warn('outbox gauges not refreshed; they keep their last values until the database answers', {
            error: explainDatabaseError(err, config.databaseUrl),
          }),
        )
      : undefined;
    if (opts.metricsAddress) logger.info(`serving Prometheus metrics on http://${opts.metricsAddress}/metrics`);
    let connection: WorkerConnection;
    try {
      connection = await NativeConnection.connect(target.connectionOptions);
    } catch (err) {
      throw new RunError(explainTemporalError(err, target.address));
    }
    const agent = config.webhook ? createDeliveryAgent(null, resolveDispatcherOptions(config.dispatcher).options.requestTimeoutMs) : undefined;
    try {
      const delivery =
        config.webhook && agent
          ? {
              url: config.webhook.url,
              secrets: { current: config.webhook.secret, previous: config.webhook.previousSecret },
              agent,
            }
          : undefined;
      let worker: Awaited<ReturnType<typeof createWorker>>;
      try {
        worker = await createWorker({
          connection,
          namespace: target.namespace,
          taskQueue: config.taskQueue,
          pool,
          delivery,
          metrics,
          inputRoots: config.inputRoots,
        });
      } catch (err) {
        throw new RunError(explainWorkerStartError(err, target.address, target.namespace));
      }
      const attributes = await checkSearchAttributes(connection.operatorService, target.namespace);
      if (attributes.ok !== true) logger.warn(attributes.message, attributes.ok === false ? { missingSearchAttributes: attributes.missing } : {});
      logger.info(`polling task queue '${config.taskQueue}' on ${target.address} (namespace ${target.namespace})`, {
        taskQueue: config.taskQueue,
        namespace: target.namespace,
      });
      logger.info(`reads input files only below ${config.inputRoots.join(delimiter)} (GOTONG_INPUT_ROOTS)`, {
        inputRoots: config.inputRoots,
      });
      const running = worker.run();
      // Awaited below, after the dispatcher check: a worker failing meanwhile must not be an unhandled rejection.
      running.catch(() => undefined);
      if (!config.webhook) {
        logger.info('delivery is off on this worker: set WEBHOOK_URL and WEBHOOK_SECRET to deliver the outbox');
      } else if (opts.dispatchers !== 0) {
        // A connection of its own (a client's, not the worker's), so connecting belongs to the check: Temporal refusing
        // it must not end a worker that is already serving.
        let client: Client | undefined;
        try {
          client = new Client({ connection: await Connection.connect(target.connectionOptions), namespace: target.namespace });
          const result = await ensureDispatchers(client, config.taskQueue, opts.dispatchers, config.dispatcher);
          logger.info(`dispatchers ${result.started ? 'started' : 'running'}: ${result.ids.join(', ')}`, { dispatchers: result.ids });
          if (result.differences.length > 0) logger.warn(describeDifferences(result.differences));
        } catch (err) {
          // The worker itself is fine: it keeps serving its task queues.
          logger.warn(`could not check the delivery dispatchers: ${(err as Error).message}; see 'gotong-worker delivery status'`);
        } finally {
          await client?.connection.close();
        }
      }
      // Runs until SIGINT/SIGTERM, which the Temporal runtime turns into a graceful shutdown.
      await running;
      logger.info('worker stopped');
    } finally {
      stopGauges?.();
      metrics?.close();
      await connection.close();
      await agent?.close();
    }
  } finally {
    stopSignals?.();
    await pool.end();
  }
}

/**
 * The Temporal runtime drains the workers on SIGINT/SIGTERM and then stops listening, so a second signal used to
 * kill the process without a word: the log showed a drain that never finished. Both are said now; the second
 * still ends the process by its signal, as a supervisor expects of a kill.
 */
function announceStopSignals(logger: OperatorLogger): () => void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stopping) {
      stopping = true;
      logger.info(
        `${signal}: stopping; delivery passes hand back what they have not sent and wait for their requests in flight ` +
          '(at most their timeout), batches in flight roll back and are retried by another worker; a second signal exits at once',
      );
      return;
    }
    logger.warn(`${signal} again: exiting now; events whose requests were in flight are taken back once their leases end`);
    dispose();
    process.kill(process.pid, signal);
  };
  const dispose = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return dispose;
}

/**
 * Why the Temporal worker could not start. The server answers a namespace it does not know with a raw gRPC status
 * (bytes and all) that names no setting, though the fix is always the same one: the namespace setting.
 */
export function explainWorkerStartError(err: unknown, address: string, namespace: string): string {
  const message = ((err as Error).message ?? String(err)).split('\n')[0]!;
  if (/Namespace .* (was )?not found|NamespaceNotFound/i.test(message)) {
    return (
      `namespace '${namespace}' does not exist on Temporal at ${address}; set TEMPORAL_NAMESPACE (or your ` +
      `TEMPORAL_PROFILE's namespace) to one that exists, or create it: temporal operator namespace create --namespace ${namespace}`
    );
  }
  return `cannot start the worker on Temporal at ${address}, namespace '${namespace}' (${message})`;
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
