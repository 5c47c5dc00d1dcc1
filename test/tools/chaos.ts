/**
 * Fault trials against a stack of the script's own, all on loopback: a throwaway PostgreSQL cluster, a Temporal dev
 * server on a SQLite file, two worker processes and a receiver that verifies signatures. Each trial runs a backfill,
 * a replay or a delivery drain, strikes at a seeded moment (SIGKILL a worker, restart PostgreSQL, restart Temporal),
 * then checks the summary against a clean run's and the rows for losses and doubles. Prints a Markdown table; exits 1
 * if any trial failed or did not run, 2 on a usage error (nothing started).
 *
 *   npm run build && npm run chaos -- [--trials 20] [--seed S] [--events 6000] [--time-limit 30m]
 */
import { parseArgs } from 'node:util';
import { parseDuration } from '../../src/client/runbook';
import { formatTable, runChaos } from '../chaos/trials';

const MAX_TIME_LIMIT_MS = 2 * 3_600_000;

function wholeNumber(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new Error(`${flag} ${text}: use a whole number from ${min} to ${max}`);
  return n;
}

function options(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      trials: { type: 'string', default: '20' },
      seed: { type: 'string' },
      events: { type: 'string', default: '6000' },
      'time-limit': { type: 'string', default: '30m' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return null;
  const timeLimitMs = parseDuration('--time-limit', values['time-limit']);
  if (timeLimitMs > MAX_TIME_LIMIT_MS) throw new Error(`--time-limit ${values['time-limit']}: at most 2h`);
  return {
    trials: wholeNumber('--trials', values.trials, 1, 100),
    seed: values.seed === undefined ? Date.now() % 1_000_000 : wholeNumber('--seed', values.seed, 0, 2 ** 32 - 1),
    events: wholeNumber('--events', values.events, 100, 100_000),
    timeLimitMs,
    timeLimit: values['time-limit'],
  };
}

const USAGE = `usage: npm run chaos -- [--trials N (20)] [--seed S (from the clock)] [--events N (6000)] [--time-limit D (30m, at most 2h)]
Runs N fault trials on a loopback stack of its own and prints a table; exits 1 if any trial failed or did not run.`;

async function main(): Promise<number> {
  let opts: ReturnType<typeof options>;
  try {
    opts = options(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`chaos: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!opts) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const command = `npm run chaos -- --trials ${opts.trials} --seed ${opts.seed} --events ${opts.events} --time-limit ${opts.timeLimit}`;
  const log = (line: string) => process.stderr.write(`[chaos] ${line}\n`);
  log(command);
  // Exiting runs the stack's exit hook: the servers and workers it started go with this process.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  const results = await runChaos({ ...opts, log });
  process.stdout.write(`${formatTable(results)}\n`);
  const failed = results.filter((r) => !r.passed).length;
  const missing = opts.trials - results.length;
  process.stdout.write(`\n${results.length - failed} of ${opts.trials} trials passed${missing > 0 ? ` (${missing} not run: time limit)` : ''}; ${command}\n`);
  return failed === 0 && missing === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`chaos: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
