/**
 * `secd admin dataset add|set|list|remove|audit`, `secd admin grant|revoke|grants`: the data owners'
 * side of the access policy and of output release, on the leader's database (see admin-command.ts for
 * the `admin` group).
 *
 * Choices made here:
 * - `grant` looks the user up in GitLab (`GET /users?username=`) and stores the account's id with
 *   GitLab's spelling of the name: runs are given the grants of their pusher's id (DESIGN §13), the
 *   name is only shown. Without GitLab's answer (`--skip-user-check`, or a config without a
 *   `gitlab:` section) the operator must give `--user-id`: a grant without an id cannot be bound to
 *   an account, and binding it to a name would hand it to whoever takes that name next. With both,
 *   GitLab's id must match. `revoke` never asks GitLab: a deleted user's grant must still be
 *   removable by the name it shows (or by `--user-id` when a reused name holds two accounts' grants).
 * - `grants migrate` lists the name-only grants made before migration 6 with what GitLab and secd's
 *   own runs say about each (storage/dataset-grant.ts `unboundVerdict`), and binds those the rule
 *   allows only with `--bind`, one audit line each; the rest wait for a hand-made grant.
 * - `dataset add --mysql-database` checks the database exists on the dataset server (`mysql:` in the
 *   config); `--path` checks the folder under `dataset_root` when the config names one (an up.yml's
 *   node section); a leader.yml has none, so nodes check it when a run mounts it.
 * - A new dataset is `review` (DESIGN §10) unless `--release direct` is given, and `add` says so
 *   when the owner did not choose: outputs held by surprise are a nuisance, outputs released by
 *   surprise cannot be taken back. `--approvals` left out (or `default`) follows the config's
 *   `release.approvals`, which `list` shows with "(default)".
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { createGitLabClient } from '../../scheduler/gitlab/gitlab-client.js';
import { createMysqlDatasetServer } from '../../scheduler/policy/mysql-grants.js';
import { errorText } from '../../scheduler/common/errors.js';
import { relativeDatasetPath, resolveDatasetDir } from '../../storage/dataset-path.js';
import { unboundVerdict } from '../../storage/dataset-grant.js';
import type { Dataset, DatasetGrant, DatasetReleasePolicy, DatasetStore } from '../../storage/dataset-store.js';
import type { GitLabConfig, MysqlConfig } from '../config/leader-config.js';
import { adminAction, adminGroup, AdminError, loadAdminConfig, withStores, type AdminConfig } from './admin-command.js';
import { table } from './admin-table.js';

/** What the dataset commands need from leader.yml or up.yml. */
interface AdminSettings {
  /** The whole config: where the leader's state is. */
  config: AdminConfig;
  mysql: MysqlConfig | null;
  gitlab: GitLabConfig | null;
  datasetRoot: string | null;
  /** release.approvals: what a dataset without its own number needs. */
  approvals: number;
}

const USERNAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$/;

function loadSettings(configFile: string | undefined): AdminSettings {
  const c = loadAdminConfig(configFile);
  // A leader.yml has no node section: nodes check file datasets under their own dataset_root.
  return {
    config: c,
    mysql: c.mysql,
    gitlab: c.gitlab,
    datasetRoot: 'node' in c ? c.node.dataset_root : null,
    approvals: c.release.approvals,
  };
}

