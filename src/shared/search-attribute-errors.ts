/** The server's answer to a start (or a list query) naming a search attribute the namespace does not have. */
export function isMissingSearchAttribute(err: unknown): boolean {
  const e = err as { message?: string; cause?: { message?: string } } | undefined;
  const text = `${e?.message ?? ''} ${e?.cause?.message ?? ''}`;
  return /search attribute/i.test(text) && /(not defined|unknown|not registered|invalid|not found|not a valid)/i.test(text);
}
