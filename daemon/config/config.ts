/**
 * The leader's, the node's and `secd up`'s configuration files (DESIGN §4): YAML checked by zod
 * strict objects, so a misspelt key stops the daemon at startup instead of silently taking a default.
 *
 * Choices the design leaves open, made here:
 * - Secrets (`gitlab.token`, `gitlab.webhook_secret`, `mysql.admin_password`, the node's `token`)
 *   come from exactly one source: inline, `<key>_file`, or `$CREDENTIALS_DIRECTORY/<credential>`,
 *   where the credential name is the dotted key with dots turned into underscores
 *   (`gitlab_token`, `gitlab_webhook_secret`, `mysql_admin_password`, `token`). Two sources for the
 *   same secret is an error: whichever we picked, an operator who rotated the other would be surprised.
 *   Trailing newlines of secret files are dropped (`echo secret > file` adds one).
 * - Relative paths resolve against the config file's folder (the current directory for `secd up`'s
 *   embedded defaults), so a config means the same thing whatever directory systemd starts us in.
 *   `nvidia_smi` is a command: a bare name is looked up in PATH, a name with a slash is a path.
 * - `public_url` defaults to `http://<listen>` unless `listen` is a wildcard address or port 0, where
 *   no URL can be guessed and it is required.
 * - `listen` port 0 is allowed (the OS picks a free port): tests use it.
 * - Byte sizes take a whole number of bytes or a string like `"100 MiB"` (B, KiB, MiB, GiB, TiB).
 * - Every field problem is listed at once, one line each; checks that join fields (secrets,
 *   `public_url` from `listen`, the hostname as node_id) run once the fields themselves are valid.
 * - A node's `cache_root` has no default in node.yml: caches must follow a researcher across nodes
 *   (an NFS mount in production), and a silent node-local default would hide that mistake.
 */
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { isIP } from 'node:net';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, type Document } from 'yaml';
import { z } from 'zod';
import { describe, dotted, show } from '../../scheduler/common/describe-value.js';

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
interface LoadContext {
  baseDir: string;
  env: ConfigEnv;
  hostname: string;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// ---------------------------------------------------------------------------------------------
// Field schemas

/** A non-empty path, made absolute against the config's folder. */
function pathField(ctx: LoadContext) {
  return z
    .string()
    .min(1)
    .transform((p) => path.resolve(ctx.baseDir, p));
}

/** `host:port` or `[v6]:port`; the host part is kept without brackets, as `listen()` wants it. */
export function parseListenAddress(text: string): { host: string; port: number } | null {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const host = m[1]!;
  const port = Number(m[2]);
  if (port > 65535) return null;
  if (text.startsWith('[')) {
    if (isIP(host) !== 6) return null;
  } else if (/^[0-9.]+$/.test(host)) {
    if (isIP(host) !== 4) return null;
  } else if (!host.split('.').every((l) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l))) {
    return null;
  }
  return { host, port };
}

// A bare port (`listen: 8080`) is a YAML number: take it too, so it gets the host:port hint.
const listenField = z.union([z.string(), z.number()]).transform((value, zctx) => {
  const text = String(value);
  const parsed = parseListenAddress(text);
  if (parsed) return parsed;
  zctx.issues.push({
    code: 'custom',
    input: text,
    message: `must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (got ${show(text)})`,
  });
  return z.NEVER;
});

/** A URL whose scheme is one of `schemes`; returned without a trailing slash. */
function urlField(schemes: readonly string[]) {
  return z.string().transform((text, zctx) => {
    let url: URL | null = null;
    try {
      url = new URL(text);
    } catch {
      url = null;
    }
    if (!url || !schemes.includes(url.protocol.slice(0, -1))) {
      zctx.issues.push({
        code: 'custom',
        input: text,
        message: `must be a ${schemes.join(':// or ')}:// URL (got ${show(text)})`,
      });
      return z.NEVER;
    }
    return text.replace(/\/+$/, '');
  });
}

