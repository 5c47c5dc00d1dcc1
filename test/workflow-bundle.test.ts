import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { prebuiltWorkflowBundle, WORKFLOW_BUNDLE_MANIFEST_PATH, WORKFLOW_BUNDLE_PATH } from '../src/workflow-bundle';
import { generatedFile } from './helpers/files';
import { CLI, exited, getHarness, REPO_ROOT, runCli, uniqueTaskQueue, waitFor } from './helpers/harness';

interface Manifest {
  files: Record<string, string>;
  packages: Record<string, string>;
}

/** A copy of what the manifest names (and the bundle), so a test can change it without touching dist/. */
function copyOfBuild(): { root: string; manifest: Manifest } {
  const root = mkdtempSync(join(tmpdir(), 'gotong-bundle-'));
  const manifest = JSON.parse(readFileSync(WORKFLOW_BUNDLE_MANIFEST_PATH, 'utf8')) as Manifest;
  const copy = (rel: string) => cpSync(join(REPO_ROOT, rel), join(root, rel), { recursive: true });
  for (const file of Object.keys(manifest.files)) copy(file);
  for (const dir of Object.keys(manifest.packages)) copy(join(dir, 'package.json'));
  copy('dist/workflow-bundle.js');
  copy('dist/workflow-bundle.json');
  return { root, manifest };
}

describe('prebuilt workflow bundle', function () {
  this.timeout(120_000);

  it('npm run build wrote one that matches the code, from the workflows and their shared types only', () => {
    assert.deepEqual(prebuiltWorkflowBundle(), { codePath: WORKFLOW_BUNDLE_PATH });
    const manifest = JSON.parse(readFileSync(WORKFLOW_BUNDLE_MANIFEST_PATH, 'utf8')) as Manifest;
    const js = Object.keys(manifest.files).filter((f) => f.endsWith('.js'));
    assert.ok(js.includes('dist/src/workflows/runbook.js') && js.includes('dist/src/workflows/index.js'), js.join(' '));
    // Workflow code imports I/O modules for their types only: none of them may be in the bundle.
    assert.deepEqual(js.filter((f) => !/^dist\/src\/(workflows|shared)\//.test(f)), []);
    assert.equal(manifest.packages['node_modules/@temporalio/workflow'], '1.24.0');
  });

  it('a changed source or a different SDK version makes it stale, and the reason names it', () => {
    const { root } = copyOfBuild();
    assert.deepEqual(prebuiltWorkflowBundle(root), { codePath: join(root, 'dist/workflow-bundle.js') });

    const runbook = join(root, 'dist/src/workflows/runbook.js');
    const original = readFileSync(runbook, 'utf8');
    writeFileSync(runbook, `${original}\n// changed\n`);
    assert.deepEqual(prebuiltWorkflowBundle(root), { stale: 'dist/src/workflows/runbook.js changed since the workflow bundle was built' });
    writeFileSync(runbook, original);

    const sdk = join(root, 'node_modules/@temporalio/workflow/package.json');
    writeFileSync(sdk, JSON.stringify({ ...JSON.parse(readFileSync(sdk, 'utf8')), version: '1.25.0' }));
    assert.deepEqual(prebuiltWorkflowBundle(root), { stale: 'node_modules/@temporalio/workflow is no longer 1.24.0 since the workflow bundle was built' });

    const empty = mkdtempSync(join(tmpdir(), 'gotong-bundle-'));
    assert.deepEqual(prebuiltWorkflowBundle(empty), { stale: 'no prebuilt workflow bundle' });
    assert.ok(dirname(WORKFLOW_BUNDLE_PATH).endsWith('dist'));
  });

  it('a worker process loads it (no bundling step) and runs workflows from it', async () => {
    const h = getHarness();
    const taskQueue = uniqueTaskQueue('bundle');
    const worker = spawn(process.execPath, [CLI, 'worker', '--no-migrate', '--dispatchers', '0'], {
      env: { ...process.env, TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: h.databaseUrl, GOTONG_TASK_QUEUE: taskQueue, GOTONG_LOG_LEVEL: 'INFO' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    worker.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      await waitFor('the worker polling', async () => stderr.includes(`"msg":"polling task queue '${taskQueue}'`), 60_000);
      assert.doesNotMatch(stderr, /bundling the workflows at start/);
      assert.doesNotMatch(stderr, /Workflow bundle created/);
      const file = generatedFile('bundle_dry', { valid: 10 });
      const result = await runCli(['webhook-backfill', '--file', file.path, '--dry-run'], { GOTONG_TASK_QUEUE: taskQueue });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /\[webhook-backfill\] done processed=10 created=10 enqueued=10 duplicates=0 failed=0 dry_run=true/);
    } finally {
      worker.kill('SIGTERM');
      await exited(worker);
    }
  });
});
