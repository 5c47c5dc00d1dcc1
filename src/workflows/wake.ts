import { getExternalWorkflowHandle } from '@temporalio/workflow';
import { dispatcherWorkflowId } from '../shared/delivery';
import { wakeSignal } from './dispatcher';

/**
 * Tells dispatcher shard 0 (which tells the others) that events just became due, rather than let it find
 * them on its next idle tick. Fire and forget: a missing dispatcher is not the caller's problem.
 */
export function wakeDispatcher(): void {
  getExternalWorkflowHandle(dispatcherWorkflowId(0))
    .signal(wakeSignal)
    .catch(() => undefined);
}
