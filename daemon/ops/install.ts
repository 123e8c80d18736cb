/**
 * `secd install --role leader|node [--root DIR]`: puts a machine in the state docs/sysadmin.md
 * describes — the `secd` system user, folders, a commented config template, root-only credential
 * files and the systemd units from the packaged systemd/ folder — and says what is left to do.
 *
 * Choices made here (docs/sysadmin.md repeats them for operators):
 * - The user comes from a sysusers.d file (/etc/sysusers.d/secd.conf, plus secd-node.conf adding
 *   secd to the docker group): on this machine `systemd-sysusers` applies it at once; in a staging
 *   tree (`--root`) the file is the whole job, so a package's postinst (or the first boot) creates
 *   the user the same way. The service's state folders are StateDirectory= in the units, which
 *   systemd creates and chowns, so a staged tree needs no chown.
 * - Idempotent: a file that already holds what secd would write is left alone ("unchanged").
 *   Service and timer units are secd's own and are brought up to date ("updated"); changes belong
 *   in drop-ins.
 *   Config files and credential files are the operator's: once they differ from what secd would
 *   write they are never touched ("kept"); a changed config template is written beside the config as
 *   `<name>.dist` so upgrades can be diffed. The NFS mount units are examples in /etc/secd/examples:
 *   in the unit folder, the node's RequiresMountsFor= would require them before they name a server.
 * - Secrets live in /etc/secd/credentials/ (root only, 0700/0600) and reach secd through systemd's
 *   LoadCredential=; the webhook secret is generated here, the others are left empty to fill in
 *   (an empty one stops the daemon with a message naming it).
 * - Nothing is enabled or started: the config needs the operator's values first.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { errorText } from '../../scheduler/common/errors.js';
import { ensureDir, ensureDirStep, readOrNull, writeFileMode, writeOperatorFile, writeOwned, type InstallStep } from './install-files.js';
import {
  INSTALL_PATHS,
  leaderConfigTemplate,
  nodeConfigTemplate,
  quoteExecWord,
  renderUnit,
  ROLE_CREDENTIALS,
  ROLE_UNITS,
  SERVICE_USER,
  sysusersDockerMember,
  sysusersUser,
  type InstallRole,
  type TemplateValues,
} from './install-templates.js';

/** What `secd install` needs to know; main fills it from argv and the running process. */
export interface InstallOptions {
  role: InstallRole;
  /** '/' for this machine, or a staging folder (`--root`). */
  root: string;
  /** True with `--root`: nothing outside `root` is changed (no user, no chown, no daemon-reload). */
  staging: boolean;
  /** The words systemd's ExecStart= starts secd with, e.g. ['/usr/bin/node', '/opt/secd/dist/daemon/cli.js']. */
  secdCommand: readonly string[];
  /** The packaged systemd/ folder holding the unit files. */
  unitsDir: string;
  /** This machine's name: the default node_id and the leader's default public_url host. */
  hostname: string;
  /** leader.yml public_url (default http://<hostname>:8080). */
  publicUrl?: string;
  /** leader.yml gitlab.url (default a placeholder to edit). */
  gitlabUrl?: string;
  /** node.yml leader (default a placeholder to edit). */
  leaderUrl?: string;
  /** A new webhook secret; injectable so tests can see it printed. */
  newSecret?: () => string;
}

/** What install does outside the staging tree; only used for a real install (`root` = '/'). */
export interface InstallHost {
  /** Apply sysusers.d files (create the user, add group memberships). */
  applySysusers(files: readonly string[]): Promise<void>;
  /** Hand a folder to the service user; fails on e.g. an NFS export with root_squash. */
  chownToServiceUser(dir: string): Promise<void>;
  /** `systemctl daemon-reload` when systemd runs this machine; false when it does not. */
  reloadSystemd(): Promise<boolean>;
}

/** Why install could not run; each is something the operator can fix. */
export type InstallFailureCode = 'not_root' | 'units_missing' | 'bad_command' | 'bad_option' | 'host_failed';

/** Outcome of installSecd. */
export type InstallResult =
  | { ok: true; steps: InstallStep[]; nextSteps: string[] }
  | { ok: false; code: InstallFailureCode; reason: string };

/**
 * Folders the units hide from the service, read from the units themselves so the warning follows
 * them: ProtectHome=yes hides the home folders, PrivateTmp=yes gives the service its own empty /tmp
 * and /var/tmp (a secd unpacked under /tmp is simply not there for it).
 */
