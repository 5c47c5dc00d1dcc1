import { isUtf8 } from 'node:buffer';
import type { FileHandle } from 'node:fs/promises';

/** One physical line of the input, without its line terminator. */
export interface RawLine {
  lineNumber: number;
  byteOffset: number;
  /** Offset of the byte after this line's newline (or end of file). */
  nextOffset: number;
  /** The line's bytes, or null when it exceeded the line limit and was skipped unread. */
  bytes: Buffer | null;
  /** For a skipped over-long line, its first bytes (a copy), so the failure still shows an excerpt. */
  head?: Buffer;
  byteLength: number;
}

const NEWLINE = 0x0a;
const READ_CHUNK = 1024 * 1024;
/** Lines per yield: a read of 1 MiB of newlines is a million lines, not a million objects at once. */
const MAX_LINES_PER_YIELD = 8192;
const HEAD_BYTES = 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Reads physical lines of an opened file from `startOffset` up to `endOffset`, in memory bounded by what
 * the caller keeps: a line growing past `maxLineBytes` is dropped as it is read (only its head is kept).
 * Yields after every read even when no line ended in it (an empty array), and after every 8,192 lines,
 * so the caller can heartbeat, stop for cancellation and bound its batch whatever the lines look like.
 * Lines point into their read buffer, which is never reused.
 */
export async function* readLineChunks(
  handle: FileHandle,
  opts: { startOffset: number; startLine: number; endOffset: number; maxLineBytes: number },
): AsyncGenerator<RawLine[]> {
  let position = opts.startOffset;
  let lineNumber = opts.startLine;
  let lineStart = opts.startOffset;
  // A line that spans reads is collected here; one within a single read is a view of it.
  let carried: Buffer[] = [];
  let carriedLength = 0;
  let tooLong = false;
  let head: Buffer | undefined;

  const finishLine = (tail: Buffer, nextOffset: number): RawLine => {
    let bytes: Buffer | null = null;
    if (!tooLong && carriedLength + tail.length <= opts.maxLineBytes) {
      bytes = carried.length === 0 ? tail : Buffer.concat([...carried, tail]);
    } else {
      head ??= Buffer.from(Buffer.concat([...carried, tail.subarray(0, HEAD_BYTES)]).subarray(0, HEAD_BYTES));
    }
    const line: RawLine = { lineNumber, byteOffset: lineStart, nextOffset, bytes, byteLength: nextOffset - lineStart };
    if (bytes === null) line.head = head;
    lineNumber += 1;
    lineStart = nextOffset;
    carried = [];
    carriedLength = 0;
    tooLong = false;
    head = undefined;
    return line;
  };

  while (position < opts.endOffset) {
    const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, opts.endOffset - position));
    const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
    if (bytesRead === 0) break;
    let lines: RawLine[] = [];
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, from);
      if (nl === -1 || nl >= bytesRead) break;
      lines.push(finishLine(nl === from ? EMPTY : chunk.subarray(from, nl), position + nl + 1));
      from = nl + 1;
      if (lines.length >= MAX_LINES_PER_YIELD) {
        yield lines;
        lines = [];
      }
    }
    if (from < bytesRead && !tooLong) {
      const rest = chunk.subarray(from, bytesRead);
      if (carriedLength + rest.length > opts.maxLineBytes) {
        head = Buffer.from(Buffer.concat([...carried, rest.subarray(0, HEAD_BYTES)]).subarray(0, HEAD_BYTES));
        tooLong = true;
        carried = [];
        carriedLength = 0;
      } else {
        carried.push(rest);
        carriedLength += rest.length;
      }
    }
    position += bytesRead;
    yield lines;
  }
  if (position > lineStart) yield [finishLine(Buffer.alloc(0), position)];
}

const utf8Lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

export type DecodedLine = { kind: 'blank' } | { kind: 'text'; text: string } | { kind: 'invalid'; reason: string };

/** Strips a BOM and a CR, and tells blank lines (skipped, not counted) from the rest. */
const BLANK: DecodedLine = { kind: 'blank' };

export function decodeLine(bytes: Buffer | null, maxLineBytes: number): DecodedLine {
  if (bytes === null) return { kind: 'invalid', reason: `line is longer than ${maxLineBytes} bytes` };
  if (bytes.length === 0) return BLANK;
  let start = 0;
  let end = bytes.length;
  if (end - start >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3;
  if (end > start && bytes[end - 1] === 0x0d) end -= 1;
  const body = bytes.subarray(start, end);
  // isUtf8 + toString is several times cheaper per line than a fatal TextDecoder.
  if (!isUtf8(body)) return { kind: 'invalid', reason: 'line is not valid UTF-8' };
  const text = body.toString('utf8');
  if (text.trim() === '') return BLANK;
  return { kind: 'text', text };
}

/** A short, storable excerpt of a line for the failed-lines listing. */
export function excerptOf(bytes: Buffer | null, limit = 200): string {
  if (bytes === null) return '';
  const text = utf8Lossy.decode(bytes.subarray(0, limit * 4)).replace(/\r$/, '');
  return sanitizeForText(text.length > limit ? `${text.slice(0, limit)}…` : text);
}

/** PostgreSQL text cannot hold NUL; error messages quoting input could carry one. */
export function sanitizeForText(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/\u0000/g, '\uFFFD');
}
