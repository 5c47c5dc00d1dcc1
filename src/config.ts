import { z } from 'zod';
import { parseWebhookUrl, WebhookUrlError } from './delivery/http';
import { parseSigningSecret, SigningSecretError } from './delivery/signing';
import { DISPATCHER_SETTINGS, type DispatcherOptions, resolveDispatcherOptions, settingProblems } from './shared/delivery';
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
  // Bounded where it is used (a backfill's default, see maxAttemptsFrom in src/client/cli.ts), not here: a worker host
  // carrying an old value over the bound must still start, since workers do not read it.
  WEBHOOK_MAX_ATTEMPTS: positiveInt('WEBHOOK_MAX_ATTEMPTS').default(5),
  WEBHOOK_URL: checked('WEBHOOK_URL', parseWebhookUrl, WebhookUrlError).optional(),
  WEBHOOK_SECRET: checked('WEBHOOK_SECRET', parseSigningSecret, SigningSecretError).optional(),
  WEBHOOK_PREVIOUS_SECRET: checked('WEBHOOK_PREVIOUS_SECRET', parseSigningSecret, SigningSecretError).optional(),
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
  const dispatcher = dispatcherSettingsFrom(env);
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

/** Dispatcher settings given in the environment (named in DISPATCHER_SETTINGS), within the bounds `delivery configure` keeps. */
function dispatcherSettingsFrom(env: NodeJS.ProcessEnv): Partial<DispatcherOptions> {
  const given: Partial<DispatcherOptions> = {};
  const problems: string[] = [];
  for (const spec of DISPATCHER_SETTINGS) {
    const text = spec.env ? env[spec.env]?.trim() : undefined;
    if (!spec.env || !text) continue;
    const pattern = spec.unit === 'per-second' ? /^\d+(\.\d+)?$/ : /^\d+$/;
    if (!pattern.test(text)) {
      const what = spec.unit === 'per-second' ? 'a number of deliveries per second (0: no limit)' : `a whole number${spec.unit === 'ms' ? ' of milliseconds' : spec.unit === 'bytes' ? ' of bytes' : ''}`;
      problems.push(`${spec.env} must be ${what}, not '${text}'`);
      continue;
    }
    given[spec.key] = Number(text);
  }
  // Checked as a dispatcher started by this worker would run: these values over the defaults.
  if (problems.length === 0) problems.push(...settingProblems(resolveDispatcherOptions(given).options, (spec) => spec.env ?? spec.key));
  if (problems.length > 0) throw new ConfigError(problems.join('; '));
  return given;
}

/**
 * The connection string with every password masked (user info, `?password=`, `?sslpassword=`, key=value
 * conninfo), for messages an operator may paste somewhere.
 */
export function describeDatabaseUrl(url: string): string {
  return maskConnectionString(url);
}
