/**
 * leader.yml (DESIGN §4): the leader's keys, its GitLab, dataset-server (MySQL), limits and TLS
 * sections. `secd up` (up-config.ts) takes the same keys through `leaderShape` and `finishLeader`.
 *
 * Choices the design leaves open, made here:
 * - `public_url` defaults to `http://<listen>` unless `listen` is a wildcard address or port 0, where
 *   no URL can be guessed and it is required.
 * - `gitlab.run_branch` may not be a `secd-*` branch: those are secd's own results and never start runs.
 */
import path from 'node:path';
import { z } from 'zod';
import { show } from '../../scheduler/common/describe-value.js';
import { DEFAULT_DISCLOSURE_CHECKS, releasePolicySchema, type DisclosureChecks } from '../../scheduler/contract/disclosure.js';
import { DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS } from '../../scheduler/plan/fair-share.js';
import { configParser, readConfigText, type ConfigEnv, type LoadContext } from './config-file.js';
import { stateShape } from './state-config.js';
import {
  bytesField,
  checkFileExists,
  GiB,
  listenField,
  MiB,
  nonNegativeInt,
  pathField,
  positiveInt,
  resolveSecret,
  urlField,
} from './config-fields.js';

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

/** The `gitlab:` section, secrets resolved. */
export function gitlabSchema(ctx: LoadContext) {
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
      checkFileExists(g.ca_file, 'ca_file', zctx);
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
  // Fair share (scheduler/plan/fair-share.ts): what a user ran counts half as much after this long.
  fair_share_half_life_hours: z.number().gt(0).lte(87_600).default(DEFAULT_FAIR_SHARE_HALF_LIFE_HOURS),
});

/**
 * The `release:` section (DESIGN §10): where held outputs are reviewed, how many checkers must
 * approve, the policy of runs given no dataset, and the automated disclosure checks every run's
 * outputs go through. Extensions are compared lower-case with their dot; a bare `csv` is taken as
 * `.csv`.
 */
const checksSchema = z
  .strictObject({
    allowed_extensions: z.array(z.string().regex(/^\.?[A-Za-z0-9_+-]{1,31}$/, { error: 'must be an extension such as .csv' })).max(256).optional(),
    max_file_bytes: bytesField.optional(),
    max_csv_rows: positiveInt.optional(),
    forbidden_columns: z.array(z.string().min(1).max(256)).max(1024).optional(),
    min_cell_count: nonNegativeInt.optional(),
  })
  .transform(
    (c): DisclosureChecks => ({
      allowedExtensions: (c.allowed_extensions ?? DEFAULT_DISCLOSURE_CHECKS.allowedExtensions).map((e) => (e.startsWith('.') ? e : `.${e}`).toLowerCase()),
      maxFileBytes: c.max_file_bytes ?? DEFAULT_DISCLOSURE_CHECKS.maxFileBytes,
      maxCsvRows: c.max_csv_rows ?? DEFAULT_DISCLOSURE_CHECKS.maxCsvRows,
      forbiddenColumns: c.forbidden_columns ?? DEFAULT_DISCLOSURE_CHECKS.forbiddenColumns,
      minCellCount: c.min_cell_count ?? DEFAULT_DISCLOSURE_CHECKS.minCellCount,
    }),
  );

const releaseSchema = z.strictObject({
  /** GitLab project (path) whose members with Developer access or more are the output checkers. */
  review_project: z.string().regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)+$/, { error: 'must be a GitLab project path such as secd/output-review' }).default('secd/output-review'),
  approvals: positiveInt.default(2),
  default: releasePolicySchema.default('direct'),
  /** How often every held run's approvals are read again (a lost hook delays a release no longer). */
  poll_interval_ms: positiveInt.default(60_000),
  checks: checksSchema.prefault({}),
});

/**
 * The `api:` section. `read_token` (or `read_token_file`, or the systemd credential `api_read_token`)
 * makes the runs private: readers who do not present it see states, nodes and times but not who
 * pushed which project (web/read-access.ts). Without one, everything the API shows is public.
 */
