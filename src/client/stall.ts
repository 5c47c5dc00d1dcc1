import type { WorkflowHandle } from '@temporalio/client';
import { type Output, UsageError } from './errors';
import { printable, shellWord } from './text';

/** Seconds without a new checkpoint before an attached command says why the run is not moving (GOTONG_STALL_NOTICE_S). */
export const DEFAULT_STALL_NOTICE_S = 60;
const MAX_STALL_NOTICE_S = 86_400;

/** GOTONG_STALL_NOTICE_S as milliseconds; unset or empty: the default. */
export function stallNoticeMsFrom(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.GOTONG_STALL_NOTICE_S;
  if (!text) return DEFAULT_STALL_NOTICE_S * 1000;
  const seconds = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(seconds >= 1 && seconds <= MAX_STALL_NOTICE_S)) {
    throw new UsageError(`GOTONG_STALL_NOTICE_S must be a whole number of seconds from 1 to ${MAX_STALL_NOTICE_S}`);
  }
  return seconds * 1000;
}

/** While the reason stays the same, it is said again this often, so a quiet terminal does not read as a hang. */
const STALL_REMINDER_MS = 5 * 60_000;
/** A stalled run is described (one describe, one task-queue call) at most this often. */
const DIAGNOSE_EVERY_MS = 15_000;
/** How long describing may take: the look that waits for it also prints the run's lines and its ending. */
const DESCRIBE_SECONDS = 5;
/** A worker long-polls for about a minute: one not seen for longer than this has gone. */
const POLLER_SEEN_WITHIN_MS = 90_000;

/** What an attached command learns of a run at each look; undefined when no worker answered. */
export interface ProgressSeen {
  processed: number;
  phase?: string;
}

/** Why a run is not moving: `key` names the cause (said again only when it changes), `text` says it with its figures. */
export interface StallReason {
  key: string;
  text: string;
}

/**
 * Says on stderr why a followed run has not moved for a while (no worker, paused, an activity retrying and why, a
 * long batch), and when it moves again. Without it an attached command prints nothing while a database restart has
 * every batch retrying, and the operator cannot tell that from a hang.
 */
export class StallNotice {
  private lastMoveAt = Date.now();
  private last: ProgressSeen | undefined;
  private said: string | undefined;
  private saidAt = 0;
  private describedAt = 0;
  private closed = false;

  constructor(
    private readonly label: string,
    private readonly handle: Pick<WorkflowHandle, 'workflowId' | 'describe' | 'client'>,
    private readonly out: Output,
    private readonly afterMs: number,
    /** Shorter in unit tests. */
    private readonly pace = { diagnoseEveryMs: DIAGNOSE_EVERY_MS, reminderMs: STALL_REMINDER_MS },
  ) {}

  /** The server did not answer: that time is the outage notice's to tell, not the run's stall. */
  outage(): void {
    this.lastMoveAt = Date.now();
  }

  /** The run closed or the command stops following it: nothing more is said. */
  close(): void {
    this.closed = true;
  }

  async observe(progress: ProgressSeen | undefined): Promise<void> {
    if (this.closed) return;
    const now = Date.now();
    if (progress && (progress.processed !== this.last?.processed || progress.phase !== this.last?.phase)) {
      const before = this.last;
      const stalledFor = Math.round((now - this.lastMoveAt) / 1000);
      this.last = { processed: progress.processed, phase: progress.phase };
      this.lastMoveAt = now;
      if (this.said !== undefined) {
        this.said = undefined;
        this.out.err(`[${this.label}] ${movedText(before, progress, stalledFor)}`);
      }
      return;
    }
    if (now - this.lastMoveAt < this.afterMs || now - this.describedAt < this.pace.diagnoseEveryMs) return;
    this.describedAt = now;
    let reason: StallReason | null;
    try {
      reason = await this.handle.client.connection.withDeadline(Date.now() + DESCRIBE_SECONDS * 1000, () => whyNotMoving(this.handle, this.last?.phase));
    } catch {
      // The server does not answer (the outage notice speaks for that), or not in time: the next look asks again.
      return;
    }
    if (reason === null || this.closed) return;
    if (reason.key !== this.said || now - this.saidAt >= this.pace.reminderMs) {
      this.out.err(`[${this.label}] no progress for ${Math.round((now - this.lastMoveAt) / 1000)}s: ${reason.text}`);
      this.said = reason.key;
      this.saidAt = now;
    }
  }
}

