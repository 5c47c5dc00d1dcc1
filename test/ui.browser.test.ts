import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import { chromium, type Browser, type Page } from 'playwright-core';
import { backfillWorkflowId } from '../src/client/backfill';
import { runbookWorkflowId } from '../src/client/runbook';
import { SEARCH_ATTRIBUTES } from '../src/shared/run-metadata';
import { runbookChildId, type RunbookProgress } from '../src/shared/runbook';
import { checkSearchAttributes } from '../src/search-attributes';
import { createWorker } from '../src/worker';
import { generatedFile } from './helpers/files';
import { getHarness, REPO_ROOT, resetTables, runCli, uniqueTaskQueue, waitFor, type Harness } from './helpers/harness';

const run = promisify(execFile);
const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'ui');

/** `temporal <args> -o json` against the test server: the CLI as an independent client. */
async function temporalJson<T>(h: Harness, args: string[]): Promise<T> {
  const { stdout } = await run(h.temporalCli, [...args, '--address', h.env.address, '--namespace', h.env.namespace ?? 'default', '-o', 'json'], {
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  return JSON.parse(stdout) as T;
}

/** JSON lines (`workflow list -o jsonl`) or one JSON array: the CLI prints either. */
async function temporalList(h: Harness, query: string): Promise<Array<{ execution: { workflowId: string }; type: { name: string } }>> {
  const { stdout } = await run(
    h.temporalCli,
    ['workflow', 'list', '--query', query, '--address', h.env.address, '--namespace', h.env.namespace ?? 'default', '-o', 'jsonl'],
    { timeout: 60_000 },
  );
  return stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { execution: { workflowId: string }; type: { name: string } });
}

/** A payload as the CLI's JSON shows it (base64 `data`), decoded to its text. */
function payloadText(p: unknown): string {
  const data = (p as { data?: string } | undefined)?.data;
  if (!data) return '';
  return JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as string;
}

/** The text of the page and of its frames: the UI renders markdown (summaries, details) in sandboxed iframes. */
async function bodyText(page: Page): Promise<string> {
  const texts = await Promise.all(
    page.frames().map((frame) =>
      frame.evaluate(() => (globalThis as unknown as { document: { body?: { innerText: string } } }).document.body?.innerText ?? '').catch(() => ''),
    ),
  );
  return texts.join('\n');
}

/** Waits until the page shows every text (the UI loads by fetches after the first paint); bounded, then fails with what it saw. */
async function waitForTexts(page: Page, texts: string[], what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let body = '';
  while (Date.now() < deadline) {
    body = await bodyText(page);
    if (texts.every((t) => body.includes(t))) return;
    await page.waitForTimeout(250);
  }
  const missing = texts.filter((t) => !body.includes(t));
  await page.screenshot({ path: join(ARTIFACTS, `failed-${what.replace(/\W+/g, '-')}.png`), fullPage: true });
  assert.fail(`${what}: the UI never showed ${JSON.stringify(missing)}; it showed:\n${body.slice(0, 3000)}`);
}

async function openTab(page: Page, name: string): Promise<void> {
  await page.getByText(name, { exact: true }).first().click();
}

describe('operator view: user metadata, search attributes and handler descriptions in the Temporal UI and CLI', function () {
  this.timeout(300_000);
  let h: Harness;
  let client: Client;
  let taskQueue: string;
  let stopWorker: () => Promise<void>;
  let backfillId: string;
  let backfillFile: string;
  let runbook: WorkflowHandle;

  before(async () => {
    h = getHarness();
    client = h.env.client;
    await resetTables(h.pool);
    taskQueue = uniqueTaskQueue('ui');
    const worker = await createWorker({ connection: h.env.nativeConnection, namespace: h.env.namespace ?? 'default', taskQueue, pool: h.pool, workflowBundle: h.workflowBundle });
    const running = worker.run();
    stopWorker = async () => {
      worker.shutdown();
      await running;
    };
    const env = { GOTONG_TASK_QUEUE: taskQueue };

    // A finished dry-run backfill, started as an operator would.
    const bf = generatedFile(`ui-backfill-${randomUUID().slice(0, 8)}`, { valid: 45, failEvery: 15 });
    backfillFile = bf.path;
    backfillId = backfillWorkflowId(bf.path, true);
    const done = await runCli(['webhook-backfill', '--file', bf.path, '--dry-run', '--batch-size', '10', '--json'], env);
    assert.equal(done.code, 0, done.stderr);

    // A runbook waiting at its first gate.
    const rb = generatedFile(`ui-runbook-${randomUUID().slice(0, 8)}`, { valid: 12 });
    const started = await runCli(['webhook-runbook', '--file', rb.path, '--approval', 'manual', '--detach'], env);
    assert.equal(started.code, 0, started.stderr);
    runbook = client.workflow.getHandle(runbookWorkflowId(rb.path));
    await waitFor('the runbook at the gate after step 1', async () => (await runbook.query<RunbookProgress>('progress')).phase === 'awaiting-approval', 120_000);
  });

  after(async () => {
    await runbook?.terminate('test over').catch(() => undefined);
    await stopWorker?.();
  });

  it('each run carries its summary, details and search attributes; workflows keep current details and outcome', async () => {
    const backfill = await client.workflow.getHandle(backfillId).describe();
    assert.equal(await backfill.staticSummary(), `Backfill ${fileName(backfillFile)} into the outbox (dry run)`);
    const details = (await backfill.staticDetails()) ?? '';
    assert.match(details, /\*\*dry run\*\*: `true`/);
    assert.match(details, /\*\*batch size \(lines\)\*\*: `10`/);
    assert.match(details, new RegExp(`Started by: \`gotong-worker webhook-backfill --file ${escape(backfillFile)} --dry-run --batch-size 10 --json\``));
    assert.deepEqual(
      {
        kind: backfill.typedSearchAttributes.get(SEARCH_ATTRIBUTES.kind),
        dryRun: backfill.typedSearchAttributes.get(SEARCH_ATTRIBUTES.dryRun),
        file: backfill.typedSearchAttributes.get(SEARCH_ATTRIBUTES.sourceFile),
        outcome: backfill.typedSearchAttributes.get(SEARCH_ATTRIBUTES.outcome),
      },
      { kind: 'backfill', dryRun: true, file: fileName(backfillFile), outcome: 'completed' },
    );

    const rb = await runbook.describe();
    assert.match((await rb.staticSummary()) ?? '', /^Recovery runbook for .*ui-runbook.* \(6 steps, gates wait for approval\)$/);
    assert.equal(rb.typedSearchAttributes.get(SEARCH_ATTRIBUTES.outcome), 'awaiting-approval');
    assert.equal(rb.typedSearchAttributes.get(SEARCH_ATTRIBUTES.runbookStep), 1);
    // Its step-1 child: summary names the runbook, attributes name the step.
    const child = await client.workflow.getHandle(runbookChildId(runbook.workflowId, 1)).describe();
    assert.match((await child.staticSummary()) ?? '', new RegExp(`^Backfill .* \\(dry run\\), step 1 of ${escape(runbook.workflowId)}$`));
    assert.equal(child.typedSearchAttributes.get(SEARCH_ATTRIBUTES.runbookStep), 1);
    assert.equal(child.typedSearchAttributes.get(SEARCH_ATTRIBUTES.outcome), 'completed');
  });

  it('the temporal CLI lists runs by search attribute and reads each query, the metadata and the descriptions', async () => {
    const backfills = await temporalList(h, `GotongKind="backfill" AND GotongDryRun=true AND GotongSourceFile="${fileName(backfillFile)}"`);
    assert.deepEqual(backfills.map((r) => r.execution.workflowId), [backfillId]);
    const waiting = await temporalList(h, 'GotongKind="runbook" AND GotongOutcome="awaiting-approval" AND ExecutionStatus="Running"');
    assert.deepEqual(waiting.map((r) => r.execution.workflowId), [runbook.workflowId]);

    const progress = await temporalJson<{ queryResult: Array<{ phase: string; processed: number }> }>(h, ['workflow', 'query', '--workflow-id', backfillId, '--name', 'progress']);
    assert.equal(progress.queryResult[0]!.phase, 'done');
    assert.equal(progress.queryResult[0]!.processed, 45 + 3);
    const rbProgress = await temporalJson<{ queryResult: RunbookProgress[] }>(h, ['workflow', 'query', '--workflow-id', runbook.workflowId, '--name', 'progress']);
    assert.equal(rbProgress.queryResult[0]!.phase, 'awaiting-approval');

    type Definitions = Array<{ name: string; description?: string }>;
    type Metadata = {
      queryResult: Array<{
        definition: { queryDefinitions: Definitions; signalDefinitions: Definitions; updateDefinitions: Definitions };
        currentDetails: string;
      }>;
    };
    const metadata = async (workflowId: string) => (await temporalJson<Metadata>(h, ['workflow', 'metadata', '--workflow-id', workflowId])).queryResult[0]!;
    const meta = { metadata: await metadata(runbook.workflowId) };
    assert.match(meta.metadata.currentDetails, new RegExp(`gotong-worker approve ${escape(runbook.workflowId)} --step 1`));
    const described = (list: Array<{ name: string; description?: string }>) => Object.fromEntries(list.filter((d) => !d.name.startsWith('__')).map((d) => [d.name, Boolean(d.description)]));
    assert.deepEqual(described(meta.metadata.definition.queryDefinitions), { progress: true });
    assert.deepEqual(described(meta.metadata.definition.signalDefinitions), { approve: true, reject: true });
    assert.deepEqual(described(meta.metadata.definition.updateDefinitions), { approve: true, reject: true });
    const bfMeta = { metadata: await metadata(backfillId) };
    assert.match(bfMeta.metadata.currentDetails, /\*\*Dry run, done\*\*: byte [\d,]+ of [\d,]+ \(100%\), 5 batches/);
    assert.deepEqual(described(bfMeta.metadata.definition.signalDefinitions), { pause: true, resume: true });

    // The timeline's activity and timer summaries are stored with the events.
    const history = await client.workflow.getHandle(backfillId).fetchHistory();
    const summaries = (history.events ?? []).map((e) => payloadText(e.userMetadata?.summary)).filter(Boolean);
    assert.ok(summaries.includes('batch 1 at byte 0 (dry run)'), `activity summaries: ${summaries.join(' | ')}`);
    assert.ok(summaries.some((s) => /^batch 2 at byte [1-9][\d,]* \(dry run\)$/.test(s)), `activity summaries: ${summaries.join(' | ')}`);
  });

  it('the histories these runs wrote (patch marker, upserts, summaries) replay on the code', async () => {
    const ids = [backfillId, runbook.workflowId, runbookChildId(runbook.workflowId, 1)];
    for (const workflowId of ids) {
      const history = await client.workflow.getHandle(workflowId).fetchHistory();
      const types = (history.events ?? []).map((e) => e.eventType);
      assert.ok(types.includes(temporal.api.enums.v1.EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES), `${workflowId} upserted its search attributes`);
      await Worker.runReplayHistory({ workflowBundle: h.workflowBundle }, history, workflowId);
    }
  });

  it('gotong-worker list filters by the search attributes', async () => {
    const env = { GOTONG_TASK_QUEUE: taskQueue };
    const dry = await runCli(['list', '--file', fileName(backfillFile), '--dry-run', '--json'], env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(dry.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { workflow_id: string }).workflow_id), [backfillId]);
    const gates = await runCli(['list', '--awaiting-approval', '--json'], env);
    assert.equal(gates.code, 0, gates.stderr);
    assert.deepEqual(gates.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { workflow_id: string }).workflow_id), [runbook.workflowId]);
  });

  it('no history written by this test run holds an event payload, a secret or a connection string', async () => {
    // The server is the test run's own: every run in it was started by a test file that ran before this one (mocha
    // runs files in name order, so this is most of the suite) or by this file. Histories are stored unencrypted
    // and shown to anyone who can read the namespace; payloads stay in PostgreSQL, secrets in the worker.
    const forbidden: Array<[string, RegExp]> = [
      ['a PostgreSQL connection string', /postgres(?:ql)?:\/\//i],
      ['the test database URL', new RegExp(escape(h.databaseUrl))],
      ['a webhook signing secret', /whsec_|\b[\w-]+-secret\b/],
      ['an event payload (its actor)', /"actor"\s*:/],
      ['an event payload (its request id)', /"request_id"\s*:/],
    ];
    const runs: Array<{ workflowId: string; runId: string }> = [];
    for await (const info of client.workflow.list()) runs.push({ workflowId: info.workflowId, runId: info.runId });
    assert.ok(runs.length >= 3, `runs in the namespace: ${runs.length}`);
    const findings: string[] = [];
    let next = 0;
    const lane = async () => {
      while (next < runs.length) {
        const { workflowId, runId } = runs[next++]!;
        const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
        const text = textsOf(history).join('\n');
        for (const [what, pattern] of forbidden) {
          const m = pattern.exec(text);
          if (m) findings.push(`${workflowId} (${runId}): ${what}: ...${text.slice(Math.max(0, m.index - 80), m.index + 80)}...`);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
    assert.deepEqual(findings, [], `${findings.length} of ${runs.length} histories hold what they must not:\n${findings.join('\n')}`);
  });

  it('a namespace without the search attributes: the worker check names them and the commands; runs start and finish without them', async () => {
    const namespace = `gotong-no-sa-${randomUUID().slice(0, 8)}`;
    await run(h.temporalCli, ['operator', 'namespace', 'create', '--namespace', namespace, '--address', h.env.address], { timeout: 60_000 });
    await waitFor(`namespace ${namespace}`, async () => {
      const answer = await h.env.nativeConnection.operatorService.listSearchAttributes({ namespace }).catch(() => null);
      return answer !== null;
    });
    const check = await checkSearchAttributes(h.env.nativeConnection.operatorService, namespace);
    assert.equal(check.ok, false);
    assert.deepEqual(check.ok === false && check.missing, ['GotongKind', 'GotongDryRun', 'GotongSourceFile', 'GotongRunbookStep', 'GotongOutcome']);
    assert.match(check.ok === false ? check.message : '', new RegExp(`temporal operator search-attribute create --namespace ${namespace} --name GotongRunbookStep --type Int`));
    assert.deepEqual(await checkSearchAttributes(h.env.nativeConnection.operatorService, h.env.namespace ?? 'default'), { ok: true });

    const queue = uniqueTaskQueue('ui-no-sa');
    const worker = await createWorker({ connection: h.env.nativeConnection, namespace, taskQueue: queue, pool: h.pool, workflowBundle: h.workflowBundle });
    const file = generatedFile(`ui-no-sa-${randomUUID().slice(0, 8)}`, { valid: 5 });
    const result = await worker.runUntil(() => runCli(['webhook-backfill', '--file', file.path, '--dry-run', '--json'], { GOTONG_TASK_QUEUE: queue, TEMPORAL_NAMESPACE: namespace }));
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, new RegExp(`namespace '${namespace}' lacks the search attributes GotongKind, .*: the run starts without them`));
    assert.equal((JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { processed: number }).processed, 5);

    // `list` works there; its filters on the project's attributes say what is missing and how to add it.
    const env = { TEMPORAL_NAMESPACE: namespace };
    const listed = await runCli(['list', '--kind', 'backfill'], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /webhook-backfill\//);
    const filtered = await runCli(['list', '--awaiting-approval'], env);
    assert.equal(filtered.code, 1, filtered.stderr);
    assert.equal(filtered.stderr.trimEnd().split('\n').length, 1, filtered.stderr);
    assert.match(filtered.stderr, new RegExp(`--awaiting-approval filter on the project's search attributes, which namespace '${namespace}' lacks; register them once: temporal operator search-attribute create --namespace ${namespace} `));
    assert.doesNotMatch(filtered.stderr, /the run starts without them/);
  });

  describe('in headless Chromium', () => {
    let browser: Browser;
    let page: Page;

    before(async () => {
      if (!existsSync(CHROMIUM)) {
        assert.fail(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium; .ci/run does it)`);
      }
      mkdirSync(ARTIFACTS, { recursive: true });
      browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
      page = await browser.newPage({ viewport: { width: 1600, height: 1200 } });
    });
    after(async () => {
      await browser?.close();
    });

    const ns = () => h.env.namespace ?? 'default';

    it('filters the list by a search attribute', async () => {
      const query = encodeURIComponent(`GotongKind="runbook" AND GotongOutcome="awaiting-approval" AND ExecutionStatus="Running"`);
      await page.goto(`${h.uiUrl}/namespaces/${ns()}/workflows?query=${query}`);
      await waitForTexts(page, [runbook.workflowId], 'list filtered by GotongOutcome');
      const body = await bodyText(page);
      assert.ok(!body.includes(backfillId), 'the backfill is filtered out');
      await page.screenshot({ path: join(ARTIFACTS, 'list-awaiting-approval.png'), fullPage: true });
    });

    it('a finished backfill shows its summary, current details and result', async () => {
      const { runId } = await client.workflow.getHandle(backfillId).describe();
      await page.goto(`${h.uiUrl}/namespaces/${ns()}/workflows/${encodeURIComponent(backfillId)}/${runId}/history`);
      // The history view: the result, and the activities in the timeline by their summaries.
      await waitForTexts(page, ['"processed": 48', 'batch 1 at byte 0 (dry run)', 'check the file and take its fingerprint'], 'backfill history');
      await page.screenshot({ path: join(ARTIFACTS, 'backfill-history.png'), fullPage: true });
      await openTab(page, 'User Metadata');
      await waitForTexts(page, [`Backfill ${fileName(backfillFile)} into the outbox (dry run)`, 'Dry run, done', 'Started by'], 'backfill user metadata');
      await page.screenshot({ path: join(ARTIFACTS, 'backfill-user-metadata.png'), fullPage: true });
    });

    it('a runbook waiting at a gate shows its summary, current details (the approve command) and progress', async () => {
      const { runId } = await runbook.describe();
      await page.goto(`${h.uiUrl}/namespaces/${ns()}/workflows/${encodeURIComponent(runbook.workflowId)}/${runId}/history`);
      await waitForTexts(page, ['Recovery runbook for', 'step 1 of'], 'runbook history');
      await page.screenshot({ path: join(ARTIFACTS, 'runbook-history.png'), fullPage: true });
      await openTab(page, 'User Metadata');
      await waitForTexts(page, ['Recovery runbook for', 'Waiting for approval', `gotong-worker approve ${runbook.workflowId} --step 1`], 'runbook user metadata');
      await page.screenshot({ path: join(ARTIFACTS, 'runbook-at-gate.png'), fullPage: true });
      await openTab(page, 'Queries');
      await waitForTexts(page, ['Query Type', 'Run Query'], 'runbook queries');
      await page.getByRole('button', { name: 'Run Query' }).click();
      await waitForTexts(page, ['"phase": "awaiting-approval"', '"currentStep": 1'], 'runbook progress query');
      await page.screenshot({ path: join(ARTIFACTS, 'runbook-queries.png'), fullPage: true });
    });
  });
});

function fileName(path: string): string {
  return path.split('/').pop()!;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Every string in a history, payload bytes decoded as the UTF-8 (JSON) they hold. */
function textsOf(value: unknown, out: string[] = []): string[] {
  if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'));
  else if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) textsOf(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) textsOf(v, out);
  return out;
}
