import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { DispatcherConfigAnswer, DispatcherConfigPatch, DispatcherStats } from '../shared/delivery';

/** The dispatcher's query, signals and update: one definition for both of its loops (see dispatcher.ts). */
export const statsQuery = defineQuery<DispatcherStats>('stats');
export const wakeSignal = defineSignal('wake');
export const pauseDeliverySignal = defineSignal('pause');
export const resumeDeliverySignal = defineSignal('resume');
/** Changes settings (or the number of shards) of a running dispatcher; answers with those in force. */
export const configureUpdate = defineUpdate<DispatcherConfigAnswer, [DispatcherConfigPatch]>('configure');

/** Shown by the Temporal UI beside each handler (its Queries, Send Signal and update views). */
export const DISPATCHER_HANDLER_DESCRIPTIONS = {
  stats:
    'This shard: delivered, retried and dead-lettered counts, passes, paused (and why), the last failed pass, in flight, backlog and the oldest due event, the settings in force.',
  wake: 'Events just became due: start a pass now instead of at the next idle tick. No argument. Backfills and replays send it.',
  pause: 'Stop starting delivery passes (those under way finish); holds until resume. No argument.',
  resume: 'Deliver again after a pause, by an operator or by the receiver failing. No argument.',
  configure:
    'Change settings of this running shard, or the number of shards, e.g. {"ratePerSecond": 50, "concurrency": 16} or {"shards": 2}; answers with the settings in force. Refused with the reasons if a value is out of bounds.',
} as const;
