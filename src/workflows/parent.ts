import { defineSignal, getExternalWorkflowHandle, workflowInfo } from '@temporalio/workflow';
import type { ChildProgress } from '../shared/runbook';

/** Sent by a backfill or replay run to the runbook that started it, so the runbook's `progress` shows live counters. */
export const childProgressSignal = defineSignal<[ChildProgress]>('childProgress');

/**
 * A workflow cannot query another, so a child pushes its counters to its parent after each batch
 * (a batch is thousands of lines, so this is a few signals a run). Runs without a parent send nothing.
 */
export function reportProgressToParent(kind: ChildProgress['kind'], counters: ChildProgress['counters']): void {
  const parent = workflowInfo().parent;
  if (!parent) return;
  getExternalWorkflowHandle(parent.workflowId)
    .signal(childProgressSignal, { workflowId: workflowInfo().workflowId, kind, counters })
    .catch(() => undefined);
}
