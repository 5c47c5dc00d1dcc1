import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../src/config';
import { type CollectedResponse, LOCATION_LOG_CHARS, loggableLocation, parseWebhookUrl, ResponseCollector, WebhookUrlError } from '../src/delivery/http';
import { headerSafe, parseSigningSecret, SigningSecretError, signedHeaders, standardSignature } from '../src/delivery/signing';

const whsec = (bytes: number) => `whsec_${Buffer.alloc(bytes, 7).toString('base64')}`;
const VISIBLE_ASCII = /^[\x21-\x7e]*$/;

describe('delivery HTTP rules (pure)', () => {
  describe('header values', () => {
    it('leaves plain ids unchanged', () => {
      for (const id of ['evt_1', 'evt-2026-11-28T12:00:00Z', 'a.b~c!$&\'()*+,;=:@/?[]{}|^`"<>\\']) assert.equal(headerSafe(id), id);
    });

    it('percent-encodes the UTF-8 bytes of anything outside visible ASCII, and % itself', () => {
      assert.equal(headerSafe('evt_漢字'), 'evt_%E6%BC%A2%E5%AD%97');
      assert.equal(headerSafe('evt_ü'), 'evt_%C3%BC');
      assert.equal(headerSafe('evt_\u0007bell'), 'evt_%07bell');
      assert.equal(headerSafe('evt_50%off'), 'evt_50%25off');
      assert.equal(headerSafe('evt with space'), 'evt%20with%20space');
      assert.equal(headerSafe('evt_\r\nX-Injected: 1'), 'evt_%0D%0AX-Injected:%201');
      assert.equal(headerSafe('evt_\u007f'), 'evt_%7F');
    });

    it('is reversible by a standard percent-decoder and never maps two ids to one value', () => {
      const ids = ['evt_漢字', 'evt_ü', 'evt_%C3%BC', 'evt_\u0000\u001f', 'evt_50%off', 'evt_50%25off', 'evt_😀', ' lead', 'x'.repeat(256)];
      const encoded = ids.map(headerSafe);
      for (const [i, value] of encoded.entries()) {
        assert.match(value, VISIBLE_ASCII);
        assert.equal(decodeURIComponent(value), ids[i]);
      }
      assert.equal(new Set(encoded).size, ids.length);
    });

    it('signs exactly the webhook-id text it sends, and encodes X-Request-ID the same way', () => {
      const body = Buffer.from('{"event_id":"evt_漢字"}');
      const secret = whsec(32);
      const headers = signedHeaders({ current: secret }, 'evt_漢字', 'req_ü\t', 1_700_000_000, body);
      assert.equal(headers['webhook-id'], 'evt_%E6%BC%A2%E5%AD%97');
      assert.equal(headers['x-request-id'], 'req_%C3%BC%09');
      assert.equal(headers['webhook-signature'], standardSignature(secret, 'evt_%E6%BC%A2%E5%AD%97', 1_700_000_000, body));
      for (const value of Object.values(headers)) assert.match(value.replace(/ /g, ''), VISIBLE_ASCII);
    });
  });

  describe('signing secrets', () => {
    it('accepts whsec_ secrets of 24 to 64 bytes in strict base64', () => {
      for (const bytes of [24, 25, 26, 32, 64]) assert.equal(parseSigningSecret(whsec(bytes)).key.length, bytes);
    });

    const refused: Array<[string, string, RegExp]> = [
      ['nothing after whsec_', 'whsec_', /nothing after 'whsec_'/],
      ['too short', whsec(23), /decodes to 23 bytes; a whsec_ secret must be 24 to 64 bytes/],
      ['too long', whsec(65), /decodes to 65 bytes/],
      ['junk characters', `${whsec(32).slice(0, 20)}$!${whsec(32).slice(22)}`, /not valid base64/],
      ['missing padding', whsec(25).replace(/=+$/, ''), /not valid base64/],
      ['url-safe alphabet', `whsec_${Buffer.alloc(33, 0xfb).toString('base64url')}`, /not valid base64/],
      ['non-zero padding bits', `whsec_${Buffer.alloc(25, 7).toString('base64').replace(/w==$/, 'x==')}`, /not valid base64/],
      ['embedded whitespace', `whsec_${Buffer.alloc(30, 7).toString('base64').replace(/^(.{8})/, '$1 ')}`, /not valid base64/],
      ['a plain secret with a trailing newline', 'a-long-enough-plain-secret\n', /control characters or surrounding whitespace/],
      ['a whitespace-only plain secret', '    ', /control characters or surrounding whitespace/],
      ['an empty secret', '', /is empty/],
    ];
    for (const [what, secret, message] of refused) {
      it(`refuses ${what}, without quoting it`, () => {
        assert.throws(
          () => parseSigningSecret(secret),
          (err: Error) => err instanceof SigningSecretError && message.test(err.message) && (secret.length < 8 || !err.message.includes(secret.trim())),
        );
      });
    }

    it('accepts a plain secret as its UTF-8 bytes, warning when it is under 16 bytes', () => {
      assert.equal(parseSigningSecret('sixteen-bytes-ok').warning, null);
      assert.deepEqual(parseSigningSecret('päss').key, Buffer.from('päss', 'utf8'));
      assert.match(parseSigningSecret('short').warning ?? '', /only 5 bytes; use at least 16/);
      assert.ok(!(parseSigningSecret('short').warning ?? '').includes('short'), 'the warning does not quote the secret');
    });
  });

  describe('WEBHOOK_URL', () => {
    it('parses http and https URLs into origin and path', () => {
      assert.deepEqual(parseWebhookUrl('https://hooks.example.com/in?team=7'), {
        origin: 'https://hooks.example.com',
        path: '/in?team=7',
        authorization: null,
      });
      assert.deepEqual(parseWebhookUrl('http://127.0.0.1:8080'), { origin: 'http://127.0.0.1:8080', path: '/', authorization: null });
    });

    it('turns credentials into basic authentication (percent-decoded, UTF-8) and keeps them out of the origin', () => {
      const endpoint = parseWebhookUrl('https://hook%20user:p%C3%A4ss:w@hooks.example.com/in');
      assert.equal(endpoint.origin, 'https://hooks.example.com');
      assert.equal(endpoint.authorization, `Basic ${Buffer.from('hook user:päss:w', 'utf8').toString('base64')}`);
    });

    const refused: Array<[string, string, RegExp]> = [
      ['not a URL', 'hooks.example.com/in', /not a URL/],
      ['another scheme', 'ftp://hooks.example.com/in', /must be an http:\/\/ or https:\/\/ URL/],
      ['no host', 'http://', /not a URL|no host/],
      ['a fragment', 'https://hooks.example.com/in#secret-token', /#fragment/],
      ['a user name with a colon', 'https://a%3Ab:secret-pw@hooks.example.com/', /user name with ':'/],
      ['broken percent-encoding in credentials', 'https://user:%E0%A4%A@hooks.example.com/', /not valid percent-encoding/],
      ['control characters in credentials', 'https://user:pw%0A@hooks.example.com/', /control characters/],
    ];
    for (const [what, url, message] of refused) {
      it(`refuses ${what}, without quoting the URL`, () => {
        assert.throws(
          () => parseWebhookUrl(url),
          (err: Error) => err instanceof WebhookUrlError && message.test(err.message) && !/secret|hooks\.example/.test(err.message),
        );
      });
    }
  });

  describe('Location in the attempt log', () => {
    it('keeps a plain Location as it is', () => {
      assert.equal(loggableLocation('https://new.example.com/hooks?x=1'), 'https://new.example.com/hooks?x=1');
      assert.equal(loggableLocation(['/moved', '/twice']), '/moved');
      assert.equal(loggableLocation(undefined), null);
    });

    it('escapes bytes outside visible ASCII, masks credentials, and bounds the length', () => {
      // As undici hands header values over: one latin1 character per byte on the wire.
      const wire = Buffer.from('https://user:pw@evil.example/ü\u001b[2J path', 'utf8').toString('latin1');
      assert.equal(loggableLocation(wire), 'https://***@evil.example/%C3%BC%1B[2J%20path');
      const long = loggableLocation(`https://x.example/${'a'.repeat(5000)}`)!;
      assert.equal(long.length, LOCATION_LOG_CHARS);
      assert.ok(long.endsWith('...'));
    });
  });

  describe('collecting a response (undici dispatch handler)', () => {
    const collect = (limit: number, timeoutMs = 60_000) => {
      let settled: CollectedResponse | undefined;
      let abortedWith: Error | undefined;
      const collector = new ResponseCollector(limit, timeoutMs, (response) => {
        assert.equal(settled, undefined, 'settles once');
        settled = response;
      });
      collector.onConnect((reason) => (abortedWith = reason));
      return { collector, settled: () => settled, abortedWith: () => abortedWith };
    };
    const headers = (...pairs: string[]) => pairs.map((text) => Buffer.from(text, 'latin1'));

    it('keeps at most the limit and aborts the request past it', () => {
      const { collector, settled, abortedWith } = collect(10);
      collector.onHeaders(200, headers('Content-Type', 'text/plain'));
      assert.equal(collector.onData(Buffer.from('0123456')), true);
      assert.equal(collector.onData(Buffer.from('789abc')), false);
      // undici reports the abort as an error afterwards; the response is already settled.
      collector.onError(new Error('aborted'));
      assert.ok(abortedWith(), 'the request (and its connection) was aborted');
      assert.equal(settled()!.body.toString(), '0123456789');
      assert.equal(settled()!.cutOff, 'size_limit');
      assert.equal(settled()!.statusCode, 200);
    });

    it('reads a body of exactly the limit to its end', () => {
      const { collector, settled, abortedWith } = collect(4);
      collector.onHeaders(204, []);
      collector.onData(Buffer.from('abcd'));
      collector.onComplete();
      assert.equal(abortedWith(), undefined);
      assert.deepEqual({ body: settled()!.body.toString(), cutOff: settled()!.cutOff, error: settled()!.error }, { body: 'abcd', cutOff: null, error: null });
    });

    it('keeps what arrived before the connection failed', () => {
      const { collector, settled } = collect(100);
      collector.onHeaders(200, []);
      collector.onData(Buffer.from('part'));
      collector.onError(new Error('socket hang up'));
      assert.equal(settled()!.body.toString(), 'part');
      assert.equal(settled()!.cutOff, 'connection_lost');
      assert.equal(settled()!.statusCode, 200);
    });

    it('ignores informational answers: a 103 then a reset is a lost connection with no status, not a terminal 103', () => {
      const { collector, settled } = collect(100);
      collector.onHeaders(103, headers('Link', '</style.css>; rel=preload', 'Retry-After', '999'));
      collector.onError(new Error('other side closed'));
      assert.equal(settled()!.statusCode, null);
      assert.equal(settled()!.retryAfter, undefined);
      assert.equal(settled()!.error?.message, 'other side closed');
    });

    it('keeps the first Retry-After and Location, whatever their case, as latin1', () => {
      const { collector, settled } = collect(100);
      collector.onHeaders(307, headers('RETRY-AFTER', '30', 'location', 'https://example.test/\xe9', 'Location', 'https://second.test/', 'retry-after', '99'));
      collector.onComplete();
      assert.equal(settled()!.retryAfter, '30');
      assert.equal(settled()!.location, 'https://example.test/\xe9');
    });

    it('aborts at the deadline: before the headers there is no status, after them the body is cut off', async () => {
      const before = collect(100, 1);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.ok(before.abortedWith(), 'aborted by the deadline');
      before.collector.onError(before.abortedWith()!);
      assert.equal(before.settled()!.statusCode, null);
      assert.equal(before.settled()!.deadlineHit, true);

      const during = collect(100, 1);
      during.collector.onHeaders(200, []);
      during.collector.onData(Buffer.from('slow'));
      await new Promise((resolve) => setTimeout(resolve, 20));
      during.collector.onError(during.abortedWith()!);
      assert.equal(during.settled()!.statusCode, 200);
      assert.equal(during.settled()!.cutOff, 'deadline');
      assert.equal(during.settled()!.body.toString(), 'slow');
    });

    it('an attempt still waiting for a connection at its deadline waits for undici to give the request up, and stays unsent if a connection comes', async () => {
      let settled: CollectedResponse | undefined;
      let settles = 0;
      const collector = new ResponseCollector(100, 1, (response) => {
        settles += 1;
        settled = response;
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      // Settling at the deadline would free its sender while undici still held the request and a connecting socket.
      assert.equal(settles, 0, 'not settled while undici holds the request');
      // undici connects late and hands the request over: it is aborted, and undici writes none of it.
      let abortedWith: Error | undefined;
      collector.onConnect((reason) => (abortedWith = reason));
      assert.ok(abortedWith, 'aborted on connect');
      collector.onError(abortedWith);
      assert.equal(settles, 1);
      assert.deepEqual({ status: settled!.statusCode, deadline: settled!.deadlineHit, neverSent: settled!.neverSent }, { status: null, deadline: true, neverSent: true });
    });

    it('a request that had its connection is not reported as unsent', () => {
      const { collector, settled } = collect(100);
      collector.onError(new Error('socket hang up'));
      assert.equal(settled()!.neverSent, false);
    });
  });

  describe('settings (loadConfig)', () => {
    const base = { WEBHOOK_URL: 'https://hooks.example.com/in', WEBHOOK_SECRET: whsec(32) };
    const refused: Array<[string, Record<string, string>, RegExp]> = [
      ['a junk whsec_ secret', { WEBHOOK_SECRET: 'whsec_not*base64' }, /^WEBHOOK_SECRET is not valid base64/],
      ['a short whsec_ previous secret', { WEBHOOK_PREVIOUS_SECRET: whsec(16) }, /^WEBHOOK_PREVIOUS_SECRET decodes to 16 bytes/],
      ['a URL that is not http', { WEBHOOK_URL: 'file:///etc/passwd' }, /^WEBHOOK_URL must be an http/],
      ['backoff base above cap', { WEBHOOK_BACKOFF_BASE_MS: '5000', WEBHOOK_BACKOFF_CAP_MS: '1000' }, /^WEBHOOK_BACKOFF_BASE_MS \(5000 ms\) must not exceed WEBHOOK_BACKOFF_CAP_MS \(1000 ms\)/],
      ['backoff base above the default cap', { WEBHOOK_BACKOFF_BASE_MS: '120000' }, /must not exceed WEBHOOK_BACKOFF_CAP_MS \(60000 ms\)/],
      ['a huge batch', { WEBHOOK_BATCH_SIZE: '100000' }, /^WEBHOOK_BATCH_SIZE must be between 1 and 10000, not 100000$/],
      ['a timeout in seconds', { WEBHOOK_TIMEOUT_MS: '10' }, /^WEBHOOK_TIMEOUT_MS must be between 100ms and 60s, not 10$/],
      ['a ten-minute timeout', { WEBHOOK_TIMEOUT_MS: '600000' }, /^WEBHOOK_TIMEOUT_MS must be between 100ms and 60s, not 600000/],
      ['a huge concurrency', { WEBHOOK_CONCURRENCY: '5000' }, /^WEBHOOK_CONCURRENCY must be between 1 and 256, not 5000$/],
      ['a huge rate', { WEBHOOK_RATE_LIMIT: '50000' }, /^WEBHOOK_RATE_LIMIT must be between 0.01 and 10000 \(or 0: no limit\), not 50000/],
      ['a day-long cool-down', { WEBHOOK_AUTO_PAUSE_COOLDOWN_MS: '86400000' }, /^WEBHOOK_AUTO_PAUSE_COOLDOWN_MS must be between 100ms and 3600s, not 86400000/],
    ];
    for (const [what, env, message] of refused) {
      it(`refuses ${what}`, () => {
        assert.throws(() => loadConfig({ ...base, ...env }), (err: Error) => err instanceof ConfigError && message.test(err.message));
      });
    }

    it('accepts the bounds themselves and warns about a short plain secret without quoting it', () => {
      const config = loadConfig({
        ...base,
        WEBHOOK_SECRET: 'tiny',
        WEBHOOK_BATCH_SIZE: '10000',
        WEBHOOK_CONCURRENCY: '256',
        WEBHOOK_TIMEOUT_MS: '60000',
        WEBHOOK_RATE_LIMIT: '0.5',
        WEBHOOK_BACKOFF_BASE_MS: '60000',
        WEBHOOK_AUTO_PAUSE_COOLDOWN_MS: '3600000',
      });
      assert.deepEqual(config.dispatcher, {
        batchSize: 10_000,
        concurrency: 256,
        requestTimeoutMs: 60_000,
        ratePerSecond: 0.5,
        backoffBaseMs: 60_000,
        autoPauseCooldownMs: 3_600_000,
      });
      assert.equal(config.warnings.length, 1);
      assert.match(config.warnings[0]!, /^WEBHOOK_SECRET is only 4 bytes/);
      assert.ok(!config.warnings[0]!.includes('tiny'));
    });
  });
});
