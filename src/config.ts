import { z } from 'zod';

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
});

export interface AppConfig {
  databaseUrl: string;
  taskQueue: string;
  defaultMaxAttempts: number;
}

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const parsed = envSchema.safeParse({
    // An empty variable means "not set", as shells make it easy to export one by mistake.
    DATABASE_URL: env.DATABASE_URL || undefined,
    GOTONG_TASK_QUEUE: env.GOTONG_TASK_QUEUE || undefined,
    WEBHOOK_MAX_ATTEMPTS: env.WEBHOOK_MAX_ATTEMPTS || undefined,
  });
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => issue.message).join('; '));
  }
  return {
    databaseUrl: parsed.data.DATABASE_URL,
    taskQueue: parsed.data.GOTONG_TASK_QUEUE,
    defaultMaxAttempts: parsed.data.WEBHOOK_MAX_ATTEMPTS,
  };
}

/** The connection string with any password masked, for messages an operator may paste somewhere. */
export function describeDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}
