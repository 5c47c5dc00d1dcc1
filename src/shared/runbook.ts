/** The recovery runbook's input, steps and report: pure data shared by its workflow, activities and the CLI. */
import type { BackfillCounters, FileFingerprint } from './backfill';
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

/** The steps followed by a gate. */
export const GATE_STEPS: readonly StepNumber[] = [1, 4];

export type StepStatus = 'pending' | 'running' | 'awaiting-approval' | 'passed' | 'failed' | 'rejected' | 'cancelled' | 'skipped';

export interface RunbookInput {
  /**
   * Made by the client, one per run of the runbook; stable across reset and continue-as-new. Keys of
   * the steps that look at the outbox as it is now (the dry runs, the replay) derive from it.
   */
  runKey: string;
  path: string;
  maxAttempts: number;
  batchSize: number;
  replayLimit: number;
  replayBatchSize: number;
  approval: 'auto' | 'manual';
  /** Gate after step 1: failed lines / processed lines must be at most this. */
  maxFailedRatio: number;
  /** Dead letters to return to in step 6; else the procedure's (see RunbookProcedure). */
  baseline?: number;
  verifyTimeoutMs: number;
  /** Step 3 passes once at most this many of the file's events are still waiting for delivery... */
  verifyMaxBacklog: number;
  /** ...and at least this share of those delivered or dead-lettered was delivered. */
  verifyMinSuccessRate: number;
  confirmTimeoutMs: number;
  /** How often steps 3 and 6 look at the outbox. */
  pollMs: number;
  /** The children's checkpoint step (--progress-every); absent in runs started before it was passed on. */
  progressEvery?: number;
  /** Looks at the outbox per workflow run before continuing as new (default RUNBOOK_DEFAULTS.pollsPerRun). */
  pollsPerRun?: number;
  /** Set only when continuing as new, during step 3 or 6. */
  resume?: RunbookResume;
}

/** What a run carries into the next when it continues as new during a wait. */
export interface RunbookResume {
  at: 3 | 6;
  /** Workflow time (ms since the epoch) at which the wait times out. */
  deadline: number;
  procedure: RunbookProcedure;
  steps: RunbookStep[];
  lastRefusedDecision: RefusedDecision | null;
}

export const RUNBOOK_DEFAULTS = {
  replayLimit: 500,
  maxFailedRatio: 0.01,
  verifyMinSuccessRate: 0.5,
  /**
   * A look at the outbox costs about 11 history events (activity, timer, two workflow tasks), so a run
   * continues as new after this many: one run's history stays under RUNBOOK_HISTORY_BOUND events. The client passes
   * it in the input, which carries it (see run-inputs.ts).
   */
  pollsPerRun: 100,
} as const;

/**
 * Most history events one run of the runbook writes, whatever the file size: the steps' children and
 * activities (about 120 events, more only if a child of an earlier run must be waited for) plus 11 per look
 * at the outbox (RUNBOOK_DEFAULTS.pollsPerRun per run). Children report nothing to it: the CLI queries them.
 */
export const runbookHistoryBound = (pollsPerRun: number) => 250 + 12 * pollsPerRun;

/**
 * The file at one content, and the procedure of getting it delivered. Every run of the runbook on the same
 * path and fingerprint executes the same backfill (step 2's ledger key derives from `key`), so a run that
 * continues a stopped one resumes its backfill, and step 3 judges every event the file's backfill created,
 * in this run or an earlier one.
 */
export interface RunbookProcedure {
  key: string;
  /** Dead letters step 6 must come back to. */
  baseline: number;
  /** measured: counted before step 1 of the procedure's first run; option: --baseline; earlier-run: carried. */
  baselineFrom: 'measured' | 'option' | 'earlier-run';
  /** The run of the runbook on this file that this one continues: the newest one, if it did not complete. */
  continues: EarlierRun | null;
}

export interface EarlierRun {
  runKey: string;
  workflowId: string;
  runId: string;
  /** unfinished: it ended without a report (terminated, or timed out by Temporal). */
  outcome: 'stopped' | 'cancelled' | 'completed' | 'unfinished';
  stoppedAt: StepNumber | null;
  reason: string | null;
  startedAt: string;
}

export interface BeginRunbookInput {
  runKey: string;
  workflowId: string;
  runId: string;
  path: string;
  fingerprint: FileFingerprint;
  baseline?: number;
}

export type RunbookOutcome = 'completed' | 'stopped' | 'cancelled';

export interface FinishRunbookInput {
  runKey: string;
  outcome: RunbookOutcome;
  stoppedAt: StepNumber | null;
  reason: string | null;
}

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
  /** How an operator's decision came: a Workflow Update (the CLI) or a signal (the Temporal UI). */
  decidedVia?: 'update' | 'signal';
  reason?: string;
}

export interface RunbookStep {
  number: StepNumber;
  name: string;
  status: StepStatus;
  workflowId?: string;
  /** The child's ledger key (`failed-lines --run-key`, the outbox's source_run for step 2). */
  runKey?: string;
  /** A child of an earlier run of this runbook still holds this step's workflow id; the step waits for it to close. */
  waitingFor?: string;
  backfill?: BackfillCounters & { dryRun: boolean };
  replay?: ReplayCounters & { dryRun: boolean; preview?: ReplayPreview };
  verify?: VerifyFigures;
  confirm?: ConfirmFigures;
  gate?: GateFigures;
  /** Why the step failed, was rejected or cancelled, in one line with the figures. */
  message?: string;
}

/** The child the runbook waits on; its live counters are its own `progress` query. */
export interface RunningChild {
  step: StepNumber;
  workflowId: string;
  kind: 'backfill' | 'replay';
}

/** A decision a gate did not take, and why: signals cannot answer their sender, so the run shows it. */
export interface RefusedDecision {
  decision: 'approve' | 'reject';
  via: 'update' | 'signal';
  step: number | null;
  reason: string | null;
  refusal: string;
}

export interface RunbookProgress {
  runKey: string;
  procedure: RunbookProcedure | null;
  phase: 'running' | 'awaiting-approval' | 'completed' | 'stopped' | 'cancelled';
  currentStep: StepNumber | null;
  approval: 'auto' | 'manual';
  baseline: number | null;
  steps: RunbookStep[];
  runningChild: RunningChild | null;
  lastRefusedDecision: RefusedDecision | null;
}

export interface RunbookReport {
  outcome: RunbookOutcome;
  stoppedAt: StepNumber | null;
  reason: string | null;
  baseline: number | null;
  runKey: string;
  procedure: RunbookProcedure | null;
  steps: RunbookStep[];
}

/** Approve or reject a gate; `step` names the gate meant, so a late decision cannot pass a later gate. */
export interface GateDecision {
  step?: number;
  reason?: string;
}

/** What an accepted approve / reject update answers. */
export interface GateAnswer {
  step: StepNumber;
  name: string;
  decision: 'approved' | 'rejected';
  reason: string | null;
}

/** The run key of a runbook's replay step: its ledger and audit key, and the key step 4 keeps its counted rows under. */
export const runbookReplayRunKey = (runbookRunKey: string, step: 4 | 5) => `${runbookRunKey}/step-${step}`;

export const runbookChildId = (runbookWorkflowId: string, step: StepNumber) => {
  const slug = RUNBOOK_STEPS[step - 1]!.name.replace(/ /g, '-');
  return `${runbookWorkflowId}/step-${step}-${slug}`;
};
