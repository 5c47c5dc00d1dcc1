import type { WorkflowInterceptorsFactory } from '@temporalio/workflow';
import { timerBeforeWork } from './changed-workflow-code';

/** The changed workflow code, guarded by patched('test-upgrade-timer-before-work'). */
export const interceptors: WorkflowInterceptorsFactory = () => ({ outbound: [timerBeforeWork(true)] });
