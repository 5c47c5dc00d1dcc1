import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { DispatcherConfigAnswer, DispatcherConfigPatch, DispatcherStats } from '../shared/delivery';

/** The dispatcher's query, signals and update: one definition for both of its loops (see dispatcher.ts). */
export const statsQuery = defineQuery<DispatcherStats>('stats');
export const wakeSignal = defineSignal('wake');
export const pauseDeliverySignal = defineSignal('pause');
export const resumeDeliverySignal = defineSignal('resume');
/** Changes settings (or the number of shards) of a running dispatcher; answers with those in force. */
export const configureUpdate = defineUpdate<DispatcherConfigAnswer, [DispatcherConfigPatch]>('configure');
