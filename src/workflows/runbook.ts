import {
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  condition,
  defineQuery,
  defineSignal,
  executeChild,
  isCancellation,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { BackfillInput, BackfillSummary } from '../shared/backfill';
import type { ReplayInput, ReplaySummary } from '../shared/replay';
import {
  type ChildProgress,
  type GateDecision,
  RUNBOOK_DEFAULTS,
  RUNBOOK_STEPS,
  runbookChildId,
  type RunbookInput,
  type RunbookProgress,
  type RunbookReport,
  type RunbookStep,
  type StepNumber,
  type VerifyFigures,
} from '../shared/runbook';
import { webhookBackfill } from './backfill';
import { childProgressSignal } from './parent';
import { webhookReplayDlq } from './replay';

export const runbookProgressQuery = defineQuery<RunbookProgress>('progress');
export const approveSignal = defineSignal<[GateDecision?]>('approve');
export const rejectSignal = defineSignal<[GateDecision?]>('reject');

const { outboxMetrics, previewReplay } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '15 seconds' },
});

const DEAD_LETTERS = { status: 'dead_letter', eventTypes: [] as string[] } as const;

const percent = (ratio: number) => `${(ratio * 100).toFixed(2)}%`;
const duration = (ms: number) => (ms % 60_000 === 0 ? `${ms / 60_000}m` : `${ms / 1000}s`);

/**
 * The runbook's six steps as one durable run: backfill dry-run, gate, backfill execute, verify delivery,
 * replay dry-run, gate, replay execute, confirm the dead letters are back to the baseline. Backfill and
 * replay run as child workflows whose run keys derive from this run's, so a step re-run after a reset or
 * retry finds its batches in the ledger and writes nothing twice. A failed gate, a rejection or a timed-out
 * wait fails the run with the step's figures (and the whole report as the failure's details).
 */
