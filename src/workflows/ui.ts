import {
  ContinueAsNew,
  getCurrentDetails,
  isCancellation,
  patched,
  setCurrentDetails,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { SearchAttributePair } from '@temporalio/common';
import { type OutcomeValue, SEARCH_ATTRIBUTES } from '../shared/run-metadata';

/**
 * Patch id guarding the search-attribute upserts (commands). Histories written before it carry none and replay
 * without them; the current details and the activity and timer summaries are metadata, not commands, and need none.
 */
export const OPERATOR_METADATA = 'operator-metadata';

/**
 * What a run tells the Temporal UI while it runs: its current details (markdown, no commands) and, for runs started
 * with the project's search attributes, their current values. A run started without them (the namespace lacks them)
 * never upserts: the server would fail the workflow task on an unknown attribute.
 */
export class RunUi {
  private readonly upserts: boolean;
  private readonly last = new Map<string, unknown>();

  constructor() {
    // Asked first, before any command, so every new run records the marker at the same place.
    const patchedIn = patched(OPERATOR_METADATA);
    const attrs = workflowInfo().typedSearchAttributes;
    this.upserts = patchedIn && attrs.get(SEARCH_ATTRIBUTES.kind) !== undefined;
    for (const key of Object.values(SEARCH_ATTRIBUTES)) this.last.set(key.name, attrs.get(key));
  }

  /** True when children started by this run may be given search attributes too. */
  get hasSearchAttributes(): boolean {
    return this.upserts;
  }

  details(text: string): void {
    if (getCurrentDetails() !== text) setCurrentDetails(text);
  }

  /** Upserts only what changed, so a loop that sets the same value writes no history. */
  set(pairs: SearchAttributePair[]): void {
    if (!this.upserts) return;
    const changed = pairs.filter((p) => this.last.get(p.key.name) !== p.value);
    if (changed.length === 0) return;
    for (const p of changed) this.last.set(p.key.name, p.value);
    upsertSearchAttributes(changed);
  }

  outcome(value: OutcomeValue): void {
    this.set([{ key: SEARCH_ATTRIBUTES.outcome, value }]);
  }

  /** The outcome of a run ending by `err`; a continue-as-new goes on as the same logical run. */
  ended(err: unknown): void {
    if (err instanceof ContinueAsNew) return;
    this.outcome(isCancellation(err) ? 'cancelled' : 'failed');
  }
}

/** "1.5 s", "2 m": timer summaries. */
export function shortDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${Math.round(ms / 100) / 10} s`;
  return `${Math.round(ms / 6_000) / 10} min`;
}

export function percentOf(done: number, total: number): string {
  return total > 0 ? `${Math.floor((done / total) * 100)}%` : '0%';
}
