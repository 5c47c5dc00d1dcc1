/**
 * What the Temporal UI shows of a run besides its input: search attributes to filter the list by, the static summary
 * and details its starter gives it, and the lines its workflow keeps current. Pure: the client, the worker and the
 * workflows (sandboxed) all use it. Nothing here may carry an event payload, a secret or a connection string: all of
 * it is stored in the run's history and shown to anyone who can read the namespace.
 */
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';
import type { BackfillInput } from './backfill';
import type { ReplayFilter, ReplayInput } from './replay';
import type { RunbookInput } from './runbook';

/** The project's custom search attributes. Registered by the dev server the project starts; on a cluster, see README. */
export const SEARCH_ATTRIBUTES = {
  kind: defineSearchAttributeKey('GotongKind', SearchAttributeType.KEYWORD),
  dryRun: defineSearchAttributeKey('GotongDryRun', SearchAttributeType.BOOL),
  sourceFile: defineSearchAttributeKey('GotongSourceFile', SearchAttributeType.KEYWORD),
  runbookStep: defineSearchAttributeKey('GotongRunbookStep', SearchAttributeType.INT),
  outcome: defineSearchAttributeKey('GotongOutcome', SearchAttributeType.KEYWORD),
} as const;

/** Name and type as `temporal operator search-attribute create` and `temporal server start-dev --search-attribute` take them. */
export const SEARCH_ATTRIBUTE_DEFINITIONS: ReadonlyArray<{ name: string; type: 'Keyword' | 'Bool' | 'Int' }> = [
  { name: SEARCH_ATTRIBUTES.kind.name, type: 'Keyword' },
  { name: SEARCH_ATTRIBUTES.dryRun.name, type: 'Bool' },
  { name: SEARCH_ATTRIBUTES.sourceFile.name, type: 'Keyword' },
  { name: SEARCH_ATTRIBUTES.runbookStep.name, type: 'Int' },
  { name: SEARCH_ATTRIBUTES.outcome.name, type: 'Keyword' },
];

/** `--search-attribute Name=Type` flags for `temporal server start-dev`. */
export const DEV_SERVER_SEARCH_ATTRIBUTE_ARGS: string[] = SEARCH_ATTRIBUTE_DEFINITIONS.flatMap((a) => ['--search-attribute', `${a.name}=${a.type}`]);

/** The commands that register the missing attributes on a cluster's namespace. */
export function searchAttributeCreateCommands(namespace: string, names: readonly string[]): string[] {
  return SEARCH_ATTRIBUTE_DEFINITIONS.filter((a) => names.includes(a.name)).map(
    (a) => `temporal operator search-attribute create --namespace ${namespace} --name ${a.name} --type ${a.type}`,
  );
}

/** GotongKind values: one per workflow type. */
export type RunKindValue = 'backfill' | 'replay' | 'runbook' | 'dispatcher';

/**
 * GotongOutcome values. `running` from the start; `awaiting-approval` while a runbook waits at a gate; the others when
 * the run ends. A run whose worker predates the attributes keeps `running` (only `status`/the UI's status are exact).
 */
export type OutcomeValue = 'running' | 'awaiting-approval' | 'completed' | 'stopped' | 'cancelled' | 'failed';

export interface RunMetadata {
  staticSummary: string;
  staticDetails: string;
  typedSearchAttributes: SearchAttributePair[];
}

