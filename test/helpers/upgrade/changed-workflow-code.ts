/**
 * A stand-in for a change to the workflow code that schedules differently: before every activity and every child
 * workflow it first waits on a 1 ms timer. Built into a second workflow bundle (as workflow interceptor modules, so
 * the workflows themselves stay the real ones) by test/upgrade.test.ts. Runs inside the workflow sandbox.
 */
import { patched, sleep, type WorkflowOutboundCallsInterceptor } from '@temporalio/workflow';

export const TEST_UPGRADE_PATCH = 'test-upgrade-timer-before-work';

/** `guarded`: the change behind `patched()`, as CONTRIBUTING.md asks; unguarded: the same change done wrong. */
export function timerBeforeWork(guarded: boolean): WorkflowOutboundCallsInterceptor {
  const changed = () => (guarded ? patched(TEST_UPGRADE_PATCH) : true);
  return {
    async scheduleActivity(input, next) {
      if (changed()) await sleep(1);
      return next(input);
    },
    async startChildWorkflowExecution(input, next) {
      if (changed()) await sleep(1);
      return next(input);
    },
  };
}
