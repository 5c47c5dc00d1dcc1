import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError, loadConfig } from '../config';
import { sessionTimeouts } from '../db/pool';
import { maskConnectionSecrets } from '../db/conninfo';
import { migrateLockTimeoutMs } from '../db/migrate';
import { BACKFILL_LIMITS } from '../shared/backfill';
import { runBackfill } from './backfill';
import { runReplay, type ReplayCommandOptions } from './replay';
import { consoleOutput, Detached, RunError, UsageError, type Output } from './errors';
import { runMigrate, runTemporalServer, runWorker } from './commands';
import { runFailedLines } from './failed-lines';
import { CONFIGURE_FLAGS, CONFIGURE_OPTION_NAMES, configPatchFromFlags, runDeliveryConfigure, runDeliveryControl } from './delivery';
import { RUNBOOK_OPTION_FLAGS, runbookInputFrom, runbookWorkflowId, runGateDecision, runRunbook, type RunbookCommandOptions } from './runbook';
import { resolveBackfillFile } from './backfill';
import { startDetached } from './watch';
import { runWatch } from './watch-command';
import { RUNBOOK_DEFAULTS } from '../shared/runbook';
import { checkLogSettings, createWorkerLogger } from '../logging';
import { workerObservabilityFrom } from '../metrics/settings';
import { runList, type ListCommandOptions } from './list';
import { runOutboxShow, runOutboxStats } from './outbox';
import { runStatus } from './status';
import { MAX_SHARDS } from '../shared/delivery';
import { INPUT_LIMITS } from '../shared/input-checks';
import { printable } from './text';
import { redactedCommand, runbookMetadata } from '../shared/run-metadata';

function positiveInt(flag: string, max?: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1 || (max !== undefined && n > max)) {
      throw new InvalidArgumentError(max === undefined ? `${flag} must be a whole number >= 1.` : `${flag} must be a whole number between 1 and ${max}.`);
    }
    return n;
  };
}

/** --max-attempts, else WEBHOOK_MAX_ATTEMPTS: a bad default is named as the setting it came from, not as a flag never typed. */
function maxAttemptsFrom(flag: number | undefined, fromEnvironment: number): number {
  if (flag !== undefined) return flag;
  if (fromEnvironment > INPUT_LIMITS.maxMaxAttempts) {
    throw new UsageError(`WEBHOOK_MAX_ATTEMPTS must be a whole number between 1 and ${INPUT_LIMITS.maxMaxAttempts}, not ${fromEnvironment}; or pass --max-attempts`);
  }
  return fromEnvironment;
}

/** The gates follow steps 1 and 4; any other number names no gate, a usage error rather than the run's refusal. */
function gateStep(value: string): number {
  if (!/^\s*[14]\s*$/.test(value)) throw new InvalidArgumentError(`--step must be 1 or 4 (the gates follow steps 1 and 4), not ${printable(value)}.`);
  return Number(value.trim());
}

function nonNegativeInt(flag: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(Number(value))) {
      throw new InvalidArgumentError(`${flag} must be a whole number >= 0.`);
    }
    return Number(value);
  };
}

const SETTING_HELP: Partial<Record<string, string>> = {
  ratePerSecond: 'deliveries started per second per shard, 0 for no limit',
  concurrency: 'requests in flight per pass',
  requestTimeoutMs: 'timeout of one request',
  backoffBaseMs: 'first retry delay',
  backoffCapMs: 'longest retry delay',
  autoPauseAfter: 'failed first attempts in a row before pausing',
  autoPauseCooldownMs: 'pause before a probe',
  batchSize: 'events per claim',
  claimBytes: 'payload bytes per claim (4194304, 512KiB, 4MiB)',
};

