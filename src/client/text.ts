/**
 * Text that came from input files, receivers or the database (excerpts, reasons, event types, ids) is
 * printed through `printable`, so a hostile line cannot move the cursor, retitle the window, hide text or
 * reorder it on the operator's terminal.
 */

// C0 controls, DEL, C1 controls (ESC-less CSI 0x9b among them), bidirectional overrides and isolates,
// line and paragraph separators, lone surrogates.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function escapeOne(ch: string): string {
  const code = ch.charCodeAt(0);
  if (ch === '\n') return '\\n';
  if (ch === '\r') return '\\r';
  if (ch === '\t') return '\\t';
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** The text with every control, bidi-control and unpaired-surrogate character shown as an escape. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, escapeOne);
}

/** A single-quoted shell word. */
export const shellWord = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
