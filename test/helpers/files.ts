import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { BackfillCounters } from '../../src/shared/backfill';

/** The installation's `tmp/`, one of the default GOTONG_INPUT_ROOTS: workers read the tests' files there as they are. */
export const INPUT_ROOT = join(__dirname, '..', '..', '..', 'tmp');
mkdirSync(INPUT_ROOT, { recursive: true });
export const tmp = mkdtempSync(join(INPUT_ROOT, 'test-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

/** A copy of a fixture where workers may read it (the fixtures themselves are outside the input roots). */
export function inputCopy(fixture: string): string {
  const path = join(tmp, basename(fixture));
  copyFileSync(fixture, path);
  return path;
}

export function event(id: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    event_id: id,
    event_type: 'contribution_created',
    schema_version: '1',
    request_id: `req_${id}`,
    actor: { user_id: 'user_1' },
    ...extra,
  });
}

/**
 * Writes a file of `valid` distinct events with a duplicate every `dupEvery` lines, a broken line every
 * `failEvery` and a blank line every `blankEvery`, and returns the counts an empty outbox must produce.
 */
export function generatedFile(
  name: string,
  opts: { valid: number; dupEvery?: number; failEvery?: number; blankEvery?: number },
): { path: string; expected: BackfillCounters } {
  const lines: string[] = [];
  let duplicates = 0;
  let failed = 0;
  for (let i = 1; i <= opts.valid; i++) {
    lines.push(event(`evt_${name}_${i}`, { subject: { title: `item ${i}` } }));
    if (opts.dupEvery && i % opts.dupEvery === 0) {
      lines.push(event(`evt_${name}_${i - 1}`));
      duplicates++;
    }
    if (opts.failEvery && i % opts.failEvery === 0) {
      lines.push(`{"event_id": "evt_${name}_broken_${i}"`);
      failed++;
    }
    if (opts.blankEvery && i % opts.blankEvery === 0) lines.push('');
  }
  const path = join(tmp, `${name}.ndjson`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  const processed = opts.valid + duplicates + failed;
  return { path, expected: { processed, created: opts.valid, enqueued: opts.valid, duplicates, failed } };
}

export function countersOf(c: BackfillCounters): BackfillCounters {
  return { processed: c.processed, created: c.created, enqueued: c.enqueued, duplicates: c.duplicates, failed: c.failed };
}
