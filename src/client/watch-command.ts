import { WorkflowNotFoundError } from '@temporalio/client';
import { backfillView } from './backfill';
import { RunError, type Output } from './errors';
import { wantsBar } from './progress-bar';
import { replayView } from './replay';
import { followRunbook } from './runbook';
import { stallNoticeMsFrom } from './stall';
import { printable } from './text';
import { connectClient, followRun } from './watch';

export interface WatchCommandOptions {
  json: boolean;
  plain: boolean;
  /** Default: a backfill's or replay's own checkpoint step; the runbook command's default for a runbook. */
  progressEvery?: number;
}

/** The runbook command's --progress-every default, for its children's lines when watching a runbook. */
const RUNBOOK_PROGRESS_EVERY = 1000;

/**
 * `watch <workflow-id>`: attaches to a backfill, replay or runbook run by id, running or finished, and
 * prints what the command that started it prints from then on: progress lines (or a bar on a terminal),
 * then the summary; exit codes as that command's.
 */
export async function runWatch(workflowId: string, opts: WatchCommandOptions, out: Output): Promise<void> {
  stallNoticeMsFrom(); // a bad GOTONG_STALL_NOTICE_S is a usage error, said before anything else
  const { client, connection, target } = await connectClient();
  try {
    const handle = client.workflow.getHandle(workflowId);
    let description;
    try {
      description = await handle.describe();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        throw new RunError(
          `[watch] no run with workflow id ${printable(workflowId)} in namespace ${target.namespace}; ` +
            "the commands print it when they start a run (or list them: 'temporal workflow list')",
        );
      }
      throw new RunError(`[watch] cannot read ${printable(workflowId)}: ${(err as Error).message}`);
    }
    out.err(`[watch] ${printable(workflowId)}: ${description.type}, ${description.status.name.toLowerCase()}`);
    const follow = { from: 'now', progressEvery: opts.progressEvery, bar: wantsBar(opts.plain), namespace: target.namespace, address: target.address } as const;
    switch (description.type) {
      case 'webhookBackfill': {
        const view = backfillView({ json: opts.json });
        view.printSummary(await followRun(handle, workflowId, view, out, follow), workflowId, out);
        return;
      }
      case 'webhookReplayDlq': {
        const view = replayView({ json: opts.json });
        view.printSummary(await followRun(handle, workflowId, view, out, follow), workflowId, out);
        return;
      }
      case 'webhookRecoveryRunbook':
        await followRunbook(handle, workflowId, target, { progressEvery: opts.progressEvery ?? RUNBOOK_PROGRESS_EVERY, json: opts.json }, out);
        return;
      default:
        throw new RunError(
          `[watch] ${printable(workflowId)} is a ${description.type} run; watch follows webhook-backfill, webhook-replay-dlq and webhook-runbook runs`,
        );
    }
  } finally {
    await connection.close();
  }
}
