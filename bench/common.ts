import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { FAST_DEV_SERVER_ARGS, findOrBuildTemporalCli } from '../src/dev/temporal-cli';

export const BENCH_DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/gotong_bench';

/** The same Temporal dev server and workflow bundle the tests use, quiet, for a benchmark run. */
export async function benchTemporal(): Promise<{ env: TestWorkflowEnvironment; workflowBundle: WorkflowBundleWithSourceMap }> {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const temporalCli = await findOrBuildTemporalCli({ log: (line) => console.error(line) });
  const [env, workflowBundle] = await Promise.all([
    TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: temporalCli }, ip: '127.0.0.1', extraArgs: FAST_DEV_SERVER_ARGS },
    }),
    bundleWorkflowCode({
      workflowsPath: require.resolve('../src/workflows'),
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error },
    }),
  ]);
  return { env, workflowBundle };
}
