/**
 * "Read text, parse YAML, validate with zod, name the key", written once for every YAML file secd
 * reads: the operators' config files (daemon/config) and the researcher's `secd.yml`
 * (scheduler/policy/project-policy.ts). Renovate's shared `Yaml` schema helper is the model.
 *
 * The caller keeps only what differs between files: the schema, the error map that words zod's
 * issues, the example a non-mapping file is pointed to, and how many problems it shows (a config
 * lists them all, secd.yml reports the first one on the commit status).
 *
 * Choices made here:
 * - A YAML syntax error is reported alone, with its line and column: the rest of the file cannot be
 *   trusted. Aliases expand to at most 100 nodes ("billion laughs" stays a syntax-sized problem).
 * - An empty file is an empty mapping, so every key takes its default.
 * - A caller reading someone else's text (secd.yml: the researcher's) passes `bounds`. The text is
 *   measured before it is parsed (bytes), then only lexed — linear, and stopped at the bound — to
 *   count its tokens before the document is composed: the `yaml` library checks keys for uniqueness
 *   pairwise, so 45k keys in one mapping held the leader's event loop for tens of seconds (issue 13).
 *   Under the token bound no mapping is large enough for that to matter; nesting depth is checked on
 *   the composed document. Config files (the sysadmin's own) pass no bounds and read as before.
 * - Each problem names the key as a dotted path (`gitlab.token`, `datasets[1]`) and, where the key
 *   is in the text, its line; a message may say `{parent}` to name a sibling key by its full path
 *   (`gitlab.token and {parent}token_file` → `gitlab.token and gitlab.token_file`).
 */
import { Lexer, LineCounter, parseDocument, isMap, isPair, isSeq, type Document } from 'yaml';
import type { z } from 'zod';
import { describe, dotted } from './describe-value.js';

/** One thing wrong with a YAML file, worded to follow the file's name and a colon. */
export interface YamlProblem {
  /** Where the problem is ([] when the whole file is at fault). */
  path: readonly (string | number)[];
  /** `path` dotted ('' when the whole file is at fault). */
  key: string;
  /** The sentence, starting with the key: `gitlab.token is required`, `unknown key "gitlab.tokn"`. */
  sentence: string;
  /** The 1-based line of the key in the text, when it is there (null for a missing key). */
  line: number | null;
}

/** A YAML file read against a schema: the schema's output and the mapping it came from, or the problems. */
export type YamlResult<T> =
  | { ok: true; data: T; raw: Record<string, unknown> }
  | { ok: false; problems: YamlProblem[] };

/** What a caller tells {@link parseYamlWith} beside the text and the schema. */
export interface YamlOptions {
  /** A line shown to someone whose file is not a mapping, e.g. `listen: 127.0.0.1:8080`. */
  example: string;
  /** Words zod's issues (returns undefined to keep zod's own sentence). */
  error?: z.core.$ZodErrorMap;
  /** Limits checked before the text is parsed (absent: none, for files the operator wrote). */
  bounds?: YamlBounds;
}

/** How much text, how many YAML tokens and how deep a nesting a file may have. */
export interface YamlBounds {
  /** Bytes of UTF-8. */
  maxBytes: number;
  /** Lexer tokens: every key, value, indicator, space run, newline and comment counts one. */
  maxTokens: number;
  /** Mappings and lists inside each other; the top-level mapping is depth 1. */
  maxDepth: number;
}