export async function webhookRecoveryRunbook(input: RunbookInput): Promise<RunbookReport> {
  const runbookId = workflowInfo().workflowId;
  const steps: RunbookStep[] = RUNBOOK_STEPS.map((s) => ({ number: s.number, name: s.name, status: 'pending' }));
  const step = (n: StepNumber) => steps[n - 1]!;
  let currentStep: StepNumber | null = null;
  let phase: RunbookProgress['phase'] = 'running';
  let baseline: number | null = input.baseline ?? null;
  let child: ChildProgress | null = null;
  let awaitingGate: StepNumber | null = null;
  let decision: { approved: boolean; reason?: string } | null = null;

  setHandler(runbookProgressQuery, () => ({
    runKey: input.runKey,
    phase,
    currentStep,
    approval: input.approval,
    baseline,
    steps,
    child,
  }));
  const decide = (approved: boolean) => (d?: GateDecision) => {
    // A decision only counts at the gate it names (or the one waiting, if it names none).
    if (awaitingGate === null || (d?.step !== undefined && d.step !== awaitingGate)) return;
    decision = { approved, reason: d?.reason };
  };
  setHandler(approveSignal, decide(true));
  setHandler(rejectSignal, decide(false));
  setHandler(childProgressSignal, (progress) => {
    if (currentStep !== null && progress.workflowId === step(currentStep).workflowId) child = progress;
  });

  const report = (outcome: RunbookReport['outcome'], stoppedAt: StepNumber | null, reason: string | null): RunbookReport => ({
    outcome,
    stoppedAt,
    reason,
    baseline,
    steps,
  });

  const stop = (n: StepNumber, status: 'failed' | 'rejected', message: string): never => {
    step(n).status = status;
    step(n).message = message;
    phase = 'stopped';
    const reason = `step ${n} (${step(n).name}) ${status}: ${message}`;
    throw ApplicationFailure.create({ type: 'RunbookStopped', message: reason, nonRetryable: true, details: [report('stopped', n, reason)] });
  };

  const begin = (n: StepNumber) => {
    currentStep = n;
    child = null;
    step(n).status = 'running';
  };

  const childRunKey = (n: StepNumber) => `${input.runKey}/step-${n}`;

  async function runChild<T>(n: StepNumber, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (isCancellation(err)) throw err;
      const cause = err instanceof ChildWorkflowFailure ? (err.cause?.message ?? err.message) : (err as Error).message;
      return stop(n, 'failed', `${step(n).workflowId} did not finish: ${cause}`);
    } finally {
      child = null;
    }
  }

  function backfill(n: 1 | 2, dryRun: boolean): Promise<BackfillSummary> {
    const workflowId = runbookChildId(runbookId, n);
    step(n).workflowId = workflowId;
    const args: BackfillInput = { runKey: childRunKey(n), path: input.path, dryRun, maxAttempts: input.maxAttempts, batchSize: input.batchSize };
    return runChild(n, () => executeChild(webhookBackfill, { workflowId, args: [args], parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL }));
  }

  function replay(n: 4 | 5, dryRun: boolean): Promise<ReplaySummary> {
    const workflowId = runbookChildId(runbookId, n);
    step(n).workflowId = workflowId;
    const args: ReplayInput = {
      runKey: childRunKey(n),
      filter: { ...DEAD_LETTERS },
      limit: input.replayLimit,
      dryRun,
      batchSize: input.replayBatchSize,
      ratePerSecond: 0,
    };
    return runChild(n, () => executeChild(webhookReplayDlq, { workflowId, args: [args], parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL }));
  }

  /** Waits for an operator's decision in manual mode; in auto mode the automatic checks were the gate. */
  async function gate(n: StepNumber): Promise<void> {
    if (input.approval === 'manual') {
      step(n).status = 'awaiting-approval';
      phase = 'awaiting-approval';
      awaitingGate = n;
      decision = null;
      await condition(() => decision !== null);
      const made = decision!;
      awaitingGate = null;
      phase = 'running';
      if (!made.approved) stop(n, 'rejected', `an operator rejected the gate${made.reason ? `: ${made.reason}` : ''}`);
      step(n).gate = { ...step(n).gate, approvedBy: 'operator', reason: made.reason };
    } else {
      step(n).gate = { ...step(n).gate, approvedBy: 'auto' };
    }
    step(n).status = 'passed';
  }

  /**
   * Checks every interval (durable timers) until `check` settles or the timeout passes; one last check
   * runs after the deadline. The interval grows with the timeout so a long wait keeps a bounded history.
   */
  async function waitUntil(timeoutMs: number, check: () => Promise<'done' | 'wait' | 'hopeless'>): Promise<'done' | 'hopeless' | 'timeout'> {
    const intervalMs = Math.max(input.pollMs, Math.ceil(timeoutMs / RUNBOOK_DEFAULTS.maxPolls));
    let expired = false;
    const deadline = new CancellationScope();
    void deadline
      .run(() => sleep(timeoutMs))
      .then(
        () => (expired = true),
        () => undefined,
      );
    try {
      for (;;) {
        const outcome = await check();
        if (outcome !== 'wait') return outcome;
        if (expired) return 'timeout';
        await condition(() => expired, intervalMs);
      }
    } finally {
      deadline.cancel();
    }
  }

  // Before step 1: the dead-letter count step 6 must come back to.
  baseline ??= (await outboxMetrics({})).deadLetters;

  // Step 1: dry run; gate on the share of failed lines.
  begin(1);
  const dry = await backfill(1, true);
  step(1).backfill = counters(dry);
  const failedRatio = dry.processed === 0 ? 0 : dry.failed / dry.processed;
  step(1).gate = { failedRatio, maxFailedRatio: input.maxFailedRatio };
  if (failedRatio > input.maxFailedRatio) {
    stop(
      1,
      'failed',
      `${dry.failed} of ${dry.processed} lines failed (${percent(failedRatio)}), over the allowed ${percent(input.maxFailedRatio)}; ` +
        `nothing was written to the outbox (list them: gotong-worker failed-lines '${step(1).workflowId}')`,
    );
  }
  await gate(1);

  // Step 2: execute.
  begin(2);
  const executed = await backfill(2, false);
  step(2).backfill = counters(executed);
  step(2).status = 'passed';

  // Step 3: wait until step 2's events are delivered (or dead-lettered) and enough of them were delivered.
  begin(3);
  const verify = async (): Promise<'done' | 'wait' | 'hopeless'> => {
    const metrics = await outboxMetrics({ sourceRun: childRunKey(2) });
    const run = metrics.run ?? { waiting: 0, deadLettered: 0 };
    const delivered = executed.created - run.waiting - run.deadLettered;
    const finished = delivered + run.deadLettered;
    const figures: VerifyFigures = {
      created: executed.created,
      waiting: run.waiting,
      delivered,
      deadLettered: run.deadLettered,
      successRate: finished === 0 ? null : delivered / finished,
    };
    step(3).verify = figures;
    const rateOk = figures.successRate === null || figures.successRate >= input.verifyMinSuccessRate;
    if (figures.waiting <= input.verifyMaxBacklog && rateOk) return 'done';
    // Nothing left to deliver, so the rate can no longer rise.
    if (figures.waiting === 0 && !rateOk) return 'hopeless';
    return 'wait';
  };
  const verified = await waitUntil(input.verifyTimeoutMs, verify);
  if (verified !== 'done') {
    const f = step(3).verify!;
    const rate = f.successRate === null ? 'n/a' : percent(f.successRate);
    const figures =
      `waiting=${f.waiting} (allowed ${input.verifyMaxBacklog}) delivered=${f.delivered} dead_lettered=${f.deadLettered} ` +
      `success_rate=${rate} (needed ${percent(input.verifyMinSuccessRate)})`;
    stop(3, 'failed', verified === 'timeout' ? `timed out after ${duration(input.verifyTimeoutMs)}: ${figures}` : `the receiver rejected too many: ${figures}`);
  }
  step(3).status = 'passed';

  // Step 4: replay dry run; gate.
  begin(4);
  const preview = await replay(4, true);
  step(4).replay = { ...replayCounters(preview), dryRun: true, preview: preview.preview };
  const nothingToReplay = preview.replayed === 0;
  if (nothingToReplay) step(4).status = 'passed';
  else await gate(4);

  // Step 5: replay execute (nothing to do when the dry run matched nothing).
  let replayed: ReplaySummary | null = null;
  if (nothingToReplay) {
    step(5).status = 'skipped';
    step(5).message = 'the dry run matched no dead letters';
  } else {
    begin(5);
    replayed = await replay(5, false);
    step(5).replay = { ...replayCounters(replayed), dryRun: false };
    step(5).status = 'passed';
  }

  // Step 6: the replayed events are settled and the dead letters are back to the baseline.
  begin(6);
  const target = baseline;
  const confirm = async (): Promise<'done' | 'wait'> => {
    const metrics = await outboxMetrics(replayed ? { replayRun: childRunKey(5) } : {});
    const replayWaiting = metrics.run?.waiting ?? 0;
    step(6).confirm = { deadLetters: metrics.deadLetters, baseline: target, replayWaiting };
    return replayWaiting === 0 && metrics.deadLetters <= target ? 'done' : 'wait';
  };
  if ((await waitUntil(input.confirmTimeoutMs, confirm)) !== 'done') {
    const figures = step(6).confirm!;
    const remaining = await previewReplay({ filter: { ...DEAD_LETTERS }, limit: 100_000 });
    figures.remaining = remaining;
    const byType = Object.entries(remaining.byEventType)
      .map(([type, n]) => `${type}=${n}`)
      .join(' ');
    stop(
      6,
      'failed',
      `timed out after ${duration(input.confirmTimeoutMs)}: dead_letter=${figures.deadLetters} baseline=${target} ` +
        `replayed_waiting=${figures.replayWaiting}; still dead-lettered by type: ${byType || '(none)'}; ` +
        `e.g. ${remaining.sampleIds.slice(0, 5).join(', ') || '(none)'}`,
    );
  }
  step(6).status = 'passed';
  currentStep = null;
  phase = 'completed';
  return report('completed', null, null);
}

function counters(s: BackfillSummary) {
  return { processed: s.processed, created: s.created, enqueued: s.enqueued, duplicates: s.duplicates, failed: s.failed, dryRun: s.dryRun };
}

function replayCounters(s: ReplaySummary) {
  return { processed: s.processed, replayed: s.replayed, enqueued: s.enqueued, skipped: s.skipped, failed: s.failed };
}
