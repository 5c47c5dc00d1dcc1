/**
 * Measures what Worker Deployment Versioning does on this project's stack (the Temporal CLI dev server the tests use,
 * and the TypeScript SDK in package.json): pinned runs, auto-upgrade, continue-as-new, and what the CLI and the
 * TypeScript client offer to manage deployments. Prints one line per finding; CONTRIBUTING.md quotes them.
 *
 *   npm run build && node dist/test/tools/deployment-probe/probe.js
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { FAST_DEV_SERVER_ARGS, findOrBuildTemporalCli } from '../../../src/dev/temporal-cli';

const run = promisify(execFile);
const say = (line: string) => console.log(`[probe] ${line}`);
const DEPLOYMENT = 'gotong-probe';
const TASK_QUEUE = 'deployment-probe';

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const cli = await findOrBuildTemporalCli();
  say(`CLI: ${(await run(cli, ['--version'])).stdout.trim()}`);
  const env = await TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path: cli }, ip: '127.0.0.1', extraArgs: FAST_DEV_SERVER_ARGS } });
  const client = env.client;
  say(`TypeScript client: members ${Object.keys(client).filter((k) => !k.startsWith('_')).join(', ')}; deployment methods on it: ${
    Object.getOwnPropertyNames(Object.getPrototypeOf(client)).filter((k) => /deploy/i.test(k)).join(', ') || 'none'}`);
  const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('./workflows'), logger: new DefaultLogger('ERROR') });
  const worker = (buildId: string) =>
    Worker.create({
      connection: env.nativeConnection,
      taskQueue: TASK_QUEUE,
      workflowBundle: bundle,
      activities: { whoAmI: async () => buildId },
      workerDeploymentOptions: { useWorkerVersioning: true, version: { deploymentName: DEPLOYMENT, buildId }, defaultVersioningBehavior: 'PINNED' },
    });
  const setCurrent = async (buildId: string) => {
    for (let i = 0; ; i++) {
      try {
        await run(cli, ['worker', 'deployment', 'set-current-version', '--address', env.address, '--deployment-name', DEPLOYMENT, '--build-id', buildId, '--yes']);
        say(`CLI: 'temporal worker deployment set-current-version --build-id ${buildId}' succeeded (attempt ${i + 1})`);
        return;
      } catch (err) {
        if (i > 100) throw err;
        await new Promise((r) => setTimeout(r, 200)); // the version exists once its worker has polled
      }
    }
  };
  const version = async (workflowId: string) => {
    const info = (await client.workflow.getHandle(workflowId).describe()).raw.workflowExecutionInfo?.versioningInfo;
    const behavior = ['-', 'PINNED', 'AUTO_UPGRADE'][Number(info?.behavior ?? 0)] ?? String(info?.behavior);
    return `${behavior} on ${info?.deploymentVersion?.buildId ?? '-'}`;
  };

  const v1 = await worker('v1');
  const v1Running = v1.run();
  await setCurrent('v1');
  const runs = [
    ['pinned', 'pinnedProbe', 'end'],
    ['pinned-continue', 'pinnedProbe', 'continue'],
    ['pinned-continue-auto', 'pinnedProbe', 'continue-auto-upgrade'],
    ['auto-upgrade', 'autoUpgradeProbe', 'end'],
  ] as const;
  for (const [id, type, then] of runs) await client.workflow.start(type, { taskQueue: TASK_QUEUE, workflowId: id, args: [then] });
  for (const [id] of runs) {
    for (let i = 0; (await version(id)).endsWith('on -') && i < 200; i++) await new Promise((r) => setTimeout(r, 100));
    say(`${id}: started, ${await version(id)}`);
  }
  const v2 = await worker('v2');
  const v2Running = v2.run();
  await setCurrent('v2');
  for (const [id] of runs) await client.workflow.getHandle(id).signal('go');
  for (const [id, , then] of runs) {
    if (then !== 'end') {
      const h = client.workflow.getHandle(id);
      const first = (await h.describe()).runId;
      for (let i = 0; (await h.describe()).runId === first && i < 200; i++) await new Promise((r) => setTimeout(r, 100));
      for (let i = 0; (await version(id)).endsWith('on -') && i < 100; i++) await new Promise((r) => setTimeout(r, 100));
      say(`${id}: continued as new, the new run is ${await version(id)}`);
      await h.signal('go');
    }
    const served = await client.workflow.getHandle(id).result();
    say(`${id}: activities served by ${JSON.stringify(served)}`);
  }
  v1.shutdown();
  v2.shutdown();
  await Promise.all([v1Running, v2Running]);
  await env.teardown();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
