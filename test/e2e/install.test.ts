/**
 * `secd install --root <dir>` as a packager or a sysadmin's dry run uses it: the real CLI (built into
 * dist/ by `npm test`), real systemd tools (`systemd-analyze verify` and `security --offline`,
 * `systemd-sysusers --root`) on the staged files, and the config templates loaded by the daemons'
 * own parsers. The last test starts a leader and a node the way the installed units do.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { chmod, chown, cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLeaderConfig } from '../../daemon/config/leader-config.js';
import { parseNodeConfig } from '../../daemon/config/node-config.js';
import { INSTALL_PATHS, ROLE_CREDENTIALS } from '../../daemon/ops/install-templates.js';
import { freePort } from '../support/free-port.js';
import { CLI, runSecd, type CliResult } from '../support/secd-cli.js';

/** Exposure goals from the issue (systemd-analyze's 0-10 scale; a unit with no sandboxing scores 9.2). */
const EXPOSURE_GOAL = { 'secd-leader.service': 2.0, 'secd-backup.service': 2.0, 'secd-node.service': 3.5 } as const;

type Ran = CliResult;

const secd = (args: string[], env: Record<string, string> = {}): Promise<Ran> => runSecd(args, { env });

function tool(cmd: string, args: string[]): Ran {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw new Error(`${cmd} could not run (${r.error.message}): install Debian's systemd package`);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Every value of `key=` in a unit file, in order (continuation lines are not used in secd's units). */
function unitValues(text: string, key: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}

/** ExecStart= split as systemd splits it (secd's units use only plain and double-quoted words). */
function execWords(text: string): string[] {
  const [line] = unitValues(text, 'ExecStart');
  return [...line!.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!));
}

const unitPath = (root: string, name: string) => join(root, name.endsWith('.mount') ? INSTALL_PATHS.examplesDir : INSTALL_PATHS.unitDir, name);

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
      leader: 'ws://leader.lab.example:8080/v1/nodes',
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

// ---------------------------------------------------------------------------------------------

/** What systemd does with LoadCredential=: a private copy of the files, owned by the service user. */
async function credentialsFor(serviceUid: number, source: string, names: readonly string[], into: string): Promise<string> {
  await mkdir(into, { recursive: true });
  for (const name of names) await cp(join(source, name), join(into, name));
  for (const name of names) await chmod(join(into, name), 0o400);
  await chmod(into, 0o500);
  if (process.getuid?.() === 0) {
    for (const name of names) await chown(join(into, name), serviceUid, serviceUid);
    await chown(into, serviceUid, serviceUid);
  }
  return into;
}

describe('a leader and a node started the way the installed units start them', () => {
  // As root (CI), the daemons run as an unused uid in the docker group with no capabilities and
  // no-new-privs, like User=secd, SupplementaryGroups=docker, CapabilityBoundingSet= and
  // NoNewPrivileges=; the rest of the sandbox needs systemd as PID 1, which this container lacks.
  const SERVICE_UID = 64_917;
  const children: ReturnType<typeof spawn>[] = [];
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'secd-units-'));
    await chmod(work, 0o755);
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(work, { recursive: true, force: true });
  });

  function dockerGid(): number {
    const line = spawnSync('getent', ['group', 'docker'], { encoding: 'utf8' }).stdout.trim();
    const gid = Number(line.split(':')[2]);
    if (!Number.isInteger(gid)) throw new Error('no docker group on this machine');
    return gid;
  }

  /** Start ExecStart= as the unit would: its words, a clean environment, WorkingDirectory=, User=. */
  function startUnit(unitText: string, root: string, credentialsDir: string, logs: string[]): ReturnType<typeof spawn> {
    const words = execWords(unitText).map((w) => (w.startsWith('/etc/secd/') ? join(root, w) : w));
    const workingDirectory = join(root, unitValues(unitText, 'WorkingDirectory')[0]!);
    // systemd's environment for a system service: PATH, LANG, the user's HOME/USER/LOGNAME/SHELL,
    // CREDENTIALS_DIRECTORY, and nothing from the shell that ran `systemctl start`.
    const env: Record<string, string> = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      LANG: 'C.UTF-8',
      HOME: join(root, INSTALL_PATHS.leaderDataDir),
      USER: 'secd',
      LOGNAME: 'secd',
      SHELL: '/usr/sbin/nologin',
      CREDENTIALS_DIRECTORY: credentialsDir,
    };
    for (const e of unitValues(unitText, 'Environment')) {
      const [k, ...v] = e.split('=');
      env[k!] = v.join('=');
    }
    const asService =
      process.getuid?.() === 0
        ? ['setpriv', `--reuid=${SERVICE_UID}`, `--regid=${SERVICE_UID}`, `--groups=${dockerGid()}`, '--no-new-privs', '--bounding-set=-all', '--inh-caps=-all', '--']
        : [];
    const argv = [...asService, ...words];
    const child = spawn(argv[0]!, argv.slice(1), { cwd: workingDirectory, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    child.stdout!.on('data', (c: Buffer) => logs.push(c.toString()));
    child.stderr!.on('data', (c: Buffer) => logs.push(c.toString()));
    return child;
  }

  async function ownedByService(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    if (process.getuid?.() === 0) spawnSync('chown', ['-R', `${SERVICE_UID}:${SERVICE_UID}`, dir]);
  }

  it('the node registers with the leader and shows as up in /api/v1/nodes; both stop cleanly on SIGTERM', async () => {
    const leaderRoot = join(work, 'leader');
    const nodeRoot = join(work, 'node');
    for (const [role, root] of [['leader', leaderRoot], ['node', nodeRoot]] as const) {
      const r = await secd(['install', '--role', role, '--root', root]);
      expect(r.code, r.stderr).toBe(0);
    }
    // The sysadmin's edits: where to listen, and (here) every path inside the staging trees.
    const port = await freePort();
    const leaderYml = join(leaderRoot, INSTALL_PATHS.leaderConfig);
    const leaderText = (await readFile(leaderYml, 'utf8'))
      .replace('listen: 0.0.0.0:8080', `listen: 127.0.0.1:${port}`)
      .replace(/^public_url: .*$/m, `public_url: http://127.0.0.1:${port}`)
      .replace(`data_dir: ${INSTALL_PATHS.leaderDataDir}`, `data_dir: ${join(leaderRoot, INSTALL_PATHS.leaderDataDir)}`);
    await writeFile(leaderYml, leaderText);
    await writeFile(join(leaderRoot, INSTALL_PATHS.credentialsDir, 'gitlab_token'), 'glpat-install-test\n');
    await ownedByService(join(leaderRoot, INSTALL_PATHS.leaderDataDir));

    const leaderUnit = await readFile(unitPath(leaderRoot, 'secd-leader.service'), 'utf8');
    const leaderCreds = await credentialsFor(SERVICE_UID, join(leaderRoot, INSTALL_PATHS.credentialsDir), ROLE_CREDENTIALS.leader, join(work, 'run-credentials/secd-leader.service'));
    const leaderLogs: string[] = [];
    const leader = startUnit(leaderUnit, leaderRoot, leaderCreds, leaderLogs);
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok === true, 'the leader answers /healthz', leaderLogs, [leader]);

    // The documented way to issue a node token: as root, with the leader's credentials.
    const nodeId = 'gpu-install-test';
    const tokenRun = await secd(['admin', 'node-token', nodeId, '--config', leaderYml], {
      CREDENTIALS_DIRECTORY: join(leaderRoot, INSTALL_PATHS.credentialsDir),
    });
    expect(tokenRun.code, tokenRun.stderr).toBe(0);
    const nodeToken = tokenRun.stdout.trim().split('\n').at(-1)!;
    expect(nodeToken.length).toBeGreaterThan(16);
    await writeFile(join(nodeRoot, INSTALL_PATHS.credentialsDir, 'token'), `${nodeToken}\n`);

    const nodeYml = join(nodeRoot, INSTALL_PATHS.nodeConfig);
    const nodeText = (await readFile(nodeYml, 'utf8'))
      .replace(/^leader: .*$/m, `leader: ws://127.0.0.1:${port}/v1/nodes`)
      .replace(`# node_id: ${hostname()}`, `node_id: ${nodeId}`)
      .replace(`work_dir: ${INSTALL_PATHS.nodeWorkDir}`, `work_dir: ${join(nodeRoot, INSTALL_PATHS.nodeWorkDir)}`)
      .replace(`cache_root: ${INSTALL_PATHS.cacheRoot}`, `cache_root: ${join(nodeRoot, INSTALL_PATHS.cacheRoot)}`);
    expect(nodeText).toContain(`node_id: ${nodeId}`);
    await writeFile(nodeYml, nodeText);
    await ownedByService(join(nodeRoot, INSTALL_PATHS.nodeWorkDir));
    await ownedByService(join(nodeRoot, INSTALL_PATHS.cacheRoot));
    const nodeUnit = await readFile(unitPath(nodeRoot, 'secd-node.service'), 'utf8');
    const nodeCreds = await credentialsFor(SERVICE_UID, join(nodeRoot, INSTALL_PATHS.credentialsDir), ROLE_CREDENTIALS.node, join(work, 'run-credentials/secd-node.service'));
    const nodeLogs: string[] = [];
    const node = startUnit(nodeUnit, nodeRoot, nodeCreds, nodeLogs);

    let listed: unknown = null;
    await waitFor(
      async () => {
        const body = (await (await fetch(`${base}/api/v1/nodes`)).json()) as { nodes: { id: string; state: string }[] };
        listed = body.nodes.find((n) => n.id === nodeId) ?? null;
        return (listed as { state?: string } | null)?.state === 'up';
      },
      `node ${nodeId} is listed as up`,
      [...leaderLogs, '--- node ---', ...nodeLogs],
      [leader, node],
    );
    expect(listed).toMatchObject({ id: nodeId, state: 'up' });

    // The journal gets JSON lines: every line either daemon printed on stdout parses.
    const stdoutLines = nodeLogs.join('').split('\n').filter((l) => l.startsWith('{'));
    expect(stdoutLines.length).toBeGreaterThan(0);
    for (const l of stdoutLines) expect(() => JSON.parse(l)).not.toThrow();

    // systemctl stop: SIGTERM to secd; Restart=on-failure must not see a failure.
    const exited = (c: ReturnType<typeof spawn>) =>
      new Promise<{ code: number | null; signal: string | null }>((done) => c.once('exit', (code, signal) => done({ code, signal })));
    const nodeExit = exited(node);
    node.kill('SIGTERM');
    expect(await nodeExit, nodeLogs.join('')).toEqual({ code: 0, signal: null });
    const leaderExit = exited(leader);
    leader.kill('SIGTERM');
    expect(await leaderExit, leaderLogs.join('')).toEqual({ code: 0, signal: null });
  });
});

/** Polls `check` until it holds; gives up at once when a daemon it depends on has exited. */
async function waitFor(check: () => Promise<boolean>, what: string, logs: string[], daemons: ReturnType<typeof spawn>[], timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    const dead = daemons.find((d) => d.exitCode !== null || d.signalCode !== null);
    if (dead) throw new Error(`a daemon exited (${dead.exitCode ?? dead.signalCode}) before ${what}; output:\n${logs.join('').slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}; output:\n${logs.join('').slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
