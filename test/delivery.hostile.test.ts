import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import type { WorkflowHandle } from '@temporalio/client';
import { Webhook } from 'standardwebhooks';
import type { ClaimedEvent } from '../src/db/queries';
import { createDeliveryAgent, LOCATION_LOG_CHARS, postOnce, RESPONSE_READ_LIMIT } from '../src/delivery/http';
import type { DispatcherOptions, DispatcherStats } from '../src/shared/delivery';
import { webhookDispatcher } from '../src/workflows/dispatcher';
import { getHarness, resetTables, runCli, statusCounts, uniqueTaskQueue, waitFor, withWorker, type Harness } from './helpers/harness';
import { RawReceiver, write, type RawRequest } from './helpers/raw-receiver';

const SECRET = `whsec_${Buffer.from('hostile-receivers-test-signing-key').toString('base64')}`;
const TIMEOUT_MS = 2_000;
/** Room for the deadline's timer to fire late on a busy shared machine; a receiver that held a request would take 30 s. */
const DEADLINE_MARGIN_MS = 3_000;
const OPTIONS: Partial<DispatcherOptions> = {
  batchSize: 50,
  concurrency: 16,
  requestTimeoutMs: TIMEOUT_MS,
  backoffBaseMs: 50,
  backoffCapMs: 200,
  maxIdleMs: 200,
};

