/**
 * `secd install --root <dir>` as a packager or a sysadmin's dry run uses it: the real CLI (built into
 * dist/ by `npm test`), real systemd tools (`systemd-analyze verify` and `security --offline`,
 * `systemd-sysusers --root`) on the staged files, and the config templates loaded by the daemons'
 * own parsers. Starting a leader and a node the way the installed units do is install-units.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLeaderConfig } from '../../daemon/config/leader-config.js';
import { parseNodeConfig } from '../../daemon/config/node-config.js';
import { INSTALL_PATHS, ROLE_CREDENTIALS } from '../../daemon/ops/install-templates.js';
import { CLI, runSecd, type CliResult } from '../support/secd-cli.js';
import { execWords, unitPath, unitValues } from '../support/unit-files.js';

/** Exposure goals from the issue (systemd-analyze's 0-10 scale; a unit with no sandboxing scores 9.2). */
const EXPOSURE_GOAL = { 'secd-leader.service': 2.0, 'secd-backup.service': 2.0, 'secd-node.service': 3.5 } as const;

type Ran = CliResult;

const secd = (args: string[], env: Record<string, string> = {}): Promise<Ran> => runSecd(args, { env });

function tool(cmd: string, args: string[]): Ran {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw new Error(`${cmd} could not run (${r.error.message}): install Debian's systemd package`);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('secd install --root', () => {
  let work: string;
  let leaderRoot: string;
  let nodeRoot: string;
  let leaderFirst: Ran;
  let nodeFirst: Ran;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'secd-install-'));
    leaderRoot = join(work, 'leader');
    nodeRoot = join(work, 'node');
    [leaderFirst, nodeFirst] = await Promise.all([
      secd(['install', '--role', 'leader', '--root', leaderRoot, '--gitlab-url', 'https://gitlab.lab.example']),
      secd(['install', '--role', 'node', '--root', nodeRoot, '--leader', 'ws://leader.lab.example:8080/v1/nodes']),
    ]);
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('stages a leader: user file, folders, config template, root-only credentials with a generated webhook secret, the unit, and next steps', async () => {
    expect(leaderFirst.code, leaderFirst.stderr).toBe(0);
    const at = (p: string) => join(leaderRoot, p);
    expect(await readFile(at('/etc/sysusers.d/secd.conf'), 'utf8')).toMatch(/^u secd - "secd daemon" \/var\/lib\/secd \/usr\/sbin\/nologin$/m);
    expect(statSync(at('/etc/secd/credentials')).mode & 0o777).toBe(0o700);
    for (const name of ROLE_CREDENTIALS.leader) expect(statSync(at(`/etc/secd/credentials/${name}`)).mode & 0o777).toBe(0o600);
    expect(statSync(at('/var/lib/secd')).mode & 0o777).toBe(0o750);
    expect((await readdir(at(INSTALL_PATHS.unitDir))).sort()).toEqual(['secd-backup.service', 'secd-backup.timer', 'secd-leader.service']);
    const secret = (await readFile(at('/etc/secd/credentials/gitlab_webhook_secret'), 'utf8')).trim();
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(await readFile(at('/etc/secd/credentials/gitlab_token'), 'utf8')).toBe('');
    const unit = await readFile(unitPath(leaderRoot, 'secd-leader.service'), 'utf8');
    // The unit starts the secd that ran install, with this machine's node.
    expect(execWords(unit)).toEqual([process.execPath, CLI, 'leader', '--config', '/etc/secd/leader.yml']);
    expect(leaderFirst.stdout).toContain('user secd not created in a staging tree');
    expect(leaderFirst.stdout).toContain(`In GitLab, Admin Area > System Hooks: URL http://${hostname()}:8080/v1/hook, secret token ${secret}`);
    expect(leaderFirst.stdout).toMatch(/admin node-token <node id> --config \/etc\/secd\/leader\.yml/);
  });

  it('stages a node: docker group membership, cache and dataset mount points, the unit, and the NFS mount units as inert examples', async () => {
    expect(nodeFirst.code, nodeFirst.stderr).toBe(0);
    const at = (p: string) => join(nodeRoot, p);
    expect(await readFile(at('/etc/sysusers.d/secd-node.conf'), 'utf8')).toMatch(/^m secd docker$/m);
    // In the unit folder a mount unit would be required by RequiresMountsFor= before it names a server.
    expect(await readdir(at(INSTALL_PATHS.unitDir))).toEqual(['secd-node.service']);
    expect((await readdir(at(INSTALL_PATHS.examplesDir))).sort()).toEqual(['mnt-secd\\x2dcache.mount', 'mnt-secd\\x2ddatasets.mount']);
    expect(statSync(at('/mnt/secd-cache')).isDirectory()).toBe(true);
    expect(statSync(at('/etc/secd/credentials/token')).mode & 0o777).toBe(0o600);
    expect(nodeFirst.stdout).toContain('base-image');
    expect(nodeFirst.stdout).toContain("cp '/etc/secd/examples/mnt-secd\\x2dcache.mount' /etc/systemd/system/");
    expect(nodeFirst.stdout).toContain("systemctl enable --now 'mnt-secd\\x2dcache.mount'");
  });

  it('a second run changes nothing and keeps the webhook secret', async () => {
    const secretBefore = await readFile(join(leaderRoot, '/etc/secd/credentials/gitlab_webhook_secret'), 'utf8');
    const again = await secd(['install', '--role', 'leader', '--root', leaderRoot, '--gitlab-url', 'https://gitlab.lab.example']);
    expect(again.code, again.stderr).toBe(0);
    const actions = again.stdout.split('\n').filter((l) => /^ {2}(created|updated|unchanged|kept) /.test(l));
    expect(actions.length).toBeGreaterThan(5);
    expect(actions.filter((l) => /^ {2}(created|updated) /.test(l))).toEqual([]);
    expect(await readFile(join(leaderRoot, '/etc/secd/credentials/gitlab_webhook_secret'), 'utf8')).toBe(secretBefore);
    expect(again.stdout).not.toContain(secretBefore.trim());
  });

  it('never overwrites an edited config, and puts the current template beside it as .dist', async () => {
    const root = join(work, 'edited');
    await cp(nodeRoot, root, { recursive: true });
    const config = join(root, INSTALL_PATHS.nodeConfig);
    const template = await readFile(config, 'utf8');
    const edited = template.replace('max_cpu_runs: 2', 'max_cpu_runs: 6');
    await writeFile(config, edited);
    const r = await secd(['install', '--role', 'node', '--root', root, '--leader', 'ws://leader.lab.example:8080/v1/nodes']);
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(config, 'utf8')).toBe(edited);
    expect(await readFile(`${config}.dist`, 'utf8')).toBe(template);
    expect(r.stdout).toContain('kept      /etc/secd/node.yml: differs from the template: yours is kept (the template is in /etc/secd/node.yml.dist, to compare)');
  });

  it('the config templates load with the daemons\' parsers once the credentials are filled in, and not before', async () => {
    const leaderCreds = join(leaderRoot, INSTALL_PATHS.credentialsDir);
    const leaderFile = join(leaderRoot, INSTALL_PATHS.leaderConfig);
    const leaderText = await readFile(leaderFile, 'utf8');
    const env = { CREDENTIALS_DIRECTORY: leaderCreds };
    expect(() => parseLeaderConfig(leaderText, leaderFile, env)).toThrow(/gitlab\.token is empty/);
    const creds = join(work, 'leader-creds');
    await cp(leaderCreds, creds, { recursive: true });
    await writeFile(join(creds, 'gitlab_token'), 'glpat-0123456789abcdef\n');
    const leader = parseLeaderConfig(leaderText, leaderFile, { CREDENTIALS_DIRECTORY: creds });
    expect(leader).toMatchObject({
      listen: { host: '0.0.0.0', port: 8080 },
      public_url: `http://${hostname()}:8080`,
      data_dir: INSTALL_PATHS.leaderDataDir,
      gitlab: { url: 'https://gitlab.lab.example', token: 'glpat-0123456789abcdef', run_branch: 'default' },
      mysql: null,
    });
    expect(leader.gitlab.webhook_secret).toBe((await readFile(join(leaderCreds, 'gitlab_webhook_secret'), 'utf8')).trim());

    const nodeFile = join(nodeRoot, INSTALL_PATHS.nodeConfig);
    const nodeText = await readFile(nodeFile, 'utf8');
    const nodeCreds = join(nodeRoot, INSTALL_PATHS.credentialsDir);
    expect(() => parseNodeConfig(nodeText, nodeFile, { CREDENTIALS_DIRECTORY: nodeCreds }, { hostname: 'gpu-07' })).toThrow(/token is empty/);
    const tokenDir = join(work, 'node-creds');
    await mkdir(tokenDir);
    await writeFile(join(tokenDir, 'token'), 'node-token-value\n');
    expect(parseNodeConfig(nodeText, nodeFile, { CREDENTIALS_DIRECTORY: tokenDir }, { hostname: 'gpu-07' })).toMatchObject({
      leader: ['ws://leader.lab.example:8080/v1/nodes'],
      node_id: 'gpu-07',
      token: 'node-token-value',
      work_dir: INSTALL_PATHS.nodeWorkDir,
      cache_root: INSTALL_PATHS.cacheRoot,
      dataset_root: null,
    });
  });

  it('the units name the same config, state folders, cache root and credentials as the templates', async () => {
    const leader = await readFile(unitPath(leaderRoot, 'secd-leader.service'), 'utf8');
    const node = await readFile(unitPath(nodeRoot, 'secd-node.service'), 'utf8');
    expect(execWords(leader).slice(-2)).toEqual(['--config', INSTALL_PATHS.leaderConfig]);
    expect(execWords(node).slice(-3)).toEqual(['node', '--config', INSTALL_PATHS.nodeConfig]);
    expect(`/var/lib/${unitValues(leader, 'StateDirectory')[0]}`).toBe(INSTALL_PATHS.leaderDataDir);
    expect(`/var/lib/${unitValues(node, 'StateDirectory')[0]}`).toBe(INSTALL_PATHS.nodeWorkDir);
    expect(unitValues(node, 'ReadWritePaths')).toEqual([INSTALL_PATHS.cacheRoot]);
    expect(unitValues(node, 'RequiresMountsFor')[0]!.split(' ')).toEqual([INSTALL_PATHS.cacheRoot, INSTALL_PATHS.datasetRoot]);
    expect(unitValues(node, 'SupplementaryGroups')).toEqual(['docker']);
    const backup = await readFile(unitPath(leaderRoot, 'secd-backup.service'), 'utf8');
    expect(execWords(backup).slice(-5)).toEqual(['admin', 'backup', `${INSTALL_PATHS.leaderDataDir}/secd-backup.db`, '--config', INSTALL_PATHS.leaderConfig]);
    for (const [role, text] of [['leader', leader], ['leader', backup], ['node', node]] as const) {
      expect(unitValues(text, 'User')).toEqual(['secd']);
      expect(unitValues(text, 'LoadCredential')).toEqual(ROLE_CREDENTIALS[role].map((c) => `${c}:${INSTALL_PATHS.credentialsDir}/${c}`));
    }
    // The mount examples mount where the config and the node unit expect them.
    for (const [name, where] of [['mnt-secd\\x2dcache.mount', INSTALL_PATHS.cacheRoot], ['mnt-secd\\x2ddatasets.mount', INSTALL_PATHS.datasetRoot]] as const) {
      expect(unitValues(await readFile(unitPath(nodeRoot, name), 'utf8'), 'Where')).toEqual([where]);
    }
    // Containers belong to dockerd; only the secd process gets SIGTERM.
    expect(unitValues(node, 'KillMode')).toEqual(['mixed']);
    expect(unitValues(node, 'After')[0]).toContain('docker.service');
  });

  it('systemd-analyze verify accepts every installed unit', () => {
    const units = [
      ...['secd-leader.service', 'secd-backup.service', 'secd-backup.timer'].map((n) => unitPath(leaderRoot, n)),
      ...['secd-node.service', 'mnt-secd\\x2dcache.mount', 'mnt-secd\\x2ddatasets.mount'].map((n) => unitPath(nodeRoot, n)),
    ];
    const r = tool('systemd-analyze', ['verify', ...units]);
    // verify exits 0 on unknown keys and bad values too, and only warns: any output is a failure.
    expect({ code: r.code, out: (r.stdout + r.stderr).trim() }).toEqual({ code: 0, out: '' });
  });

  it('systemd-analyze security --offline rates the leader (and its backup) at most 2.0 and the node at most 3.5', () => {
    for (const [name, goal] of Object.entries(EXPOSURE_GOAL)) {
      const root = name === 'secd-node.service' ? nodeRoot : leaderRoot;
      const r = tool('systemd-analyze', ['security', '--offline=true', unitPath(root, name)]);
      const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(r.stdout);
      expect(m, r.stdout + r.stderr).not.toBeNull();
      const exposure = Number(m![1]);
      process.stdout.write(`systemd-analyze security --offline=true ${name}: exposure ${exposure} (goal <= ${goal})\n`);
      expect(exposure).toBeLessThanOrEqual(goal);
    }
  });

  it('systemd-sysusers creates the secd user from the staged files, with no shell, in the docker group', async () => {
    const target = join(work, 'sysusers-target');
    await mkdir(join(target, 'etc'), { recursive: true });
    const files = ['secd.conf', 'secd-node.conf'].map((f) => join(nodeRoot, INSTALL_PATHS.sysusersDir, f));
    const r = tool('systemd-sysusers', [`--root=${target}`, ...files]);
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(join(target, 'etc/passwd'), 'utf8')).toMatch(/^secd:x:\d+:\d+:secd daemon:\/var\/lib\/secd:\/usr\/sbin\/nologin$/m);
    expect(await readFile(join(target, 'etc/group'), 'utf8')).toMatch(/^docker:x:\d+:secd$/m);
  });

  it('warns about a secd under /tmp, which the units\' PrivateTmp=yes hides from the service', async () => {
    const r = await secd(['install', '--role', 'node', '--root', join(work, 'tmp-secd'), '--leader', 'ws://leader:8080/v1/nodes', '--secd-command', '/tmp/secd-1.4/bin/secd']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('the units run with PrivateTmp=yes, so the service cannot see /tmp/secd-1.4/bin/secd');
  });

  it('refuses a --leader URL that is not ws:// or wss:// and names the option', async () => {
    const r = await secd(['install', '--role', 'node', '--root', join(work, 'bad'), '--leader', 'http://leader:8080']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('secd install: --leader must be a ws:// or wss:// URL (got "http://leader:8080")\n');
    expect(existsSync(join(work, 'bad'))).toBe(false);
  });

  it('the units keep MemoryDenyWriteExecute off because Node.js cannot run under it (V8 JIT)', () => {
    for (const [root, name] of [[leaderRoot, 'secd-leader.service'], [nodeRoot, 'secd-node.service']] as const) {
      expect(unitValues(readFileSync(unitPath(root, name), 'utf8'), 'MemoryDenyWriteExecute')).toEqual(['no']);
    }
    // The kernel's own W^X switch (PR_SET_MDWE, Linux 6.3+), which is what MemoryDenyWriteExecute= asks for:
    // perl (Essential in Debian) sets it and execs node.
    const prctl = { x64: 157, arm64: 167 }[process.arch as 'x64' | 'arm64'];
    expect(prctl, `no prctl syscall number for ${process.arch}`).toBeDefined();
    const script = `syscall(${prctl}, 65, 1, 0, 0, 0) == 0 or die "PR_SET_MDWE: $!"; exec @ARGV`;
    const plain = spawnSync('perl', ['-e', 'exec @ARGV', process.execPath, '-e', 'console.log([1,2].map((x) => x * 2).join())'], { encoding: 'utf8' });
    expect(plain.stdout).toBe('2,4\n');
    const mdwe = spawnSync('perl', ['-e', script, process.execPath, '-e', 'console.log([1,2].map((x) => x * 2).join())'], { encoding: 'utf8' });
    expect(mdwe.stderr, 'this kernel lacks PR_SET_MDWE (Linux 6.3+)').not.toContain('PR_SET_MDWE');
    expect(mdwe.stdout).toBe('');
    expect(mdwe.signal ?? mdwe.status).not.toBe(0);
  });
});