/** Parses `text` as YAML and checks it against `schema`; never throws for anything in the text. */
export function parseYamlWith<S extends z.ZodType>(text: string, schema: S, opts: YamlOptions): YamlResult<z.output<S>> {
  const tooBig = opts.bounds ? boundsProblem(text, opts.bounds) : null;
  if (tooBig) return fileProblem(tooBig);
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const { line, col } = lineCounter.linePos(yamlError.pos[0]);
    return fileProblem(`not valid YAML at line ${line}, column ${col}: ${yamlError.message.split('\n')[0]}`);
  }
  if (opts.bounds && depthOf(doc.contents, opts.bounds.maxDepth + 1) > opts.bounds.maxDepth) {
    return fileProblem(`nests mappings and lists deeper than ${opts.bounds.maxDepth} levels, the limit`);
  }
  let raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return fileProblem(`the file must be a mapping of keys (like ${JSON.stringify(opts.example)}), not ${describe(raw)}`);
  }
  const mapping = raw as Record<string, unknown>;
  const result = schema.safeParse(mapping, opts.error ? { error: opts.error } : undefined);
  if (result.success) return { ok: true, data: result.data, raw: mapping };
  const problems: YamlProblem[] = [];
  for (const issue of result.error.issues) {
    const at = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        const path = [...at, k];
        const key = dotted(path);
        problems.push({ path, key, sentence: `unknown key "${key}"`, line: lineOf(doc, lineCounter, at, k) });
      }
    } else {
      const key = dotted(at);
      const parent = at.length > 1 ? `${dotted(at.slice(0, -1))}.` : '';
      const message = issue.message.replaceAll('{parent}', parent);
      problems.push({ path: at, key, sentence: `${key ? `${key} ` : ''}${message}`, line: lineOf(doc, lineCounter, at) });
    }
  }
  return { ok: false, problems };
}

/** `(line n)` for a problem that has a line, '' otherwise: how the config files point into the text. */
export function lineSuffix(problem: YamlProblem): string {
  return problem.line === null ? '' : ` (line ${problem.line})`;
}

/** Why `text` is over `bounds` before any parsing, or null: its size, then its lexer tokens (lexing stops at the bound). */
function boundsProblem(text: string, bounds: YamlBounds): string | null {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > bounds.maxBytes) {
    return `the file is ${bytes.toLocaleString('en-US')} bytes, more than the limit of ${sizeText(bounds.maxBytes)}`;
  }
  let tokens = 0;
  for (const _ of new Lexer().lex(text)) {
    if (++tokens > bounds.maxTokens) {
      return `the file has more than ${bounds.maxTokens.toLocaleString('en-US')} YAML tokens (keys, values, punctuation), the limit`;
    }
  }
  return null;
}

/** `65,536 bytes (64 KiB)`. */
function sizeText(n: number): string {
  return `${n.toLocaleString('en-US')} bytes${n % 1024 === 0 ? ` (${n / 1024} KiB)` : ''}`;
}

/** How deep mappings and lists nest under `node`, counted no further than `stop`. */
function depthOf(node: unknown, stop: number): number {
  if (stop <= 0 || !(isMap(node) || isSeq(node))) return 0;
  let deepest = 0;
  for (const item of node.items as unknown[]) {
    const children = isPair(item) ? [item.key, item.value] : [item];
    for (const child of children) deepest = Math.max(deepest, depthOf(child, stop - 1));
    if (deepest >= stop - 1) break;
  }
  return 1 + deepest;
}

function fileProblem(sentence: string): { ok: false; problems: YamlProblem[] } {
  return { ok: false, problems: [{ path: [], key: '', sentence, line: null }] };
}

/** The line of the value at `at`, or with `unknownKey` of that key inside the mapping at `at`. */
function lineOf(doc: Document, lc: LineCounter, at: (string | number)[], unknownKey?: string): number | null {
  let offset: number | undefined;
  if (unknownKey !== undefined) {
    const map = at.length === 0 ? doc.contents : doc.getIn(at, true);
    if (isMap(map)) {
      const pair = map.items.find((p) => (p.key as { value?: unknown } | null)?.value === unknownKey);
      offset = (pair?.key as { range?: [number, number, number] } | null)?.range?.[0];
    }
  } else if (at.length > 0) {
    const node = doc.getIn(at, true) as { range?: [number, number, number] } | undefined;
    offset = node?.range?.[0];
  }
  return offset === undefined ? null : lc.linePos(offset).line;
}
