import { z } from 'zod';
import type { DispatcherOptions } from './shared/delivery';
import { maskConnectionString } from './db/conninfo';

/** Configuration shared by every command, read from the environment once and validated. */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/gotong';
export const DEFAULT_TASK_QUEUE = 'gotong-webhooks';

const positiveInt = (name: string) =>
  z
    .string()
    .regex(/^\d+$/, `${name} must be a whole number >= 1`)
    .transform(Number)
    .refine((n) => Number.isSafeInteger(n) && n >= 1, `${name} must be a whole number >= 1`);

const envSchema = z.object({
  DATABASE_URL: z
    .string()
    .default(DEFAULT_DATABASE_URL)
    .refine((url) => /^postgres(ql)?:\/\//.test(url), 'DATABASE_URL must start with postgres:// or postgresql://'),
  GOTONG_TASK_QUEUE: z.string().min(1, 'GOTONG_TASK_QUEUE must not be empty').default(DEFAULT_TASK_QUEUE),
  WEBHOOK_MAX_ATTEMPTS: positiveInt('WEBHOOK_MAX_ATTEMPTS').default(5),
  WEBHOOK_URL: z
    .string()
    .refine((url) => /^https?:\/\/[^/]/.test(url), 'WEBHOOK_URL must be an http:// or https:// URL')
    .optional(),
  WEBHOOK_SECRET: z.string().min(1).optional(),
  WEBHOOK_PREVIOUS_SECRET: z.string().min(1).optional(),
  WEBHOOK_TIMEOUT_MS: positiveInt('WEBHOOK_TIMEOUT_MS').optional(),
  WEBHOOK_CONCURRENCY: positiveInt('WEBHOOK_CONCURRENCY').optional(),
  WEBHOOK_BATCH_SIZE: positiveInt('WEBHOOK_BATCH_SIZE').optional(),
  WEBHOOK_RATE_LIMIT: z
    .string()
    .regex(/^\d+(\.\d+)?$/, 'WEBHOOK_RATE_LIMIT must be a number of deliveries per second (0: no limit)')
    .transform(Number)
    .optional(),
  WEBHOOK_BACKOFF_BASE_MS: positiveInt('WEBHOOK_BACKOFF_BASE_MS').optional(),
  WEBHOOK_BACKOFF_CAP_MS: positiveInt('WEBHOOK_BACKOFF_CAP_MS').optional(),
  WEBHOOK_AUTO_PAUSE_AFTER: positiveInt('WEBHOOK_AUTO_PAUSE_AFTER').optional(),
  WEBHOOK_AUTO_PAUSE_COOLDOWN_MS: positiveInt('WEBHOOK_AUTO_PAUSE_COOLDOWN_MS').optional(),
});

export interface AppConfig {
  databaseUrl: string;
  taskQueue: string;
  defaultMaxAttempts: number;
  /** Absent: this process does not deliver. The URL and secrets stay in the worker, never in workflow history. */
  webhook?: { url: string; secret: string; previousSecret?: string };
  /** Dispatcher settings given in the environment; unset ones take the dispatcher's defaults. */
  dispatcher: Partial<DispatcherOptions>;
}

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  // An empty variable means "not set", as shells make it easy to export one by mistake.
  const present = Object.fromEntries(Object.keys(envSchema.shape).map((key) => [key, env[key] || undefined]));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => issue.message).join('; '));
  }
  const d = parsed.data;
  if (d.WEBHOOK_URL && !d.WEBHOOK_SECRET) {
    throw new ConfigError('WEBHOOK_URL is set but WEBHOOK_SECRET is not; set the signing secret (deliveries are always signed)');
  }
  const dispatcher: Partial<DispatcherOptions> = {};
  if (d.WEBHOOK_TIMEOUT_MS !== undefined) dispatcher.requestTimeoutMs = d.WEBHOOK_TIMEOUT_MS;
  if (d.WEBHOOK_CONCURRENCY !== undefined) dispatcher.concurrency = d.WEBHOOK_CONCURRENCY;
  if (d.WEBHOOK_BATCH_SIZE !== undefined) dispatcher.batchSize = d.WEBHOOK_BATCH_SIZE;
  if (d.WEBHOOK_RATE_LIMIT !== undefined) dispatcher.ratePerSecond = d.WEBHOOK_RATE_LIMIT;
  if (d.WEBHOOK_BACKOFF_BASE_MS !== undefined) dispatcher.backoffBaseMs = d.WEBHOOK_BACKOFF_BASE_MS;
  if (d.WEBHOOK_BACKOFF_CAP_MS !== undefined) dispatcher.backoffCapMs = d.WEBHOOK_BACKOFF_CAP_MS;
  if (d.WEBHOOK_AUTO_PAUSE_AFTER !== undefined) dispatcher.autoPauseAfter = d.WEBHOOK_AUTO_PAUSE_AFTER;
  if (d.WEBHOOK_AUTO_PAUSE_COOLDOWN_MS !== undefined) dispatcher.autoPauseCooldownMs = d.WEBHOOK_AUTO_PAUSE_COOLDOWN_MS;
  return {
    databaseUrl: d.DATABASE_URL,
    taskQueue: d.GOTONG_TASK_QUEUE,
    defaultMaxAttempts: d.WEBHOOK_MAX_ATTEMPTS,
    webhook:
      d.WEBHOOK_URL && d.WEBHOOK_SECRET
        ? { url: d.WEBHOOK_URL, secret: d.WEBHOOK_SECRET, previousSecret: d.WEBHOOK_PREVIOUS_SECRET }
        : undefined,
    dispatcher,
  };
}

/**
 * The connection string with every password masked (user info, `?password=`, `?sslpassword=`, key=value
 * conninfo), for messages an operator may paste somewhere.
 */
export function describeDatabaseUrl(url: string): string {
  return maskConnectionString(url);
}