export function hiddenFromService(unitTexts: readonly string[]): Array<{ dirs: string[]; setting: string }> {
  const has = (line: RegExp) => unitTexts.some((t) => line.test(t));
  return [
    ...(has(/^ProtectHome=(yes|read-only|tmpfs)\s*$/m) ? [{ dirs: ['/home', '/root', '/run/user'], setting: 'ProtectHome=yes' }] : []),
    ...(has(/^PrivateTmp=(yes|true|on|1)\s*$/m) ? [{ dirs: ['/tmp', '/var/tmp'], setting: 'PrivateTmp=yes' }] : []),
  ];
}

/** Prepare this machine (or a staging tree) for one role; see the file comment. */
export async function installSecd(opts: InstallOptions, host: InstallHost | null): Promise<InstallResult> {
  const problem = checkOptions(opts, host);
  if (problem) return problem;
  const steps: InstallStep[] = [];
  const at = (p: string) => path.join(opts.root, p);
  const P = INSTALL_PATHS;

  const units: { name: string; text: string }[] = [];
  for (const name of ROLE_UNITS[opts.role]) {
    try {
      units.push({ name, text: await fs.readFile(path.join(opts.unitsDir, name), 'utf8') });
    } catch {
      return { ok: false, code: 'units_missing', reason: `${path.join(opts.unitsDir, name)} is missing: this secd was packaged without its systemd/ folder` };
    }
  }

  const hidden = hiddenFromService(units.map((u) => u.text));
  for (const word of opts.secdCommand) {
    const rule = hidden.find((h) => h.dirs.some((d) => word === d || word.startsWith(`${d}/`)));
    if (rule) {
      steps.push({
        action: 'warning',
        path: word,
        detail: `the units run with ${rule.setting}, so the service cannot see ${word}: install Node.js and secd outside ${hidden.flatMap((h) => h.dirs).join(', ')} (e.g. /usr/local or /opt)`,
      });
    }
  }

  // The user first: on a real install the folders below are chowned to it.
  const sysusers = [{ file: path.join(P.sysusersDir, 'secd.conf'), text: sysusersUser() }];
  if (opts.role === 'node') sysusers.push({ file: path.join(P.sysusersDir, 'secd-node.conf'), text: sysusersDockerMember() });
  await ensureDir(at(P.sysusersDir), 0o755);
  for (const s of sysusers) steps.push(await writeOwned(at(s.file), s.file, s.text, 0o644));
  if (host) {
    try {
      await host.applySysusers(sysusers.map((s) => s.file));
    } catch (err) {
      return { ok: false, code: 'host_failed', reason: `systemd-sysusers failed: ${errorText(err)}` };
    }
    steps.push({
      action: 'note',
      path: null,
      detail: `user ${SERVICE_USER} exists${opts.role === 'node' ? ' and is in the docker group' : ''} (systemd-sysusers)`,
    });
  } else {
    steps.push({
      action: 'note',
      path: null,
      detail: `user ${SERVICE_USER} not created in a staging tree: on the target, \`systemd-sysusers\` creates it from ${sysusers.map((s) => s.file).join(' and ')}`,
    });
  }

  // Folders. Config is world-readable (it holds no secrets); credentials are root's alone.
  steps.push(await ensureDirStep(at(P.configDir), P.configDir, 0o755));
  steps.push(await ensureDirStep(at(P.credentialsDir), P.credentialsDir, 0o700, true));
  const serviceDirs = opts.role === 'leader' ? [P.leaderDataDir] : [P.nodeWorkDir, P.cacheRoot];
  if (opts.role === 'leader') {
    steps.push(await ensureDirStep(at(P.leaderDataDir), P.leaderDataDir, 0o750));
  } else {
    steps.push(await ensureDirStep(at(P.nodeWorkDir), P.nodeWorkDir, 0o750));
    // Mount points; run containers (other users) reach their cache folders through cache_root.
    steps.push(await ensureDirStep(at(P.cacheRoot), P.cacheRoot, 0o755));
    steps.push(await ensureDirStep(at(P.datasetRoot), P.datasetRoot, 0o755));
  }
  if (host) {
    for (const d of serviceDirs) {
      try {
        await host.chownToServiceUser(d);
      } catch (err) {
        steps.push({
          action: 'warning',
          path: d,
          detail: `could not hand it to ${SERVICE_USER} (${errorText(err)}); on an NFS export, set the owner on the server`,
        });
      }
    }
  } else {
    steps.push({
      action: 'note',
      path: null,
      detail: `owners not set in a staging tree: systemd hands ${opts.role === 'leader' ? P.leaderDataDir : P.nodeWorkDir} to ${SERVICE_USER} at start (StateDirectory=)${opts.role === 'node' ? `; ${P.cacheRoot} belongs to ${SERVICE_USER} on the NFS server (or chown it when it is a plain folder)` : ''}`,
    });
  }

  // Config template: the operator's once edited.
  const values: TemplateValues = {
    hostname: opts.hostname,
    publicUrl: opts.publicUrl ?? `http://${opts.hostname}:8080`,
    gitlabUrl: opts.gitlabUrl ?? 'https://gitlab.example.org',
    leaderUrl: opts.leaderUrl ?? 'ws://leader.example.org:8080/v1/nodes',
  };
  const configFile = opts.role === 'leader' ? P.leaderConfig : P.nodeConfig;
  const template = opts.role === 'leader' ? leaderConfigTemplate(values) : nodeConfigTemplate(values);
  const configStep = await writeOperatorFile(at(configFile), configFile, template, 0o644, 'config template');
  steps.push(configStep);
  if (configStep.action === 'kept') {
    configStep.detail = `differs from the template: yours is kept (the template is in ${configFile}.dist, to compare)`;
    steps.push(await writeOwned(at(`${configFile}.dist`), `${configFile}.dist`, template, 0o644));
  }

  // Credentials: created empty (or generated), never overwritten.
  let generatedSecret: string | null = null;
  for (const name of ROLE_CREDENTIALS[opts.role]) {
    const file = path.join(P.credentialsDir, name);
    const existing = await readOrNull(at(file));
    if (name === 'gitlab_webhook_secret' && (existing === null || existing.trim() === '')) {
      generatedSecret = (opts.newSecret ?? (() => randomBytes(32).toString('hex')))();
      await writeFileMode(at(file), `${generatedSecret}\n`, 0o600);
      steps.push({ action: existing === null ? 'created' : 'updated', path: file, detail: 'a new random webhook secret' });
    } else if (existing === null) {
      await writeFileMode(at(file), '', 0o600);
      steps.push({ action: 'created', path: file, detail: 'empty: fill it in' });
    } else {
      await fs.chmod(at(file), 0o600);
      steps.push({ action: 'kept', path: file, detail: existing.trim() === '' ? 'still empty: fill it in' : 'holds a value' });
    }
  }

  // Units are secd's (kept current; changes belong in drop-ins). The NFS mount units are examples:
  // the node's RequiresMountsFor= would require a mount unit as soon as it sits in the unit folder,
  // so they wait in examplesDir until the operator copies them with their NFS server filled in.
  await ensureDir(at(P.unitDir), 0o755);
  for (const u of units) {
    const text = renderUnit(u.text, opts.secdCommand);
    const file = path.join(u.name.endsWith('.mount') ? P.examplesDir : P.unitDir, u.name);
    steps.push(await writeOwned(at(file), file, text, 0o644));
  }
  if (host) {
    const reloaded = await host.reloadSystemd().catch(() => false);
    steps.push({ action: 'note', path: null, detail: reloaded ? 'systemctl daemon-reload done' : 'systemd is not running here: no daemon-reload' });
  }

  const secd = opts.secdCommand.map(quoteShellWord).join(' ');
  return { ok: true, steps, nextSteps: nextSteps(opts.role, values, secd, generatedSecret) };
}

