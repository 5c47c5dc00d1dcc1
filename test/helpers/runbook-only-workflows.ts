// A workflow bundle with the runbook but not its children: a worker on it leaves the children's tasks to others.
export { webhookRecoveryRunbook } from '../../src/workflows/runbook';
