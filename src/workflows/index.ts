export { webhookBackfill } from './backfill';
export { webhookDispatcher } from './dispatcher';
