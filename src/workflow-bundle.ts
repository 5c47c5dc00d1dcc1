/**
 * The workflow code as one prebuilt bundle, so a worker starts without a bundling step.
 * `npm run build` writes dist/workflow-bundle.js and a manifest of what went into it: a hash of every
 * project file webpack read, and the version of every package it read from. A worker uses the bundle
 * only while all of those still match; otherwise (development, after a `tsc` alone) it bundles at start.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';

/** The package root: this file runs as dist/src/workflow-bundle.js. */
const ROOT = join(__dirname, '..', '..');
export const WORKFLOW_BUNDLE_PATH = join(ROOT, 'dist', 'workflow-bundle.js');
export const WORKFLOW_BUNDLE_MANIFEST_PATH = join(ROOT, 'dist', 'workflow-bundle.json');
export const WORKFLOWS_PATH = require.resolve('./workflows');

interface Manifest {
  /** Project files (relative to the package root) and their sha256. */
  files: Record<string, string>;
  /** Packages the bundle read from node_modules (their directory relative to the root) and their versions. */
  packages: Record<string, string>;
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** node_modules/@scope/name/lib/x.js -> node_modules/@scope/name (the innermost package). */
function packageDirOf(rel: string): string | null {
  const parts = rel.split(sep);
  const at = parts.lastIndexOf('node_modules');
  if (at < 0) return null;
  const width = parts[at + 1]?.startsWith('@') ? 3 : 2;
  return parts.slice(0, at + width).join(sep);
}

const versionOf = (root: string, packageDir: string): string | null => {
  try {
    return (JSON.parse(readFileSync(join(root, packageDir, 'package.json'), 'utf8')) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
};

export async function buildWorkflowBundle(): Promise<{ path: string; files: number; packages: number; bytes: number }> {
  const { bundleWorkflowCode } = await import('@temporalio/worker');
  const read = new Set<string>();
  const quiet = { log() {}, trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error };
  const bundle = await bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    logger: quiet,
    webpackConfigHook: (config) => ({
      ...config,
      plugins: [
        ...(config.plugins ?? []),
        {
          apply(compiler) {
            compiler.hooks.afterCompile.tap('gotong-workflow-inputs', (compilation) => {
              for (const file of compilation.fileDependencies) read.add(file);
            });
          },
        },
      ],
    }),
  });
  const manifest: Manifest = { files: {}, packages: {} };
  for (const file of [...read].sort()) {
    // Webpack also lists directories it resolved in, and its in-memory entry point.
    if (!file.startsWith(ROOT) || !statSync(file, { throwIfNoEntry: false })?.isFile()) continue;
    const rel = relative(ROOT, file);
    const packageDir = packageDirOf(rel);
    if (packageDir) manifest.packages[packageDir] = versionOf(ROOT, packageDir) ?? 'unknown';
    else manifest.files[rel] = sha256(file);
  }
  mkdirSync(dirname(WORKFLOW_BUNDLE_PATH), { recursive: true });
  writeFileSync(WORKFLOW_BUNDLE_PATH, bundle.code);
  writeFileSync(WORKFLOW_BUNDLE_MANIFEST_PATH, `${JSON.stringify(manifest, null, 2)}\n`);
  return {
    path: WORKFLOW_BUNDLE_PATH,
    files: Object.keys(manifest.files).length,
    packages: Object.keys(manifest.packages).length,
    bytes: Buffer.byteLength(bundle.code),
  };
}

/**
 * The prebuilt bundle if it was built from the code this worker would bundle now, else why not.
 * Costs a hash of the few dozen project files the bundle was built from (a few milliseconds).
 */
export function prebuiltWorkflowBundle(root = ROOT): { codePath: string } | { stale: string } {
  const bundlePath = join(root, relative(ROOT, WORKFLOW_BUNDLE_PATH));
  const manifestPath = join(root, relative(ROOT, WORKFLOW_BUNDLE_MANIFEST_PATH));
  if (!existsSync(manifestPath) || !existsSync(bundlePath)) return { stale: 'no prebuilt workflow bundle' };
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  } catch (err) {
    return { stale: `unreadable ${relative(root, manifestPath)}: ${(err as Error).message}` };
  }
  if (Object.keys(manifest.files ?? {}).length === 0) return { stale: 'the workflow bundle manifest lists no files' };
  for (const [file, hash] of Object.entries(manifest.files)) {
    const path = join(root, file);
    if (!existsSync(path) || sha256(path) !== hash) return { stale: `${file} changed since the workflow bundle was built` };
  }
  for (const [dir, version] of Object.entries(manifest.packages ?? {})) {
    if (versionOf(root, dir) !== version) return { stale: `${dir} is no longer ${version} since the workflow bundle was built` };
  }
  return { codePath: bundlePath };
}

if (require.main === module) {
  buildWorkflowBundle().then(
    (built) => {
      process.stderr.write(
        `[build] workflow bundle ${relative(ROOT, built.path)}: ${(built.bytes / 1024).toFixed(0)} KiB from ${built.files} project files and ${built.packages} packages\n`,
      );
    },
    (err: unknown) => {
      process.stderr.write(`[build] workflow bundle failed: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
