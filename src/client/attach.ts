import { isDeepStrictEqual } from 'node:util';
import type { Client } from '@temporalio/client';
import { printable } from './text';

/**
 * Attaching to a run never changes it: it keeps the options it was started with. An operator who types the command
 * again with other flags (a lower --max-attempts, --approval auto) must hear that, not find out from the outbox.
 */

/** The operator's flags of a kind of run, by the input field each one sets. */
export type OptionFlags = Readonly<Record<string, string>>;

/**
 * The flags whose value in the running run differs from what this command asked for, as `--flag <running> (this
 * command: <asked>)`. Only fields named in `flags` count; the rest (run keys, carried state) differ by nature.
 */
export function optionsKeptByRun(running: Record<string, unknown>, asked: Record<string, unknown>, flags: OptionFlags): string[] {
  return Object.entries(flags)
    .filter(([field]) => field in asked && field in running && !isDeepStrictEqual(running[field], asked[field]))
    .map(([field, flag]) => `${flag} ${shown(running[field], field)} (this command: ${shown(asked[field], field)})`);
}

const shown = (value: unknown, field: string): string => {
  if (value === undefined || value === null) return 'unset';
  if (typeof value === 'object') return JSON.stringify(value);
  // The running input is whoever started the run's: never let it drive the operator's terminal.
  return printable(field.endsWith('Ms') ? `${String(value)} ms` : String(value));
};

/**
 * The input of the run now open under `workflowId` (after continue-as-new, the latest run's, which carries the same
 * options): the first event of its history only. Null when it cannot be read as JSON; the check is a courtesy, never a
 * reason to fail the command.
 */
export async function runningInput(client: Client, namespace: string, workflowId: string): Promise<Record<string, unknown> | null> {
  try {
    const { history } = await client.workflowService.getWorkflowExecutionHistory({
      namespace,
      execution: { workflowId },
      maximumPageSize: 1,
    });
    const payload = history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    const encoding = payload?.metadata?.encoding ? Buffer.from(payload.metadata.encoding).toString() : '';
    if (!payload?.data || encoding !== 'json/plain') return null;
    const input: unknown = JSON.parse(Buffer.from(payload.data).toString('utf8'));
    return input !== null && typeof input === 'object' ? (input as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
