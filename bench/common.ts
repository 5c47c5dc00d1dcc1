import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Runtime, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { Pool } from 'pg';
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

/** Seeds `events` small pending events, due now, as both delivery benchmarks drain them. */
export function seedPendingEvents(pool: Pool, events: number) {
  return pool.query(
    `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload, status, attempts, max_attempts, next_attempt_at)
     SELECT 'evt_' || i, 'contribution_created', '1', 'req_' || i, 'user_' || (i % 997),
            jsonb_build_object('event_id', 'evt_' || i, 'event_type', 'contribution_created', 'schema_version', '1',
                               'request_id', 'req_' || i, 'actor', jsonb_build_object('user_id', 'user_' || (i % 997)),
                               'subject', jsonb_build_object('title', 'item ' || i)),
            'pending', 0, 5, now()
       FROM generate_series(1, $1::int) AS i`,
    [events],
  );
}