const BYTE_UNITS: Record<string, number> = { '': 1, B: 1, KiB: 1024, MiB: MiB, GiB: GiB, TiB: 1024 * GiB };

/** A whole number of bytes, or a string such as "100 MiB". */
const bytesField = z
  .union([z.number(), z.string()], { error: 'must be a number of bytes or a size like "100 MiB"' })
  .transform((value, zctx) => {
    let bytes: number | null = null;
    if (typeof value === 'number') {
      bytes = Number.isSafeInteger(value) ? value : null;
    } else {
      const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?\s*$/.exec(value);
      if (m) bytes = Math.floor(Number(m[1]) * BYTE_UNITS[m[2] ?? '']!);
    }
    if (bytes === null || bytes <= 0) {
      zctx.issues.push({
        code: 'custom',
        input: value,
        message: `must be a positive number of bytes or a size like "100 MiB" (got ${show(value)})`,
      });
      return z.NEVER;
    }
    return bytes;
  });

const positiveInt = z.number().int().gt(0);
const nonNegativeInt = z.number().int().gte(0);

/** A git branch name as `git check-ref-format --branch` would take it (the common subset). */
function isBranchName(name: string): boolean {
  return (
    name.length > 0 &&
    name.length <= 255 &&
    !name.startsWith('-') &&
    !name.startsWith('/') &&
    !name.endsWith('/') &&
    !name.endsWith('.') &&
    !name.endsWith('.lock') &&
    !name.includes('..') &&
    !name.includes('//') &&
    !name.includes('@{') &&
    name !== '@' &&
    !/[\x00-\x20\x7f~^:?*[\\]/.test(name)
  );
}

const runBranchField = z.string().superRefine((name, zctx) => {
  if (name === 'default') return;
  if (!isBranchName(name)) {
    zctx.issues.push({
      code: 'custom',
      input: name,
      message: `must be "default" or a git branch name (got ${show(name)})`,
    });
  } else if (name.startsWith('secd-')) {
    // Pushes to secd-* branches are always ignored (they are secd's own results), so such a run
    // branch could never start a run.
    zctx.issues.push({
      code: 'custom',
      input: name,
      message: `cannot be a secd-* branch: those are secd's results branches and never start runs`,
    });
  }
});

/** Node ids appear in URLs, database rows and tokens: keep them to hostname-like characters. */
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

// ---------------------------------------------------------------------------------------------
// Secrets

interface SecretSpec {
  /** Key name inside its section, e.g. 'token'. */
  name: string;
  /** File name under $CREDENTIALS_DIRECTORY, e.g. 'gitlab_token'. */
  credential: string;
  /** An empty secret is a valid value (MySQL root without a password). */
  allowEmpty: boolean;
  /** Value when no source is given; undefined = required. */
  fallback?: string;
}

/** Drops the newline(s) an editor or `echo` leaves at the end of a secret file. */
function trimSecret(text: string): string {
  return text.replace(/[\r\n]+$/, '');
}

/**
 * Picks the one source of a secret. Issues use `{parent}` so the formatter can name the sibling
 * key with its full dotted path.
 */
function resolveSecret(
  spec: SecretSpec,
  inline: string | undefined,
  file: string | undefined,
  ctx: LoadContext,
  zctx: z.RefinementCtx,
): string {
  const credDir = ctx.env.CREDENTIALS_DIRECTORY;
  const credPath = credDir ? path.join(credDir, spec.credential) : null;
  const credExists = credPath !== null && exists(credPath);
  const fail = (key: string, message: string): string => {
    zctx.issues.push({ code: 'custom', input: undefined, path: [key], message });
    return '';
  };
  if (inline !== undefined && file !== undefined) {
    return fail(spec.name, `and {parent}${spec.name}_file are both set; keep one`);
  }
  if ((inline !== undefined || file !== undefined) && credExists) {
    const key = inline !== undefined ? spec.name : `${spec.name}_file`;
    return fail(key, `is set, and so is $CREDENTIALS_DIRECTORY/${spec.credential}; keep one`);
  }
  let value: string;
  let key = spec.name;
  if (inline !== undefined) {
    value = inline;
  } else if (file !== undefined) {
    key = `${spec.name}_file`;
    const abs = path.resolve(ctx.baseDir, file);
    try {
      value = trimSecret(readFileSync(abs, 'utf8'));
    } catch (err) {
      return fail(key, `names a file that cannot be read (${abs}: ${errorCode(err)})`);
    }
  } else if (credExists && credPath) {
    try {
      value = trimSecret(readFileSync(credPath, 'utf8'));
    } catch (err) {
      return fail(spec.name, `cannot be read from $CREDENTIALS_DIRECTORY/${spec.credential} (${errorCode(err)})`);
    }
  } else if (spec.fallback !== undefined) {
    return spec.fallback;
  } else {
    return fail(
      spec.name,
      `is required: set {parent}${spec.name}, {parent}${spec.name}_file, or provide the systemd credential "${spec.credential}"`,
    );
  }
  if (!spec.allowEmpty && value.length === 0) return fail(key, 'is empty');
  return value;
}

function exists(p: string): boolean {
  try {
    accessSync(p, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

function errorCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.message : String(err);
}

// ---------------------------------------------------------------------------------------------
// Sections

function gitlabSchema(ctx: LoadContext) {
  return z
    .strictObject({
      url: urlField(['http', 'https']),
      token: z.string().optional(),
      token_file: z.string().min(1).optional(),
      webhook_secret: z.string().optional(),
      webhook_secret_file: z.string().min(1).optional(),
      run_branch: runBranchField.default('default'),
      ca_file: pathField(ctx).optional(),
    })
    .transform((g, zctx) => {
      const token = resolveSecret(
        { name: 'token', credential: 'gitlab_token', allowEmpty: false },
        g.token,
        g.token_file,
        ctx,
        zctx,
      );
      const webhookSecret = resolveSecret(
        { name: 'webhook_secret', credential: 'gitlab_webhook_secret', allowEmpty: false },
        g.webhook_secret,
        g.webhook_secret_file,
        ctx,
        zctx,
      );
      // The CA is read by whoever opens connections; checking here names the key at startup.
      if (g.ca_file !== undefined && !exists(g.ca_file)) {
        zctx.issues.push({
          code: 'custom',
          input: g.ca_file,
          path: ['ca_file'],
          message: `names a file that does not exist (${g.ca_file})`,
        });
      }
      return {
        url: g.url,
        token,
        webhook_secret: webhookSecret,
        run_branch: g.run_branch,
        ca_file: g.ca_file ?? null,
      };
    });
}

function mysqlSchema(ctx: LoadContext) {
  return z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().gte(1).lte(65535).default(3306),
      admin_user: z.string().min(1).default('root'),
      admin_password: z.string().optional(),
      admin_password_file: z.string().min(1).optional(),
      // Temporary run accounts are <user_prefix><run id>; the leader drops leftovers with this prefix.
      user_prefix: z
        .string()
        .regex(/^[A-Za-z][A-Za-z0-9_]{0,30}$/, { error: 'must be a letter then up to 30 letters, digits or "_"' })
        .default('secd_'),
      max_connections_per_run: positiveInt.default(8),
    })
    .transform((m, zctx) => ({
      host: m.host,
      port: m.port,
      admin_user: m.admin_user,
      user_prefix: m.user_prefix,
      max_connections_per_run: m.max_connections_per_run,
      admin_password: resolveSecret(
        { name: 'admin_password', credential: 'mysql_admin_password', allowEmpty: true, fallback: '' },
        m.admin_password,
        m.admin_password_file,
        ctx,
        zctx,
      ),
    }));
}

const limitsSchema = z.strictObject({
  max_runfor_hours: z.number().gt(0).default(24),
  max_gpus_per_run: nonNegativeInt.default(8),
  max_output_file_bytes: bytesField.default(100 * MiB),
  max_output_total_bytes: bytesField.default(GiB),
  max_log_bytes: bytesField.default(2 * MiB),
});

/** The leader's certificate and private key (PEM) for https:// and wss:// on its one port. */
function tlsSchema(ctx: LoadContext) {
  return z.strictObject({ cert_file: pathField(ctx), key_file: pathField(ctx) }).superRefine((t, zctx) => {
    for (const key of ['cert_file', 'key_file'] as const) {
      if (!exists(t[key])) {
        zctx.issues.push({ code: 'custom', input: t[key], path: [key], message: `names a file that does not exist (${t[key]})` });
      }
    }
  });
}

/** The leader's keys; `defaults` differ between leader.yml and `secd up`. */
function leaderShape(ctx: LoadContext, defaults: { dataDir: string }) {
  return {
    listen: listenField.default({ host: '127.0.0.1', port: 8080 }),
    public_url: urlField(['http', 'https']).optional(),
    data_dir: pathField(ctx).default(path.resolve(ctx.baseDir, defaults.dataDir)),
    mysql: mysqlSchema(ctx).optional(),
    limits: limitsSchema.prefault({}),
    node_timeout_ms: positiveInt.default(20_000),
    lost_after_ms: positiveInt.default(600_000),
    tls: tlsSchema(ctx).optional(),
  };
}

/** Fills `public_url` from `listen` where that gives a URL a browser or GitLab could follow. */
function finishLeader<T extends { listen: { host: string; port: number }; public_url?: string | undefined; mysql?: unknown }>(
  c: T,
  zctx: z.RefinementCtx,
) {
  let publicUrl = c.public_url;
  if (publicUrl === undefined) {
    const { host, port } = c.listen;
    if (host === '0.0.0.0' || host === '::' || port === 0) {
      zctx.issues.push({
        code: 'custom',
        input: undefined,
        path: ['public_url'],
        message: `is required when listen is ${host.includes(':') ? `[${host}]` : host}:${port} (no URL can be derived from it)`,
      });
      publicUrl = '';
    } else {
      publicUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    }
  }
  return { ...c, public_url: publicUrl, mysql: (c.mysql ?? null) as Exclude<T['mysql'], undefined> | null };
}

function leaderSchema(ctx: LoadContext) {
  return z
    .strictObject({ ...leaderShape(ctx, { dataDir: '/var/lib/secd' }), gitlab: gitlabSchema(ctx) })
    .transform((c, zctx) => finishLeader(c, zctx));
}

/** Node keys shared by node.yml and `secd up`'s `node:` section (paths are added by each). */
function nodeShape(ctx: LoadContext) {
  return {
    node_id: z
      .string()
      .regex(NODE_ID, { error: 'must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit' })
      .optional(),
    dataset_root: pathField(ctx).optional(),
    nvidia_smi: z
      .string()
      .min(1)
      .default('nvidia-smi')
      .transform((cmd) => (cmd.includes('/') ? path.resolve(ctx.baseDir, cmd) : cmd)),
    report_interval_ms: z.number().int().gte(100).default(2000),
    max_cpu_runs: nonNegativeInt.default(2),
    memory_limit_bytes: bytesField.default(16 * GiB),
    pids_limit: positiveInt.default(4096),
    base_image_mirror: urlField(['http', 'https']).optional(),
  };
}

/** Defaults node_id to the hostname, checked like a configured one. */
function finishNode<T extends { node_id?: string | undefined; dataset_root?: string | undefined; base_image_mirror?: string | undefined }>(
  n: T,
  ctx: LoadContext,
  zctx: z.RefinementCtx,
) {
  let nodeId = n.node_id;
  if (nodeId === undefined) {
    nodeId = ctx.hostname;
    if (!NODE_ID.test(nodeId)) {
      zctx.issues.push({
        code: 'custom',
        input: undefined,
        path: ['node_id'],
        message: `is required: the hostname ${show(nodeId)} is not a valid node id`,
      });
    }
  }
  return { ...n, node_id: nodeId, dataset_root: n.dataset_root ?? null, base_image_mirror: n.base_image_mirror ?? null };
}

function nodeSchema(ctx: LoadContext) {
  return z
    .strictObject({
      leader: urlField(['ws', 'wss']),
      token: z.string().optional(),
      token_file: z.string().min(1).optional(),
      ...nodeShape(ctx),
      work_dir: pathField(ctx).default('/var/lib/secd-node'),
      cache_root: pathField(ctx),
      // The CA that signed the leader's certificate, trusted for wss:// (the system CAs still apply).
      ca_file: pathField(ctx).optional(),
    })
    .transform((n, zctx) => {
      const { token: inline, token_file: file, ca_file: caFile, ...rest } = n;
      const token = resolveSecret({ name: 'token', credential: 'token', allowEmpty: false }, inline, file, ctx, zctx);
      if (caFile !== undefined && !exists(caFile)) {
        zctx.issues.push({ code: 'custom', input: caFile, path: ['ca_file'], message: `names a file that does not exist (${caFile})` });
      }
      return { ...finishNode(rest, ctx, zctx), token, ca_file: caFile ?? null };
    });
}

/**
 * `secd up`: leader keys plus a `node:` section. `gitlab` is optional here: without it the leader
 * still serves the status page and API, nodes may join and `secd run` works, but no push can start
 * a run, so the hook route answers 503 "gitlab not configured" (GitLab retries, and the operator sees
 * why in GitLab's webhook log) instead of accepting pushes it cannot clone or report on.
 */
function upSchema(ctx: LoadContext) {
  const nodeSection = z
    .strictObject({
      ...nodeShape(ctx),
      work_dir: pathField(ctx).default(path.resolve(ctx.baseDir, '.secd/work')),
      cache_root: pathField(ctx).default(path.resolve(ctx.baseDir, '.secd/cache')),
    })
    .transform((n, zctx) => finishNode(n, ctx, zctx));
  return z
    .strictObject({
      ...leaderShape(ctx, { dataDir: '.secd/data' }),
      gitlab: gitlabSchema(ctx).optional(),
      node: nodeSection.prefault({}),
    })
    .transform((c, zctx) => {
      const done = finishLeader(c, zctx);
      return { ...done, gitlab: done.gitlab ?? null };
    });
}

/** The leader's configuration with defaults applied, paths absolute and secrets read. */
export type LeaderConfig = z.output<ReturnType<typeof leaderSchema>>;
/** The GitLab section (secrets resolved). */
export type GitLabConfig = LeaderConfig['gitlab'];
/** The dataset server's admin connection. */
export type MysqlConfig = NonNullable<LeaderConfig['mysql']>;
/** Leader limits applied to every run. */
export type LimitsConfig = LeaderConfig['limits'];
/** A node daemon's configuration with defaults applied, paths absolute and the token read. */
export type NodeConfig = z.output<ReturnType<typeof nodeSchema>>;
/** `secd up`: a leader (GitLab optional) plus the in-process node's settings. */
export type UpConfig = z.output<ReturnType<typeof upSchema>>;
/** The in-process node of `secd up`: node keys without `leader` and `token`. */
export type LocalNodeConfig = UpConfig['node'];
/** The leader's `tls:` section (certificate and key files). */
export type TlsConfig = NonNullable<LeaderConfig['tls']>;

/** Output and log caps when no leader config is at hand (`secd node` applies these to every run). */
export const DEFAULT_LIMITS: LimitsConfig = limitsSchema.parse({});

// ---------------------------------------------------------------------------------------------
// YAML and error formatting

/** Optional knobs for the parse functions; tests pin the hostname and base folder. */
export interface ParseOptions {
  /** Folder relative paths resolve against; default: the folder of `sourceName`. */
  baseDir?: string;
  /** Default node_id; default: os.hostname(). */
  hostname?: string;
}

function parseWith<S extends z.ZodType>(
  text: string,
  sourceName: string,
  makeSchema: (ctx: LoadContext) => S,
  env: ConfigEnv,
  opts: ParseOptions,
): z.output<S> {
  const ctx: LoadContext = {
    baseDir: opts.baseDir ?? path.dirname(path.resolve(sourceName)),
    env,
    hostname: opts.hostname ?? osHostname(),
  };
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const { line, col } = lineCounter.linePos(yamlError.pos[0]);
    throw new ConfigError(sourceName, '', [
      `${sourceName}: not valid YAML at line ${line}, column ${col}: ${yamlError.message.split('\n')[0]}`,
    ]);
  }
  let raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || raw === undefined) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(sourceName, '', [
      `${sourceName}: the file must be a mapping of keys (like "listen: 127.0.0.1:8080"), not ${describe(raw)}`,
    ]);
  }
  const result = makeSchema(ctx).safeParse(raw, { error: friendlyMessage });
  if (result.success) return result.data;
  const problems: { key: string; line: string }[] = [];
  for (const issue of result.error.issues) {
    const at = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        const key = dotted([...at, k]);
        problems.push({ key, line: `unknown key "${key}"${lineSuffix(doc, lineCounter, at, k)}` });
      }
    } else {
      const key = dotted(at);
      const parent = at.length > 1 ? `${dotted(at.slice(0, -1))}.` : '';
      const message = issue.message.replaceAll('{parent}', parent);
      problems.push({
        key,
        line: `${key ? `${key} ` : ''}${message}${lineSuffix(doc, lineCounter, at)}`,
      });
    }
  }
  throw new ConfigError(
    sourceName,
    problems[0]?.key ?? '',
    problems.map((p) => `${sourceName}: ${p.line}`),
  );
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

