/** The recovery runbook's input, steps and report: pure data shared by its workflow, activities and the CLI. */
import type { BackfillCounters } from './backfill';
import type { ReplayCounters, ReplayPreview } from './replay';

export const RUNBOOK_STEPS = [
  { number: 1, name: 'backfill dry-run' },
  { number: 2, name: 'backfill execute' },
  { number: 3, name: 'verify delivery' },
  { number: 4, name: 'replay dry-run' },
  { number: 5, name: 'replay execute' },
  { number: 6, name: 'confirm baseline' },
] as const;

export type StepNumber = (typeof RUNBOOK_STEPS)[number]['number'];

export type StepStatus = 'pending' | 'running' | 'awaiting-approval' | 'passed' | 'failed' | 'rejected' | 'skipped';

export interface RunbookInput {
  /** Made by the client; children's run keys derive from it, so a reset or retried step redoes no write. */
  runKey: string;
  path: string;
  maxAttempts: number;
  batchSize: number;
  replayLimit: number;
  replayBatchSize: number;
  approval: 'auto' | 'manual';
  /** Gate after step 1: failed lines / processed lines must be at most this. */
  maxFailedRatio: number;
  /** Dead letters to return to in step 6; captured before step 1 when not given. */
  baseline?: number;
  verifyTimeoutMs: number;
  /** Step 3 passes once at most this many of step 2's events are still waiting for delivery... */
  verifyMaxBacklog: number;
  /** ...and at least this share of those delivered or dead-lettered was delivered. */
  verifyMinSuccessRate: number;
  confirmTimeoutMs: number;
  /** How often steps 3 and 6 look at the outbox. */
  pollMs: number;
}

export const RUNBOOK_DEFAULTS = {
  replayLimit: 500,
  maxFailedRatio: 0.01,
  verifyMinSuccessRate: 0.5,
  /** Steps 3 and 6 look at most this many times (the interval grows with the timeout), so history stays bounded. */
  maxPolls: 500,
} as const;

/** What steps 3 and 6 read from the outbox. Counts only; cheap (partial indexes). */
export interface OutboxMetrics {
  deadLetters: number;
  /** Events created by the given backfill run, or reset by the given replay run, by where they stand now. */
  run: { waiting: number; deadLettered: number } | null;
}

export interface VerifyFigures {
  created: number;
  waiting: number;
  delivered: number;
  deadLettered: number;
  /** delivered / (delivered + deadLettered); null while none has finished. */
  successRate: number | null;
}

export interface ConfirmFigures {
  deadLetters: number;
  baseline: number;
  /** Replayed events not yet delivered or dead-lettered. */
  replayWaiting: number;
  /** What is still dead-lettered, when the step failed. */
  remaining?: ReplayPreview;
}

export interface GateFigures {
  failedRatio?: number;
  maxFailedRatio?: number;
  approvedBy?: 'auto' | 'operator';
  reason?: string;
}

export interface RunbookStep {
  number: StepNumber;
  name: string;
  status: StepStatus;
  workflowId?: string;
  backfill?: BackfillCounters & { dryRun: boolean };
  replay?: ReplayCounters & { dryRun: boolean; preview?: ReplayPreview };
  verify?: VerifyFigures;
  confirm?: ConfirmFigures;
  gate?: GateFigures;
  /** Why the step failed or was rejected, in one line with the figures. */
  message?: string;
}

export interface ChildProgress {
  workflowId: string;
  kind: 'backfill' | 'replay';
  counters: BackfillCounters | ReplayCounters;
}

export type RunbookOutcome = 'completed' | 'stopped';

export interface RunbookProgress {
  runKey: string;
  phase: 'running' | 'awaiting-approval' | 'completed' | 'stopped';
  currentStep: StepNumber | null;
  approval: 'auto' | 'manual';
  baseline: number | null;
  steps: RunbookStep[];
  /** Live counters of the running child, as it last reported them. */
  child: ChildProgress | null;
}

export interface RunbookReport {
  outcome: RunbookOutcome;
  stoppedAt: StepNumber | null;
  reason: string | null;
  baseline: number | null;
  steps: RunbookStep[];
}

/** Approve or reject the gate the run waits at; `step` guards against a late signal passing a later gate. */
export interface GateDecision {
  step?: number;
  reason?: string;
}

export const runbookChildId = (runbookWorkflowId: string, step: StepNumber) => {
  const slug = RUNBOOK_STEPS[step - 1]!.name.replace(/ /g, '-');
  return `${runbookWorkflowId}/step-${step}-${slug}`;
};
