import { type Client, WorkflowUpdateFailedError } from '@temporalio/client';
import {
  configPatchProblems,
  DISPATCHER_SETTINGS,
  type DispatcherConfigAnswer,
  type DispatcherConfigPatch,
  type DispatcherInput,
  type DispatcherOptions,
  type DispatcherStats,
  deliveryTaskQueue,
  dispatcherWorkflowId,
  formatSetting,
  MAX_SHARDS,
  resolveDispatcherOptions,
  type SettingSpec,
} from '../shared/delivery';
import { dispatcherMetadata, redactedCommand } from '../shared/run-metadata';
import { isMissingSearchAttribute } from '../shared/search-attribute-errors';

/**
 * The dispatcher shards as a fleet, from a client's side: which run, starting the missing ones, and changing their
 * settings or number through the `configure` Workflow Update. Used by `worker` at start and by `delivery configure`.
 */

/** A patch the dispatchers refuse (validation): nothing was changed. */
export class DispatcherConfigRejected extends Error {}

/** Shards are numbered from 0 without gaps: the first one that is not running ends the list. */
export async function runningShards(client: Client): Promise<number[]> {
  const shards: number[] = [];
  for (let shard = 0; shard < MAX_SHARDS; shard++) {
    const running = await client.workflow
      .getHandle(dispatcherWorkflowId(shard))
      .describe()
      .then((d) => d.status.name === 'RUNNING')
      .catch(() => false);
    if (!running) break;
    shards.push(shard);
  }
  return shards;
}

export async function shardStats(client: Client, shard: number): Promise<DispatcherStats> {
  return client.workflow.getHandle(dispatcherWorkflowId(shard)).query<DispatcherStats>('stats');
}

async function startShard(client: Client, taskQueue: string, shard: number, shards: number, options: DispatcherOptions): Promise<void> {
  const input: DispatcherInput = { shard, shards, options, deliveryTaskQueue: deliveryTaskQueue(taskQueue) };
  const metadata = dispatcherMetadata(shard, shards, { ...options }, redactedCommand(process.argv.slice(2)));
  const start = (withAttributes: boolean) =>
    client.workflow.start('webhookDispatcher', {
      taskQueue,
      workflowId: dispatcherWorkflowId(shard),
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      staticSummary: metadata.staticSummary,
      staticDetails: metadata.staticDetails,
      typedSearchAttributes: withAttributes ? metadata.typedSearchAttributes : undefined,
    });
  try {
    await start(true);
  } catch (err) {
    // Without the project's search attributes (the worker warns about them at start) the shard runs all the same.
    if (!isMissingSearchAttribute(err)) throw err;
    await start(false);
  }
}

async function update(client: Client, shard: number, patch: DispatcherConfigPatch): Promise<DispatcherConfigAnswer> {
  try {
    return await client.workflow
      .getHandle(dispatcherWorkflowId(shard))
      .executeUpdate<DispatcherConfigAnswer, [DispatcherConfigPatch]>('configure', { args: [patch] });
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      throw new DispatcherConfigRejected(`${dispatcherWorkflowId(shard)} refused the settings: ${err.cause?.message ?? err.message}`);
    }
    throw err;
  }
}

/**
 * Applies `patch` to every running shard, each answering with the settings in force. With more shards than run,
 * starts the new ones with the same settings (they start delivering at once); with fewer, the shards beyond the count
 * finish their passes and end. Checked against the running settings first, so a bad patch changes nothing anywhere.
 */
export async function configureDispatchers(client: Client, taskQueue: string, patch: DispatcherConfigPatch): Promise<DispatcherConfigAnswer[]> {
  const running = await runningShards(client);
  if (running.length === 0) return [];
  const current = await shardStats(client, 0);
  const problems = configPatchProblems(patch, current.settings);
  if (problems.length > 0) throw new DispatcherConfigRejected(problems.join('; '));
  const shards = patch.shards ?? current.shards;
  const answers: DispatcherConfigAnswer[] = [];
  for (const shard of running) answers.push(await update(client, shard, { ...patch, shards }));
  const settings = answers[0]!.settings;
  for (let shard = running.length; shard < shards; shard++) {
    await startShard(client, taskQueue, shard, shards, settings);
    // An empty patch only reports: it waits until the new run is up, and says what it runs with.
    answers.push(await update(client, shard, {}));
  }
  return answers;
}

export interface SettingDifference {
  spec: SettingSpec;
  wanted: number;
  running: number;
}

/** Settings this worker's environment gives that differ from those the running dispatchers use. */
export function settingDifferences(wanted: Partial<DispatcherOptions>, running: DispatcherOptions): SettingDifference[] {
  return DISPATCHER_SETTINGS.filter((spec) => wanted[spec.key] !== undefined && wanted[spec.key] !== running[spec.key]).map(
    (spec) => ({ spec, wanted: wanted[spec.key]!, running: running[spec.key] }),
  );
}

/** The `delivery configure` flag that sets a value, as an operator would type it. */
export function configureFlag(spec: SettingSpec, value: number): string {
  return `${spec.flag} ${spec.unit === 'ms' ? `${value}ms` : value}`;
}

export function describeDifferences(differences: SettingDifference[]): string {
  const list = differences.map((d) => `${d.spec.env}=${d.wanted} (running: ${formatSetting(d.spec, d.running)})`).join(', ');
  const command = ['gotong-worker delivery configure', ...differences.map((d) => configureFlag(d.spec, d.wanted))].join(' ');
  return `the running dispatchers keep their settings, which differ from this worker's environment: ${list}; to apply these: ${command}`;
}

export interface EnsureResult {
  ids: string[];
  /** This call started shard 0, with the environment's settings. */
  started: boolean;
  differences: SettingDifference[];
}

/**
 * Makes sure the dispatcher shards run, as a worker does at start. Nothing running: starts `shards` (default 1) with
 * the environment's settings over the defaults. Running: leaves their settings as they are (reporting differences
 * from the environment), starts any missing shard, and with `shards` given changes their number, both ways.
 */
export async function ensureDispatchers(
  client: Client,
  taskQueue: string,
  shards: number | undefined,
  options: Partial<DispatcherOptions>,
): Promise<EnsureResult> {
  const running = await runningShards(client);
  if (running.length === 0) {
    const count = shards ?? 1;
    const settings = resolveDispatcherOptions(options).options;
    for (let shard = 0; shard < count; shard++) await startShard(client, taskQueue, shard, count, settings);
    return { ids: shardIds(count), started: true, differences: [] };
  }
  const current = await shardStats(client, 0);
  const differences = settingDifferences(options, current.settings);
  if (shards !== undefined && shards !== current.shards) {
    const answers = await configureDispatchers(client, taskQueue, { shards });
    return { ids: shardIds(answers[0]?.shards ?? shards), started: false, differences };
  }
  for (let shard = running.length; shard < current.shards; shard++) {
    await startShard(client, taskQueue, shard, current.shards, current.settings);
  }
  return { ids: shardIds(current.shards), started: false, differences };
}

const shardIds = (count: number) => Array.from({ length: count }, (_, shard) => dispatcherWorkflowId(shard));