function checkOptions(opts: InstallOptions, host: InstallHost | null): InstallResult | null {
  if (!opts.staging && typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { ok: false, code: 'not_root', reason: 'installing on this machine needs root (or stage it with --root DIR)' };
  }
  if (!opts.staging && host === null) throw new Error('a real install needs an InstallHost');
  if (opts.secdCommand.length === 0 || !path.isAbsolute(opts.secdCommand[0]!)) {
    return { ok: false, code: 'bad_command', reason: `the command systemd starts must begin with an absolute path (got ${JSON.stringify(opts.secdCommand.join(' '))})` };
  }
  const urls: [string, string | undefined, string[]][] = [
    ['--public-url', opts.publicUrl, ['http:', 'https:']],
    ['--gitlab-url', opts.gitlabUrl, ['http:', 'https:']],
    ['--leader', opts.leaderUrl, ['ws:', 'wss:']],
  ];
  for (const [flag, value, schemes] of urls) {
    if (value === undefined) continue;
    let ok = false;
    try {
      ok = schemes.includes(new URL(value).protocol);
    } catch {
      ok = false;
    }
    if (!ok) return { ok: false, code: 'bad_option', reason: `${flag} must be a ${schemes.map((s) => `${s}//`).join(' or ')} URL (got ${JSON.stringify(value)})` };
  }
  if (opts.leaderUrl !== undefined && opts.role !== 'node') return { ok: false, code: 'bad_option', reason: '--leader is a node option' };
  if ((opts.publicUrl !== undefined || opts.gitlabUrl !== undefined) && opts.role !== 'leader') {
    return { ok: false, code: 'bad_option', reason: '--public-url and --gitlab-url are leader options' };
  }
  return null;
}

function nextSteps(role: InstallRole, v: TemplateValues, secd: string, generatedSecret: string | null): string[] {
  const P = INSTALL_PATHS;
  const cred = (name: string) => path.join(P.credentialsDir, name);
  if (role === 'leader') {
    return [
      `Put a GitLab token (scopes api, read_repository, write_repository) into ${cred('gitlab_token')}; for datasets, the MySQL admin password into ${cred('mysql_admin_password')} (docs/sysadmin.md, "MySQL").`,
      `Edit ${P.leaderConfig}: gitlab.url (now ${v.gitlabUrl}), public_url (now ${v.publicUrl}), and the mysql: section for datasets.`,
      'Start it: systemctl enable --now secd-leader; follow it with journalctl -u secd-leader -f',
      `Nightly database backup to ${P.leaderDataDir}/secd-backup.db, for your file backup to collect: systemctl enable --now secd-backup.timer`,
      `In GitLab, Admin Area > System Hooks: URL ${v.publicUrl}/v1/hook, secret token ${
        generatedSecret ?? `the contents of ${cred('gitlab_webhook_secret')}`
      }, trigger "Push events" only.`,
      `For each GPU machine, issue its token here: sudo env CREDENTIALS_DIRECTORY=${P.credentialsDir} ${secd} admin node-token <node id> --config ${P.leaderConfig}`,
      '  and on that machine run `secd install --role node`, then put the token (the last line printed) into its ' + cred('token') + '.',
    ];
  }
  return [
    `Mount the shared cache: cp '${P.examplesDir}/mnt-secd\\x2dcache.mount' ${P.unitDir}/, set What= in the copy to your NFS export, then systemctl enable --now 'mnt-secd\\x2dcache.mount' (datasets: the same with mnt-secd\\x2ddatasets.mount, and uncomment dataset_root in ${P.nodeConfig}). Without NFS, ${P.cacheRoot} stays a plain folder on this machine.`,
    `On the leader: sudo env CREDENTIALS_DIRECTORY=${P.credentialsDir} secd admin node-token ${v.hostname} --config ${P.leaderConfig}; put the last line it prints into ${cred('token')} here.`,
    `Edit ${P.nodeConfig}: leader (now ${v.leaderUrl}).`,
    `Build the base image once, as root (debootstrap needs root; the node runs as ${SERVICE_USER} and only refreshes its top layer): sudo ${secd} base-image`,
    'Start it: systemctl enable --now secd-node; it shows up on the leader\'s status page within seconds (journalctl -u secd-node -f).',
  ];
}

/** A command line a shell reads back as the same words. */
function quoteShellWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Human text of the report: one line per path, then the numbered next steps. */
export function formatInstallReport(role: InstallRole, root: string, result: Extract<InstallResult, { ok: true }>): string {
  const lines = [`secd install --role ${role}${root === '/' ? '' : ` --root ${root}`}:`];
  for (const s of result.steps) lines.push(`  ${s.action.padEnd(9)} ${s.path ? `${s.path}: ` : ''}${s.detail}`);
  lines.push('', 'Next steps:');
  result.nextSteps.forEach((s, i) => lines.push(s.startsWith('  ') ? `   ${s}` : `  ${i + 1}. ${s}`));
  return `${lines.join('\n')}\n`;
}
