import type { WorkflowInterceptorsFactory } from '@temporalio/workflow';
import { timerBeforeWork } from './changed-workflow-code';

/** The same change without patched(): histories written before it must fail to replay on it. */
export const interceptors: WorkflowInterceptorsFactory = () => ({ outbound: [timerBeforeWork(false)] });
