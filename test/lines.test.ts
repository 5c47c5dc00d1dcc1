import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readLineChunks, type RawLine } from '../src/backfill/lines';

async function collect(path: string, startOffset: number, endOffset: number, maxLineBytes = 1024): Promise<RawLine[]> {
  const lines: RawLine[] = [];
  const handle = await open(path, 'r');
  try {
    for await (const chunk of readLineChunks(handle, { startOffset, startLine: 1, endOffset, maxLineBytes })) lines.push(...chunk);
  } finally {
    await handle.close();
  }
  return lines;
}

describe('readLineChunks', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gotong-lines-'));

  it('yields each physical line with its offsets, including a last line without a newline', async () => {
    const path = join(dir, 'a.ndjson');
    writeFileSync(path, 'ab\n\ncd\r\nef');
    const lines = await collect(path, 0, 10);
    assert.deepEqual(
      lines.map((l) => [l.lineNumber, l.byteOffset, l.nextOffset, l.bytes?.toString()]),
      [
        [1, 0, 3, 'ab'],
        [2, 3, 4, ''],
        [3, 4, 8, 'cd\r'],
        [4, 8, 10, 'ef'],
      ],
    );
  });

  it('starts mid-file at a line boundary and stops at endOffset', async () => {
    const path = join(dir, 'b.ndjson');
    writeFileSync(path, 'one\ntwo\nthree\n');
    const lines = await collect(path, 4, 14);
    assert.deepEqual(lines.map((l) => l.bytes?.toString()), ['two', 'three']);
    assert.equal(lines.at(-1)!.nextOffset, 14);
  });

  it('keeps lines that span two 1 MiB reads intact', async () => {
    const path = join(dir, 'd.ndjson');
    const lines = Array.from({ length: 9000 }, (_, i) => `line-${i}-${'y'.repeat(300)}`);
    writeFileSync(path, lines.join('\n'));
    const read = await collect(path, 0, Buffer.byteLength(lines.join('\n')), 1024 * 1024);
    assert.deepEqual(read.map((l) => l.bytes?.toString()), lines);
    assert.deepEqual(read.map((l) => l.lineNumber), lines.map((_, i) => i + 1));
  });

  it('drops an over-long line without holding it, and keeps reading after it', async () => {
    const path = join(dir, 'c.ndjson');
    const long = 'x'.repeat(3 * 1024 * 1024);
    writeFileSync(path, `ok\n${long}\nafter\n`);
    const lines = await collect(path, 0, long.length + 10, 1024 * 1024);
    assert.deepEqual(lines.map((l) => (l.bytes === null ? null : l.bytes.toString())), ['ok', null, 'after']);
    assert.equal(lines[1]!.byteLength, long.length + 1);
  });
});