function lineSuffix(doc: Document, lc: LineCounter, at: (string | number)[], unknownKey?: string): string {
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
  return offset === undefined ? '' : ` (line ${lc.linePos(offset).line})`;
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`;
}

function readConfigText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, '', [`${file}: cannot be read (${errorCode(err)})`]);
  }
}

// ---------------------------------------------------------------------------------------------
// Entry points

/** Parses leader.yml text; `sourceName` names the file in messages and sets the base folder. */
export function parseLeaderConfig(
  text: string,
  sourceName: string,
  env: ConfigEnv = process.env,
  opts: ParseOptions = {},
): LeaderConfig {
  return parseWith(text, sourceName, leaderSchema, env, opts);
}

/** Parses node.yml text; see parseLeaderConfig. */
export function parseNodeConfig(
  text: string,
  sourceName: string,
  env: ConfigEnv = process.env,
  opts: ParseOptions = {},
): NodeConfig {
  return parseWith(text, sourceName, nodeSchema, env, opts);
}

/** Parses up.yml text; see parseLeaderConfig. */
export function parseUpConfig(
  text: string,
  sourceName: string,
  env: ConfigEnv = process.env,
  opts: ParseOptions = {},
): UpConfig {
  return parseWith(text, sourceName, upSchema, env, opts);
}

/** Reads and checks leader.yml; throws ConfigError naming the file and key. */
export function loadLeaderConfig(file: string, env: ConfigEnv = process.env): LeaderConfig {
  return parseLeaderConfig(readConfigText(file), file, env);
}

/** Reads and checks node.yml; throws ConfigError naming the file and key. */
export function loadNodeConfig(file: string, env: ConfigEnv = process.env, opts: ParseOptions = {}): NodeConfig {
  return parseNodeConfig(readConfigText(file), file, env, opts);
}

/** Name used in messages when `secd up` runs without a config file. */
export const EMBEDDED_DEFAULTS = '<embedded defaults>';

/** Reads up.yml, or with `file` null the embedded defaults (everything under `<cwd>/.secd`). */
export function loadUpConfig(
  file: string | null,
  cwd: string,
  env: ConfigEnv = process.env,
  opts: ParseOptions = {},
): UpConfig {
  if (file === null) return parseUpConfig('', EMBEDDED_DEFAULTS, env, { ...opts, baseDir: cwd });
  return parseUpConfig(readConfigText(path.resolve(cwd, file)), file, env, {
    ...opts,
    baseDir: path.dirname(path.resolve(cwd, file)),
  });
}