/** Thousands separated with commas, the same in the workflow sandbox as anywhere (no locale). */
export function grouped(n: number): string {
  const s = String(Math.trunc(n));
  const sign = s.startsWith('-') ? '-' : '';
  const digits = sign ? s.slice(1) : s;
  return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function basenameOf(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

/** One value on one line and short: details are markdown, file names come from operators. */
function inline(text: string, max = 200): string {
  const one = text.replace(/[\r\n\t]+/g, ' ').replace(/`/g, "'");
  return one.length > max ? `${one.slice(0, max - 3)}...` : one;
}

const mode = (dryRun: boolean) => (dryRun ? 'dry run' : 'execute');

function detailsOf(lines: Array<[string, string | number | boolean | undefined | null]>, command?: string): string {
  const body = lines.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => `- **${k}**: \`${inline(String(v))}\``);
  if (command) body.push('', `Started by: \`${inline(command, 400)}\``);
  return body.join('\n');
}

export function describeReplaySelection(filter: ReplayFilter): string {
  const parts: string[] = [filter.status];
  if (filter.eventTypes.length > 0) parts.push(`type ${filter.eventTypes.join(',')}`);
  if (filter.statusCode !== undefined) parts.push(`status code ${filter.statusCode}`);
  if (filter.statusClass !== undefined) parts.push(`status ${filter.statusClass}xx`);
  if (filter.since) parts.push(`since ${filter.since}`);
  if (filter.until) parts.push(`until ${filter.until}`);
  if (filter.eventIdsPath) parts.push(`ids from ${basenameOf(filter.eventIdsPath)}`);
  if (filter.selectedBy) parts.push('the rows its dry run counted');
  return inline(parts.join(', '), 120);
}

export function backfillMetadata(input: BackfillInput, command?: string, parent?: string): RunMetadata {
  const file = basenameOf(input.path);
  return {
    staticSummary: inline(`Backfill ${file} into the outbox (${mode(input.dryRun)})${parent ? `, ${parent}` : ''}`),
    staticDetails: detailsOf(
      [
        ['file', input.path],
        ['dry run', input.dryRun],
        ['batch size (lines)', input.batchSize],
        ['delivery attempts per event', input.maxAttempts],
        ['checkpoint every (lines)', input.progressEvery],
        ['run key', input.runKey],
      ],
      command,
    ),
    typedSearchAttributes: [
      { key: SEARCH_ATTRIBUTES.kind, value: 'backfill' },
      { key: SEARCH_ATTRIBUTES.dryRun, value: input.dryRun },
      { key: SEARCH_ATTRIBUTES.sourceFile, value: file },
      { key: SEARCH_ATTRIBUTES.outcome, value: 'running' },
    ],
  };
}

export function replayMetadata(input: ReplayInput, command?: string, parent?: string): RunMetadata {
  const selection = describeReplaySelection(input.filter);
  const pairs: SearchAttributePair[] = [
    { key: SEARCH_ATTRIBUTES.kind, value: 'replay' },
    { key: SEARCH_ATTRIBUTES.dryRun, value: input.dryRun },
    { key: SEARCH_ATTRIBUTES.outcome, value: 'running' },
  ];
  if (input.filter.eventIdsPath) pairs.push({ key: SEARCH_ATTRIBUTES.sourceFile, value: basenameOf(input.filter.eventIdsPath) });
  return {
    staticSummary: inline(`Replay up to ${grouped(input.limit)} ${selection} rows (${mode(input.dryRun)})${parent ? `, ${parent}` : ''}`),
    staticDetails: detailsOf(
      [
        ['selection', selection],
        ['limit (rows)', input.limit],
        ['dry run', input.dryRun],
        ['batch size (rows)', input.batchSize],
        ['rate (rows/s, 0 = no limit)', input.ratePerSecond],
        ['checkpoint every (rows)', input.progressEvery],
        ['run key', input.runKey],
      ],
      command,
    ),
    typedSearchAttributes: pairs,
  };
}

export function runbookMetadata(input: RunbookInput, command?: string): RunMetadata {
  const file = basenameOf(input.path);
  return {
    staticSummary: inline(`Recovery runbook for ${file} (6 steps, ${input.approval === 'manual' ? 'gates wait for approval' : 'gates pass on their checks'})`),
    staticDetails: detailsOf(
      [
        ['file', input.path],
        ['approval', input.approval],
        ['max failed ratio (gate 1)', input.maxFailedRatio],
        ['baseline dead letters', input.baseline ?? 'the count before step 1'],
        ['verify timeout (ms)', input.verifyTimeoutMs],
        ['verify max backlog', input.verifyMaxBacklog],
        ['verify min success rate', input.verifyMinSuccessRate],
        ['confirm timeout (ms)', input.confirmTimeoutMs],
        ['poll every (ms)', input.pollMs],
        ['replay limit', input.replayLimit],
        ['batch size (lines)', input.batchSize],
        ['delivery attempts per event', input.maxAttempts],
        ['run key', input.runKey],
      ],
      command,
    ),
    typedSearchAttributes: [
      { key: SEARCH_ATTRIBUTES.kind, value: 'runbook' },
      { key: SEARCH_ATTRIBUTES.dryRun, value: false },
      { key: SEARCH_ATTRIBUTES.sourceFile, value: file },
      { key: SEARCH_ATTRIBUTES.outcome, value: 'running' },
    ],
  };
}

export function dispatcherMetadata(shard: number, shards: number, settings: Record<string, unknown>, command?: string): RunMetadata {
  return {
    staticSummary: `Delivery dispatcher shard ${shard} of ${shards}: posts due outbox events to the receiver`,
    staticDetails: detailsOf(
      Object.entries(settings).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : (v as string | number | boolean)]),
      command,
    ),
    typedSearchAttributes: [
      { key: SEARCH_ATTRIBUTES.kind, value: 'dispatcher' },
      { key: SEARCH_ATTRIBUTES.outcome, value: 'running' },
    ],
  };
}

/** Command-line words that must not reach a history: connection strings, credentials, secrets. */
const SECRET_FLAG = /(url|secret|password|token|key|dsn|address)$/i;
const SECRET_VALUE = /:\/\/|@|^(?:whsec_|sk_|ey)/i;

/**
 * The command that started a run, as an operator could type it again, with anything that could be a secret or a
 * connection string replaced by <redacted>. Only the start commands' own flags are expected here (none take a
 * secret); this is the belt to that braces.
 */
export function redactedCommand(argv: readonly string[], program = 'gotong-worker'): string {
  const words: string[] = [program];
  let redactNext = false;
  for (const arg of argv) {
    if (redactNext) {
      words.push('<redacted>');
      redactNext = false;
      continue;
    }
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      const flag = arg.slice(0, eq);
      const value = arg.slice(eq + 1);
      words.push(SECRET_FLAG.test(flag) || SECRET_VALUE.test(value) ? `${flag}=<redacted>` : `${flag}=${quote(value)}`);
      continue;
    }
    if (arg.startsWith('--') && SECRET_FLAG.test(arg)) {
      words.push(arg);
      redactNext = true;
      continue;
    }
    words.push(SECRET_VALUE.test(arg) ? '<redacted>' : quote(arg));
  }
  return words.join(' ');
}

function quote(word: string): string {
  return /^[A-Za-z0-9_./:=,%@+-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}
