/**
 * Recorded workflow histories (test/fixtures/histories/<set>/<name>.json): how they are written, read back and
 * checked for what must never be in a history (payloads, secrets, connection strings, receiver URLs).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import { FIXTURES } from './harness';

export const HISTORIES = join(FIXTURES, 'histories');

type HistoryJson = Record<string, unknown>;

/**
 * The message as plain JSON (enum names, 64-bit numbers as strings, bytes in base64): History.fromObject reads it
 * back exactly. (historyFromJSON cannot be used: npm installs two copies of protobufjs 8.)
 */
export function historyToJson(history: unknown): HistoryJson {
  const message = temporal.api.history.v1.History.fromObject(history as HistoryJson);
  return temporal.api.history.v1.History.toObject(message, { longs: String, enums: String, bytes: String });
}

export function historyFromJson(json: unknown): temporal.api.history.v1.History {
  return temporal.api.history.v1.History.fromObject(json as HistoryJson);
}

export interface HistoryFixture {
  /** `<set>/<file>`: unique across sets, used as the workflow id when replaying. */
  name: string;
  path: string;
}

/** Every fixture of every set, oldest set first by name (sets are named by release or date). */
export function historyFixtures(root = HISTORIES): HistoryFixture[] {
  const fixtures: HistoryFixture[] = [];
  for (const set of readdirSync(root).sort()) {
    if (!statSync(join(root, set)).isDirectory()) continue;
    for (const file of readdirSync(join(root, set)).sort()) {
      if (file.endsWith('.json')) fixtures.push({ name: `${set}/${file}`, path: join(root, set, file) });
    }
  }
  return fixtures;
}

/** What a recorded history must not contain, whatever it is encoded in (the text, or a payload's base64 data). */
export const FORBIDDEN_IN_HISTORIES: readonly { what: string; pattern: RegExp }[] = [
  { what: 'a database connection string', pattern: /postgres(?:ql)?:\/\//i },
  { what: 'a URL (a receiver is configured in the worker, never passed to a workflow)', pattern: /https?:\/\//i },
  { what: 'a webhook signing secret', pattern: /whsec_|-secret\b/i },
  { what: "an event's payload (the recorder's marker)", pattern: /payload-marker/i },
  { what: 'an authorization header', pattern: /authorization|bearer /i },
];

/** Every string in a JSON value, with base64 `data` fields (payloads) decoded as well. */
function* strings(value: unknown, key?: string): Generator<string> {
  if (typeof value === 'string') {
    yield value;
    if (key === 'data') yield Buffer.from(value, 'base64').toString('utf8');
  } else if (Array.isArray(value)) {
    for (const item of value) yield* strings(item);
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) yield* strings(v, k);
  }
}

/** The reasons a history may not be kept as a fixture (empty: fine). */
export function historyLeaks(json: unknown, extra: readonly string[] = []): string[] {
  const found = new Set<string>();
  for (const text of strings(json)) {
    for (const { what, pattern } of FORBIDDEN_IN_HISTORIES) if (pattern.test(text)) found.add(what);
    for (const literal of extra) if (literal && text.includes(literal)) found.add(`the literal ${JSON.stringify(literal.slice(0, 12))}...`);
  }
  return [...found];
}

/**
 * A fixture as written by the recorder: the history with the workflow id it ran under (a workflow's commands may
 * depend on it: the runbook's children are named after it) and where it came from. Older fixtures are the bare
 * history; they replay under their fixture name.
 */
export interface RecordedHistory {
  workflowId: string;
  runId: string;
  workflowType: string;
  /** The commit (and whether the tree had changes) the workflow code was recorded from. */
  recordedFrom: string;
  history: HistoryJson;
}

export function readHistoryFixture(fixture: HistoryFixture): RecordedHistory {
  const json = JSON.parse(readFileSync(fixture.path, 'utf8')) as HistoryJson;
  if ('history' in json) return json as unknown as RecordedHistory;
  const started = (json as { events?: { workflowExecutionStartedEventAttributes?: { workflowType?: { name?: string }; originalExecutionRunId?: string } }[] })
    .events?.[0]?.workflowExecutionStartedEventAttributes;
  return {
    workflowId: fixture.name,
    runId: started?.originalExecutionRunId ?? '',
    workflowType: started?.workflowType?.name ?? '(unknown)',
    recordedFrom: '(not recorded)',
    history: json,
  };
}
