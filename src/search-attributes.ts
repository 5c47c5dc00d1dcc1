import type { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTE_DEFINITIONS, searchAttributeCreateCommands } from './shared/run-metadata';

type OperatorService = Pick<temporal.api.operatorservice.v1.OperatorService, 'listSearchAttributes'>;

/** Indexed value types by the names `temporal operator search-attribute create --type` takes. */
const TYPE_NAMES: Record<number, string> = { 1: 'Text', 2: 'Keyword', 3: 'Int', 4: 'Double', 5: 'Bool', 6: 'Datetime', 7: 'KeywordList' };

export type SearchAttributeCheck =
  | { ok: true }
  | { ok: false; missing: string[]; wrongType: string[]; message: string }
  | { ok: 'unknown'; message: string };

/**
 * Whether the namespace has the project's search attributes (with their types). Missing ones only cost the Temporal
 * UI its filters: clients start runs without them and the workflows then set none, so the caller warns, never stops.
 */
export async function checkSearchAttributes(operator: OperatorService, namespace: string): Promise<SearchAttributeCheck> {
  let custom: Record<string, number>;
  try {
    const answer = await operator.listSearchAttributes({ namespace });
    custom = (answer.customAttributes ?? {}) as Record<string, number>;
  } catch (err) {
    // Temporal Cloud does not serve the operator service to API keys; its namespaces are set up in its own console.
    return {
      ok: 'unknown',
      message:
        `could not list the search attributes of namespace '${namespace}' (${(err as Error).message}); make sure ` +
        `${SEARCH_ATTRIBUTE_DEFINITIONS.map((a) => `${a.name} (${a.type})`).join(', ')} exist, or the Temporal UI cannot filter runs by them`,
    };
  }
  const missing = SEARCH_ATTRIBUTE_DEFINITIONS.filter((a) => custom[a.name] === undefined).map((a) => a.name);
  const wrongType = SEARCH_ATTRIBUTE_DEFINITIONS.filter((a) => custom[a.name] !== undefined && TYPE_NAMES[custom[a.name]!] !== a.type).map(
    (a) => `${a.name} is ${TYPE_NAMES[custom[a.name]!] ?? custom[a.name]}, not ${a.type}`,
  );
  if (missing.length === 0 && wrongType.length === 0) return { ok: true };
  const parts: string[] = [];
  if (missing.length > 0) {
    parts.push(
      `namespace '${namespace}' lacks the search attributes ${missing.join(', ')}: runs start without them and the Temporal UI ` +
        `cannot filter by them (nothing else changes). Create them: ${searchAttributeCreateCommands(namespace, missing).join(' ; ')}`,
    );
  }
  if (wrongType.length > 0) {
    parts.push(`search attributes with another type than this tool sets: ${wrongType.join('; ')}; starts that set them will be refused and run without any`);
  }
  return { ok: false, missing, wrongType, message: parts.join('. ') };
}

const TYPE_VALUES: Record<string, number> = Object.fromEntries(Object.entries(TYPE_NAMES).map(([value, name]) => [name, Number(value)]));

/**
 * Registers the missing attributes on a namespace of the project's own (the demo's): a dev server whose SQLite file
 * predates them, or a namespace the demo created on a running server, lacks them. Returns those it added.
 */
export async function registerMissingSearchAttributes(
  operator: Pick<temporal.api.operatorservice.v1.OperatorService, 'listSearchAttributes' | 'addSearchAttributes'>,
  namespace: string,
): Promise<string[]> {
  const check = await checkSearchAttributes(operator, namespace);
  if (check.ok !== false || check.missing.length === 0) return [];
  const searchAttributes = Object.fromEntries(
    SEARCH_ATTRIBUTE_DEFINITIONS.filter((a) => check.missing.includes(a.name)).map((a) => [a.name, TYPE_VALUES[a.type]!]),
  );
  await operator.addSearchAttributes({ namespace, searchAttributes });
  return check.missing;
}
