import {
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  ChildWorkflowFailure,
  condition,
  ContinueAsNew,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  getExternalWorkflowHandle,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  startChild,
  TerminatedFailure,
  TimeoutFailure,
  workflowInfo,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { Activities } from '../activities';
import { BACKFILL_LIMITS, type BackfillInput, type BackfillSummary } from '../shared/backfill';
import { REPLAY_DEFAULT_BATCHES_PER_RUN, type ReplayInput, type ReplaySummary } from '../shared/replay';
import { runbookPollsPerRun } from '../shared/run-inputs';
import {
  type GateAnswer,
  type GateDecision,
  GATE_STEPS,
  RUNBOOK_STEPS,
  runbookChildId,
  runbookReplayRunKey,
  type RefusedDecision,
  type RunbookInput,
  type RunbookOutcome,
  type RunbookProcedure,
  type RunbookProgress,
  type RunbookReport,
  type RunbookStep,
  type RunningChild,
  type StepNumber,
  type VerifyFigures,
} from '../shared/runbook';
import { backfillMetadata, grouped, replayMetadata, type RunMetadata, SEARCH_ATTRIBUTES } from '../shared/run-metadata';
import { webhookBackfill } from './backfill';
import { webhookReplayDlq } from './replay';
import { RunUi, shortDuration } from './ui';

export const runbookProgressQuery = defineQuery<RunbookProgress>('progress');
/** The CLI's way to decide a gate: the answer says which gate was decided, or why not. */
export const approveUpdate = defineUpdate<GateAnswer, [GateDecision | undefined]>('approve');
export const rejectUpdate = defineUpdate<GateAnswer, [GateDecision | undefined]>('reject');
/** The Temporal UI's way: the same rules; a refused signal shows in `progress` as lastRefusedDecision. */
export const approveSignal = defineSignal<[GateDecision?]>('approve');
export const rejectSignal = defineSignal<[GateDecision?]>('reject');

/** Shown by the Temporal UI beside each handler (its Queries, Send Signal and update views). */
export const RUNBOOK_HANDLER_DESCRIPTIONS = {
  progress: 'The six steps with their status, figures and child runs; the phase, the current step, the baseline, the last refused decision.',
  approveUpdate:
    'Approve the gate the run waits at; answers which gate was decided, or is refused with the reason. Input: {"step": 1 or 4, "reason": "..."} (both optional; step guards against approving the wrong gate).',
  rejectUpdate: 'Reject the gate the run waits at: the run stops there. Input as for approve.',
  approveSignal:
    'Approve the gate the run waits at (the UI\'s way; the CLI uses the approve update). Input: {"step": 1 or 4, "reason": "..."}. A refused signal shows in the progress query as lastRefusedDecision.',
  rejectSignal: 'Reject the gate the run waits at: the run stops there. Input as for approve.',
} as const;

const ACTIVITY_OPTIONS = {
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '15 seconds' },
} as const;
/** The runbook's activities with a summary for the UI's timeline (metadata: histories without it replay the same). */
const activities = (summary: string) => proxyActivities<Activities>({ ...ACTIVITY_OPTIONS, summary });

const DEAD_LETTERS = { status: 'dead_letter', eventTypes: [] as string[] } as const;

const percent = (ratio: number) => `${(ratio * 100).toFixed(2)}%`;
const duration = (ms: number) => (ms % 60_000 === 0 ? `${ms / 60_000}m` : `${ms / 1000}s`);
/** Workflow time: deterministic in the sandbox (the time of the current workflow task). */
const workflowNow = () => new Date().getTime();

/** Patch ids `gate-opens-with-a-marker-1` and `-4`; see gate(). */
const GATE_OPENS_WITH_A_MARKER = 'gate-opens-with-a-marker';
/** Step 3 says it has nothing to judge when step 2 created no events, instead of passing on zeros (runs before it did). */
const VERIFY_SKIPS_WHEN_NOTHING_CREATED = 'verify-skips-when-nothing-created';
/**
 * Step 5 resets what step 4's dry run counted, and no row that became a dead letter after it: runs begun before
 * this replay step 5 unbounded, as they ran.
 */
const EXECUTE_RESETS_WHAT_THE_DRY_RUN_COUNTED = 'execute-resets-what-the-dry-run-counted';
/** Step 4's dry run keeps the rows it counted, and step 5 resets only those: runs begun before this ask for neither. */
const DRY_RUN_KEEPS_WHAT_IT_COUNTED = 'dry-run-keeps-what-it-counted';