/** Settings from the environment; a bad one is a usage error (exit 2) naming the fix. */
function settings<T>(read: () => T): T {
  try {
    const loaded = read();
    // Read where the pools and migrations are made; checked here so a bad value stops the command before it starts.
    sessionTimeouts();
    migrateLockTimeoutMs();
    return loaded;
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
}

const config = () => settings(loadConfig);

/**
 * The top-level help lists one line per command: its name, the arguments it requires, and its summary
 * (`<command> --help` has the full description and every option).
 */
function commandTerm(cmd: Command): string {
  if (cmd.commands.length > 0) return `${cmd.name()} ${cmd.commands.map((c) => c.name()).join('|')}`;
  const args = cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`));
  return [cmd.name(), ...args].join(' ');
}

/** Options meant to be given more than once; every other option that takes a value may be given once. */
const REPEATABLE = new WeakSet<Option>();

function repeatable(flags: string, description: string, defaultDescription?: string): Option {
  const option = new Option(flags, description).argParser((value: string, previous: string[]) => [...previous, value]).default([], defaultDescription);
  REPEATABLE.add(option);
  return option;
}

/**
 * Commander keeps the last value of an option given twice, so `--file a --file b` would quietly run on b: for
 * every command, an option that takes one value and is given twice stops the command before it starts.
 */
function refuseRepeatedOptions(cmd: Command): void {
  for (const option of cmd.options) {
    if (REPEATABLE.has(option) || !(option.required || option.optional)) continue;
    let first: string | undefined;
    let seen = false;
    // Emitted once per occurrence on the command line, whatever its form (--limit 5, --limit=5).
    cmd.on(`option:${option.name()}`, (value: string | null) => {
      if (seen) {
        const values = [first, value].map((v) => (v == null ? '(no value)' : `'${printable(v)}'`)).join(' and ');
        throw new UsageError(`${option.long ?? option.flags} given twice (${values}); pass it once`);
      }
      seen = true;
      first = value ?? undefined;
    });
  }
  for (const sub of cmd.commands) refuseRepeatedOptions(sub);
}

/**
 * Commander's own errors (unknown option or command, missing or excess argument) come as up to three lines: the
 * error, a suggestion, a pointer to --help. Usage errors are one line naming the fix, so each command folds them
 * into one and points at its own help.
 */
function oneLineErrors(cmd: Command): void {
  const path: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) path.unshift(c.name());
  cmd.configureOutput({
    outputError: (str, write) => {
      const [head = '', ...rest] = str.trim().split('\n');
      const suggestions = rest.map((line) => /^\((Did you mean .*)\)$/.exec(line.trim())?.[1]).filter((m) => m !== undefined);
      const hint = suggestions.map((m) => ` (${m.charAt(0).toLowerCase()}${m.slice(1)})`).join('');
      write(`${head.replace(/\.$/, '')}${hint}; see '${path.join(' ')} --help'\n`);
    },
  });
  for (const sub of cmd.commands) oneLineErrors(sub);
}

export function buildProgram(out: Output): Command {
  const program = new Command('gotong-worker')
    .description('Webhook backfill, delivery and dead-letter replay as durable Temporal runs.')
    .exitOverride()
    .configureOutput({ writeOut: (s) => out.log(s.trimEnd()), writeErr: (s) => out.err(s.trimEnd()) })
    .configureHelp({ subcommandTerm: commandTerm });

  program
    .command('webhook-backfill')
    .summary('Backfill an NDJSON file into the outbox')
    .description(
      'Backfill historical events from an NDJSON file into the outbox, deduplicated by event_id, as a durable run. ' +
        'Prints a progress line every N processed lines and a final summary; --dry-run writes nothing to the outbox.',
    )
    .requiredOption('--file <path>', 'NDJSON file, one event per line (workers read it: storage they all see, below GOTONG_INPUT_ROOTS)')
    .option('--dry-run', 'report what would happen without writing the outbox', false)
    .option('--progress-every <n>', 'print a progress line every N processed lines', positiveInt('--progress-every'), 100)
    .option(
      '--max-attempts <n>',
      `delivery attempts for each new event, 1 to ${INPUT_LIMITS.maxMaxAttempts} (default: WEBHOOK_MAX_ATTEMPTS, else 5)`,
      positiveInt('--max-attempts', INPUT_LIMITS.maxMaxAttempts),
    )
    .option(
      '--batch-size <n>',
      `lines per batch activity (at most ${BACKFILL_LIMITS.maxBatchSize})`,
      positiveInt('--batch-size'),
      BACKFILL_LIMITS.defaultBatchSize,
    )
    .option('--json', 'also print the final summary as one JSON object on the last line', false)
    .option('--detach', 'start (or attach), print the workflow id and how to watch or cancel it, and exit', false)
    .option('--plain', 'print progress lines even on a terminal (no progress bar)', false)
    .action(
      async (opts: {
        file: string;
        dryRun: boolean;
        progressEvery: number;
        maxAttempts?: number;
        batchSize: number;
        json: boolean;
        detach: boolean;
        plain: boolean;
      }) => {
        const cfg = config();
        await runBackfill(
          {
            file: opts.file,
            dryRun: opts.dryRun,
            progressEvery: opts.progressEvery,
            maxAttempts: maxAttemptsFrom(opts.maxAttempts, cfg.defaultMaxAttempts),
            batchSize: opts.batchSize,
            json: opts.json,
            detach: opts.detach,
            plain: opts.plain,
            taskQueue: cfg.taskQueue,
          },
          out,
        );
      },
    );

  program
    .command('webhook-replay-dlq')
    .summary('Replay dead letters (reset them to pending)')
    .description(
      'Replay outbox events (dead letters by default): reset matching rows to pending and due, attempts 0, errors cleared, ' +
        'payload untouched, an audit row per event, as a durable run. --dry-run reports what would be reset, by event type ' +
        'and last status code, with sample ids, and writes nothing. In-flight rows with a live lease are never touched.',
    )
    .option('--status <status>', 'pending, in_flight, delivered, retrying or dead_letter', 'dead_letter')
    .option('--limit <n>', 'reset at most N rows', positiveInt('--limit'), 500)
    .option('--dry-run', 'report what would be reset without writing anything', false)
    .option('--progress-every <n>', 'print a progress line every N processed rows', positiveInt('--progress-every'), 100)
    .addOption(repeatable('--event-type <type>', 'only this event type (repeatable)'))
    .option('--since <iso>', 'only rows last changed at or after this time')
    .option('--until <iso>', 'only rows last changed before this time')
    .option('--status-code <code>', 'only rows whose last delivery got this status code (503) or class (5xx)')
    .option('--event-ids <file>', 'only these event ids, one a line (workers read the file: below GOTONG_INPUT_ROOTS)')
    .option('--resend-delivered', 'allow --status delivered: resend events the receiver already accepted', false)
    .option('--batch-size <n>', 'rows reset per batch activity (one transaction each)', positiveInt('--batch-size'), 20000)
    .option('--rate <n>', 'at most N rows reset per second (0: no limit)', nonNegativeInt('--rate'), 0)
    .option('--json', 'also print the final summary as one JSON object on the last line', false)
    .option('--detach', 'start (or attach), print the workflow id and how to watch or cancel it, and exit', false)
    .option('--plain', 'print progress lines even on a terminal (no progress bar)', false)
    .action(async (opts: Omit<ReplayCommandOptions, 'taskQueue'>) => {
      await runReplay({ ...opts, taskQueue: config().taskQueue }, out);
    });

  program
    .command('webhook-runbook')
    .summary('The six-step recovery runbook as one run')
    .description(
      [
        'Run the six-step recovery sequence as one durable run (webhook-runbook/...),',
        'with the backfill and replay runs as its children:',
        '  1 backfill dry-run, then a gate (share of failed lines; with',
        '    --approval manual, also an approve signal)',
        '  2 backfill execute',
        '  3 verify: wait until its events are delivered and enough succeeded',
        '  4 replay dry-run, then a gate',
        '  5 replay execute',
        '  6 confirm: wait until the dead letters are back to the baseline',
        'Prints a line per step; exit code 1 when a gate, a rejection or a timeout',
        'stops the run, with the figures.',
      ].join('\n'),
    )
    .requiredOption('--file <path>', 'NDJSON file to backfill (workers read it: storage they all see, below GOTONG_INPUT_ROOTS)')
    .option('--replay-limit <n>', 'replay at most N dead letters in step 5', positiveInt('--replay-limit'), RUNBOOK_DEFAULTS.replayLimit)
    .option('--approval <mode>', 'auto: gates pass on their checks; manual: each gate also waits for an approve signal', 'auto')
    .option('--max-failed-ratio <r>', 'gate after step 1: most failed lines allowed, as a share (0.01 or 1%)', String(RUNBOOK_DEFAULTS.maxFailedRatio))
    .option('--baseline <n>', 'dead letters to return to in step 6 (default: the count before step 1)', nonNegativeInt('--baseline'))
    .option('--verify-timeout <d>', 'step 3 fails after this long (90s, 30m, 2h)', '30m')
    .option('--verify-max-backlog <n>', "step 3: at most N of step 2's events still waiting for delivery", nonNegativeInt('--verify-max-backlog'), 0)
    .option('--min-success-rate <r>', "step 3: at least this share of step 2's finished deliveries succeeded", String(RUNBOOK_DEFAULTS.verifyMinSuccessRate))
    .option('--confirm-timeout <d>', 'step 6 fails after this long (90s, 30m, 2h)', '30m')
    .option('--poll-interval <d>', 'how often steps 3 and 6 look at the outbox', '5s')
    .option('--progress-every <n>', "print the running child's progress every N processed items", positiveInt('--progress-every'), 1000)
    .option('--max-attempts <n>', `delivery attempts for each new event, 1 to ${INPUT_LIMITS.maxMaxAttempts} (default: WEBHOOK_MAX_ATTEMPTS, else 5)`, positiveInt('--max-attempts', INPUT_LIMITS.maxMaxAttempts))
    .option('--batch-size <n>', `backfill lines per batch activity (at most ${BACKFILL_LIMITS.maxBatchSize})`, positiveInt('--batch-size'), BACKFILL_LIMITS.defaultBatchSize)
    .option('--json', 'also print the final report as one JSON object on the last line', false)
    .option('--detach', 'start (or attach), print the workflow id and how to watch, cancel or approve it, and exit', false)
    .action(async (opts: Omit<RunbookCommandOptions, 'taskQueue' | 'maxAttempts'> & { maxAttempts?: number; detach: boolean }) => {
      const cfg = config();
      const runbook = { ...opts, maxAttempts: maxAttemptsFrom(opts.maxAttempts, cfg.defaultMaxAttempts), taskQueue: cfg.taskQueue };
      if (!opts.detach) {
        await runRunbook(runbook, out);
        return;
      }
      const path = resolveBackfillFile(opts.file);
      const workflowId = runbookWorkflowId(path);
      const input = runbookInputFrom(runbook, path, workflowId);
      await startDetached(
        {
          label: 'webhook-runbook',
          workflowType: 'webhookRecoveryRunbook',
          workflowId,
          args: [input],
          taskQueue: cfg.taskQueue,
          metadata: runbookMetadata(input, redactedCommand(process.argv.slice(2))),
          optionFlags: RUNBOOK_OPTION_FLAGS,
        },
        out,
        { json: opts.json, approve: true },
      );
    });

  program
    .command('watch')
    .summary('Follow a run until it is done')
    .description('Follow a backfill, replay or runbook run by id until it is done: progress lines (a bar on a terminal), then the summary.')
    .argument('<workflow-id>', 'the run\'s workflow id, as the command that started it printed it')
    .option('--progress-every <n>', "print a progress line every N processed items (default: the run's own step)", positiveInt('--progress-every'))
    .option('--json', 'also print the final summary as one JSON object on the last line', false)
    .option('--plain', 'print progress lines even on a terminal (no progress bar)', false)
    .action(async (workflowId: string, opts: { progressEvery?: number; json: boolean; plain: boolean }) => {
      await runWatch(workflowId, opts, out);
    });

  for (const decision of ['approve', 'reject'] as const) {
    program
      .command(decision)
      .summary(decision === 'approve' ? 'Let a runbook waiting at a gate go on' : 'Stop a runbook waiting at a gate')
      .description(
        (decision === 'approve'
          ? 'Let a webhook-runbook run that waits at a gate (--approval manual) go on to its next step.'
          : 'Stop a webhook-runbook run that waits at a gate; it ends with the gate marked rejected.') +
          ' The run answers which gate it decided, or why it refused (not at a gate, another gate, already decided):' +
          ' the first decision at a gate wins. Exit code 1 when refused.',
      )
      .argument('<workflow-id>', 'the runbook\'s workflow id, as webhook-runbook printed it')
      .option('--step <n>', 'the gate meant, by the step it follows (1 or 4); refused if the run waits at another', gateStep)
      .option('--reason <text>', 'recorded in the run with the decision')
      .action(async (workflowId: string, opts: { step?: number; reason?: string }) => {
        await runGateDecision(decision, workflowId, opts, out);
      });
  }

  program
    .command('failed-lines')
    .summary("A backfill's failed lines, with reasons")
    .description("List a backfill run's failed lines (line number, byte offset, reason, excerpt).")
    .argument('<workflow-id>', "the backfill's workflow id, as the backfill command printed it")
    .option('--run-key <key>', 'a specific run of that workflow id (default: the newest)')
    .option('--limit <n>', 'at most this many lines', positiveInt('--limit'), 1000)
    .option('--json', 'one JSON object per line', false)
    .action(async (workflowId: string, opts: { runKey?: string; limit: number; json: boolean }) => {
      await runFailedLines(config(), { workflowId, ...opts }, out);
    });

  program
    .command('status')
    .summary('One snapshot of a run: state and counters')
    .description(
      'One snapshot of a backfill, replay, runbook or dispatcher run: its state, and its counters from its ' +
        "query while it runs (progress, or the dispatcher's stats), or its result once closed. Exit code 1 when " +
        'no run has that id.',
    )
    .argument('<workflow-id>', 'the run\'s workflow id, as the command that started it printed it (or from list)')
    .option('--json', 'one JSON object (snake_case keys)', false)
    .action(async (workflowId: string, opts: { json: boolean }) => {
      await runStatus(workflowId, opts, out);
    });

  program
    .command('list')
    .summary('Recent runs of each kind, state and counters')
    .description(
      'The most recent runs of each kind (backfill, replay, runbook, dispatcher), running ones first, with ' +
        "their state and counters, from Temporal's visibility store (WorkflowType, WorkflowId, ExecutionStatus). " +
        "A long run's earlier continue-as-new segments are left out unless --state continued_as_new asks for them.",
    )
    .addOption(repeatable('--kind <kind>', 'backfill, replay, runbook or dispatcher (repeatable, or comma-separated)', 'every kind'))
    .addOption(
      repeatable(
        '--state <state>',
        'running, completed, failed, canceled, terminated, timed_out or continued_as_new (repeatable, or comma-separated)',
        'every state but continued_as_new',
      ),
    )
    .option('--id-prefix <text>', 'only workflow ids that start with this, e.g. webhook-backfill/events.ndjson')
    .option('--file <name>', 'only runs on this file, by name (search attribute GotongSourceFile)')
    .option('--dry-run', 'only dry runs (search attribute GotongDryRun)')
    .option('--awaiting-approval', "only runbooks waiting at a gate (search attribute GotongOutcome='awaiting-approval')")
    .option('--limit <n>', 'at most N runs of each kind', positiveInt('--limit'), 10)
    .option('--json', 'one JSON object per run (snake_case keys)', false)
    .action(async (opts: ListCommandOptions) => {
      await runList(opts, out);
    });

  const outbox = program
    .command('outbox')
    .summary("Outbox counts by status, or one event's log")
    .description('Read the outbox: counts and dead letters (stats), or one event with its attempt log (show).');
  outbox
    .command('stats')
    .summary('Counts by status, due events, dead letters by type and code')
    .description(
      'Counts by status (exact, from one snapshot; the total reads the whole table), events due now and how ' +
        'long the oldest has waited, expired leases, and dead letters by event type and by last status code.',
    )
    .option('--top <n>', 'show the N largest groups of dead letters (--json has them all)', positiveInt('--top'), 20)
    .option('--json', 'one JSON object (snake_case keys)', false)
    .action(async (opts: { top: number; json: boolean }) => {
      await runOutboxStats(config(), opts, out);
    });
  outbox
    .command('show')
    .summary('One event and its attempt log')
    .description('One outbox row and its delivery attempts, oldest first; the payload only with --payload.')
    .argument('<event-id>', 'the event id')
    .option('--payload', 'also print the stored payload', false)
    .option('--limit <n>', 'at most N attempts', positiveInt('--limit'), 100)
    .option('--json', 'one JSON object: event, attempts, last_replay (snake_case keys)', false)
    .action(async (eventId: string, opts: { payload: boolean; limit: number; json: boolean }) => {
      await runOutboxShow(config(), eventId, opts, out);
    });

  program
    .command('worker')
    .summary('Run the worker: activities, workflows, delivery')
    .description(
      'Run the Temporal worker (workflows and activities) on GOTONG_TASK_QUEUE until SIGINT/SIGTERM. With WEBHOOK_URL ' +
        'set it also polls GOTONG_TASK_QUEUE-delivery, where delivery passes run, and makes sure the delivery dispatchers run.',
    )
    .option('--no-migrate', 'do not apply pending database migrations at start (and refuse to start while one is missing)')
    .option(
      '--dispatchers <n>',
      'delivery dispatcher shards to run (webhook-dispatcher/0..n-1; needs WEBHOOK_URL; 0: leave them alone); ' +
        'changes how many run, both ways (default: keep the running count, at least 1)',
      nonNegativeInt('--dispatchers'),
    )
    .option(
      '--metrics-port <[ip:]port>',
      'serve Prometheus metrics on this port, all interfaces unless an IP is given (default: GOTONG_METRICS_PORT, else off)',
    )
    .action(async (opts: { migrate: boolean; dispatchers?: number; metricsPort?: string }) => {
      if (opts.dispatchers !== undefined && opts.dispatchers > MAX_SHARDS) throw new UsageError(`--dispatchers must be at most ${MAX_SHARDS}`);
      const cfg = config();
      const observability = settings(() => {
        checkLogSettings(process.env);
        return workerObservabilityFrom(process.env, opts.metricsPort);
      });
      const logger = createWorkerLogger();
      for (const warning of cfg.warnings) logger.warn(warning);
      await runWorker(cfg, { migrate: opts.migrate, dispatchers: opts.dispatchers, ...observability }, logger);
    });

  const delivery = program
    .command('delivery')
    .summary('Dispatcher stats, or pause/resume delivery')
    .description(
      "status: the dispatcher shards' stats, with the last failed pass (backlog=~N is an estimate, when more than " +
        '10,000 events are due; every other figure is exact). pause, resume: the signals the Temporal UI sends; a ' +
        'paused dispatcher finishes the requests it has started and sends no new ones. configure: changes the settings ' +
        'of the running dispatchers (a Workflow Update each shard validates) and prints the settings in force; without ' +
        'flags, prints them. Durations take a unit (500ms, 10s, 2m).',
    )
    .argument('<action>', 'status, pause, resume or configure')
    .option('--json', 'one JSON object per shard', false);
  for (const spec of CONFIGURE_FLAGS) {
    const value = spec.unit === 'ms' ? '<duration>' : '<n>';
    delivery.option(`${spec.flag} ${value}`, `configure: ${SETTING_HELP[spec.key] ?? spec.key} (${spec.env})`);
  }
  delivery
    .option('--shards <n>', 'configure: dispatcher shards; new ones start, extra ones finish their passes and stop')
    .action(async (action: string, opts: { json: boolean } & Record<string, string | undefined>) => {
      if (action !== 'status' && action !== 'pause' && action !== 'resume' && action !== 'configure') {
        throw new UsageError(`unknown delivery action '${action}'; use status, pause, resume or configure`);
      }
      if (action !== 'configure') {
        const misplaced = CONFIGURE_OPTION_NAMES.find((name) => opts[name] !== undefined);
        if (misplaced) throw new UsageError(`settings flags belong to 'delivery configure', not 'delivery ${action}'`);
        await runDeliveryControl(action, opts, out);
        return;
      }
      const patch = configPatchFromFlags(opts);
      await runDeliveryConfigure(patch, { json: opts.json, taskQueue: config().taskQueue }, out);
    });

  program
    .command('migrate')
    .summary('Create the database and apply migrations')
    .description('Create the database if it is missing and apply pending SQL migrations.')
    .action(async () => {
      await runMigrate(config(), out);
    });

  program
    .command('temporal-server')
    .summary('Run a local Temporal dev server with its UI')
    .description(
      'Find (TEMPORAL_CLI_PATH, PATH, Go bin) or build the Temporal CLI, and run its dev server with the Web UI in the foreground.',
    )
    .addOption(new Option('--port <n>', 'gRPC port').argParser(positiveInt('--port')).default(7233))
    .addOption(new Option('--ui-port <n>', 'Web UI port').argParser(positiveInt('--ui-port')).default(8233))
    .option('--db-file <path>', 'SQLite file for the server state', '.gotong/temporal-dev.sqlite')
    .action(async (opts: { port: number; uiPort: number; dbFile: string }) => {
      await runTemporalServer(opts, out);
    });

  program
    .command('demo')
    .summary('The whole runbook end to end on a sample')
    .description(
      [
        'Run the whole recovery runbook on embedded defaults',
        '(Temporal namespace gotong-demo):',
        '- a Temporal dev server if none is reachable (the CLI built if needed)',
        "- a fresh gotong_demo database on DATABASE_URL's server, or else an",
        '  embedded PostgreSQL',
        '- a worker, a dispatcher, and a receiver that answers 503 to about one',
        '  event in eight until the replay step',
        '- the six steps on a bundled sample file, approving each gate itself',
      ].join('\n'),
    )
    .option('--file <path>', 'NDJSON file to use instead of the bundled sample')
    .option('--keep-server', 'leave the Temporal dev server running afterwards, to browse the UI', false)
    .action(async (opts: { file?: string; keepServer: boolean }) => {
      // Loaded only for the demo: it brings the worker's native runtime.
      const { runDemo } = await import('./demo');
      await runDemo(config(), opts, out);
    });

  refuseRepeatedOptions(program);
  oneLineErrors(program);
  return program;
}

export async function main(argv = process.argv, out: Output = consoleOutput): Promise<number> {
  const program = buildProgram(out);
  if (argv.length <= 2) {
    program.outputHelp();
    return 2;
  }
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2;
    }
    if (err instanceof UsageError) {
      out.err(`error: ${err.message}`);
      return 2;
    }
    if (err instanceof RunError) {
      if (err.message) out.err(err.message);
      return 1;
    }
    if (err instanceof Detached) return 130;
    // An unexpected error may quote a connection string (a driver's message): never print its password.
    out.err(`error: ${maskConnectionSecrets((err as Error).message ?? String(err))}`);
    return 1;
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`error: ${String(err)}\n`);
      process.exit(1);
    },
  );
}
