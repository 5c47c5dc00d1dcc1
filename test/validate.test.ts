import assert from 'node:assert/strict';
import { decodeLine } from '../src/backfill/lines';
import { validateLine } from '../src/backfill/validate';

const good = {
  event_id: 'evt_1',
  event_type: 'contribution_created',
  schema_version: '1',
  request_id: 'req_1',
  actor: { user_id: 'user_1' },
};
const line = (value: unknown) => JSON.stringify(value);

describe('backfill input rules (pure)', () => {
  describe('decodeLine', () => {
    it('strips a UTF-8 BOM and a trailing CR', () => {
      const decoded = decodeLine(Buffer.from('\uFEFF{"a":1}\r', 'utf8'), 1024);
      assert.deepEqual(decoded, { kind: 'text', text: '{"a":1}' });
    });
    it('treats empty and whitespace-only lines as blank', () => {
      assert.equal(decodeLine(Buffer.from(''), 1024).kind, 'blank');
      assert.equal(decodeLine(Buffer.from('   \t\r'), 1024).kind, 'blank');
    });
    it('fails a line that is not valid UTF-8', () => {
      assert.deepEqual(decodeLine(Buffer.from([0x7b, 0xff, 0x7d]), 1024), { kind: 'invalid', reason: 'line is not valid UTF-8' });
    });
    it('fails a line that was too long to keep', () => {
      assert.deepEqual(decodeLine(null, 1024), { kind: 'invalid', reason: 'line is longer than 1024 bytes' });
    });
  });

  describe('validateLine', () => {
    it('accepts a complete event and extracts its indexed fields', () => {
      const verdict = validateLine(line(good));
      assert.ok(verdict.ok);
      assert.deepEqual(verdict.fields, {
        event_id: 'evt_1',
        event_type: 'contribution_created',
        schema_version: '1',
        request_id: 'req_1',
        actor_user_id: 'user_1',
      });
    });

    const rejects: Array<[string, string, RegExp]> = [
      ['truncated JSON', '{"event_id": "evt_trunc"', /^invalid JSON/],
      ['an array', '[1,2,3]', /not a JSON object \(got an array\)/],
      ['a string', '"x"', /not a JSON object \(got a string\)/],
      ['null', 'null', /not a JSON object \(got null\)/],
      ['a missing actor', line({ ...good, actor: undefined }), /"actor" must be an object/],
      ['a missing actor.user_id', line({ ...good, actor: { username: 'x' } }), /"actor.user_id" must be a non-empty string/],
      ['an empty event_type', line({ ...good, event_type: '' }), /"event_type" must be a non-empty string/],
      ['a whitespace-only schema_version', line({ ...good, schema_version: '   ' }), /"schema_version" must be a non-empty string/],
      ['a numeric event_id', line({ ...good, event_id: 24 }), /"event_id" must be a non-empty string/],
      ['an event_id over 256 bytes', line({ ...good, event_id: 'é'.repeat(129) }), /"event_id" must be at most 256 bytes/],
      ['a \\u0000 escape anywhere', '{"event_id":"e","event_type":"t","schema_version":"1","request_id":"r","actor":{"user_id":"u"},"x":"a\\u0000b"}', /\\u0000/],
      ['a lone surrogate escape', '{"event_id":"e","event_type":"t","schema_version":"1","request_id":"r","actor":{"user_id":"u"},"x":"\\ud800"}', /unpaired UTF-16 surrogate/],
    ];
    for (const [what, text, reason] of rejects) {
      it(`fails ${what} with a reason`, () => {
        const verdict = validateLine(text);
        assert.equal(verdict.ok, false);
        assert.match((verdict as { reason: string }).reason, reason);
      });
    }

    it('accepts a properly paired surrogate escape and an escaped backslash before u0000', () => {
      assert.ok(validateLine(line({ ...good, emoji: '\uD83D\uDE00' }).replace('😀', '\\ud83d\\ude00')).ok);
      assert.ok(validateLine(line({ ...good, note: '\\u0000 is text here' })).ok);
    });
  });
});
