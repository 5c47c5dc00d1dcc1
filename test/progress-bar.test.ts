import assert from 'node:assert/strict';
import { RunBar } from '../src/client/progress-bar';
import { waitFor } from './helpers/harness';

/** A terminal as cli-progress sees one, keeping what is written to it; lines for stderr go in the same order. */
function fakeTerminal() {
  const written: string[] = [];
  const stream = {
    isTTY: true,
    columns: 160,
    write(chunk: string) {
      written.push(chunk);
      return true;
    },
  };
  return { written, stream: stream as unknown as NodeJS.WriteStream };
}

describe('the progress bar on a terminal (pure)', () => {
  it('a stall or outage line said while the bar is drawn stands on its own line, and the bar is drawn again below it', async () => {
    const { written, stream } = fakeTerminal();
    const bar = new RunBar('webhook-replay-dlq', 'rows', stream);
    const position = { value: 10, total: 100, unit: 'rows' as const, processed: 10, counters: 'processed=10' };
    bar.update(position);
    assert.ok(written.some((w) => w.includes('processed=10')), 'the bar was drawn');
    const said: string[] = [];
    const out = bar.around({ log: (l) => said.push(l), err: (l) => written.push(`<stderr>${l}\n`) });
    out.err('[webhook-replay-dlq] no progress for 60s: no worker is polling');
    const at = written.indexOf('<stderr>[webhook-replay-dlq] no progress for 60s: no worker is polling\n');
    assert.ok(at > 0);
    assert.equal(written[at - 1], '\r\x1b[2K', 'the bar line is cleared before the line');
    // The bar comes back below the line at its next tick, unchanged as it is.
    await waitFor('the bar redrawn after the line', async () => written.slice(at + 1).some((w) => w.includes('processed=10')));
    bar.finish({ ...position, value: 100, processed: 100, counters: 'processed=100' });
    const before = written.length;
    out.err('[webhook-replay-dlq] after the bar');
    assert.equal(written[before], '<stderr>[webhook-replay-dlq] after the bar\n', 'once the bar is done, nothing is cleared');
    assert.deepEqual(said, []);
  });
});
