import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { FIXTURES, getHarness } from './helpers/harness';

/**
 * A deploy of changed workflow code must not break the runs open at the time: recorded histories of each
 * version (test/tools/record-histories.ts) replay against the current code without a nondeterminism error.
 * `before-settle`: the code before cancellation waited for and settled the batch in flight.
 */
const HISTORIES = join(FIXTURES, 'histories');

describe('recorded workflow histories replay on the current code', function () {
  this.timeout(120_000);
  for (const version of readdirSync(HISTORIES)) {
    for (const file of readdirSync(join(HISTORIES, version)).filter((f) => f.endsWith('.json'))) {
      it(`${version}/${file}`, async () => {
        const history = temporal.api.history.v1.History.fromObject(JSON.parse(readFileSync(join(HISTORIES, version, file), 'utf8')));
        assert.ok((history.events?.length ?? 0) > 5);
        await Worker.runReplayHistory({ workflowBundle: getHarness().workflowBundle }, history, `${version}/${file}`);
      });
    }
  }
});