function apiSchema(ctx: LoadContext) {
  return z
    .strictObject({ read_token: z.string().optional(), read_token_file: z.string().min(1).optional() })
    .transform((a, zctx) => {
      const token = resolveSecret(
        { name: 'read_token', credential: 'api_read_token', allowEmpty: false, fallback: '' },
        a.read_token,
        a.read_token_file,
        ctx,
        zctx,
      );
      if (token !== '' && (token.length < 16 || /[\s;,]/.test(token))) {
        const key = a.read_token_file !== undefined ? 'read_token_file' : 'read_token';
        zctx.issues.push({ code: 'custom', input: undefined, path: [key], message: 'must be at least 16 characters without spaces, ";" or "," (try: openssl rand -hex 24)' });
      }
      return { read_token: token === '' ? null : token };
    });
}

/** The leader's certificate and private key (PEM) for https:// and wss:// on its one port. */
function tlsSchema(ctx: LoadContext) {
  return z.strictObject({ cert_file: pathField(ctx), key_file: pathField(ctx) }).superRefine((t, zctx) => {
    for (const key of ['cert_file', 'key_file'] as const) checkFileExists(t[key], key, zctx);
  });
}

/** The leader's keys; `defaults` differ between leader.yml and `secd up`. */
export function leaderShape(ctx: LoadContext, defaults: { dataDir: string }) {
  return {
    listen: listenField.default({ host: '127.0.0.1', port: 8080 }),
    public_url: urlField(['http', 'https']).optional(),
    data_dir: pathField(ctx).default(path.resolve(ctx.baseDir, defaults.dataDir)),
    mysql: mysqlSchema(ctx).optional(),
    limits: limitsSchema.prefault({}),
    node_timeout_ms: positiveInt.default(20_000),
    lost_after_ms: positiveInt.default(600_000),
    /** How often the leader looks for pushes whose webhook never arrived (DESIGN §11; scheduler/reconcile). */
    reconcile_interval_ms: positiveInt.min(1000, { error: 'must be at least 1000 (every project costs GitLab calls each round)' }).default(60_000),
    tls: tlsSchema(ctx).optional(),
    api: apiSchema(ctx).prefault({}),
    release: releaseSchema.prefault({}),
  };
}

/** Fills `public_url` from `listen` where that gives a URL a browser or GitLab could follow. */
export function finishLeader<T extends { listen: { host: string; port: number }; public_url?: string | undefined; mysql?: unknown }>(
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
    .strictObject({ ...leaderShape(ctx, { dataDir: '/var/lib/secd' }), ...stateShape(ctx), gitlab: gitlabSchema(ctx) })
    .transform((c, zctx) => finishLeader(c, zctx));
}

/** The leader's configuration with defaults applied, paths absolute and secrets read. */
export type LeaderConfig = z.output<ReturnType<typeof leaderSchema>>;
/** The GitLab section (secrets resolved). */
export type GitLabConfig = LeaderConfig['gitlab'];
/** The dataset server's admin connection. */
export type MysqlConfig = NonNullable<LeaderConfig['mysql']>;
/** Leader limits applied to every run. */
export type LimitsConfig = LeaderConfig['limits'];
/** The leader's `api:` section (the read token, or null: runs are public). */
export type ApiConfig = LeaderConfig['api'];
/** The leader's `release:` section (output review and disclosure checks). */
export type ReleaseConfig = LeaderConfig['release'];
/** The leader's `tls:` section (certificate and key files). */
export type TlsConfig = NonNullable<LeaderConfig['tls']>;

/** Output and log caps when no leader config is at hand (`secd node` applies these to every run). */
export const DEFAULT_LIMITS: LimitsConfig = limitsSchema.parse({});

/** Parses leader.yml text; `sourceName` names the file in messages and sets the base folder. */
export const parseLeaderConfig = configParser(leaderSchema);

/** Reads and checks leader.yml; throws ConfigError naming the file and key. */
export function loadLeaderConfig(file: string, env: ConfigEnv = process.env): LeaderConfig {
  return parseLeaderConfig(readConfigText(file), file, env);
}