async function withStore<T>(settings: AdminSettings, fn: (store: DatasetStore) => Promise<T>): Promise<T> {
  return withStores(settings.config, (s) => fn(s.datasets));
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function sourceOf(d: Dataset): string {
  return d.kind === 'mysql' ? `mysql database ${d.mysqlDatabase}` : `folder ${d.path} under dataset_root`;
}

/** `--release`'s value, or a refusal naming the flag. */
function parseRelease(value: string): DatasetReleasePolicy['release'] {
  if (value === 'direct' || value === 'review') return value;
  throw new AdminError(`--release must be direct or review (got "${value}")`);
}

/** `--approvals`' value: a whole number of 1 or more, or `default` (null: release.approvals). */
function parseApprovals(value: string): number | null {
  if (value === 'default') return null;
  const n = /^[0-9]{1,6}$/.test(value) ? Number(value) : Number.NaN;
  if (!(n >= 1)) throw new AdminError(`--approvals must be a whole number of 1 or more, or "default" for release.approvals (got "${value}")`);
  return n;
}

/** The policy flags as a change (only what was given). */
function policyChange(options: { release?: string; approvals?: string }): Partial<DatasetReleasePolicy> {
  return {
    ...(options.release !== undefined ? { release: parseRelease(options.release) } : {}),
    ...(options.approvals !== undefined ? { approvals: parseApprovals(options.approvals) } : {}),
  };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** `direct`, or `review, 2 approvals (default)`: a null count is the config's, and says so. */
function policyText(p: DatasetReleasePolicy, configApprovals: number): string {
  if (p.release === 'direct') return 'direct';
  return `review, ${plural(p.approvals ?? configApprovals, 'approval')}${p.approvals === null ? ' (default)' : ''}`;
}

async function checkMysqlDatabase(settings: AdminSettings, db: string): Promise<void> {
  if (settings.mysql === null) {
    throw new AdminError('this config has no mysql: section, so secd has no dataset server to grant MySQL datasets on');
  }
  const m = settings.mysql;
  const server = createMysqlDatasetServer({ host: m.host, port: m.port }, { user: m.admin_user, password: m.admin_password });
  try {
    if (!(await server.databaseExists(db))) {
      throw new AdminError(`the dataset server ${m.host}:${m.port} has no database ${db}: load it first (see examples/machine-learning/README.md)`);
    }
  } catch (err) {
    if (err instanceof AdminError) throw err;
    throw new AdminError(`could not reach the dataset server ${m.host}:${m.port}: ${errorText(err)}`);
  } finally {
    await server.close().catch(() => undefined);
  }
}

/** The GitLab account named `username` (its spelling and id), null when GitLab has none; undefined: this config cannot ask. */
async function lookUpGitLabUser(settings: AdminSettings, username: string): Promise<{ username: string; id: number } | null | undefined> {
  const g = settings.gitlab;
  if (g === null) return undefined;
  const client = createGitLabClient({ url: g.url, token: g.token, ...(g.ca_file ? { ca: readFileSync(g.ca_file, 'utf8') } : {}) });
  try {
    const user = await client.findUserByUsername(username);
    return user === null ? null : { username: user.username, id: user.id };
  } catch (err) {
    throw new AdminError(
      `could not ask GitLab (${g.url}) whether user ${username} exists: ${errorText(err)} (use --skip-user-check --user-id <id> to grant anyway)`,
    );
  }
}

/** `--user-id`'s value: a GitLab user id, or a refusal naming the flag. */
function parseUserId(value: string): number {
  const n = /^[1-9][0-9]{0,14}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new AdminError(`--user-id must be a GitLab user id, a whole number of 1 or more (got "${value}")`);
  return n;
}

/** The account a grant is for: GitLab's answer, or the operator's `--user-id` when GitLab is not asked. */
async function grantAccount(
  settings: AdminSettings,
  user: string,
  options: { skipUserCheck?: boolean; userId?: string },
): Promise<{ username: string; userId: number; checked: boolean }> {
  const given = options.userId === undefined ? null : parseUserId(options.userId);
  const found = options.skipUserCheck ? undefined : await lookUpGitLabUser(settings, user);
  if (found === undefined) {
    if (given === null) {
      const why = options.skipUserCheck ? '--skip-user-check' : 'this config has no gitlab: section, so GitLab cannot be asked, and';
      throw new AdminError(
        `${why} needs --user-id <GitLab user id>: grants belong to GitLab accounts, and without an id the grant cannot be bound to one ` +
          '(a name alone would pass to whoever takes it next)',
      );
    }
    return { username: user, userId: given, checked: false };
  }
  if (found === null) throw new AdminError(`GitLab (${settings.gitlab!.url}) has no user named ${user}`);
  if (given !== null && given !== found.id) {
    throw new AdminError(`GitLab says ${found.username} is user ${found.id}, not ${given}: check who the grant is for`);
  }
  return { username: found.username, userId: found.id, checked: true };
}

/** How a grant's account shows in `grants`: its id, or that it counts for no one yet. */
function accountText(g: DatasetGrant): string {
  return g.userId === null ? 'none (name-only: counts for no one; see "secd admin grants migrate")' : String(g.userId);
}

/** Add the dataset and grant subcommands to `secd admin` (created here if no other file did yet). */
export function registerDatasetAdminCommands(program: Command): void {
  const admin = adminGroup(program);

  const dataset = admin.command('dataset').description('datasets researchers can be granted: add, list, remove, audit');
  adminAction(
    dataset
      .command('add')
      .description('add a dataset: a MySQL database on the dataset server, or a folder under the nodes\' dataset_root')
      .argument('<name>', 'the name researchers use in secd.yml (datasets:) and see at /datasets/<name>')
      .option('--mysql-database <db>', 'the database on the dataset server (mysql: in the config)')
      .option('--path <dir>', 'a folder under dataset_root, mounted read-only at /datasets/<name>')
      .option('--release <policy>', 'how outputs of runs that read it leave: direct, or review (held for output checkers; the default)')
      .option('--approvals <n>', 'output checkers who must approve a held run (default: release.approvals in the config)'),
    async (name: string, options: { mysqlDatabase?: string; path?: string; release?: string; approvals?: string; config?: string }) => {
      if ((options.mysqlDatabase === undefined) === (options.path === undefined)) {
        throw new AdminError('dataset add needs exactly one of --mysql-database <db> or --path <dir>');
      }
      const policy = policyChange(options);
      const settings = loadSettings(options.config);
      let entry: Dataset;
      if (options.mysqlDatabase !== undefined) {
        entry = { name, kind: 'mysql', mysqlDatabase: options.mysqlDatabase };
      } else {
        const rel = relativeDatasetPath(options.path!, settings.datasetRoot);
        if (!rel.ok) throw new AdminError(rel.reason);
        entry = { name, kind: 'path', path: rel.path };
      }
      // Check names before reaching out to the dataset server.
      const precheck = await withStore(settings, async (s) => ((await s.get(name)) ? `dataset ${name} already exists` : null));
      if (precheck) throw new AdminError(precheck);
      if (entry.kind === 'mysql') await checkMysqlDatabase(settings, entry.mysqlDatabase);
      if (entry.kind === 'path' && settings.datasetRoot !== null) {
        const found = await resolveDatasetDir(settings.datasetRoot, name, entry.path);
        if (!found.ok) throw new AdminError(found.reason);
      }
      const added = await withStore(settings, (s) => s.add(entry, policy));
      if (!added.ok) throw new AdminError(added.reason);
      say(`secd admin: added dataset ${name} (${sourceOf(added.value)}); grant it with "secd admin grant <gitlab user> ${name}"`);
      const release = policyText(added.value, settings.approvals);
      if (policy.release === undefined) {
        say(
          `secd admin: release ${release}: new datasets are review by default, so outputs of runs that read ${name} are held ` +
            `until output checkers approve; to send them straight to the researcher: "secd admin dataset set ${name} --release direct"`,
        );
      } else {
        say(`secd admin: release ${release}`);
      }
      if (entry.kind === 'path' && settings.datasetRoot === null) {
        say(`secd admin: note: each node finds ${entry.path} under its own dataset_root when a run mounts it`);
      }
    },
  );
  adminAction(
    dataset
      .command('set')
      .description('change how the outputs of runs that read a dataset leave (runs already on a node keep theirs)')
      .argument('<name>')
      .option('--release <policy>', 'direct, or review (held for output checkers)')
      .option('--approvals <n>', 'output checkers who must approve a held run, or "default" for release.approvals'),
    async (name: string, options: { release?: string; approvals?: string; config?: string }) => {
      const change = policyChange(options);
      if (change.release === undefined && change.approvals === undefined) {
        throw new AdminError('dataset set needs --release direct|review, --approvals <n> (or "default"), or both');
      }
      const settings = loadSettings(options.config);
      const changed = await withStore(settings, (s) => s.setPolicy(name, change));
      if (!changed.ok) throw new AdminError(changed.reason);
      const { before, after } = changed.value;
      say(
        `secd admin: dataset ${name}: release ${policyText(before, settings.approvals)} → ${policyText(after, settings.approvals)}` +
          '; runs already handed to a node keep the policy they started with',
      );
      if (after.release === 'direct' && before.approvals !== after.approvals) {
        say(`secd admin: note: ${name} is direct, so its approvals count only once it is set to review`);
      }
    },
  );
  adminAction(
    dataset
      .command('list')
      .description('every dataset, where it lives, how its runs\' outputs are released and how many users may read it'),
    async (options: { config?: string }) => {
      const settings = loadSettings(options.config);
      const rows = await withStore(settings, (s) => s.list());
      if (rows.length === 0) {
        say('secd admin: no datasets yet (add one with "secd admin dataset add <name> --mysql-database <db>")');
        return;
      }
      say(
        table(
          ['NAME', 'KIND', 'SOURCE', 'USERS', 'RELEASE'],
          rows.map((d) => [d.name, d.kind, d.kind === 'mysql' ? d.mysqlDatabase : d.path, String(d.users), policyText(d, settings.approvals)]),
        ),
      );
    },
  );
  adminAction(
    dataset
      .command('remove')
      .description('remove a dataset and every grant of it (runs already given it keep it until they end)')
      .argument('<name>'),
    async (name: string, options: { config?: string }) => {
      const removed = await withStore(loadSettings(options.config), (s) => s.remove(name));
      if (!removed.ok) throw new AdminError(removed.reason);
      say(`secd admin: removed dataset ${name} and its ${removed.value.grantsRemoved} grant(s)`);
    },
  );
  adminAction(
    dataset
      .command('audit')
      .description('the runs that were given a dataset: who, when, its temporary account, bytes read')
      .argument('<name>')
      .option('--limit <n>', 'newest runs to show', '50'),
    async (name: string, options: { limit: string; config?: string }) => {
      const rows = await withStore(loadSettings(options.config), async (s) => {
        if (!(await s.get(name))) throw new AdminError(`no dataset named ${name} (see "secd admin dataset list")`);
        return s.runsGiven(name, Number(options.limit) || 50);
      });
      if (rows.length === 0) {
        say(`secd admin: no run has been given ${name} yet`);
        return;
      }
      say(
        table(
          ['RUN', 'USER', 'GRANTED', 'DROPPED', 'ACCOUNT', 'BYTES READ'],
          rows.map((r) => [r.runId, r.user, r.grantedAt, r.droppedAt ?? '-', r.mysqlUser ?? '-', r.bytesFromServer === null ? '-' : String(r.bytesFromServer)]),
        ),
      );
    },
  );

  adminAction(
    admin
      .command('grant')
      .description('let a GitLab account\'s runs read a dataset (the grant follows the account\'s id, not its name)')
      .argument('<gitlab user>')
      .argument('<dataset>')
      .option('--skip-user-check', 'do not ask GitLab who the user is (needs --user-id)')
      .option('--user-id <id>', 'the account\'s GitLab user id (checked against GitLab unless --skip-user-check)'),
    async (user: string, name: string, options: { skipUserCheck?: boolean; userId?: string; config?: string }) => {
      if (!USERNAME.test(user)) throw new AdminError(`"${user}" is not a GitLab username`);
      const settings = loadSettings(options.config);
      const known = await withStore(settings, async (s) => (await s.get(name)) !== undefined);
      if (!known) throw new AdminError(`no dataset named ${name} (see "secd admin dataset list")`);
      const account = await grantAccount(settings, user, options);
      const granted = await withStore(settings, (s) =>
        s.grant({ username: account.username, userId: account.userId }, name, account.checked ? 'gitlab' : 'operator'),
      );
      if (!granted.ok) throw new AdminError(granted.reason);
      const who = `${account.username} (GitLab user ${account.userId})`;
      say(granted.value.created ? `secd admin: ${who} may read ${name} from their next run` : `secd admin: ${who} could already read ${name}`);
      const unasked = options.skipUserCheck ? 'as asked, ' : 'this config has no gitlab: section, so ';
      if (!account.checked) say(`secd admin: note: ${unasked}GitLab was not asked whether user ${account.userId} is ${account.username}`);
    },
  );
  adminAction(
    admin
      .command('revoke')
      .description('take back a grant; runs already holding it keep it until they end')
      .argument('<gitlab user>', 'the name the grant shows in "secd admin grants" (the account may be gone)')
      .argument('<dataset>')
      .option('--user-id <id>', 'revoke the grant of this GitLab user id (when a reused name shows two accounts\' grants)'),
    async (user: string, name: string, options: { userId?: string; config?: string }) => {
      const who = options.userId === undefined ? user : { userId: parseUserId(options.userId) };
      const revoked = await withStore(loadSettings(options.config), (s) => s.revoke(who, name));
      if (!revoked.ok) throw new AdminError(revoked.reason);
      const id = revoked.value.userId === null ? ' (name-only grant)' : ` (GitLab user ${revoked.value.userId})`;
      say(`secd admin: ${user}${id} may no longer read ${name} (runs already started keep it until they end)`);
    },
  );
  const grants = adminAction(
    admin
      .command('grants')
      .description('who may read what (the grants shown under one name, or everyone\'s)')
      .argument('[gitlab user]'),
    async (user: string | undefined, options: { config?: string }) => {
      const rows = await withStore(loadSettings(options.config), (s) => s.grants(user));
      if (rows.length === 0) {
        say(user === undefined ? 'secd admin: no grants yet' : `secd admin: ${user} has no grants`);
        return;
      }
      say(table(['USER', 'DATASET', 'GRANTED', 'USER ID'], rows.map((g) => [g.user, g.dataset, g.grantedAt, accountText(g)])));
    },
  );
  adminAction(
    grants
      .command('migrate')
      .description('bind the name-only grants of earlier versions to GitLab accounts where GitLab and secd\'s runs agree')
      .option('--bind', 'bind the grants the rule allows (without it, only show what it would do)'),
    async (options: { bind?: boolean; config?: string }) => {
      // Commander gives `--config` to `grants` (which has it too) wherever it stands on the line.
      const settings = loadSettings(options.config ?? (grants.opts() as { config?: string }).config);
      const unbound = await withStore(settings, (s) => s.unboundGrants());
      if (unbound.length === 0) {
        say('secd admin: every grant is bound to a GitLab account; nothing to migrate');
        return;
      }
      if (settings.gitlab === null) throw new AdminError('grants migrate asks GitLab who holds each name now: this config has no gitlab: section');
      const ids = new Map<string, { username: string; id: number } | null>();
      for (const g of unbound) {
        const key = g.user.toLowerCase();
        if (!ids.has(key)) ids.set(key, (await lookUpGitLabUser(settings, g.user)) ?? null);
      }
      await withStore(settings, async (s) => {
        let bound = 0;
        for (const g of unbound) {
          const verdict = unboundVerdict(ids.get(g.user.toLowerCase())?.id ?? null, await s.idsSeenUnder(g.user));
          if (!verdict.bind) {
            say(`secd admin: ${g.user} on ${g.dataset}: left name-only (counts for no one): ${verdict.why}; grant it again by hand once you know whose it is`);
          } else if (!options.bind) {
            say(`secd admin: ${g.user} on ${g.dataset}: would bind to GitLab user ${verdict.userId}: ${verdict.why}`);
          } else if (await s.bindUnbound(g.user, g.dataset, verdict.userId)) {
            bound++;
            say(`secd admin: audit: bound ${g.user}'s grant on ${g.dataset} (granted ${g.grantedAt}) to GitLab user ${verdict.userId}: ${verdict.why}`);
          }
        }
        if (!options.bind) say('secd admin: nothing changed; check the lines above, then run again with --bind');
        else say(`secd admin: bound ${plural(bound, 'grant')}; ${plural(unbound.length - bound, 'grant')} left name-only`);
      });
    },
  );
}
