/**
 * How a config file (leader.yml, node.yml, up.yml; DESIGN §4) is read: YAML checked by zod strict
 * objects through the shared reader (scheduler/common/yaml-schema.ts), so a misspelt key stops the
 * daemon at startup instead of silently taking a default. The roles' schemas live beside this file
 * (leader-config.ts, node-config.ts, up-config.ts), their shared fields in config-fields.ts.
 *
 * Choices the design leaves open, made here:
 * - Relative paths resolve against the config file's folder (the current directory for `secd up`'s
 *   embedded defaults), so a config means the same thing whatever directory systemd starts us in.
 * - Every field problem is listed at once, one line each, naming the file and the key's line; checks
 *   that join fields (secrets, `public_url` from `listen`, the hostname as node_id) run once the
 *   fields themselves are valid.
 * - zod's sentences are reworded to read after a key name ("gitlab.url is required").
 */
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import path from 'node:path';
import type { z } from 'zod';
import { describe, show } from '../../scheduler/common/describe-value.js';
import { errorText, isErrno } from '../../scheduler/common/errors.js';
import { lineSuffix, parseYamlWith } from '../../scheduler/common/yaml-schema.js';

/** Environment variables the loader reads (only `CREDENTIALS_DIRECTORY`); injectable for tests. */
export type ConfigEnv = Readonly<Record<string, string | undefined>>;

/** A config file that cannot be used; `problems` holds one line per problem, each naming the file. */
export class ConfigError extends Error {
  constructor(
    /** The file as the operator named it (or `<embedded defaults>`). */
    readonly file: string,
    /** Dotted key of the first problem ('' when the whole file is at fault). */
    readonly key: string,
    /** One human sentence per problem, each starting with the file name. */
    readonly problems: readonly string[],
  ) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

/** What the schemas need from outside the YAML text: where relative paths start, env, hostname. */
export interface LoadContext {
  baseDir: string;
  env: ConfigEnv;
  hostname: string;
}

/** Optional knobs for the parse functions; tests pin the hostname and base folder. */
export interface ParseOptions {
  /** Folder relative paths resolve against; default: the folder of `sourceName`. */
  baseDir?: string;
  /** Default node_id; default: os.hostname(). */
  hostname?: string;
}

/** Parses one kind of config file's text; `sourceName` names the file in messages and sets the base folder. */
export type ConfigParser<T> = (text: string, sourceName: string, env?: ConfigEnv, opts?: ParseOptions) => T;

/** The parse function for the config files `makeSchema` describes; it throws ConfigError naming file and key. */
export function configParser<S extends z.ZodType>(makeSchema: (ctx: LoadContext) => S): ConfigParser<z.output<S>> {
  return (text, sourceName, env = process.env, opts = {}) => {
    const ctx: LoadContext = {
      baseDir: opts.baseDir ?? path.dirname(path.resolve(sourceName)),
      env,
      hostname: opts.hostname ?? osHostname(),
    };
    const result = parseYamlWith(text, makeSchema(ctx), { example: 'listen: 127.0.0.1:8080', error: friendlyMessage });
    if (result.ok) return result.data;
    throw new ConfigError(
      sourceName,
      result.problems[0]?.key ?? '',
      result.problems.map((p) => `${sourceName}: ${p.sentence}${lineSuffix(p)}`),
    );
  };
}

/** The text of a config file; a file that cannot be read is a ConfigError naming it. */
export function readConfigText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, '', [`${file}: cannot be read (${errorCode(err)})`]);
  }
}

/** The errno code of a failed file operation (`ENOENT`), else its message: short enough for one line. */
export function errorCode(err: unknown): string {
  return isErrno(err) ? err.code! : errorText(err);
}

/** Zod's default sentences, rewritten as predicates that read after a key name. */
function friendlyMessage(iss: z.core.$ZodRawIssue): string | undefined {
  switch (iss.code) {
    case 'invalid_type':
      if (iss.input === undefined) return 'is required';
      if (iss.input === null) return 'has no value (remove the key to get the default)';
      if (iss.expected === 'object') return `must be a mapping of keys (got ${describe(iss.input)})`;
      if (iss.expected === 'int') return `must be a whole number (got ${show(iss.input)})`;
      return `must be ${article(String(iss.expected))} (got ${show(iss.input)})`;
    case 'too_small':
      if (iss.origin === 'string') return 'must not be empty';
      return `must be ${iss.inclusive ? 'at least' : 'greater than'} ${String(iss.minimum)} (got ${show(iss.input)})`;
    case 'too_big':
      return `must be ${iss.inclusive ? 'at most' : 'less than'} ${String(iss.maximum)} (got ${show(iss.input)})`;
    default:
      return undefined;
  }
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`;
}
