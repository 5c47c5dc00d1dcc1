import { setUpHarness, tearDownHarness } from '../helpers/harness';

// Global fixtures run once for the whole suite: one Temporal dev server, one test database, one workflow bundle.
export async function mochaGlobalSetup(): Promise<void> {
  await setUpHarness();
}

export async function mochaGlobalTeardown(): Promise<void> {
  await tearDownHarness();
}
