import { constants, realpathSync, statSync, type BigIntStats, type Stats } from 'node:fs';
import { open, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { delimiter, isAbsolute, join, resolve, sep } from 'node:path';
import type { FileFingerprint } from './shared/backfill';

/**
 * Workers read input files (backfill files, replay id lists) only below configured directories, so that
 * whoever can start a run cannot make a worker read, and `failed-lines` print back, any file it can open.
 */
export const INPUT_ROOTS_SETTING = 'GOTONG_INPUT_ROOTS';

/** A file a worker must not or cannot read: retrying cannot help, so the run fails at once with this message. */
export class InputFileError extends Error {
  override name = 'InputFileError';
}

/**
 * Without GOTONG_INPUT_ROOTS: this installation's own `samples/` (the bundled sample the demo runs) and
 * `tmp/` (where the runbook's examples put input, `--file ./tmp/...` from the checkout). Anchored to the
 * installation, not the working directory, so a worker a service manager starts in `/` does not get `/tmp`.
 */
export function defaultInputRoots(): string[] {
  const installation = join(__dirname, '..', '..');
  return [join(installation, 'samples'), join(installation, 'tmp')];
}

/** Parses a path list (`:`-separated on Unix); unset or empty means the defaults. Entries must be absolute. */
export function parseInputRoots(value: string | undefined): string[] {
  if (value === undefined || value.trim() === '') return defaultInputRoots();
  const roots = value
    .split(delimiter)
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  const relative = roots.find((root) => !isAbsolute(root));
  if (relative !== undefined) {
    throw new Error(`${INPUT_ROOTS_SETTING} entries must be absolute paths (workers and the CLI run in different directories): ${relative}`);
  }
  if (roots.length === 0) throw new Error(`${INPUT_ROOTS_SETTING} lists no directory`);
  return roots.map((root) => resolve(root));
}

export function inputRootsFromEnvironment(env: NodeJS.ProcessEnv = process.env): string[] {
  return parseInputRoots(env[INPUT_ROOTS_SETTING]);
}

function isBelow(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** Each root as configured and as its real path (a root may itself be a symbolic link, e.g. to a mount). */
async function realRoots(roots: readonly string[]): Promise<string[]> {
  const resolved = await Promise.all(roots.map((root) => realpath(root).catch(() => null)));
  return resolved.filter((root): root is string => root !== null);
}

function outsideRoots(path: string, roots: readonly string[], how = 'is'): string {
  return (
    `${path} ${how} outside the directories this worker may read (${INPUT_ROOTS_SETTING}=${roots.join(delimiter)}); ` +
    `move the file below one of them, or add its directory to ${INPUT_ROOTS_SETTING} on every worker`
  );
}

function kindOf(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device';
  if (info.isSocket()) return 'a socket';
  return 'not a regular file';
}

// The final component is never followed (a symbolic link swapped in after the path was resolved fails
// the open), a FIFO opens without waiting for a writer, and a terminal never becomes ours.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

/** Where the opened descriptor really is: the kernel's own path for it on Linux, else a checked resolution. */
async function pathOfOpened(handle: FileHandle, resolvedPath: string, info: BigIntStats): Promise<string | null> {
  try {
    return await readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    // No /proc (macOS): accept the resolved path only if it still names the very file we opened.
    const now = await stat(resolvedPath, { bigint: true }).catch(() => null);
    return now && now.dev === info.dev && now.ino === info.ino ? resolvedPath : null;
  }
}

export interface OpenedInput {
  handle: FileHandle;
  info: Stats;
  identity: BigIntStats;
}

/**
 * Opens an input file for reading if, and only if, it is a regular file below one of `roots`. The check
 * that counts is made on the opened descriptor (its real path and fstat), not on a second lookup by path.
 * Paths outside the roots are refused before anything is touched, so failures reveal nothing about them.
 */
export async function openInputFile(path: string, roots: readonly string[]): Promise<OpenedInput> {
  if (!isAbsolute(path)) throw new InputFileError(`${path} is not an absolute path; runs carry absolute paths (the CLI resolves them)`);
  const real = await realRoots(roots);
  const candidate = resolve(path);
  if (![...roots, ...real].some((root) => isBelow(candidate, root))) throw new InputFileError(outsideRoots(path, roots));

  let resolvedPath: string;
  try {
    resolvedPath = await realpath(candidate);
  } catch (err) {
    throw new InputFileError(`cannot read ${path} on this worker: ${(err as Error).message}`);
  }
  if (!real.some((root) => isBelow(resolvedPath, root))) throw new InputFileError(outsideRoots(path, roots, 'resolves (through a symbolic link) to a file'));

  let handle: FileHandle;
  try {
    handle = await open(resolvedPath, OPEN_FLAGS);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ELOOP') throw new InputFileError(`${path} was replaced by a symbolic link while being opened; refusing to follow it`);
    throw new InputFileError(`cannot read ${path} on this worker: ${(err as Error).message}`);
  }
  try {
    const [info, identity] = await Promise.all([handle.stat(), handle.stat({ bigint: true })]);
    const opened = await pathOfOpened(handle, resolvedPath, identity);
    if (opened === null || !real.some((root) => isBelow(opened, root))) {
      throw new InputFileError(outsideRoots(path, roots, 'was opened as a file'));
    }
    if (!info.isFile()) throw new InputFileError(`${path} is ${kindOf(info)}, not a regular file; pass an NDJSON file`);
    if (info.nlink === 0) throw new InputFileError(`${path} was deleted while being opened`);
    return { handle, info, identity };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/** The same opened file, stat'ed again (to see whether it changed while it was read). */
export async function restat(opened: OpenedInput): Promise<OpenedInput> {
  const [info, identity] = await Promise.all([opened.handle.stat(), opened.handle.stat({ bigint: true })]);
  return { handle: opened.handle, info, identity };
}

/** What identifies the file a run started on: checked on the opened handle before every batch. */
export function fingerprintOf(opened: OpenedInput): FileFingerprint {
  return {
    size: opened.info.size,
    mtimeMs: opened.info.mtimeMs,
    dev: String(opened.identity.dev),
    ino: String(opened.identity.ino),
    host: hostname(),
  };
}

/**
 * Why the opened file is not the one the run started on, or null. Device and inode are compared on the host
 * that took the fingerprint: another host mounts the same shared file under its own device number.
 * Fingerprints recorded before device and inode were kept compare size and mtime only.
 */
export function identityProblem(expected: FileFingerprint, opened: OpenedInput): string | null {
  const actual = fingerprintOf(opened);
  if (expected.host !== undefined && expected.host === actual.host && (expected.dev !== actual.dev || expected.ino !== actual.ino)) {
    return `was replaced by another file during the backfill (device:inode ${expected.dev}:${expected.ino} -> ${actual.dev}:${actual.ino})`;
  }
  if (expected.size !== actual.size || expected.mtimeMs !== actual.mtimeMs) {
    return `changed after the backfill started (size ${expected.size} -> ${actual.size}, mtime ${new Date(expected.mtimeMs).toISOString()} -> ${new Date(actual.mtimeMs).toISOString()})`;
  }
  return null;
}

/**
 * The CLI's early answer, made with its own GOTONG_INPUT_ROOTS (set it as on the workers): why a worker
 * would refuse `path`, or null. Only an answer in advance; the worker's check on the opened file is the one that counts.
 */
export function inputPathProblem(path: string, roots: readonly string[]): string | null {
  const real = roots.flatMap((root) => {
    try {
      return [realpathSync(root)];
    } catch {
      return [];
    }
  });
  let resolvedPath: string;
  try {
    resolvedPath = realpathSync(path);
  } catch {
    return null; // the caller reports a missing file in its own words
  }
  if (!real.some((root) => isBelow(resolvedPath, root))) {
    const via = resolvedPath === resolve(path) ? '' : ` (it resolves to ${resolvedPath})`;
    return `outside the directories workers may read${via}: ${INPUT_ROOTS_SETTING}=${roots.join(delimiter)}; move the file below one of them, or add its directory to ${INPUT_ROOTS_SETTING} here and on every worker`;
  }
  if (!statSync(resolvedPath).isFile()) return 'not a regular file';
  return null;
}
