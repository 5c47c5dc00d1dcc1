import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, type Pool } from 'pg';
import { createPool } from '../src/db/pool';
import { MIGRATIONS_DIR, MigrationLockTimeout, migrate, recreateDatabase, splitSqlStatements } from '../src/db/migrate';
import { getHarness, runCli } from './helpers/harness';

/** Migration directories the tests write, all under one temp directory removed at the end. */
let scratch = '';
const scratchDir = () => mkdtempSync(join((scratch ||= mkdtempSync(join(tmpdir(), 'gotong-migrate-test-'))), 'migrations-'));

function migrationsDir(files: Record<string, string>): string {
  const dir = scratchDir();
  for (const [name, sql] of Object.entries(files)) writeFileSync(join(dir, name), sql);
  return dir;
}

/** A session of its own, named, as another process holding a lock would be; with its backend pid. */
async function session(databaseUrl: string, applicationName: string): Promise<Client & { pid: number }> {
  const client = new Client({ connectionString: databaseUrl, application_name: applicationName });
  client.on('error', () => undefined);
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return Object.assign(client, { pid: rows[0]!.pid });
}

async function indexState(pool: Pool, name: string): Promise<{ valid: boolean; unique: boolean } | null> {
  const { rows } = await pool.query<{ valid: boolean; unique: boolean }>(
    `SELECT indisvalid AS valid, indisunique AS unique FROM pg_index WHERE indexrelid = to_regclass($1)`,
    [name],
  );
  return rows[0] ?? null;
}

