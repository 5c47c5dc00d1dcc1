import { loadClientConnectConfig } from '@temporalio/envconfig';

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

/** Temporal's SDK logs every worker state change at INFO; operators get WARN unless they ask (GOTONG_LOG_LEVEL). */
export function installQuietRuntime(): void {
  // Imported lazily: the client commands should not load the worker's native runtime.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Runtime, DefaultLogger } = require('@temporalio/worker') as typeof import('@temporalio/worker');
  const level = (process.env.GOTONG_LOG_LEVEL ?? 'WARN').toUpperCase();
  const allowed = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'] as const;
  type Level = (typeof allowed)[number];
  Runtime.install({ logger: new DefaultLogger(allowed.includes(level as Level) ? (level as Level) : 'WARN') });
}

