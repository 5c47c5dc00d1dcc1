import { z } from 'zod';
import { parseWebhookUrl, WebhookUrlError } from './delivery/http';
import { parseSigningSecret, SigningSecretError } from './delivery/signing';
import { DEFAULT_DISPATCHER_OPTIONS, type DispatcherOptions } from './shared/delivery';
import { parseInputRoots } from './input-files';
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

/**
 * Delivery settings beyond these are mistakes, not tuning: a minimum catches seconds written as milliseconds,
 * a maximum keeps leases, heartbeats and one pass's memory within reason (README, Configuration).
 */
export const WEBHOOK_LIMITS = {
  batchSize: { min: 1, max: 10_000 },
  concurrency: { min: 1, max: 256 },
  timeoutMs: { min: 100, max: 60_000 },
  ratePerSecond: { max: 10_000 },
  backoffMs: { min: 1, max: 86_400_000 },
  autoPauseCooldownMs: { min: 1_000, max: 3_600_000 },
} as const;

const boundedInt = (name: string, { min, max }: { min: number; max: number }, unit = '') =>
  z
    .string()
    .regex(/^\d+$/, `${name} must be a whole number from ${min} to ${max}${unit}`)
    .transform(Number)
    .refine((n) => Number.isSafeInteger(n) && n >= min && n <= max, `${name} must be a whole number from ${min} to ${max}${unit}`);

/** Checks a text setting with `parse`, whose error message follows the variable's name; the value is never echoed. */
const checked = (name: string, parse: (value: string) => unknown, errorType: new (...args: never[]) => Error) =>
  z.string().superRefine((value, ctx) => {
    try {
      parse(value);
    } catch (err) {
      if (!(err instanceof errorType)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message.startsWith(name) ? err.message : `${name} ${err.message}` });
    }
  });

const envSchema = z.object({
  DATABASE_URL: z
    .string()
    .default(DEFAULT_DATABASE_URL)
    .refine((url) => /^postgres(ql)?:\/\//.test(url), 'DATABASE_URL must start with postgres:// or postgresql://'),
  GOTONG_TASK_QUEUE: z.string().min(1, 'GOTONG_TASK_QUEUE must not be empty').default(DEFAULT_TASK_QUEUE),
  WEBHOOK_MAX_ATTEMPTS: positiveInt('WEBHOOK_MAX_ATTEMPTS').default(5),
  WEBHOOK_URL: checked('WEBHOOK_URL', parseWebhookUrl, WebhookUrlError).optional(),
  WEBHOOK_SECRET: checked('WEBHOOK_SECRET', parseSigningSecret, SigningSecretError).optional(),
  WEBHOOK_PREVIOUS_SECRET: checked('WEBHOOK_PREVIOUS_SECRET', parseSigningSecret, SigningSecretError).optional(),
  WEBHOOK_TIMEOUT_MS: boundedInt('WEBHOOK_TIMEOUT_MS', WEBHOOK_LIMITS.timeoutMs, ' (milliseconds)').optional(),
  WEBHOOK_CONCURRENCY: boundedInt('WEBHOOK_CONCURRENCY', WEBHOOK_LIMITS.concurrency).optional(),
  WEBHOOK_BATCH_SIZE: boundedInt('WEBHOOK_BATCH_SIZE', WEBHOOK_LIMITS.batchSize).optional(),
  WEBHOOK_RATE_LIMIT: z
    .string()
    .regex(/^\d+(\.\d+)?$/, 'WEBHOOK_RATE_LIMIT must be a number of deliveries per second (0: no limit)')
    .transform(Number)
    .refine(
      (n) => n <= WEBHOOK_LIMITS.ratePerSecond.max,
      `WEBHOOK_RATE_LIMIT must be at most ${WEBHOOK_LIMITS.ratePerSecond.max} deliveries per second (0: no limit)`,
    )
    .optional(),
  WEBHOOK_BACKOFF_BASE_MS: boundedInt('WEBHOOK_BACKOFF_BASE_MS', WEBHOOK_LIMITS.backoffMs, ' (milliseconds)').optional(),
  WEBHOOK_BACKOFF_CAP_MS: boundedInt('WEBHOOK_BACKOFF_CAP_MS', WEBHOOK_LIMITS.backoffMs, ' (milliseconds)').optional(),
  WEBHOOK_AUTO_PAUSE_AFTER: positiveInt('WEBHOOK_AUTO_PAUSE_AFTER').optional(),
  WEBHOOK_AUTO_PAUSE_COOLDOWN_MS: boundedInt(
    'WEBHOOK_AUTO_PAUSE_COOLDOWN_MS',
    WEBHOOK_LIMITS.autoPauseCooldownMs,
    ' (milliseconds)',
  ).optional(),
});

export interface AppConfig {
  databaseUrl: string;
  taskQueue: string;
  defaultMaxAttempts: number;
  /** Absent: this process does not deliver. The URL and secrets stay in the worker, never in workflow history. */
  webhook?: { url: string; secret: string; previousSecret?: string };
  /** Dispatcher settings given in the environment; unset ones take the dispatcher's defaults. */
  dispatcher: Partial<DispatcherOptions>;
  /** Settings that work but should be changed (a short plain secret), one line each, never quoting a secret. */
  warnings: string[];
  /** GOTONG_INPUT_ROOTS: the only directories workers read input files from (and the CLI checks against). */
  inputRoots: string[];
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
  const backoffBase = d.WEBHOOK_BACKOFF_BASE_MS ?? DEFAULT_DISPATCHER_OPTIONS.backoffBaseMs;
  const backoffCap = d.WEBHOOK_BACKOFF_CAP_MS ?? DEFAULT_DISPATCHER_OPTIONS.backoffCapMs;
  if (backoffBase > backoffCap) {
    throw new ConfigError(
      `WEBHOOK_BACKOFF_BASE_MS (${backoffBase}) is above WEBHOOK_BACKOFF_CAP_MS (${backoffCap}); the first retry delay cannot exceed the longest`,
    );
  }
  const warnings: string[] = [];
  for (const [name, secret] of [['WEBHOOK_SECRET', d.WEBHOOK_SECRET], ['WEBHOOK_PREVIOUS_SECRET', d.WEBHOOK_PREVIOUS_SECRET]] as const) {
    const warning = secret === undefined ? null : parseSigningSecret(secret).warning;
    if (warning) warnings.push(`${name} ${warning}`);
  }
  let inputRoots: string[];
  try {
    inputRoots = parseInputRoots(env.GOTONG_INPUT_ROOTS);
  } catch (err) {
    throw new ConfigError((err as Error).message);
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
    warnings,
    inputRoots,
  };
}

/**
 * The connection string with every password masked (user info, `?password=`, `?sslpassword=`, key=value
 * conninfo), for messages an operator may paste somewhere.
 */
export function describeDatabaseUrl(url: string): string {
  return maskConnectionString(url);
}
