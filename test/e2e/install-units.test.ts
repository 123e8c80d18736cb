/**
 * A leader and a node staged by `secd install --root` and started the way their installed units
 * start them (ExecStart='s words, systemd's clean environment, LoadCredential='s private copies, and
 * as root an unprivileged uid like User=secd): the node registers, shows as up, and both stop cleanly
 * on SIGTERM. The real CLI, built into dist/ by `npm test`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmod, chown, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTALL_PATHS, ROLE_CREDENTIALS } from '../../daemon/ops/install-templates.js';
import { freePort } from '../support/free-port.js';
import { runSecd, type CliResult } from '../support/secd-cli.js';
import { execWords, unitPath, unitValues } from '../support/unit-files.js';

const secd = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => runSecd(args, { env });

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
