import { isIP } from 'node:net';
import { ConfigError } from '../config';
import { DEFAULT_OUTBOX_REFRESH_MS } from './outbox';

export const DEFAULT_METRICS_HOST = '0.0.0.0';

/**
 * `9464` (all interfaces) or `127.0.0.1:9464` / `[::1]:9464` to the `ip:port` the exporter binds. `from`
 * names where the value came from, for the error.
 */
export function metricsAddressFrom(value: string, from: string): string {
  const text = value.trim();
  const match = /^(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d{1,5})$/.exec(text);
  const host = match?.[1] ?? DEFAULT_METRICS_HOST;
  const port = Number(match?.[2]);
  const hostIsIp = isIP(host.replace(/^\[|\]$/g, '')) !== 0;
  if (!match || !hostIsIp || port < 1 || port > 65535) {
    throw new ConfigError(`${from} ${value}: use a port (9464) or an IP address and port (127.0.0.1:9464)`);
  }
  return `${host}:${port}`;
}

export interface WorkerObservability {
  /** Where the Prometheus exporter listens; absent: metrics are off. */
  metricsAddress?: string;
  /** How often the outbox gauges are refreshed. */
  outboxRefreshMs: number;
}

/** The worker's metrics settings: the --metrics-port flag, else GOTONG_METRICS_PORT; off when neither is set. */
export function workerObservabilityFrom(env: NodeJS.ProcessEnv, flag: string | undefined): WorkerObservability {
  const port = flag ?? (env.GOTONG_METRICS_PORT?.trim() || undefined);
  const metricsAddress = port === undefined ? undefined : metricsAddressFrom(port, flag !== undefined ? '--metrics-port' : 'GOTONG_METRICS_PORT');
  const refresh = env.GOTONG_METRICS_OUTBOX_INTERVAL_MS?.trim();
  if (refresh && (!/^\d+$/.test(refresh) || Number(refresh) < 100)) {
    throw new ConfigError('GOTONG_METRICS_OUTBOX_INTERVAL_MS must be a whole number of milliseconds >= 100');
  }
  return { metricsAddress, outboxRefreshMs: refresh ? Number(refresh) : DEFAULT_OUTBOX_REFRESH_MS };
}
