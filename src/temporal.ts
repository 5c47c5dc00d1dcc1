import { loadClientConnectConfig } from '@temporalio/envconfig';
import { createWorkerLogger, type OperatorLogger } from './logging';
import { DELIVERY_DURATION_BUCKETS, METRICS } from './metrics';

export interface TemporalTarget {
  address: string;
  namespace: string;
  connectionOptions: ReturnType<typeof loadClientConnectConfig>['connectionOptions'];
}

/** Temporal connection settings by Temporal's own conventions: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, profiles, TLS, API key. */
export function temporalTarget(): TemporalTarget {
  const { connectionOptions, namespace } = loadClientConnectConfig();
  const address = connectionOptions.address ?? 'localhost:7233';
  return { address, namespace: namespace ?? 'default', connectionOptions: { ...connectionOptions, address } };
}

export function explainTemporalError(err: unknown, address: string): string {
  const message = (err as Error).message ?? String(err);
  return (
    `cannot reach Temporal at ${address} (${message.split('\n')[0]}); ` +
    "start one with 'gotong-worker temporal-server', or set TEMPORAL_ADDRESS / TEMPORAL_PROFILE"
  );
}

export interface RuntimeSetup {
  logger: OperatorLogger;
  /** `host:port` for the Prometheus exporter (`/metrics`); absent: no metrics. */
  metricsAddress?: string;
}

/**
 * Installs the Temporal runtime of a worker process: the SDK's and its core's logs go to `logger` (core
 * logs are forwarded, so every line has one format), and with `metricsAddress` the runtime serves the SDK's
 * metrics and the project's (created on `Runtime.instance().metricMeter`) on one Prometheus endpoint.
 * The SDK's metric names stay as Temporal documents them (durations in milliseconds), so Temporal's
 * dashboards work unchanged; the project's follow Prometheus conventions.
 */
export function installWorkerRuntime(setup: RuntimeSetup): void {
  // Imported lazily: the client commands should not load the worker's native runtime.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Runtime } = require('@temporalio/worker') as typeof import('@temporalio/worker');
  Runtime.install({
    logger: setup.logger,
    telemetryOptions: {
      logging: { filter: { core: setup.logger.level, other: 'ERROR' }, forward: {} },
      ...(setup.metricsAddress
        ? {
            metrics: {
              prometheus: {
                bindAddress: setup.metricsAddress,
                histogramBucketOverrides: { [METRICS.deliveryDuration]: DELIVERY_DURATION_BUCKETS },
              },
            },
          }
        : {}),
    },
  });
}

/** The demo's runtime: WARN unless GOTONG_LOG_LEVEL asks for more, so its terminal shows the runbook's lines. */
export function installQuietRuntime(): void {
  installWorkerRuntime({ logger: createWorkerLogger(process.env, 'WARN') });
}
