import {
  DISPATCHER_SETTINGS,
  type DispatcherConfigAnswer,
  type DispatcherConfigPatch,
  type DispatcherOptions,
  type DispatcherStats,
  dispatcherWorkflowId,
  formatSetting,
  MAX_SHARDS,
  type SettingSpec,
  settingProblems,
} from '../shared/delivery';
import { configureDispatchers, DispatcherConfigRejected, runningShards, shardStats } from '../delivery/fleet';
import { connectClient } from './watch';
import { RunError, UsageError, type Output } from './errors';
import { parseDuration } from './runbook';
import { jsonLine, snakeKeys } from './json';
import { printable } from './text';

const NO_DISPATCHER = "[delivery] no dispatcher is running; start a worker with WEBHOOK_URL set ('gotong-worker worker')";

/** `gotong-worker delivery status|pause|resume`: the dispatcher shards' stats query and pause/resume signals. */
export async function runDeliveryControl(action: 'status' | 'pause' | 'resume', opts: { json: boolean }, out: Output): Promise<void> {
  const { client, connection } = await connectClient();
  try {
    const shards = await runningShards(client);
    if (shards.length === 0) throw new RunError(NO_DISPATCHER);
    for (const shard of shards) {
      if (action !== 'status') await client.workflow.getHandle(dispatcherWorkflowId(shard)).signal(action);
      const stats = await shardStats(client, shard);
      out.log(opts.json ? jsonLine(snakeKeys({ workflowId: dispatcherWorkflowId(shard), ...stats })) : statusLine(stats));
    }
  } finally {
    await connection.close();
  }
}

function statusLine(stats: DispatcherStats): string {
  const state = stats.stopping ? 'stopping' : stats.paused ? `paused (${stats.pauseReason})` : 'running';
  const error = stats.lastError
    ? ` last_error_at=${stats.lastError.at} failed_passes_in_a_row=${stats.lastError.inARow} last_error="${printable(stats.lastError.message)}"`
    : '';
  return (
    `[delivery] ${dispatcherWorkflowId(stats.shard)} ${state} delivered=${stats.delivered} retried=${stats.retried} ` +
    `dead_lettered=${stats.deadLettered} in_flight=${stats.inFlight} backlog=${stats.backlogEstimated ? '~' : ''}${stats.backlog} ` +
    `oldest_due_age_ms=${stats.oldestDueAgeMs}${countsAge(stats)} auto_pauses=${stats.autoPauses ?? 0}${error}`
  );
}

/**
 * How old the in-flight, backlog and oldest-due figures are: passes count them, so a paused dispatcher's are as of its
 * last pass (`outbox stats` counts now). Dispatchers started before the field existed have none to show.
 */
function countsAge(stats: DispatcherStats, now = Date.now()): string {
  if (stats.countsAsOf === undefined) return '';
  if (stats.countsAsOf === null) return ' counts_age_s=n/a';
  return ` counts_age_s=${Math.max(0, Math.round((now - Date.parse(stats.countsAsOf)) / 1000))}`;
}

/** Flag values as commander hands them over (strings), for `delivery configure`. */
export type ConfigureFlags = Partial<Record<string, string>>;

/** Where each operator-tunable setting's flag lands in commander's parsed options (`--backoff-base` -> backoffBase). */
const optionName = (flag: string) => flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export const CONFIGURE_FLAGS: readonly SettingSpec[] = DISPATCHER_SETTINGS.filter((s) => s.flag);
export const CONFIGURE_OPTION_NAMES = [...CONFIGURE_FLAGS.map((s) => optionName(s.flag!)), 'shards'];

/** Turns the flags into a patch, or a usage error naming the flag to fix. Nothing is contacted yet. */
export function configPatchFromFlags(flags: ConfigureFlags): DispatcherConfigPatch {
  const patch: DispatcherConfigPatch = {};
  for (const spec of CONFIGURE_FLAGS) {
    const text = flags[optionName(spec.flag!)];
    if (text === undefined) continue;
    patch[spec.key] = parseSettingValue(spec, text);
  }
  if (flags.shards !== undefined) {
    const shards = Number(flags.shards);
    if (!/^\d+$/.test(flags.shards.trim()) || shards < 1 || shards > MAX_SHARDS) {
      throw new UsageError(`--shards must be a whole number between 1 and ${MAX_SHARDS}`);
    }
    patch.shards = shards;
  }
  const problems = settingProblems({ ...patch, shards: undefined } as Partial<DispatcherOptions>);
  if (problems.length > 0) throw new UsageError(problems.join('; '));
  return patch;
}

function parseSettingValue(spec: SettingSpec, text: string): number {
  const flag = spec.flag!;
  if (spec.unit === 'ms') return parseDuration(flag, text);
  if (spec.unit === 'per-second') {
    if (!/^\d+(\.\d+)?$/.test(text.trim())) throw new UsageError(`${flag} ${text}: use deliveries per second, such as 0.5 or 20 (0: no limit)`);
    return Number(text);
  }
  if (spec.unit === 'bytes') {
    const match = /^(\d+)(B|KiB|MiB)?$/.exec(text.trim());
    if (!match) throw new UsageError(`${flag} ${text}: use bytes, such as 4194304, 512KiB or 4MiB`);
    return Number(match[1]) * { B: 1, KiB: 1024, MiB: 1024 * 1024 }[(match[2] ?? 'B') as 'B' | 'KiB' | 'MiB'];
  }
  if (!/^\d+$/.test(text.trim())) throw new UsageError(`${flag} ${text}: use a whole number`);
  return Number(text);
}

/**
 * `gotong-worker delivery configure [flags]`: applies the settings to every running dispatcher shard (a Workflow
 * Update, validated by each shard) and prints the settings each answers with. Without flags, prints them.
 */
export async function runDeliveryConfigure(patch: DispatcherConfigPatch, opts: { json: boolean; taskQueue: string }, out: Output): Promise<void> {
  const { client, connection } = await connectClient();
  try {
    let answers: DispatcherConfigAnswer[];
    try {
      answers = await configureDispatchers(client, opts.taskQueue, patch);
    } catch (err) {
      if (err instanceof DispatcherConfigRejected) throw new UsageError(`${err.message} (nothing was changed)`);
      throw err;
    }
    if (answers.length === 0) throw new RunError(NO_DISPATCHER);
    for (const answer of answers) {
      const id = dispatcherWorkflowId(answer.shard);
      if (opts.json) {
        out.log(jsonLine(snakeKeys({ workflowId: id, shard: answer.shard, shards: answer.shards, stopping: answer.stopping, settings: answer.settings })));
      } else {
        const state = answer.stopping ? ' (beyond the shard count: finishes its passes and stops)' : '';
        out.log(`[delivery] ${id} settings in force: ${describeSettings(answer.settings)} shards=${answer.shards}${state}`);
      }
    }
  } finally {
    await connection.close();
  }
}

export function describeSettings(settings: DispatcherOptions): string {
  return CONFIGURE_FLAGS.map((spec) => `${spec.flag!.slice(2).replace(/-/g, '_')}=${formatSetting(spec, settings[spec.key])}`).join(' ');
}
