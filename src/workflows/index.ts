export { webhookBackfill } from './backfill';
