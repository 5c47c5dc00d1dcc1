/**
 * CPU time of processes and of the whole machine, read from /proc (Linux), for benchmarks that say where the time
 * goes: a worker, PostgreSQL backends, the receiver, the Temporal dev server.
 */
import { readdirSync, readFileSync } from 'node:fs';

const CLK_TCK = 100;

/** CPU seconds (user + system) a process has used, or null once it is gone. */
export function cpuOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** Every process below `root`. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const parent = parentOf(pid);
    if (parent !== null) children.set(parent, [...(children.get(parent) ?? []), pid]);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    for (const child of children.get(stack.pop()!) ?? []) {
      out.push(child);
      stack.push(child);
    }
  }
  return out;
}

/** Busy and total CPU seconds of the whole machine, all cores. */
export function machineCpu(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = fields[3]! + fields[4]!;
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
}

/** CPU used by a changing set of processes since `start()`: each counted from when it was first seen. */
export class CpuTally {
  private readonly first = new Map<number, number>();
  private readonly last = new Map<number, number>();
  see(pids: number[]): void {
    for (const pid of pids) {
      const cpu = cpuOf(pid);
      if (cpu === null) continue;
      if (!this.first.has(pid)) this.first.set(pid, cpu);
      this.last.set(pid, cpu);
    }
  }
  seconds(pids?: number[]): number {
    let sum = 0;
    for (const [pid, cpu] of this.last) if (!pids || pids.includes(pid)) sum += cpu - this.first.get(pid)!;
    return sum;
  }
}