type Decision = { approved: boolean; reason?: string; via: 'update' | 'signal' };

/**
 * The runbook's six steps as one durable run: backfill dry-run, gate, backfill execute, verify delivery,
 * replay dry-run, gate, replay execute, confirm the dead letters are back to the baseline. Backfill and
 * replay run as child workflows; a failed gate, a rejection, a child ended from outside or a timed-out wait
 * fails the run with a `RunbookStopped` failure whose details are the whole report.
 *
 * A run on a file whose last run did not complete continues that procedure (see RunbookProcedure): the
 * same baseline, and step 2 resumes the same backfill, so step 3 judges every event the file's backfill
 * created. Steps 3 and 6 continue as new every `pollsPerRun` looks at the outbox, so no run's history
 * grows with the file or the timeouts; children report nothing to it (the CLI queries them).
 */
export async function webhookRecoveryRunbook(input: RunbookInput): Promise<RunbookReport> {
  const ui = new RunUi();
  const runbookId = workflowInfo().workflowId;
  const resume = input.resume;
  const steps: RunbookStep[] = resume?.steps ?? RUNBOOK_STEPS.map((s) => ({ number: s.number, name: s.name, status: 'pending' }));
  const step = (n: StepNumber) => steps[n - 1]!;
  let procedure: RunbookProcedure | null = resume?.procedure ?? null;
  let currentStep: StepNumber | null = resume?.at ?? null;
  let phase: RunbookProgress['phase'] = 'running';
  let runningChild: RunningChild | null = null;
  let awaitingGate: StepNumber | null = null;
  let decision: Decision | null = null;
  let lastRefusedDecision: RefusedDecision | null = resume?.lastRefusedDecision ?? null;
  const baseline = () => procedure?.baseline ?? input.baseline ?? null;

  const showDetails = () => {
    const lines: string[] = [];
    const head = phase === 'running' ? 'Running' : phase === 'awaiting-approval' ? 'Waiting for approval' : phase[0]!.toUpperCase() + phase.slice(1);
    const at = currentStep !== null ? `, step ${currentStep} of 6 (${step(currentStep).name}): ${step(currentStep).status}` : '';
    lines.push(`**${head}**${at}`);
    if (awaitingGate !== null) {
      lines.push(
        `Waiting at the gate after step ${awaitingGate} (${step(awaitingGate).name}). Approve: \`gotong-worker approve ${runbookId} --step ${awaitingGate}\` ` +
          `· reject: \`gotong-worker reject ${runbookId} --step ${awaitingGate} --reason '...'\` · or here: Send Signal \`approve\` with \`{"step": ${awaitingGate}}\``,
      );
    }
    if (runningChild) lines.push(`Child run: \`${runningChild.workflowId}\``);
    const done = steps
      .filter((s) => s.status !== 'pending')
      .map((s) => `${s.number} ${s.name}: ${s.status}`)
      .join(' · ');
    if (done) lines.push(done);
    const v = currentStep === 3 ? step(3).verify : undefined;
    if (v) lines.push(`verify: created ${grouped(v.created)} · waiting ${grouped(v.waiting)} · delivered ${grouped(v.delivered)} · dead-lettered ${grouped(v.deadLettered)}`);
    const c = currentStep === 6 ? step(6).confirm : undefined;
    if (c) lines.push(`confirm: dead letters ${grouped(c.deadLetters)} (baseline ${grouped(c.baseline)}) · replayed still waiting ${grouped(c.replayWaiting)}`);
    if (lastRefusedDecision) lines.push(`Last refused decision: ${lastRefusedDecision.refusal}`);
    ui.details(lines.join('\n\n'));
  };

  setHandler(runbookProgressQuery, () => ({
    runKey: input.runKey,
    procedure,
    phase,
    currentStep,
    approval: input.approval,
    baseline: baseline(),
    steps,
    runningChild,
    lastRefusedDecision,
  }), { description: RUNBOOK_HANDLER_DESCRIPTIONS.progress });
  showDetails();

  // ---- gate decisions: the first one at the open gate wins; every other is refused with the reason ----

  const gateName = (n: StepNumber) => `the gate after step ${n} (${step(n).name})`;
  const where = () => {
    if (phase === 'completed') return 'it has completed';
    if (phase === 'stopped' || phase === 'cancelled') return `it ${phase} at step ${currentStep}`;
    if (currentStep === null) return 'it is starting';
    return `step ${currentStep} (${step(currentStep).name}) is ${step(currentStep).status}`;
  };
  const decided = (n: StepNumber): string | null => {
    const s = step(n);
    if (s.gate?.approvedBy === 'operator') return `${gateName(n)} was already approved by an operator${s.gate.reason ? ` (${s.gate.reason})` : ''}`;
    if (s.gate?.approvedBy === 'auto') return `${gateName(n)} was already passed on its checks`;
    if (s.status === 'rejected') return `${gateName(n)} was already rejected${s.gate?.reason ? ` (${s.gate.reason})` : ''}`;
    return null;
  };

  function refusal(d: GateDecision | undefined): string | null {
    if (d !== undefined && d !== null && typeof d !== 'object') return 'the decision must be an object such as {"step": 1, "reason": "..."}';
    if (d?.step !== undefined && !Number.isInteger(d.step)) return `step must be a whole number, not ${JSON.stringify(d.step)}`;
    if (d?.reason !== undefined && typeof d.reason !== 'string') return 'reason must be a string';
    if (input.approval === 'auto') return 'this run passes its gates on their checks alone (--approval auto); there is nothing to decide';
    const named = d?.step as StepNumber | undefined;
    if (named !== undefined && !GATE_STEPS.includes(named)) return `step ${named} has no gate; the gates follow steps ${GATE_STEPS.join(' and ')}`;
    if (named !== undefined && named !== awaitingGate) {
      return decided(named) ?? (awaitingGate !== null ? `the run waits at ${gateName(awaitingGate)}, not at the gate after step ${named}` : `the run is not waiting at ${gateName(named)}: ${where()}`);
    }
    if (awaitingGate === null) return `the run is not waiting at a gate: ${where()}`;
    if (decision !== null) return `${gateName(awaitingGate)} was already ${decision.approved ? 'approved' : 'rejected'}; the first decision stands`;
    return null;
  }

  function decide(approved: boolean, d: GateDecision | undefined, via: Decision['via']): GateAnswer {
    const n = awaitingGate!;
    decision = { approved, reason: d?.reason, via };
    return { step: n, name: step(n).name, decision: approved ? 'approved' : 'rejected', reason: d?.reason ?? null };
  }

  for (const [approved, update, signal] of [
    [true, approveUpdate, approveSignal],
    [false, rejectUpdate, rejectSignal],
  ] as const) {
    setHandler(update, (d) => decide(approved, d, 'update'), {
      description: approved ? RUNBOOK_HANDLER_DESCRIPTIONS.approveUpdate : RUNBOOK_HANDLER_DESCRIPTIONS.rejectUpdate,
      validator: (d) => {
        const why = refusal(d);
        if (why) throw ApplicationFailure.create({ type: 'DecisionRefused', message: why, nonRetryable: true });
      },
    });
    setHandler(signal, (d) => {
      const why = refusal(d);
      if (!why) {
        decide(approved, d, 'signal');
        return;
      }
      const asObject = typeof d === 'object' && d !== null ? d : undefined;
      lastRefusedDecision = {
        decision: approved ? 'approve' : 'reject',
        via: 'signal',
        step: typeof asObject?.step === 'number' ? asObject.step : null,
        reason: typeof asObject?.reason === 'string' ? asObject.reason : null,
        refusal: why,
      };
      showDetails();
    }, { description: approved ? RUNBOOK_HANDLER_DESCRIPTIONS.approveSignal : RUNBOOK_HANDLER_DESCRIPTIONS.rejectSignal });
  }

  // ---- steps ----

  const report = (outcome: RunbookOutcome, stoppedAt: StepNumber | null, reason: string | null): RunbookReport => ({
    outcome,
    stoppedAt,
    reason,
    baseline: baseline(),
    runKey: input.runKey,
    procedure,
    steps,
  });

  const stop = (n: StepNumber, status: 'failed' | 'rejected' | 'cancelled', message: string): never => {
    step(n).status = status;
    step(n).message = message;
    phase = 'stopped';
    ui.set([{ key: SEARCH_ATTRIBUTES.outcome, value: 'stopped' }]);
    showDetails();
    const reason = `step ${n} (${step(n).name}) ${status}: ${message}`;
    throw ApplicationFailure.create({ type: 'RunbookStopped', message: reason, nonRetryable: true, details: [report('stopped', n, reason)] });
  };

  const begin = (n: StepNumber) => {
    currentStep = n;
    step(n).status = 'running';
    ui.set([{ key: SEARCH_ATTRIBUTES.runbookStep, value: n }]);
    showDetails();
  };

  const cancelledFromHere = () => CancellationScope.current().consideredCancelled;

  /**
   * Starts a child under its fixed id. A run of that id still open belongs to an earlier run of this
   * runbook (reset, or terminated) whose close asked it to cancel: it works on the same ledger keys, so
   * the step waits for it to close (asking once more) rather than run beside it or fail on the id.
   */
  async function startTakingOver<H>(n: StepNumber, workflowId: string, start: () => Promise<H>): Promise<H> {
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await start();
        delete step(n).waitingFor;
        return handle;
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
        step(n).waitingFor = workflowId;
        if (attempt === 0) await getExternalWorkflowHandle(workflowId).cancel().catch(() => undefined);
        const ms = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5));
        await sleep(ms, { summary: `step ${n}: wait ${shortDuration(ms)} for ${workflowId} of an earlier run to close (look ${attempt + 1})` });
      }
    }
  }

  /** How a child that did not complete ended, for the step's status and message. */
  function childEnd(workflowId: string, err: unknown): ['failed' | 'cancelled', string] {
    const cause = err instanceof ChildWorkflowFailure ? err.cause : err;
    const after = 'its committed batches stay recorded; run the runbook on the same file again to continue';
    if (cause instanceof CancelledFailure) {
      return ['cancelled', `${workflowId} was cancelled from outside the runbook (an operator: the Temporal UI or 'temporal workflow cancel'); ${after}`];
    }
    if (cause instanceof TerminatedFailure) {
      return ['failed', `${workflowId} was terminated from outside the runbook (an operator: the Temporal UI or 'temporal workflow terminate'); ${after}`];
    }
    if (cause instanceof TimeoutFailure) return ['failed', `${workflowId} timed out (${cause.timeoutType})`];
    return ['failed', `${workflowId} did not finish: ${(cause as Error | undefined)?.message ?? String(err)}`];
  }

  async function runChild<R>(
    n: StepNumber,
    kind: RunningChild['kind'],
    runKey: string,
    start: (workflowId: string) => Promise<{ result(): Promise<R> }>,
  ): Promise<R> {
    const workflowId = runbookChildId(runbookId, n);
    step(n).workflowId = workflowId;
    step(n).runKey = runKey;
    runningChild = { step: n, workflowId, kind };
    showDetails();
    try {
      const handle = await startTakingOver(n, workflowId, () => start(workflowId));
      return await handle.result();
    } catch (err) {
      if (cancelledFromHere()) throw err;
      return stop(n, ...childEnd(workflowId, err));
    } finally {
      runningChild = null;
      showDetails();
    }
  }

  const backfill = (n: 1 | 2, runKey: string, dryRun: boolean): Promise<BackfillSummary> => {
    const args: BackfillInput = {
      runKey,
      path: input.path,
      dryRun,
      maxAttempts: input.maxAttempts,
      batchSize: input.batchSize,
      progressEvery: input.progressEvery,
      // A child is a new run: it gets today's default, and carries it from then on.
      batchesPerRun: BACKFILL_LIMITS.defaultBatchesPerRun,
    };
    return runChild(n, 'backfill', runKey, (workflowId) =>
      startChild(webhookBackfill, { workflowId, args: [args], parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL, ...childMetadata(n, backfillMetadata(args, undefined, `step ${n} of ${runbookId}`)) }),
    );
  };

  /** Step 4 (`keepSelection`), or step 5 bounded by what step 4 counted: its newest change, and the rows it kept. */
  const replay = (n: 4 | 5, dryRun: boolean, counted: { changedBefore?: string; selectedBy?: string; keepSelection?: true } = {}): Promise<ReplaySummary> => {
    const runKey = runbookReplayRunKey(input.runKey, n);
    const args: ReplayInput = {
      runKey,
      filter: {
        ...DEAD_LETTERS,
        ...(counted.changedBefore !== undefined ? { until: counted.changedBefore } : {}),
        ...(counted.selectedBy !== undefined ? { selectedBy: counted.selectedBy } : {}),
      },
      ...(counted.keepSelection ? { keepSelection: true } : {}),
      limit: input.replayLimit,
      dryRun,
      batchSize: input.replayBatchSize,
      ratePerSecond: 0,
      progressEvery: input.progressEvery,
      batchesPerRun: REPLAY_DEFAULT_BATCHES_PER_RUN,
    };
    return runChild(n, 'replay', runKey, (workflowId) =>
      startChild(webhookReplayDlq, { workflowId, args: [args], parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL, ...childMetadata(n, replayMetadata(args, undefined, `step ${n} of ${runbookId}`)) }),
    );
  };

  /**
   * A child's summary and details (metadata on the start command), and search attributes when this run has them: they
   * are part of the command, so only runs that have the patch (see RunUi) set them.
   */
  function childMetadata(n: StepNumber, m: RunMetadata) {
    return {
      staticSummary: m.staticSummary,
      staticDetails: `${m.staticDetails}\n\nStarted by the runbook \`${runbookId}\` for step ${n} (${step(n).name}).`,
      ...(ui.hasSearchAttributes ? { typedSearchAttributes: [...m.typedSearchAttributes, { key: SEARCH_ATTRIBUTES.runbookStep, value: n }] } : {}),
    };
  }

  /** Waits for an operator's decision in manual mode; in auto mode the automatic checks were the gate. */
  async function gate(n: StepNumber): Promise<void> {
    if (input.approval === 'manual') {
      // The workflow task that opens a gate must issue a command (this patch's marker, one id per gate: a patch
      // records its marker once per run). One that issues none is merged, by a worker replaying the run (after a
      // restart or a deploy), with the task that brings the decision; the SDK runs update validators and signal
      // handlers before the other jobs of a task, so the validator would see the step still running and refuse the
      // decision (test/upgrade.test.ts). Runs begun before the marker replay without it.
      patched(`${GATE_OPENS_WITH_A_MARKER}-${n}`);
      step(n).status = 'awaiting-approval';
      phase = 'awaiting-approval';
      awaitingGate = n;
      decision = null;
      ui.outcome('awaiting-approval');
      showDetails();
      await condition(() => decision !== null);
      const made: Decision = decision!;
      awaitingGate = null;
      phase = 'running';
      ui.outcome('running');
      showDetails();
      step(n).gate = { ...step(n).gate, ...(made.approved ? { approvedBy: 'operator' } : {}), decidedVia: made.via, reason: made.reason };
      if (!made.approved) stop(n, 'rejected', `an operator rejected the gate${made.reason ? `: ${made.reason}` : ''}`);
    } else {
      step(n).gate = { ...step(n).gate, approvedBy: 'auto' };
    }
    step(n).status = 'passed';
  }

  /**
   * Looks at the outbox every pollMs (durable timers) until `check` settles or the deadline passes; one
   * last look runs at the deadline. Continues as new every pollsPerRun looks, carrying the deadline.
   */
  async function waitUntil(n: 3 | 6, deadline: number, check: (summary: string) => Promise<'done' | 'wait' | 'hopeless'>): Promise<'done' | 'hopeless' | 'timeout'> {
    // From the input (the client passes it), or the frozen fallback: a later default never changes a run in flight.
    const pollsPerRun = runbookPollsPerRun(input);
    const what = n === 3 ? 'verify' : 'confirm';
    for (let polls = 1; ; polls++) {
      const outcome = await check(`${what} poll ${polls} of step ${n}`);
      showDetails();
      if (outcome !== 'wait') return outcome;
      const now = workflowNow();
      if (now >= deadline) return 'timeout';
      if (polls >= pollsPerRun || workflowInfo().continueAsNewSuggested) {
        await continueAsNew<typeof webhookRecoveryRunbook>({ ...input, pollsPerRun, resume: { at: n, deadline, procedure: procedure!, steps, lastRefusedDecision } });
      }
      const ms = Math.min(input.pollMs, deadline - now);
      await sleep(ms, { summary: `wait ${shortDuration(ms)} before ${what} poll ${polls + 1} of step ${n}` });
    }
  }

  /** The file's fingerprint, and the procedure this run belongs to (with its baseline). */
  async function prepare(): Promise<RunbookProcedure> {
    let fingerprint;
    try {
      fingerprint = await activities('check the file and take its fingerprint').inspectBackfillFile(input.path);
    } catch (err) {
      if (cancelledFromHere()) throw err;
      const cause = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
      return stop(1, 'failed', `cannot read the file: ${cause}`);
    }
    const { workflowId, runId } = workflowInfo();
    return activities('record the run; take the dead-letter baseline').beginRunbook({ runKey: input.runKey, workflowId, runId, path: input.path, fingerprint, baseline: input.baseline });
  }

  async function stepsFrom(from: 1 | 3 | 6): Promise<RunbookReport> {
    if (from === 1) {
      procedure = await prepare();

      // Step 1: dry run of the file against the outbox as it is now; gate on the share of failed lines.
      begin(1);
      const dry = await backfill(1, `${input.runKey}/step-1`, true);
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

      // Step 2: execute, under the procedure's key: a run that continues a stopped one resumes its backfill.
      begin(2);
      step(2).backfill = counters(await backfill(2, `${procedure.key}/step-2`, false));
      step(2).status = 'passed';
      begin(3);
    }

    if (from <= 3) {
      // Step 3: wait until the file's events are delivered (or dead-lettered) and enough of them were delivered.
      const created = step(2).backfill!.created;
      // Only the events the runbook's backfill created are judged: ids already in the outbox may be live traffic, not
      // the file's. With none created there is nothing to wait for, and a pass on zeros would read as delivery verified
      // while the file's events (from a backfill run outside the runbook, say) may still be waiting.
      if (created === 0 && patched(VERIFY_SKIPS_WHEN_NOTHING_CREATED)) {
        step(3).verify = { created: 0, waiting: 0, delivered: 0, deadLettered: 0, successRate: null };
        step(3).status = 'skipped';
        step(3).message = nothingCreated(step(2).backfill!);
      } else {
        const sourceRun = step(2).runKey!;
        const verify = async (summary: string): Promise<'done' | 'wait' | 'hopeless'> => {
          const metrics = await activities(summary).outboxMetrics({ sourceRun });
          const run = metrics.run ?? { waiting: 0, deadLettered: 0 };
          const delivered = created - run.waiting - run.deadLettered;
          const finished = delivered + run.deadLettered;
          const figures: VerifyFigures = {
            created,
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
        const verified = await waitUntil(3, resume?.at === 3 ? resume.deadline : workflowNow() + input.verifyTimeoutMs, verify);
        if (verified !== 'done') {
          const f = step(3).verify!;
          const rate = f.successRate === null ? 'n/a' : percent(f.successRate);
          const figures =
            `waiting=${f.waiting} (allowed ${input.verifyMaxBacklog}) delivered=${f.delivered} dead_lettered=${f.deadLettered} ` +
            `success_rate=${rate} (needed ${percent(input.verifyMinSuccessRate)})`;
          stop(3, 'failed', verified === 'timeout' ? `timed out after ${duration(input.verifyTimeoutMs)}: ${figures}` : `the receiver rejected too many: ${figures}`);
        }
        step(3).status = 'passed';
      }

      // Step 4: replay dry run; gate.
      begin(4);
      const preview = await replay(4, true, patched(DRY_RUN_KEEPS_WHAT_IT_COUNTED) ? { keepSelection: true } : {});
      step(4).replay = { ...replayCounters(preview), dryRun: true, preview: preview.preview };
      const nothingToReplay = preview.replayed === 0;
      if (nothingToReplay) step(4).status = 'passed';
      else await gate(4);

      // Step 5: replay execute (nothing to do when the dry run matched nothing).
      if (nothingToReplay) {
        step(5).status = 'skipped';
        step(5).message = 'the dry run matched no dead letters';
      } else {
        begin(5);
        // The gate approved the rows the dry run counted. Dead letters that arrived since (step 2's events still
        // exhausting their retries, say) are not in that count: step 5 resets the rows step 4 kept, those still dead
        // letters, and step 6 names the others if they keep the count above the baseline. The bound on the newest
        // change step 4 counted is for workers older than the kept rows (they ignore selectedBy): with the same limit
        // and order it leaves out all but rows written by a transaction that began before the dry run and committed
        // after it. A dry run on a worker older than both passes neither.
        const bounded = patched(EXECUTE_RESETS_WHAT_THE_DRY_RUN_COUNTED);
        const bound = bounded ? preview.preview?.changedBefore : undefined;
        const selectedBy = bounded && preview.preview?.selectionKept ? preview.runKey : undefined;
        if (selectedBy !== undefined) step(5).message = `only the dead letters the dry run counted${bound ? ` (changed before ${bound})` : ''}`;
        else if (bound !== undefined) step(5).message = `only dead letters changed before ${bound}, as the dry run counted`;
        else if (bounded) step(5).message = 'every dead letter up to the limit: the dry run ran on a worker too old to name its bound';
        step(5).replay = { ...replayCounters(await replay(5, false, { changedBefore: bound, selectedBy })), dryRun: false };
        step(5).status = 'passed';
      }
      begin(6);
    }

    // Step 6: the replayed events are settled and the dead letters are back to the procedure's baseline.
    const target = procedure!.baseline;
    const replayRun = step(5).status === 'passed' ? step(5).runKey : undefined;
    const confirm = async (summary: string): Promise<'done' | 'wait'> => {
      const metrics = await activities(summary).outboxMetrics(replayRun ? { replayRun } : {});
      const replayWaiting = metrics.run?.waiting ?? 0;
      step(6).confirm = { deadLetters: metrics.deadLetters, baseline: target, replayWaiting };
      return replayWaiting === 0 && metrics.deadLetters <= target ? 'done' : 'wait';
    };
    if ((await waitUntil(6, resume?.at === 6 ? resume.deadline : workflowNow() + input.confirmTimeoutMs, confirm)) !== 'done') {
      const figures = step(6).confirm!;
      const remaining = await activities('step 6: list the dead letters still left').previewReplay({ filter: { ...DEAD_LETTERS }, limit: 100_000 });
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
    return report('completed', null, null);
  }

  try {
    const done = await stepsFrom(resume?.at ?? 1);
    await activities('record the run as completed').finishRunbook({ runKey: input.runKey, outcome: 'completed', stoppedAt: null, reason: null });
    currentStep = null;
    phase = 'completed';
    ui.outcome('completed');
    showDetails();
    return done;
  } catch (err) {
    if (!(err instanceof ContinueAsNew) && !(err instanceof ApplicationFailure && err.type === 'RunbookStopped')) ui.ended(err);
    if (err instanceof ContinueAsNew || procedure === null) throw err;
    if (cancelledFromHere()) {
      // The runbook itself was cancelled (its running child with it): the record says so, then the run ends cancelled.
      if (currentStep !== null) {
        step(currentStep).status = 'cancelled';
        step(currentStep).message = 'the runbook was cancelled';
      }
      phase = 'cancelled';
      showDetails();
      await CancellationScope.nonCancellable(() =>
        activities('record the run as cancelled').finishRunbook({ runKey: input.runKey, outcome: 'cancelled', stoppedAt: currentStep, reason: 'the runbook was cancelled' }),
      );
    } else if (err instanceof ApplicationFailure && err.type === 'RunbookStopped') {
      await activities('record the run as stopped').finishRunbook({ runKey: input.runKey, outcome: 'stopped', stoppedAt: currentStep, reason: err.message });
    }
    throw err;
  }
}

/** Why step 3 has nothing to judge: what step 2 found instead of new events. */
function nothingCreated(backfill: { duplicates: number; failed: number }): string {
  const found = [
    backfill.duplicates > 0 ? `${grouped(backfill.duplicates)} already in the outbox` : '',
    backfill.failed > 0 ? `${grouped(backfill.failed)} failed lines` : '',
  ].filter(Boolean);
  return (
    `nothing to verify: step 2 created no events${found.length ? ` (${found.join(', ')})` : ''}; this step judges only ` +
    'the events the runbook\'s backfill creates, not ids already in the outbox (live traffic, or a backfill run outside ' +
    'the runbook); see where the outbox stands with: gotong-worker outbox stats'
  );
}

function counters(s: BackfillSummary) {
  return { processed: s.processed, created: s.created, enqueued: s.enqueued, duplicates: s.duplicates, failed: s.failed, dryRun: s.dryRun };
}

function replayCounters(s: ReplaySummary) {
  return { processed: s.processed, replayed: s.replayed, enqueued: s.enqueued, skipped: s.skipped, failed: s.failed };
}
