import { inspect } from 'node:util';
import type { LogLevel, LogMetadata, Logger } from '@temporalio/common';
import { jsonLine } from './client/json';
import { ConfigError } from './config';
import { printable } from './client/text';

/**
 * The worker's log: every line from this project, the Temporal SDK and its Rust core goes through one
 * logger (the runtime's), which writes JSON lines when stderr is not a terminal and readable lines when it
 * is, never prints a secret, and turns the SDK core's expected warnings into what they are.
 */

export const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'] as const;
export type LogFormat = 'json' | 'text';

// The SDK's DefaultLogger keeps the time a core message was emitted under this symbol.
const LOG_TIMESTAMP = Symbol.for('log_timestamp');

/**
 * Warnings the SDK core prints for things that happen in normal operation. Each is logged at INFO with
 * what it means, so it is there when asked for (GOTONG_LOG_LEVEL=INFO) and never alarms anyone at WARN.
 */
const EXPECTED: Array<{ pattern: RegExp; level: LogLevel; explanation?: string }> = [
  {
    pattern: /Activity not found on completion|Activity not found when recording heartbeat/,
    level: 'INFO',
    explanation:
      'an activity finished (or heartbeated) after Temporal stopped waiting for it: its run was closed, cancelled or ' +
      'reset, or the attempt timed out and was retried. Temporal drops the late result; batches are recorded exactly ' +
      'once in the ledger and deliveries under a lease, so nothing is lost or counted twice.',
  },
  // The workflow bundler's webpack statistics: a page of build output on every start.
  { pattern: /^asset workflow-bundle-|^webpack [\d.]+ compiled/, level: 'DEBUG' },
];

/** The level a message is logged at: an expected one's, never higher than the level it was reported at. */
export function reclassify(level: LogLevel, message: string): { level: LogLevel; explanation?: string } {
  for (const expected of EXPECTED) {
    if (!expected.pattern.test(message)) continue;
    const lower = LOG_LEVELS.indexOf(expected.level) < LOG_LEVELS.indexOf(level) ? expected.level : level;
    return { level: lower, explanation: expected.explanation };
  }
  return { level };
}

/**
 * Values that must never reach a log line: secrets from the environment (by the usual names) and the
 * password in DATABASE_URL. Values shorter than 4 characters are left alone: masking them would garble
 * every line, and such a value is not a secret anyone relies on.
 */
export function secretsFrom(env: NodeJS.ProcessEnv): string[] {
  const values = new Set<string>();
  for (const [name, value] of Object.entries(env)) {
    if (!value) continue;
    if (/SECRET|PASSWORD|PASSWD|API_KEY|TOKEN|PRIVATE|KEY_DATA|CREDENTIAL/i.test(name)) values.add(value);
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
      try {
        const url = new URL(value);
        if (url.password) values.add(decodeURIComponent(url.password));
        // A token in a receiver's query string is as secret as a password.
        if (name === 'WEBHOOK_URL' && url.search) values.add(url.search.slice(1));
      } catch {
        // Not a URL after all.
      }
    }
  }
  return [...values].filter((v) => v.length >= 4);
}

