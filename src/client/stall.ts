import type { WorkflowHandle } from '@temporalio/client';
import { type Output, UsageError } from './errors';
import { printable } from './text';

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
/** A worker long-polls for about a minute: one not seen for longer than this has gone. */
const POLLER_SEEN_WITHIN_MS = 90_000;

/** What an attached command learns of a run at each look; undefined when no worker answered. */
export interface ProgressSeen {
  processed: number;
  phase?: string;
}

/**
 * Says on stderr why a followed run has not moved for a while (paused, an activity retrying and why, no worker, a
 * long batch), and when it moves again. Without it an attached command prints nothing while a database restart has
 * every batch retrying, and the operator cannot tell that from a hang.
 */
export class StallNotice {
  private lastMoveAt = Date.now();
  private last: ProgressSeen | undefined;
  private said: string | undefined;
  private saidAt = 0;
  private describedAt = 0;

  constructor(
    private readonly label: string,
    private readonly handle: WorkflowHandle,
    private readonly out: Output,
    private readonly afterMs: number,
  ) {}

  async observe(progress: ProgressSeen | undefined): Promise<void> {
    const now = Date.now();
    if (progress && (progress.processed !== this.last?.processed || progress.phase !== this.last?.phase)) {
      const stalledFor = now - this.lastMoveAt;
      this.last = { processed: progress.processed, phase: progress.phase };
      this.lastMoveAt = now;
      if (this.said !== undefined) {
        this.out.err(`[${this.label}] ${progress.phase === 'paused' ? 'paused' : 'moving again'} after ${Math.round(stalledFor / 1000)}s without progress`);
        this.said = undefined;
      }
      return;
    }
    if (now - this.lastMoveAt < this.afterMs || now - this.describedAt < DIAGNOSE_EVERY_MS) return;
    this.describedAt = now;
    let reason: string | null;
    try {
      reason = await whyNotMoving(this.handle, this.last?.phase);
    } catch {
      // The server does not answer: the outage notice speaks for that.
      return;
    }
    if (reason === null) return;
    if (reason !== this.said || now - this.saidAt >= STALL_REMINDER_MS) {
      this.out.err(`[${this.label}] no progress for ${Math.round((now - this.lastMoveAt) / 1000)}s: ${reason}`);
      this.said = reason;
      this.saidAt = now;
    }
  }
}

/** Why a running run has made no progress, from its own state as the server describes it; null: it has closed. */
export async function whyNotMoving(handle: WorkflowHandle, phase: string | undefined): Promise<string | null> {
  const description = await handle.describe();
  if (description.status.name !== 'RUNNING') return null;
  const id = handle.workflowId;
  if (phase === 'paused') {
    return (
      `the run is paused; it goes on when it gets the 'resume' signal (Temporal UI: Send Signal, name resume; or ` +
      `temporal workflow signal --workflow-id '${id}' --name resume)`
    );
  }
  const pending = description.raw.pendingActivities ?? [];
  const retrying = pending.find((a) => (a.attempt ?? 1) > 1 && a.lastFailure);
  if (retrying) {
    return (
      `its ${activityName(retrying)} activity is retrying (attempt ${retrying.attempt}; last failure: ${innermostMessage(retrying.lastFailure)}); ` +
      'it goes on by itself once that clears, or cancel the run in the Temporal UI'
    );
  }
  const taskQueue = description.taskQueue;
  if (!(await workerSeen(handle, taskQueue))) {
    return `no worker is polling task queue '${taskQueue}'; the run waits until one starts ('gotong-worker worker')`;
  }
  const started = pending.find((a) => a.lastStartedTime);
  if (started) {
    const since = timestampMs(started.lastStartedTime);
    const running = since === undefined ? '' : ` for ${Math.max(0, Math.round((Date.now() - since) / 1000))}s`;
    return `its ${activityName(started)} activity has been running${running} (attempt ${started.attempt ?? 1}) without finishing a batch`;
  }
  if (pending.length > 0) return `its ${activityName(pending[0]!)} activity is scheduled and waits for a worker to take it`;
  return 'the run is waiting, with no activity pending (see it in the Temporal UI)';
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

async function workerSeen(handle: WorkflowHandle, taskQueue: string): Promise<boolean> {
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