function movedText(before: ProgressSeen | undefined, now: ProgressSeen, stalledFor: number): string {
  if (before === undefined) return `a worker answers after ${stalledFor}s; following the run`;
  if (now.processed !== before.processed) return `moving again after ${stalledFor}s without progress`;
  if (now.phase === 'paused') return 'now paused';
  if (before.phase === 'paused') return `resumed after ${stalledFor}s; waiting for its next batch`;
  return `now ${now.phase ?? 'running'}`;
}

/**
 * Why a running run has made no progress, from its own state as the server describes it; null: it has closed.
 * The cause that the operator must act on first comes first: no worker at all (a paused run or a retrying
 * activity waits for one too), then a pause, then an activity's failures.
 */
export async function whyNotMoving(handle: Pick<WorkflowHandle, 'workflowId' | 'describe' | 'client'>, phase: string | undefined): Promise<StallReason | null> {
  const description = await handle.describe();
  if (description.status.name !== 'RUNNING') return null;
  const taskQueue = description.taskQueue;
  if (!(await workerSeen(handle, taskQueue))) {
    return { key: 'no-worker', text: `no worker is polling task queue '${printable(taskQueue)}'; the run waits until one starts ('gotong-worker worker')` };
  }
  if (phase === 'paused') {
    const namespace = handle.client.options.namespace;
    const ns = namespace === 'default' ? '' : ` --namespace ${shellWord(namespace)}`;
    return {
      key: 'paused',
      text:
        `the run is paused; it goes on when it gets the 'resume' signal (Temporal UI: Send Signal, name resume; or ` +
        `temporal workflow signal --workflow-id ${shellWord(printable(handle.workflowId))}${ns} --name resume)`,
    };
  }
  const pending = description.raw.pendingActivities ?? [];
  const retrying = pending.find((a) => (a.attempt ?? 1) > 1 && a.lastFailure);
  if (retrying) {
    const failure = innermostMessage(retrying.lastFailure);
    return {
      key: `retrying:${activityName(retrying)}:${failure}`,
      text:
        `its ${activityName(retrying)} activity is retrying (attempt ${retrying.attempt}; last failure: ${failure}); ` +
        'it goes on by itself once that clears, or cancel the run in the Temporal UI',
    };
  }
  const started = pending.find((a) => a.lastStartedTime);
  if (started) {
    const since = timestampMs(started.lastStartedTime);
    const running = since === undefined ? '' : ` for ${Math.max(0, Math.round((Date.now() - since) / 1000))}s`;
    return {
      key: `running:${activityName(started)}`,
      text: `its ${activityName(started)} activity has been running${running} (attempt ${started.attempt ?? 1}) without finishing a batch`,
    };
  }
  if (pending.length > 0) {
    return { key: `scheduled:${activityName(pending[0]!)}`, text: `its ${activityName(pending[0]!)} activity is scheduled and waits for a worker to take it` };
  }
  return { key: 'waiting', text: 'the run is waiting, with no activity pending (see it in the Temporal UI)' };
}

type Description = Awaited<ReturnType<WorkflowHandle['describe']>>;
type PendingActivity = NonNullable<Description['raw']['pendingActivities']>[number];
type Failure = PendingActivity['lastFailure'];

const activityName = (a: PendingActivity) => printable(a.activityType?.name ?? 'unknown');

/** The failure's innermost cause: the activity's own error, not Temporal's wrapping of it. */
function innermostMessage(failure: Failure): string {
  let message = '';
  for (let f = failure, depth = 0; f && depth < 20; f = f.cause, depth++) {
    if (f.message) message = f.message;
  }
  return printable(message.split('\n')[0] ?? '') || 'no message';
}

async function workerSeen(handle: Pick<WorkflowHandle, 'client'>, taskQueue: string): Promise<boolean> {
  const response = await handle.client.workflowService.describeTaskQueue({
    namespace: handle.client.options.namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: 1, // workflow task queue
  });
  return (response.pollers ?? []).some((p) => {
    const seen = timestampMs(p.lastAccessTime);
    return seen === undefined || Date.now() - seen <= POLLER_SEEN_WITHIN_MS;
  });
}

function timestampMs(t: { seconds?: { toNumber(): number } | number | null; nanos?: number | null } | null | undefined): number | undefined {
  if (!t?.seconds) return undefined;
  const seconds = typeof t.seconds === 'number' ? t.seconds : t.seconds.toNumber();
  return seconds * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
}
