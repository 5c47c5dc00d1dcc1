import assert from 'node:assert/strict';
import { printable } from '../src/client/text';

describe('printable: text from files and receivers cannot drive the terminal', () => {
  it('escapes C0 and C1 controls, DEL and ESC sequences', () => {
    assert.equal(printable('a\u001b[2Jb'), 'a\\x1b[2Jb');
    assert.equal(printable('x\u009b31my'), 'x\\x9b31my');
    assert.equal(printable('\u0007\u0000\u007f'), '\\x07\\x00\\x7f');
    assert.equal(printable('line\r\nnext\tcol'), 'line\\r\\nnext\\tcol');
  });
  it('escapes bidi overrides, line separators and lone surrogates, keeps other Unicode', () => {
    assert.equal(printable('evt_\u202eabc'), 'evt_\\u202eabc');
    assert.equal(printable('a\u2028b'), 'a\\u2028b');
    assert.equal(printable('\ud800x'), '\\ud800x');
    assert.equal(printable('evt_漢字 ü 😀'), 'evt_漢字 ü 😀');
  });
});