/** Masks each secret as it appears raw and as JSON escapes it, and any password in a URL. */
export function makeRedactor(secrets: string[]): (line: string) => string {
  const forms = [...new Set(secrets.flatMap((s) => [s, JSON.stringify(s).slice(1, -1), encodeURIComponent(s)]))]
    .filter((s) => s.length >= 4)
    // Longest first, so a secret that contains another is masked whole.
    .sort((a, b) => b.length - a.length);
  return (line) => {
    let out = line.replace(/([a-z][a-z0-9+.-]*:\/\/[^\s:/@"]*:)[^\s@/"]+@/gi, '$1***@');
    for (const form of forms) out = out.split(form).join('***');
    return out;
  };
}

function plain(value: unknown): unknown {
  if (value instanceof Error) {
    const e = value as Error & { cause?: unknown; code?: unknown; type?: unknown };
    return {
      name: e.name,
      message: e.message,
      ...(e.code !== undefined ? { code: e.code } : {}),
      ...(e.type !== undefined ? { type: e.type } : {}),
      ...(e.cause !== undefined ? { cause: plain(e.cause) } : {}),
      stack: e.stack,
    };
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export interface LoggerOptions {
  level: LogLevel;
  format: LogFormat;
  secrets: string[];
  write?: (line: string) => void;
}

export class OperatorLogger implements Logger {
  readonly level: LogLevel;
  private readonly threshold: number;
  private readonly redact: (line: string) => string;
  private readonly write: (line: string) => void;

  constructor(private readonly options: LoggerOptions) {
    this.level = options.level;
    this.threshold = LOG_LEVELS.indexOf(options.level);
    this.redact = makeRedactor(options.secrets);
    this.write = options.write ?? ((line) => process.stderr.write(`${line}\n`));
  }

  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    const classified = reclassify(level, message);
    if (LOG_LEVELS.indexOf(classified.level) < this.threshold) return;
    const { [LOG_TIMESTAMP]: nanos, sdkComponent, ...rest } = (meta ?? {}) as Record<string | symbol, unknown>;
    const time = new Date(typeof nanos === 'bigint' ? Number(nanos / 1_000_000n) : Date.now()).toISOString();
    const source = typeof sdkComponent === 'string' ? sdkComponent : 'gotong';
    const fields: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(rest)) fields[key] = plain(value);
    if (classified.explanation) fields.explanation = classified.explanation;
    if (classified.level !== level) fields.reported_level = level;
    const line =
      this.options.format === 'json'
        ? jsonLine({ time, level: classified.level.toLowerCase(), source, msg: message, ...fields })
        : textLine(time, classified.level, source, message, fields);
    this.write(this.redact(line));
  }

  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}

/** `2026-02-17T10:00:00.000Z WARN  [worker] message key=value`; an error's stack on the lines below. */
function textLine(time: string, level: LogLevel, source: string, message: string, fields: Record<string, unknown>): string {
  const parts = [`${time} ${level.padEnd(5)} [${source}] ${printable(message)}`];
  const stacks: string[] = [];
  for (const [key, value] of Object.entries(fields)) {
    if (value !== null && typeof value === 'object' && 'stack' in value) {
      const { stack, ...error } = value as { stack?: string };
      parts.push(`${key}=${printable(inspect(error, { breakLength: Infinity, depth: 4 }))}`);
      if (stack) stacks.push(...stack.split('\n').slice(1).map((l) => `    ${printable(l.trim())}`));
    } else {
      const text = typeof value === 'string' ? value : inspect(value, { breakLength: Infinity, depth: 4 });
      parts.push(`${key}=${printable(text)}`);
    }
  }
  return [parts.join(' '), ...stacks].join('\n');
}

/** GOTONG_LOG_FORMAT=json|text, else JSON unless stderr is a terminal. */
export function logFormatFrom(env: NodeJS.ProcessEnv, stderrIsTty: boolean): LogFormat {
  const asked = env.GOTONG_LOG_FORMAT?.trim().toLowerCase();
  if (asked === 'json' || asked === 'text') return asked;
  return stderrIsTty ? 'text' : 'json';
}

export function logLevelFrom(env: NodeJS.ProcessEnv, fallback: LogLevel): LogLevel {
  const asked = env.GOTONG_LOG_LEVEL?.trim().toUpperCase();
  return (LOG_LEVELS as readonly string[]).includes(asked ?? '') ? (asked as LogLevel) : fallback;
}

/** Refuses log settings that would silently mean something else. */
export function checkLogSettings(env: NodeJS.ProcessEnv): void {
  const level = env.GOTONG_LOG_LEVEL?.trim();
  if (level && !(LOG_LEVELS as readonly string[]).includes(level.toUpperCase())) {
    throw new ConfigError(`GOTONG_LOG_LEVEL ${level}: use one of ${LOG_LEVELS.join(', ')}`);
  }
  const format = env.GOTONG_LOG_FORMAT?.trim();
  if (format && !['json', 'text'].includes(format.toLowerCase())) {
    throw new ConfigError(`GOTONG_LOG_FORMAT ${format}: use json or text (unset: json unless stderr is a terminal)`);
  }
}

/** The worker's logger, configured from the environment. */
export function createWorkerLogger(env: NodeJS.ProcessEnv = process.env, fallbackLevel: LogLevel = 'INFO'): OperatorLogger {
  return new OperatorLogger({
    level: logLevelFrom(env, fallbackLevel),
    format: logFormatFrom(env, Boolean(process.stderr.isTTY)),
    secrets: secretsFrom(env),
  });
}
