/**
 * Worker start: from spawning `gotong-worker worker` to its "polling task queue" line, with the workflow
 * bundle `npm run build` wrote against bundling the workflows at start (the bundle's manifest moved aside
 * for those rounds, restored afterwards). Rounds alternate; both sides use the same server and database.
 *
 *   npm run build && npm run bench:worker-start -- [--rounds 5]
 */
import { spawn } from 'node:child_process';
import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { BENCH_DATABASE_URL } from './common';
import { createPool } from '../src/db/pool';
import { migrate, recreateDatabase } from '../src/db/migrate';
import { FAST_DEV_SERVER_ARGS, findOrBuildTemporalCli } from '../src/dev/temporal-cli';
import { WORKFLOW_BUNDLE_MANIFEST_PATH } from '../src/workflow-bundle';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' } } });
const ROUNDS = Number(values.rounds);
const CLI = join(__dirname, '..', '..', 'bin', 'gotong-worker.js');
const ASIDE = `${WORKFLOW_BUNDLE_MANIFEST_PATH}.aside`;

/** Milliseconds from spawn to the worker's "polling" line; the worker is stopped afterwards. */
function timeWorkerStart(env: NodeJS.ProcessEnv): Promise<{ ms: number; bundledAtStart: boolean }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [CLI, 'worker', '--no-migrate', '--dispatchers', '0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let ms = 0;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!ms && stderr.includes('[worker] polling task queue')) {
        ms = performance.now() - t0;
        child.kill('SIGTERM');
      }
    });
    child.on('error', reject);
    child.on('exit', () => (ms ? resolve({ ms, bundledAtStart: stderr.includes('bundling the workflows at start') }) : reject(new Error(stderr))));
  });
}

async function main(): Promise<void> {
  if (!existsSync(WORKFLOW_BUNDLE_MANIFEST_PATH)) throw new Error("no prebuilt workflow bundle: run 'npm run build' first");
  await recreateDatabase(BENCH_DATABASE_URL);
  const pool = createPool(BENCH_DATABASE_URL, 1);
  await migrate(pool);
  await pool.end();
  const temporalCli = await findOrBuildTemporalCli({ log: (line) => console.error(line) });
  const env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: temporalCli }, ip: '127.0.0.1', extraArgs: FAST_DEV_SERVER_ARGS },
  });
  const workerEnv = { ...process.env, TEMPORAL_ADDRESS: env.address, DATABASE_URL: BENCH_DATABASE_URL, GOTONG_LOG_LEVEL: 'WARN' };
  const prebuilt: number[] = [];
  const bundling: number[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const withBundle = await timeWorkerStart({ ...workerEnv, GOTONG_TASK_QUEUE: `bench-start-${round}-a` });
      if (withBundle.bundledAtStart) throw new Error('the prebuilt bundle was not used');
      prebuilt.push(withBundle.ms);
      renameSync(WORKFLOW_BUNDLE_MANIFEST_PATH, ASIDE);
      try {
        const without = await timeWorkerStart({ ...workerEnv, GOTONG_TASK_QUEUE: `bench-start-${round}-b` });
        if (!without.bundledAtStart) throw new Error('the worker did not bundle at start');
        bundling.push(without.ms);
      } finally {
        renameSync(ASIDE, WORKFLOW_BUNDLE_MANIFEST_PATH);
      }
    }
  } finally {
    await env.teardown();
  }
  const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`rounds=${ROUNDS}`);
  console.log(`bundling at start (before):  median ${median(bundling).toFixed(0)} ms (all: ${fmt(bundling)})`);
  console.log(`prebuilt bundle (after):     median ${median(prebuilt).toFixed(0)} ms (all: ${fmt(prebuilt)})`);
  console.log(`ratio (before / after): ${(median(bundling) / median(prebuilt)).toFixed(1)}x`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
