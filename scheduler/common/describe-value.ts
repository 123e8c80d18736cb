/**
 * How config and secd.yml messages name a key and the value a person wrote, so both speak alike.
 */

/** `["gitlab", "token"]` → `gitlab.token`; list indexes as `[n]`. */
export function dotted(at: readonly (string | number)[]): string {
  return at.reduce<string>((s, p) => (typeof p === 'number' ? `${s}[${p}]` : s ? `${s}.${p}` : p), '');
}

/** A value as it would appear in YAML: strings quoted, scalars as is, others described. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return describe(value);
}

/** What kind of thing a value is, in words ("a list", "a mapping", "nothing"). */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the text ${JSON.stringify(value)}`;
  return String(value);
}