describe('migrations that never stall the fleet', function () {
  this.timeout(180_000);
  let databaseUrl: string;
  let pool: Pool;

  beforeEach(async () => {
    const url = new URL(getHarness().databaseUrl);
    url.pathname = `${url.pathname}_migrate`;
    databaseUrl = url.toString();
    await recreateDatabase(databaseUrl);
    pool = createPool(databaseUrl, 4);
  });
  afterEach(async () => {
    await pool.end();
  });
  after(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  describe('waiting for the migration lock', () => {
    it('names the holder while it waits, then gives up after the bound with that message (migrate and worker, exit 1)', async () => {
      const holder = await session(databaseUrl, 'deploy-42 migrate');
      try {
        await holder.query(`SELECT pg_advisory_lock(hashtext('gotong-worker:migrate'))`);
        const pid = holder.pid;
        for (const command of [['migrate'], ['worker']]) {
          const result = await runCli(command, { DATABASE_URL: databaseUrl, GOTONG_MIGRATE_LOCK_TIMEOUT_MS: '1500' });
          // The worker logs through its logger (JSON lines when not on a terminal); migrate prints plain lines.
          const worker = command[0] === 'worker';
          const prefix = worker ? '' : `\\[${command[0]}\\] `;
          assert.equal(result.code, 1, result.stderr);
          const lines = result.stderr
            .trimEnd()
            .split('\n')
            .map((line) => (worker ? (JSON.parse(line) as { msg: string }).msg : line));
          const held = `held by pid ${pid} \\(deploy-42 migrate(?: from [^,]+)?, since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(idle\\)\\)`;
          assert.match(lines[0]!, new RegExp(`^${prefix}waiting for the migration lock ${held}; up to 1\\.5 s$`));
          assert.match(
            lines.at(-1)!,
            new RegExp(`^${prefix}gave up after 1\\.5 s waiting for the migration lock ${held}; let that migration finish .+--no-migrate\\)$`),
          );
        }
      } finally {
        await holder.end();
      }
      const result = await runCli(['migrate'], { DATABASE_URL: databaseUrl });
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^\[migrate\] applied 001_outbox\.sql, /);
    });

    it('a migration waiting for a table lock retries in short tries and names who blocks it', async () => {
      const dir = migrationsDir({
        '001_table.sql': 'CREATE TABLE t (id int);',
        '002_alter.sql': 'ALTER TABLE t ADD COLUMN note text;',
      });
      await migrate(pool, migrationsMinus(dir, '002_alter.sql'));
      const reader = await session(databaseUrl, 'long report');
      const log: string[] = [];
      try {
        await reader.query('BEGIN');
        await reader.query('SELECT count(*) FROM t');
        const failure = await migrate(pool, dir, { lockTimeoutMs: 4_000, log: (line) => log.push(line) }).then(
          () => null,
          (err: unknown) => err,
        );
        assert.ok(failure instanceof MigrationLockTimeout, String(failure));
        assert.match(
          failure.message,
          new RegExp(`^migration 002_alter\\.sql gave up after 4 s waiting for a lock held by pid ${reader.pid} \\(long report.*idle in transaction\\)\\); `),
        );
        assert.ok(log.some((l) => l.startsWith(`migration 002_alter.sql is waiting for a lock held by pid ${reader.pid} (long report`)), log.join('\n'));
        // Between tries the table is free: other sessions' statements are not queued behind the migration for long.
        const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM schema_migrations WHERE version = 2');
        assert.equal(rows[0]!.n, '0', 'the migration was not recorded');
      } finally {
        await reader.end();
      }
      assert.deepEqual(await migrate(pool, dir), ['002_alter.sql']);
    });
  });

  describe('migrations outside a transaction (-- gotong:no-transaction)', () => {
    const base = {
      '001_table.sql': `CREATE TABLE big (id int PRIMARY KEY, v text);
        INSERT INTO big SELECT i, 'v' || (i % 100) FROM generate_series(1, 20000) i;`,
    };

    it('builds indexes concurrently, statement by statement, and records the migration once', async () => {
      const dir = migrationsDir({
        ...base,
        '002_indexes.sql': `-- gotong:no-transaction
          -- a comment; with a semicolon
          CREATE INDEX CONCURRENTLY IF NOT EXISTS big_v_idx ON big (v);
          CREATE INDEX CONCURRENTLY IF NOT EXISTS "big_v;id_idx" ON big (v, id) WHERE v <> 'x;y';`,
      });
      assert.deepEqual(await migrate(pool, dir), ['001_table.sql', '002_indexes.sql']);
      assert.deepEqual(await indexState(pool, 'big_v_idx'), { valid: true, unique: false });
      assert.deepEqual(await indexState(pool, '"big_v;id_idx"'), { valid: true, unique: false });
      assert.deepEqual(await migrate(pool, dir), []);
    });

    it('an index left INVALID by a failed concurrent build is dropped and built again', async () => {
      const dir = migrationsDir({
        ...base,
        '002_index.sql': '-- gotong:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS big_v_idx ON big (v);\n',
      });
      await migrate(pool, migrationsMinus(dir, '002_index.sql'));
      // A concurrent build that fails (here: duplicates under UNIQUE) leaves its index behind, INVALID.
      await assert.rejects(pool.query('CREATE UNIQUE INDEX CONCURRENTLY big_v_idx ON big (v)'), /could not create unique index/);
      assert.deepEqual(await indexState(pool, 'big_v_idx'), { valid: false, unique: true });
      assert.deepEqual(await migrate(pool, dir), ['002_index.sql']);
      assert.deepEqual(await indexState(pool, 'big_v_idx'), { valid: true, unique: false });
    });

    it('a statement that fails leaves the migration unrecorded; once fixed, it applies from the top, idempotently', async () => {
      const broken = migrationsDir({
        ...base,
        '002_index.sql': '-- gotong:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS big_v_idx ON big (v);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS big_w_idx ON big (w);\n',
      });
      await assert.rejects(migrate(pool, broken), /^Error: migration 002_index\.sql failed: column "w" does not exist$/);
      assert.deepEqual(await indexState(pool, 'big_v_idx'), { valid: true, unique: false });
      const fixed = migrationsDir({
        ...base,
        '002_index.sql': '-- gotong:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS big_v_idx ON big (v);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS big_id_idx ON big (id, v);\n',
      });
      assert.deepEqual(await migrate(pool, fixed), ['002_index.sql']);
      assert.deepEqual(await indexState(pool, 'big_id_idx'), { valid: true, unique: false });
    });

    it("the project's migrations: two processes at once, without a deadlock", async () => {
      const other = createPool(databaseUrl, 2);
      try {
        const log: string[] = [];
        const results = await Promise.all([migrate(pool, MIGRATIONS_DIR), migrate(other, MIGRATIONS_DIR, { log: (l) => log.push(l) })]);
        const applied = results.flat();
        assert.equal(new Set(applied).size, applied.length, 'each migration applied once');
        assert.ok(applied.includes('011_run_status_indexes.sql'));
        for (const index of ['webhook_outbox_source_run_open_idx', 'webhook_outbox_replay_run_open_idx']) {
          assert.deepEqual(await indexState(pool, index), { valid: true, unique: false });
        }
      } finally {
        await other.end();
      }
    });
  });

  it('splitSqlStatements keeps semicolons inside strings, identifiers, comments and dollar quotes (pure)', () => {
    const sql = `-- gotong:no-transaction
      SELECT 'a;b', "c;d" FROM t; /* x; /* nested; */ y; */ SELECT E'it\\'s;' ;
      DO $body$ BEGIN PERFORM 1; END $body$;
      SELECT $$;$$;
      -- trailing comment;
    `;
    assert.deepEqual(splitSqlStatements(sql), [
      `SELECT 'a;b', "c;d" FROM t`,
      `SELECT E'it\\'s;'`,
      'DO $body$ BEGIN PERFORM 1; END $body$',
      'SELECT $$;$$',
    ]);
  });

  it('the worker started with --no-migrate on a schema missing a migration refuses: one error entry naming them and the fix, exit 1, nothing polled', async () => {
    // Without 014 a dry-run batch of this release fails on a table that does not exist, and retries for ever.
    await migrate(pool, migrationsMinus(MIGRATIONS_DIR, '011_run_status_indexes.sql', '014_dry_run_unlogged.sql'));
    const result = await runCli(
      ['worker', '--no-migrate', '--dispatchers', '0'],
      { DATABASE_URL: databaseUrl, TEMPORAL_ADDRESS: getHarness().env.address, GOTONG_LOG_FORMAT: 'json' },
      30_000,
    );
    assert.equal(result.code, 1, result.stderr);
    const entries = result.stderr
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as { msg: string; level: string });
    const last = entries.at(-1)!;
    assert.equal(last.level, 'error');
    assert.match(last.msg, /^the database lacks migrations this release needs: 011_run_status_indexes\.sql, 014_dry_run_unlogged\.sql; run 'gotong-worker migrate'/);
    assert.ok(!entries.some((e) => /polling task queue/.test(e.msg)), 'nothing was started');
  });
});

/** A copy of a migrations directory without the named files. */
function migrationsMinus(dir: string, ...without: string[]): string {
  const copy = scratchDir();
  for (const file of readdirSync(dir)) {
    if (!without.includes(file) && file.endsWith('.sql')) writeFileSync(join(copy, file), readFileSync(join(dir, file)));
  }
  return copy;
}
