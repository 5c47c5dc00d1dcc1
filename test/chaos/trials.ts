import { isDeepStrictEqual } from 'node:util';
import { resetTables, waitFor } from '../helpers/harness';
import { checkRows } from './checks';
import { ChaosStack } from './stack';
import { startWorkload, WORKLOADS, type WorkloadKind } from './workloads';

export const FAULTS = ['kill-worker', 'restart-postgres', 'restart-temporal'] as const;
export type Fault = (typeof FAULTS)[number];

export interface TrialPlan {
  trial: number;
  fault: Fault;
  workload: WorkloadKind;
  /** Share of the run done when the fault strikes. */
  moment: number;
  /** The worker a kill-worker trial kills (0 or 1). */
  victim: number;
}

export interface TrialResult {
  plan: TrialPlan;
  passed: boolean;
  summaryEqual: boolean;
  lost: number;
  doubled: number;
  resent: number;
  seconds: number;
  problems: string[];
}

/** A small seeded generator (mulberry32): the same seed gives the same moments and victims. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Faults rotate every trial and workloads shift every three, so any three trials in a row cover each fault, and
 * nine cover every pairing: the first three are a kill in a backfill, a PostgreSQL restart in a replay and a
 * Temporal restart in a delivery drain.
 */
export function planTrials(count: number, seed: number): TrialPlan[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, (_, trial) => ({
    trial: trial + 1,
    fault: FAULTS[trial % 3]!,
    workload: WORKLOADS[(trial + Math.floor(trial / 3)) % 3]!,
    moment: Math.round((0.1 + 0.6 * random()) * 100) / 100,
    victim: random() < 0.5 ? 0 : 1,
  }));
}

export function faultLabel(plan: TrialPlan): string {
  if (plan.fault === 'kill-worker') return `SIGKILL worker ${plan.victim + 1}`;
  return plan.fault === 'restart-postgres' ? 'restart PostgreSQL' : 'restart Temporal';
}

async function strike(stack: ChaosStack, plan: TrialPlan): Promise<void> {
  if (plan.fault === 'kill-worker') await stack.killWorker(plan.victim);
  else if (plan.fault === 'restart-postgres') await stack.restartPostgres();
  else await stack.restartTemporal();
}

export interface TrialOptions {
  /** Events in each run (a backfill's file has as many distinct events, plus duplicates and broken lines). */
  events: number;
  /** A name unique to this chaos run, so event ids and files of separate runs never meet. */
  runName: string;
  /** Epoch ms by which the trial must be over. */
  deadline: number;
}

/** Runs one workload, strikes once it is `moment` done, waits for it to finish and drain, and checks it all. */
export async function runTrial(stack: ChaosStack, plan: TrialPlan, opts: TrialOptions): Promise<TrialResult> {
  const started = Date.now();
  const result: TrialResult = { plan, passed: false, summaryEqual: false, lost: 0, doubled: 0, resent: 0, seconds: 0, problems: [] };
  const until = (what: string, check: () => Promise<boolean>, everyMs: number) =>
    waitFor(what, async () => (stack.assertWorkersAlive(), check()), Math.max(1, opts.deadline - Date.now()), everyMs);
  await resetTables(stack.pool);
  stack.receiver.received.length = 0;
  const work = await startWorkload(plan.workload, stack, `${opts.runName}-t${plan.trial}`, opts.events);
  try {
    const atMoment = async () => (await work.done()) || (await work.progress().catch(() => 0)) >= plan.moment;
    await until(`${Math.round(plan.moment * 100)}% of the ${plan.workload}`, atMoment, 20);
    if (await work.done()) result.problems.push('the run was over before the fault struck');
    await strike(stack, plan);
    await until(`the ${plan.workload} to finish`, () => work.done(), 100);
    const delivered = async () => {
      const { rows } = await stack.pool.query<{ n: string }>(`SELECT count(*) AS n FROM webhook_outbox WHERE status = 'delivered'`);
      return Number(rows[0]!.n) >= work.ids.length;
    };
    await until('every event delivered', () => delivered().catch(() => false), 100);
    const { summary, expected, problems } = await work.outcome();
    result.summaryEqual = isDeepStrictEqual(summary, expected);
    if (!result.summaryEqual) result.problems.push(`summary ${JSON.stringify(summary)}, a clean run's ${JSON.stringify(expected)}`);
    const rows = await checkRows(stack, work.ids);
    Object.assign(result, { lost: rows.lost, doubled: rows.doubled, resent: rows.resent });
    result.problems.push(...problems, ...rows.problems);
  } catch (err) {
    result.problems.push((err as Error).message);
    work.stop();
  }
  result.passed = result.problems.length === 0 && result.lost === 0 && result.doubled === 0;
  result.seconds = Math.round((Date.now() - started) / 1000);
  return result;
}

export interface ChaosOptions {
  trials: number;
  seed: number;
  events: number;
  timeLimitMs: number;
  log?: (line: string) => void;
}

/** Starts the stack, runs the planned trials one after another until done or out of time, and stops it all. */
export async function runChaos(opts: ChaosOptions): Promise<TrialResult[]> {
  const log = opts.log ?? (() => undefined);
  const deadline = Date.now() + opts.timeLimitMs;
  const stack = await ChaosStack.start(log);
  log(`stack ready in ${Math.round((Date.now() + opts.timeLimitMs - deadline) / 1000)} s`);
  const results: TrialResult[] = [];
  try {
    for (const plan of planTrials(opts.trials, opts.seed)) {
      if (Date.now() >= deadline) {
        log(`time limit reached: trials ${plan.trial}-${opts.trials} not run`);
        break;
      }
      const result = await runTrial(stack, plan, { events: opts.events, runName: `chaos-${opts.seed}`, deadline });
      log(`trial ${plan.trial}: ${faultLabel(plan)} at ${Math.round(plan.moment * 100)}% of a ${plan.workload}: ${outcomeText(result)} (${result.seconds} s)`);
      results.push(result);
    }
  } finally {
    await stack.stop();
  }
  return results;
}

export function outcomeText(r: TrialResult): string {
  return r.passed ? 'pass' : `FAIL: ${r.problems.join('; ') || 'rows lost or doubled'}`;
}

/** A Markdown table, as printed and as recorded in CHAOS.md. */
export function formatTable(results: TrialResult[]): string {
  const header = ['trial', 'fault', 'moment', 'outcome', 'summary = clean run', 'rows lost', 'rows doubled', 'resent', 'seconds'];
  const rows = results.map((r) => [
    String(r.plan.trial),
    faultLabel(r.plan),
    `${Math.round(r.plan.moment * 100)}% of a ${r.plan.workload}`,
    outcomeText(r).replace(/\|/g, '\\|'),
    r.summaryEqual ? 'yes' : 'no',
    String(r.lost),
    String(r.doubled),
    String(r.resent),
    String(r.seconds),
  ]);
  return [header, header.map(() => '---'), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}
