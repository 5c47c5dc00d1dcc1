/** Workflows of the Worker Deployment Versioning probe (probe.ts): which build served each step. */
import { condition, defineSignal, makeContinueAsNewFunc, proxyActivities, setHandler, setWorkflowOptions } from '@temporalio/workflow';

const { whoAmI } = proxyActivities<{ whoAmI(): Promise<string> }>({ startToCloseTimeout: '10 seconds' });
export const goSignal = defineSignal('go');

/** Waits for `go`, asks which build runs its activity; with `then`, continues as new once (how, see below). */
async function probe(then: 'end' | 'continue' | 'continue-auto-upgrade', seen: string[]): Promise<string[]> {
  let go = false;
  setHandler(goSignal, () => {
    go = true;
  });
  await condition(() => go);
  const now = [...seen, await whoAmI()];
  if (then === 'end') return now;
  const next = makeContinueAsNewFunc<typeof pinnedProbe>(then === 'continue-auto-upgrade' ? { initialVersioningBehavior: 'AUTO_UPGRADE' } : {});
  return next('end', now);
}

/** The worker's default behaviour (the probe's workers say PINNED). */
export async function pinnedProbe(then: 'end' | 'continue' | 'continue-auto-upgrade', seen: string[] = []): Promise<string[]> {
  return probe(then, seen);
}

export async function autoUpgradeProbe(then: 'end' | 'continue' | 'continue-auto-upgrade', seen: string[] = []): Promise<string[]> {
  return probe(then, seen);
}
setWorkflowOptions({ versioningBehavior: 'AUTO_UPGRADE' }, autoUpgradeProbe);
