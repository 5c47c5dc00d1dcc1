import { statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';

/** A loopback port nothing listens on right now (a child server is then told to take it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Whether a user other than the owner can reach `dir`: every directory on the way grants `othersMode` to others
 * (search, 0o001, by default; 0o005 to list it as well). A server run as the `postgres` user needs this of its binaries
 * and data directory.
 */
export function everyoneCanReach(dir: string, othersMode = 0o001): boolean {
  try {
    for (let d = dir; ; d = dirname(d)) {
      if ((statSync(d).mode & othersMode) !== othersMode) return false;
      if (dirname(d) === d) return true;
    }
  } catch {
    return false;
  }
}
