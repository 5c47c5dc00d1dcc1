import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { backoffDelayMs, classifyStatus, parseRetryAfterMs, retryDelayMs } from '../src/delivery/policy';
import { grSignature, signedHeaders, standardSignature } from '../src/delivery/signing';

describe('delivery rules (pure)', () => {
  it('classifies statuses: 2xx delivered; 3xx, 408, 429, 5xx retryable; every other status terminal', () => {
    assert.deepEqual([200, 201, 204, 299].map(classifyStatus), Array(4).fill('delivered'));
    assert.deepEqual([300, 301, 302, 307, 308, 408, 429, 500, 502, 503, 599].map(classifyStatus), Array(11).fill('retryable'));
    assert.deepEqual([100, 400, 401, 403, 404, 409, 410, 422].map(classifyStatus), Array(8).fill('terminal'));
  });

  it('backs off exponentially between base and cap, with jitter never below half the step', () => {
    const policy = { baseMs: 1000, capMs: 60_000 };
    assert.equal(backoffDelayMs(1, policy, () => 0), 1000);
    assert.equal(backoffDelayMs(3, policy, () => 0), 2000);
    assert.equal(backoffDelayMs(3, policy, () => 1), 4000);
    assert.equal(backoffDelayMs(20, policy, () => 1), 60_000);
    assert.equal(backoffDelayMs(20, policy, () => 0), 30_000);
  });

  it('reads Retry-After as seconds or an HTTP date, and keeps it within bounds', () => {
    const now = Date.parse('2026-11-28T12:00:00Z');
    assert.equal(parseRetryAfterMs('7', now), 7000);
    assert.equal(parseRetryAfterMs('Sat, 28 Nov 2026 12:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfterMs('soon', now), null);
    assert.equal(parseRetryAfterMs(undefined, now), null);
    const policy = { baseMs: 1000, capMs: 60_000 };
    assert.equal(retryDelayMs(1, '3600', policy, now), 60_000);
    assert.equal(retryDelayMs(1, '0', policy, now), 1000);
    assert.equal(retryDelayMs(1, '5', policy, now), 5000);
  });

  it('signs as the platform and Standard Webhooks specify', () => {
    const body = Buffer.from('{"event_id":"e1"}');
    const k3y = 'k3y-of-twenty-four-bytes';
    const secret = 'whsec_' + Buffer.from(k3y).toString('base64');
    assert.equal(grSignature(secret, body), `sha256=${createHmac('sha256', k3y).update(body).digest('hex')}`);
    assert.equal(
      standardSignature(secret, 'e1', 1700000000, body),
      `v1,${createHmac('sha256', k3y).update('e1.1700000000.').update(body).digest('base64')}`,
    );
    const headers = signedHeaders({ current: secret, previous: 'old' }, 'e1', 'req-1', 1700000000, body);
    assert.equal(headers['x-request-id'], 'req-1');
    assert.equal(headers['webhook-id'], 'e1');
    assert.equal(headers['x-gr-signature-previous'], grSignature('old', body));
    assert.equal(headers['webhook-signature']!.split(' ').length, 2);
    assert.ok(!JSON.stringify(headers).includes(k3y), 'the secret itself is never sent');
  });
});
