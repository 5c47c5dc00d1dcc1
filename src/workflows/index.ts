export { webhookBackfill } from './backfill';
export { webhookDispatcher } from './dispatcher';
export { webhookReplayDlq } from './replay';
export { webhookRecoveryRunbook } from './runbook';
