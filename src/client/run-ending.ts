import { CancelledFailure, TerminatedFailure, TimeoutFailure, WorkflowFailedError } from '@temporalio/client';

/** How a followed run ended without completing, in the spelling of `status` and `list` (`unknown`: its end could not be read). */
export type RunEndingStatus = 'failed' | 'canceled' | 'terminated' | 'timed_out' | 'unknown';

export interface RunEnding {
  status: RunEndingStatus;
  /** Why, as the run's own failure says it. */
  reason: string;
}

/** Failures nest (a cause of a cause); a bound keeps a malformed chain from looping. */
const MAX_CAUSE_DEPTH = 20;

function causeOf(err: unknown): unknown {
  return err !== null && typeof err === 'object' ? (err as { cause?: unknown }).cause : undefined;
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message.trim();
  return typeof err === 'string' ? err.trim() : '';
}

/** The error and its causes, outermost first. */
function causeChain(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && chain.length < MAX_CAUSE_DEPTH; e = causeOf(e)) chain.push(e);
  return chain;
}

/**
 * Why a run failed, in the words of whatever failed first. Temporal wraps that message ("Workflow execution
 * failed" around "Activity task failed" around the activity's own error), so the innermost message is the one
 * that names the cause and its fix. Messages only: a failure's details may carry payloads.
 */
export function failureReason(err: unknown): string {
  const messages = causeChain(err).map(messageOf).filter(Boolean);
  return messages.at(-1) ?? String(err);
}

/** What a rejected `result()` says about how the run ended. */
export function runEnding(err: unknown): RunEnding {
  if (!(err instanceof WorkflowFailedError)) return { status: 'unknown', reason: `cannot read how it ended: ${failureReason(err)}` };
  const cause = err.cause;
  const status: RunEndingStatus =
    cause instanceof CancelledFailure
      ? 'canceled'
      : cause instanceof TerminatedFailure
        ? 'terminated'
        : cause instanceof TimeoutFailure
          ? 'timed_out'
          : 'failed';
  return { status, reason: failureReason(err) };
}

const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_UNAVAILABLE = 14;
const NETWORK_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'EAI_AGAIN']);
const NETWORK_ERROR_TEXT = /ECONNREFUSED|ECONNRESET|connection refused|No connection established/i;
const TLS_ERROR_TEXT = /certificate|self[- ]signed|SSL routines|TLS handshake|handshake failure|ERR_TLS/i;

/** True when a call to the Temporal server (or the client's own deadline for it) ran out of time. */
export function isDeadlineExceeded(err: unknown): boolean {
  return causeChain(err).some((e) => (e as { code?: unknown } | null)?.code === GRPC_DEADLINE_EXCEEDED);
}

/**
 * True when `err` says the Temporal server could not be reached or did not answer in time (the SDK wraps
 * such a gRPC error, e.g. in "Failed to get Workflow execution history"), which the next attempt may not
 * meet; false for a run's own ending, however its message reads.
 */
export function isTemporalUnreachable(err: unknown): boolean {
  if (err instanceof WorkflowFailedError) return false;
  const chain = causeChain(err);
  // A certificate that expired or does not match fails every reconnect the same way: not an outage to wait out.
  if (chain.some((e) => TLS_ERROR_TEXT.test(messageOf(e)))) return false;
  return chain.some((e) => {
    const code = (e as { code?: unknown } | null)?.code;
    if (code === GRPC_UNAVAILABLE || code === GRPC_DEADLINE_EXCEEDED) return true;
    if (typeof code === 'string' && NETWORK_ERROR_CODES.has(code)) return true;
    return NETWORK_ERROR_TEXT.test(messageOf(e));
  });
}
