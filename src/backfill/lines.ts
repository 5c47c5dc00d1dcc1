import { open } from 'node:fs/promises';

/** One physical line of the input, without its line terminator. */
export interface RawLine {
  lineNumber: number;
  byteOffset: number;
  /** Offset of the byte after this line's newline (or end of file). */
  nextOffset: number;
  /** The line's bytes, or null when it exceeded the line limit and was skipped unread. */
  bytes: Buffer | null;
  byteLength: number;
}

const NEWLINE = 0x0a;
const READ_CHUNK = 1024 * 1024;

/**
 * Reads physical lines from `startOffset` up to `endOffset`, in constant memory apart from the
 * current line, which is dropped once it grows past `maxLineBytes`.
 */
export async function* readLines(
  path: string,
  opts: { startOffset: number; startLine: number; endOffset: number; maxLineBytes: number },
): AsyncGenerator<RawLine> {
  const handle = await open(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(READ_CHUNK);
    let position = opts.startOffset;
    let lineNumber = opts.startLine;
    let lineStart = opts.startOffset;
    let parts: Buffer[] = [];
    let partsLength = 0;
    let tooLong = false;

    const finishLine = (nextOffset: number): RawLine => {
      const line: RawLine = {
        lineNumber,
        byteOffset: lineStart,
        nextOffset,
        bytes: tooLong ? null : parts.length === 1 ? parts[0]! : Buffer.concat(parts, partsLength),
        byteLength: nextOffset - lineStart,
      };
      lineNumber += 1;
      lineStart = nextOffset;
      parts = [];
      partsLength = 0;
      tooLong = false;
      return line;
    };
    const append = (piece: Buffer) => {
      if (tooLong) return;
      if (partsLength + piece.length > opts.maxLineBytes) {
        tooLong = true;
        parts = [];
        partsLength = 0;
        return;
      }
      // Copy: the chunk buffer is reused by the next read.
      parts.push(Buffer.from(piece));
      partsLength += piece.length;
    };

    while (position < opts.endOffset) {
      const want = Math.min(READ_CHUNK, opts.endOffset - position);
      const { bytesRead } = await handle.read(chunk, 0, want, position);
      if (bytesRead === 0) break;
      let from = 0;
      while (from < bytesRead) {
        const nl = chunk.indexOf(NEWLINE, from);
        if (nl === -1 || nl >= bytesRead) {
          append(chunk.subarray(from, bytesRead));
          break;
        }
        append(chunk.subarray(from, nl));
        yield finishLine(position + nl + 1);
        from = nl + 1;
      }
      position += bytesRead;
    }
    if (position > lineStart) yield finishLine(position);
  } finally {
    await handle.close();
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

export type DecodedLine = { kind: 'blank' } | { kind: 'text'; text: string } | { kind: 'invalid'; reason: string };

/** Strips a BOM and a CR, and tells blank lines (skipped, not counted) from the rest. */
export function decodeLine(bytes: Buffer | null, maxLineBytes: number): DecodedLine {
  if (bytes === null) return { kind: 'invalid', reason: `line is longer than ${maxLineBytes} bytes` };
  let start = 0;
  let end = bytes.length;
  if (end - start >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) start = 3;
  if (end > start && bytes[end - 1] === 0x0d) end -= 1;
  let text: string;
  try {
    text = utf8.decode(bytes.subarray(start, end));
  } catch {
    return { kind: 'invalid', reason: 'line is not valid UTF-8' };
  }
  if (text.trim() === '') return { kind: 'blank' };
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