interface AttemptRow {
  event_id: string;
  attempt_number: number;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
  response_body_sha256: string | null;
  response_excerpt: string | null;
  response_cut_off: string | null;
  redirect_location: string | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('delivery to hostile receivers (real Temporal, PostgreSQL, receivers on loopback)', function () {
  this.timeout(180_000);
  let h: Harness;
  let taskQueue: string;
  const receivers: RawReceiver[] = [];
  let dispatchers: WorkflowHandle[] = [];

  before(() => {
    h = getHarness();
  });
  beforeEach(async () => {
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('hostile');
    dispatchers = [];
  });
  afterEach(async () => {
    for (const handle of dispatchers) await handle.terminate('test over').catch(() => undefined);
    for (const receiver of receivers.splice(0)) await receiver.stop();
  });

  async function receiver(handle: (request: RawRequest) => void): Promise<RawReceiver> {
    const started = await new RawReceiver(handle).start();
    receivers.push(started);
    return started;
  }

  /** Inserts due events with exactly these ids (and request ids), as a backfill would. */
  async function seed(events: Array<{ id: string; requestId?: string; maxAttempts?: number }>): Promise<void> {
    await h.pool.query(
      `INSERT INTO webhook_outbox (event_id, event_type, schema_version, request_id, actor_user_id, payload,
                                   status, attempts, max_attempts, next_attempt_at)
       SELECT e.id, 'contribution_created', '1', e.req, 'user_1',
              jsonb_build_object('event_id', e.id, 'event_type', 'contribution_created', 'schema_version', '1',
                                 'request_id', e.req, 'actor', jsonb_build_object('user_id', 'user_1')),
              'pending', 0, e.max, now()
         FROM json_to_recordset($1::json) AS e(id text, req text, max int)`,
      [JSON.stringify(events.map((e) => ({ id: e.id, req: e.requestId ?? `req_${e.id}`, max: e.maxAttempts ?? 1 })))],
    );
  }

  async function startDispatcher(): Promise<WorkflowHandle<typeof webhookDispatcher>> {
    const handle = await h.env.client.workflow.start(webhookDispatcher, {
      taskQueue,
      workflowId: `webhook-dispatcher/test-${randomUUID()}`,
      args: [{ shard: 0, shards: 1, options: OPTIONS }],
    });
    dispatchers.push(handle);
    return handle;
  }

  const settled = async () => {
    const counts = await statusCounts(h.pool);
    return !counts.pending && !counts.retrying && !counts.in_flight;
  };

  async function attempts(): Promise<Map<string, AttemptRow[]>> {
    const { rows } = await h.pool.query<AttemptRow>(
      `SELECT event_id, attempt_number, status_code, error, duration_ms, response_body_sha256, response_excerpt,
              response_cut_off, redirect_location
         FROM webhook_delivery_attempts ORDER BY event_id, attempt_number`,
    );
    const byEvent = new Map<string, AttemptRow[]>();
    for (const row of rows) byEvent.set(row.event_id, [...(byEvent.get(row.event_id) ?? []), row]);
    return byEvent;
  }

  async function statusOf(): Promise<Record<string, string>> {
    const { rows } = await h.pool.query<{ event_id: string; status: string }>('SELECT event_id, status FROM webhook_outbox');
    return Object.fromEntries(rows.map((r) => [r.event_id, r.status]));
  }

  it('drips, a 100 MB stream, redirects and silence: each attempt ends by its deadline, rows and counts exact', async () => {
    const STREAM_BYTES = 100 * 1024 * 1024;
    // A pattern, so the recorded hash shows exactly which 64 KiB were kept.
    const chunk = Buffer.alloc(RESPONSE_READ_LIMIT, 'abcdefghijklmnopqrstuvwxyz0123456789');
    let streamed = -1;
    const decoy = await receiver((request) => request.socket.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    const hostileLocation = Buffer.concat([
      Buffer.from(`http://user:hunter2@127.0.0.1:${decoy.port}/caf`),
      Buffer.from('é', 'utf8'),
      Buffer.from(` /${'a'.repeat(2000)}`),
    ]);

    const behaviours: Record<string, (request: RawRequest) => Promise<void>> = {
      // Headers at once, then one body byte a second for 30 s: each byte would reset a per-read timeout.
      evt_drip_body: async ({ socket }) => {
        await write(socket, 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n');
        for (let i = 0; i < 30; i++) {
          if (!(await write(socket, '1\r\nx\r\n'))) return;
          await sleep(1_000);
        }
        await write(socket, '0\r\n\r\n');
      },
      // The status line itself, one byte a second.
      evt_drip_head: async ({ socket }) => {
        for (const byte of Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')) {
          if (!(await write(socket, Buffer.of(byte)))) return;
          await sleep(1_000);
        }
      },
      evt_stream_100mb: async ({ socket }) => {
        let sent = 0;
        if (await write(socket, `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${STREAM_BYTES}\r\n\r\n`)) {
          while (sent < STREAM_BYTES && (await write(socket, chunk))) sent += chunk.length;
        }
        streamed = sent;
      },
      evt_redirect: async ({ socket }) => {
        socket.end(`HTTP/1.1 302 Found\r\nLocation: ${decoy.url}?token=abc\r\nContent-Length: 0\r\n\r\n`);
      },
      evt_redirect_hostile: async ({ socket }) => {
        socket.end(Buffer.concat([Buffer.from('HTTP/1.1 301 Moved Permanently\r\nLocation: '), hostileLocation, Buffer.from('\r\nContent-Length: 0\r\n\r\n')]));
      },
      // Reads the request and never answers.
      evt_silent: async () => undefined,
    };
    const hostile = await receiver((request) => void behaviours[request.headers['webhook-id']!]!(request));
    await seed([
      { id: 'evt_drip_body' },
      { id: 'evt_drip_head' },
      { id: 'evt_stream_100mb' },
      { id: 'evt_redirect', maxAttempts: 2 },
      { id: 'evt_redirect_hostile' },
      { id: 'evt_silent' },
    ]);

    let stats: DispatcherStats | undefined;
    await withWorker(
      taskQueue,
      async () => {
        const handle = await startDispatcher();
        await waitFor('every event settled', settled, 60_000);
        await waitFor('the stream ended', async () => streamed >= 0, 60_000);
        await waitFor(
          'stats caught up',
          async () => {
            stats = await handle.query<DispatcherStats>('stats');
            return stats.delivered + stats.retried + stats.deadLettered === 7;
          },
          30_000,
        );
      },
      { url: hostile.url, secret: SECRET },
    );

    // Counts: the two 2xx answers delivered; the redirect retried once, then out of attempts like the rest.
    assert.deepEqual(await statusOf(), {
      evt_drip_body: 'delivered',
      evt_stream_100mb: 'delivered',
      evt_drip_head: 'dead_letter',
      evt_redirect: 'dead_letter',
      evt_redirect_hostile: 'dead_letter',
      evt_silent: 'dead_letter',
    });
    assert.deepEqual({ delivered: stats!.delivered, retried: stats!.retried, deadLettered: stats!.deadLettered }, { delivered: 2, retried: 1, deadLettered: 4 });
    const requestsPerEvent: Record<string, number> = {};
    for (const request of hostile.requests) requestsPerEvent[request.headers['webhook-id']!] = (requestsPerEvent[request.headers['webhook-id']!] ?? 0) + 1;
    assert.deepEqual(requestsPerEvent, { evt_drip_body: 1, evt_drip_head: 1, evt_stream_100mb: 1, evt_redirect: 2, evt_redirect_hostile: 1, evt_silent: 1 });
    assert.equal(decoy.requests.length, 0, 'no redirect was followed');

    const rows = await attempts();
    assert.deepEqual([...rows.values()].map((r) => r.length).reduce((a, b) => a + b), 7);
    const only = (id: string) => {
      const list = rows.get(id)!;
      assert.equal(list.length, 1, id);
      return list[0]!;
    };
    const withinDeadline = (row: AttemptRow) =>
      assert.ok(row.duration_ms <= TIMEOUT_MS + DEADLINE_MARGIN_MS, `${row.event_id} took ${row.duration_ms} ms against a ${TIMEOUT_MS} ms deadline`);
    const endedByDeadline = (row: AttemptRow) => {
      withinDeadline(row);
      assert.ok(row.duration_ms >= TIMEOUT_MS - 50, `${row.event_id} ended by its deadline, not earlier (${row.duration_ms} ms)`);
    };

    // A 2xx whose body was still dripping at the deadline: delivered (the status is the verdict), the body cut off.
    const dripBody = only('evt_drip_body');
    endedByDeadline(dripBody);
    assert.equal(dripBody.status_code, 200);
    assert.equal(dripBody.error, null);
    assert.equal(dripBody.response_cut_off, 'deadline');
    assert.match(dripBody.response_excerpt!, /^x{1,4}$/);

    const dripHead = only('evt_drip_head');
    endedByDeadline(dripHead);
    assert.equal(dripHead.status_code, null);
    assert.equal(dripHead.error, `timeout after ${TIMEOUT_MS} ms, before the response headers were complete`);

    const silent = only('evt_silent');
    endedByDeadline(silent);
    assert.equal(silent.status_code, null);
    assert.equal(silent.error, `timeout after ${TIMEOUT_MS} ms, before the response headers were complete`);

    // 100 MB offered: 64 KiB read, then the connection closed; the receiver could not push the rest.
    const stream = only('evt_stream_100mb');
    withinDeadline(stream);
    assert.equal(stream.status_code, 200);
    assert.equal(stream.error, null);
    assert.equal(stream.response_cut_off, 'size_limit');
    assert.equal(stream.response_body_sha256, createHash('sha256').update(chunk).digest('hex'));
    assert.ok(streamed < 20 * 1024 * 1024, `the receiver got ${streamed} bytes out before the connection closed`);

    const redirect = rows.get('evt_redirect')!;
    assert.deepEqual(redirect.map((r) => r.status_code), [302, 302]);
    for (const row of redirect) {
      withinDeadline(row);
      assert.equal(row.redirect_location, `${decoy.url}?token=abc`);
      assert.equal(row.error, 'HTTP 302 redirect, not followed (its Location is in the attempt log)');
      assert.equal(row.response_cut_off, null);
    }

    const hostileRedirect = only('evt_redirect_hostile');
    assert.equal(hostileRedirect.status_code, 301);
    const logged = hostileRedirect.redirect_location!;
    assert.equal(logged.length, LOCATION_LOG_CHARS);
    assert.ok(logged.startsWith(`http://***@127.0.0.1:${decoy.port}/caf%C3%A9%20/aaa`), logged.slice(0, 80));
    assert.ok(logged.endsWith('...'));
    assert.match(logged, /^[\x21-\x7e]+$/);
    assert.ok(!logged.includes('hunter2'));
  });

  /**
   * A receiver whose host never completes a connection, as behind a firewall that drops packets, on loopback: a child
   * process listens with a backlog of 1 and is stopped, so the kernel's accept queue fills with two connections of
   * ours and every later connection attempt goes unanswered.
   */
  async function unansweredListener(): Promise<{ port: number; stop: () => Promise<void> }> {
    const child = spawn(
      process.execPath,
      ['-e', "const s = require('net').createServer(); s.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => process.stdout.write(s.address().port + '\\n'));"],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      child.once('exit', (code) => reject(new Error(`the listener exited (${code})`)));
    });
    child.kill('SIGSTOP');
    let connected = 0;
    const fillers = Array.from({ length: 4 }, () =>
      connect(port, '127.0.0.1')
        .on('connect', () => (connected += 1))
        .on('error', () => undefined),
    );
    const stop = async () => {
      for (const filler of fillers) filler.destroy();
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    };
    try {
      await waitFor('the listener\'s accept queue is full', async () => connected >= 2, 30_000);
    } catch (err) {
      await stop();
      throw err;
    }
    return { port, stop };
  }

  it('a receiver that never answers the connection: each attempt ends at its deadline (not undici\'s 10 s connect timeout), logged as not sent', async () => {
    const listener = await unansweredListener();
    try {
      await seed([{ id: 'evt_unanswered_1' }, { id: 'evt_unanswered_2' }, { id: 'evt_unanswered_3' }]);
      await withWorker(
        taskQueue,
        async () => {
          await startDispatcher();
          await waitFor('every event settled', settled, 60_000);
        },
        { url: `http://127.0.0.1:${listener.port}/hooks`, secret: SECRET, requestTimeoutMs: TIMEOUT_MS },
      );
    } finally {
      await listener.stop();
    }
    assert.deepEqual(await statusOf(), { evt_unanswered_1: 'dead_letter', evt_unanswered_2: 'dead_letter', evt_unanswered_3: 'dead_letter' });
    const rows = [...(await attempts()).values()].flat();
    assert.equal(rows.length, 3);
    for (const row of rows) {
      assert.equal(row.status_code, null);
      assert.equal(row.error, `timeout after ${TIMEOUT_MS} ms, before a connection to the receiver was ready (the request was not sent)`);
      // Connecting is bounded by the worker's timeout (about the deadline); before, by undici's 10 s, whatever the timeout.
      assert.ok(row.duration_ms <= TIMEOUT_MS + DEADLINE_MARGIN_MS, `${row.event_id} took ${row.duration_ms} ms against a ${TIMEOUT_MS} ms deadline`);
      assert.ok(row.duration_ms >= TIMEOUT_MS - 50, `${row.event_id} ended by its deadline, not earlier (${row.duration_ms} ms)`);
    }
  });

  it('an attempt that could not connect leaves nothing behind in the connection pool, so its sender cannot pile up sockets', async () => {
    const listener = await unansweredListener();
    const agent = createDeliveryAgent(null, 500);
    try {
      const url = `http://127.0.0.1:${listener.port}/hooks`;
      const event: ClaimedEvent = { event_id: 'evt_unanswered', request_id: 'req_unanswered', body: '{}', attempts: 1, max_attempts: 1, replay_count: 0 };
      const attempt = await postOnce({ url, secrets: { current: SECRET }, agent }, event, Buffer.from(event.body), 500);
      assert.equal(attempt.error, 'timeout after 500 ms, before a connection to the receiver was ready (the request was not sent)');
      assert.ok(attempt.finishedAt - attempt.startedAt < 5_000, `the attempt took ${attempt.finishedAt - attempt.startedAt} ms (undici's default connect timeout is 10 s)`);
      // The sender goes on to its next event only now: had the attempt ended while undici still held the request, each
      // sender would leave a connecting socket behind every deadline.
      const origin = new URL(url).origin;
      assert.equal(agent.stats[origin]?.pending ?? 0, 0, 'no request left in the pool');
    } finally {
      await agent.close();
      await listener.stop();
    }
  });

  it("an agent that gives up connecting before the request's deadline: the attempt names the agent's connect timeout, not the deadline", async () => {
    const listener = await unansweredListener();
    // The worker's WEBHOOK_TIMEOUT_MS (300 ms) bounds connecting; the dispatcher's deadline (here 5 s) is longer.
    const agent = createDeliveryAgent(null, 300);
    try {
      const url = `http://127.0.0.1:${listener.port}/hooks`;
      const event: ClaimedEvent = { event_id: 'evt_connect', request_id: 'req_connect', body: '{}', attempts: 1, max_attempts: 1, replay_count: 0 };
      const attempt = await postOnce({ url, secrets: { current: SECRET }, agent }, event, Buffer.from(event.body), 5_000);
      assert.equal(attempt.error, 'timeout after 300 ms, before a connection to the receiver was ready (the request was not sent)');
    } finally {
      await agent.close();
      await listener.stop();
    }
  });

  it('ids with Unicode, control characters and % are delivered, ASCII-only on the wire, verified by the standardwebhooks library', async () => {
    const events = [
      { id: 'evt_漢字', requestId: 'req_漢字' },
      { id: 'evt_ü', requestId: 'req_\u0001ctl' },
      { id: 'evt_\u0007bell\r\nX-Injected: yes', requestId: 'req_plain' },
      { id: 'evt_50%off', requestId: 'req_%' },
      // What evt_ü looks like encoded, as a literal id of its own: it must reach the receiver as a different id.
      { id: 'evt_%C3%BC', requestId: 'req_%C3%BC' },
      { id: 'evt_plain-1', requestId: 'req_plain-1' },
    ];
    const verifier = new Webhook(SECRET);
    const verified = new Map<string, { webhookId: string; requestId: string; body: { event_id: string; request_id: string } }>();
    const failures: string[] = [];
    const password = 'p%C3%A4ss-w0rd';
    const site = await receiver((request) => {
      const head = request.head.toString('latin1');
      // Every header byte is visible ASCII, bar the space after each colon and the CRLFs between lines.
      for (const line of head.split('\r\n').slice(1)) {
        if (!/^[\x21-\x7e]+: [\x21-\x7e ]*$/.test(line)) failures.push(`header line with other bytes: ${JSON.stringify(line)}`);
      }
      if (request.headers.authorization !== `Basic ${Buffer.from('hook user:päss-w0rd').toString('base64')}`) {
        failures.push('basic authentication missing or wrong');
      }
      try {
        const body = verifier.verify(request.body.toString('utf8'), request.headers) as { event_id: string; request_id: string };
        verified.set(body.event_id, { webhookId: request.headers['webhook-id']!, requestId: request.headers['x-request-id']!, body });
        request.socket.end('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n');
      } catch (err) {
        failures.push(`not verified: ${(err as Error).message}`);
        request.socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      }
    });
    await seed(events);
    const withCredentials = site.url.replace('http://', `http://hook%20user:${password}@`);
    await withWorker(
      taskQueue,
      async () => {
        await startDispatcher();
        await waitFor('every event settled', settled, 60_000);
      },
      { url: withCredentials, secret: SECRET },
    );

    assert.deepEqual(failures, []);
    assert.deepEqual(await statusCounts(h.pool), { delivered: events.length });
    assert.equal(site.requests.length, events.length, 'one request per event');
    for (const event of events) {
      const got = verified.get(event.id);
      assert.ok(got, `${JSON.stringify(event.id)} delivered and verified`);
      assert.equal(decodeURIComponent(got.webhookId), event.id);
      assert.equal(decodeURIComponent(got.requestId), event.requestId);
      assert.equal(got.body.request_id, event.requestId);
    }
    assert.equal(verified.get('evt_plain-1')!.webhookId, 'evt_plain-1', 'plain ids go out unchanged');
    assert.equal(verified.get('evt_漢字')!.webhookId, 'evt_%E6%BC%A2%E5%AD%97');
    assert.equal(verified.get('evt_ü')!.webhookId, 'evt_%C3%BC');
    assert.equal(verified.get('evt_%C3%BC')!.webhookId, 'evt_%25C3%25BC');
    const { rows } = await h.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM webhook_delivery_attempts WHERE error IS NULL AND status_code = 204`,
    );
    assert.equal(Number(rows[0]!.n), events.length);
  });

  describe('bad settings: the worker refuses to start, one line, exit 2, the secret never echoed', () => {
    const NOWHERE = { TEMPORAL_ADDRESS: '127.0.0.1:1', DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' };
    const URL_OK = 'https://hooks.example.com/in';
    const GOOD = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
    const cases: Array<[string, Record<string, string>, RegExp, string?]> = [
      ['a whsec_ secret with junk characters', { WEBHOOK_SECRET: 'whsec_c2VjcmV0!!c2VjcmV0c2VjcmV0c2VjcmV0c2Vj' }, /WEBHOOK_SECRET is not valid base64 after 'whsec_'/, 'c2VjcmV0'],
      ['a whsec_ secret without its padding', { WEBHOOK_SECRET: `whsec_${Buffer.alloc(25, 3).toString('base64').replace(/=+$/, '')}` }, /WEBHOOK_SECRET is not valid base64/, 'AwMDAwMD'],
      ['a whsec_ secret of 16 bytes', { WEBHOOK_SECRET: `whsec_${Buffer.from('sixteen-byte-key').toString('base64')}` }, /WEBHOOK_SECRET decodes to 16 bytes; a whsec_ secret must be 24 to 64 bytes/, 'c2l4dGVlbi1ieXRlLWtleQ'],
      ['a whsec_ secret of 100 bytes', { WEBHOOK_SECRET: `whsec_${Buffer.alloc(100, 5).toString('base64')}` }, /decodes to 100 bytes/, 'BQUFBQUF'],
      ['an empty whsec_ secret', { WEBHOOK_SECRET: 'whsec_' }, /WEBHOOK_SECRET has nothing after 'whsec_'/],
      ['a whitespace-only secret', { WEBHOOK_SECRET: '   ' }, /WEBHOOK_SECRET has control characters or surrounding whitespace/],
      ['a junk previous secret', { WEBHOOK_PREVIOUS_SECRET: 'whsec_%%%%-old-secret-%%%%' }, /WEBHOOK_PREVIOUS_SECRET is not valid base64/, 'old-secret'],
      ['a URL that is not a URL', { WEBHOOK_URL: 'hooks.example.com/in?token=tok3n' }, /WEBHOOK_URL is not a URL/, 'tok3n'],
      ['a URL of another scheme', { WEBHOOK_URL: 'ftp://hooks.example.com/in?token=tok3n' }, /WEBHOOK_URL must be an http:\/\/ or https:\/\/ URL/, 'tok3n'],
      ['a URL with a fragment', { WEBHOOK_URL: 'https://hooks.example.com/in#tok3n' }, /WEBHOOK_URL has a #fragment/, 'tok3n'],
      ['credentials basic authentication cannot carry', { WEBHOOK_URL: 'https://us%3Aer:s3cr3t-pw@hooks.example.com/in' }, /user name with ':'/, 's3cr3t-pw'],
      ['backoff base above cap', { WEBHOOK_BACKOFF_BASE_MS: '30000', WEBHOOK_BACKOFF_CAP_MS: '10000' }, /WEBHOOK_BACKOFF_BASE_MS \(30000 ms\) must not exceed WEBHOOK_BACKOFF_CAP_MS \(10000 ms\)/],
      ['a batch size over the bound', { WEBHOOK_BATCH_SIZE: '1000000' }, /WEBHOOK_BATCH_SIZE must be between 1 and 10000, not 1000000/],
      ['a timeout in seconds', { WEBHOOK_TIMEOUT_MS: '30' }, /WEBHOOK_TIMEOUT_MS must be between 100ms and 60s, not 30/],
      ['a concurrency over the bound', { WEBHOOK_CONCURRENCY: '100000' }, /WEBHOOK_CONCURRENCY must be between 1 and 256, not 100000/],
      ['a rate over the bound', { WEBHOOK_RATE_LIMIT: '1000000' }, /WEBHOOK_RATE_LIMIT must be between 0.01 and 10000 \(or 0: no limit\)/],
      ['a cool-down over the bound', { WEBHOOK_AUTO_PAUSE_COOLDOWN_MS: '999999999' }, /WEBHOOK_AUTO_PAUSE_COOLDOWN_MS must be between 100ms and 3600s, not 999999999/],
    ];
    for (const [what, env, message, secretPart] of cases) {
      it(what, async () => {
        const result = await runCli(['worker'], { ...NOWHERE, WEBHOOK_URL: URL_OK, WEBHOOK_SECRET: GOOD, ...env });
        assert.equal(result.code, 2, result.stderr);
        assert.equal(result.stdout, '');
        const lines = result.stderr.trimEnd().split('\n');
        assert.equal(lines.length, 1, result.stderr);
        assert.match(lines[0]!, /^error: /);
        assert.match(lines[0]!, message);
        assert.doesNotMatch(lines[0]!, /cannot reach|\n\s+at /);
        for (const value of [GOOD, ...(secretPart ? [secretPart] : [])]) assert.ok(!result.stderr.includes(value), `stderr does not echo ${value}`);
      });
    }

    it('a plain secret under 16 bytes is a warning, not a refusal, and the secret is not in it', async () => {
      const result = await runCli(['worker'], { ...NOWHERE, WEBHOOK_URL: URL_OK, WEBHOOK_SECRET: 'sh0rt-key' });
      const lines = result.stderr.trimEnd().split('\n');
      // The worker's first log line (JSON, as stderr is not a terminal).
      const warning = JSON.parse(lines[0]!) as { level: string; msg: string };
      assert.deepEqual([warning.level, warning.msg], ['warn', 'WEBHOOK_SECRET is only 9 bytes; use at least 16 random bytes, or a whsec_ secret']);
      assert.equal(result.code, 1, 'it went on to start (and failed on the unreachable database)');
      assert.ok(!result.stderr.includes('sh0rt-key'));
    });
  });
});
