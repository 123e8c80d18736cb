/**
 * A whole secd cluster as separate processes on this machine, for end-to-end tests of the leader <->
 * node protocol: the GitLab double (in the test's process), one `secd leader` and any number of
 * `secd node` processes started from dist/daemon/cli.js (build first: `npm run build`), each node with
 * a fake nvidia-smi printing a recorded fixture, all driving the real Docker Engine.
 *
 * Processes can be killed (SIGKILL included) and started again on the same config, work dir and port:
 * what the tests of node and leader restarts need. Each process's output goes to a log file in the
 * cluster's folder; `logs()` returns it for failure messages.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { startGitLabDouble, type GitLabDouble } from '../doubles/gitlab-double.js';
import { writeFakeNvidiaSmi, type FakeNvidiaSmiFixture } from './fake-nvidia-smi.js';
import { freePort } from './free-port.js';
import type { ResearcherRepo } from './git-repo.js';
import { createGpgHome, type GpgHome } from './gpg.js';
import { ensureBusyboxImage } from './test-images.js';
import type { z } from 'zod';
import { apiNodesAnswerSchema, apiRunDetailSchema, type ApiNode, type ApiRunDetail } from '../../web/api-schema.js';
import { outputsVolumeName } from '../../daemon/executor/container-profile.js';
import { makeResearcher, type Researcher, type ResearcherSpec } from './researcher.js';
import { CLI, runSecd } from './secd-cli.js';
import { MARIADB, MARIADB_ADMIN } from './mariadb.js';
import { startWebhookVip, type WebhookVip } from './webhook-vip.js';
import { ManagedProcess, request, waitUntil, type ClusterProcess } from './managed-process.js';

export { request, type ClusterProcess } from './managed-process.js';

// What the cluster tests push; it lives with the busybox image now.
export { busyboxProject } from './test-images.js';

/** A run as GET /api/v1/runs/:id shows it: the API's own type, like ApiNodeView. */
export type ApiRun = ApiRunDetail;

/** A node as GET /api/v1/nodes shows it: the API's own type, so the harness can't drift from it. */
export type ApiNodeView = ApiNode;

/** A researcher of this harness: `pushRun` answers the run as GET /api/v1/runs/:id shows it. */
export type ClusterResearcher = Researcher<ApiRun>;

/** How to set up one node. */
export interface NodeSpec {
  id: string;
  /** A fixture of test/fixtures/nvidia-smi, or null for a node without GPUs (nvidia-smi missing). */
  gpus: FakeNvidiaSmiFixture | null;
  maxCpuRuns?: number;
  /** Start it with a token that is not its own. */
  badToken?: boolean;
  /** With TLS: leave ca_file out, so the node does not trust the leader's certificate. */
  noCa?: boolean;
}

/** The cluster under test. */
export interface ProcessCluster {
  root: string;
  gitlab: GitLabDouble;
  gpg: GpgHome;
  /** http(s)://127.0.0.1:<port> (the first leader's) */
  leaderUrl: string;
  /** The first leader. */
  leader: ClusterProcess;
  /** Every leader (one unless `ha`), and their URLs in the same order. */
  leaders: ClusterProcess[];
  leaderUrls: string[];
  /** With `ha`: the webhook URL GitLab knows, in front of the leaders. */
  vip: WebhookVip | null;
  nodes: Map<string, ClusterProcess>;
  /** Folder of a node's fake nvidia-smi (for setFakeGpuValues). */
  smiDir(nodeId: string): string;
  /** Run `secd admin ...` against the leader's config; returns stdout. */
  admin(args: string[]): Promise<string>;
  /** Add a user with a fresh key uploaded to GitLab, a project they belong to, and a repo. */
  addResearcher(spec: ResearcherSpec): Promise<ClusterResearcher>;
  /** GET a path of the leader's API and read the answer with `schema` (one of web/api-schema.ts). */
  getJson<T>(path: string, schema: z.ZodType<T>): Promise<T>;
  run(id: string): Promise<ApiRun>;
  apiNodes(): Promise<ApiNodeView[]>;
  /** Poll `check` every 100 ms until it returns a value that is not undefined/false. */
  waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs?: number): Promise<T>;
  waitForRunState(id: string, states: string[], timeoutMs?: number): Promise<ApiRun>;
  /** Every process's output, for failure messages. */
  logs(): Promise<string>;
  close(): Promise<void>;
}

/** Options of the cluster. */
export interface ProcessClusterOptions {
  nodes: NodeSpec[];
  /** Extra YAML for leader.yml. */
  leaderConfig?: string;
  /** node_timeout_ms of the leader. */
  nodeTimeoutMs?: number;
  lostAfterMs?: number;
  reportIntervalMs?: number;
  /** Serve https/wss with this certificate; nodes trust `caFile`. */
  tls?: { certFile: string; keyFile: string; caFile: string };
  /** Leave nodes unstarted (a test starts them). */
  startNodes?: boolean;
  /**
   * Several leaders on one MariaDB state database (DESIGN §11): the database (the test creates it),
   * how many leaders, and their lease. GitLab's webhook then goes through `vip`, and every node
   * lists every leader.
   */
  ha?: { database: string; leaders: number; leaseMs: number };
}

/** Start the GitLab double, the leader and the nodes; resolves once every started node is up in the API. */
export async function startProcessCluster(opts: ProcessClusterOptions): Promise<ProcessCluster> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" (npm test does it first)`);
  const root = await mkdtemp(join(tmpdir(), 'secd-cluster-'));
  const token = 'glpat-test-admin-token';
  const webhookSecret = 'hook-secret-for-tests';
  const engine = createDockerEngine();
  await ensureBusyboxImage(engine);
  const gitlab = await startGitLabDouble({ token, dataDir: join(root, 'gitlab') });
  const gpg = await createGpgHome();
  const scheme = opts.tls ? 'https' : 'http';
  const ports: number[] = [];
  for (let i = 0; i < (opts.ha?.leaders ?? 1); i++) ports.push(await freePort());
  const leaderUrls = ports.map((p) => `${scheme}://127.0.0.1:${p}`);
  const leaderUrl = leaderUrls[0]!;
  const ca = opts.tls ? await readFile(opts.tls.caFile, 'utf8') : undefined;
  const leaderYmls = ports.map((_, i) => join(root, i === 0 ? 'leader.yml' : `leader-${i + 1}.yml`));
  const leaderYml = leaderYmls[0]!;
  const ha = opts.ha;
  const stateYaml = ha
    ? ['state:', `  mysql: { host: ${MARIADB.host}, port: ${MARIADB.port}, user: ${MARIADB_ADMIN.user}, database: ${ha.database} }`, 'ha:', `  lease_ms: ${ha.leaseMs}`]
    : [];
  for (const [i, port] of ports.entries()) await writeFile(
    leaderYmls[i]!,
    [
      `listen: 127.0.0.1:${port}`,
      `public_url: ${leaderUrls[i]}`,
      `data_dir: ${join(root, i === 0 ? 'leader' : `leader-${i + 1}`)}`,
      ...stateYaml,
      `node_timeout_ms: ${opts.nodeTimeoutMs ?? 3000}`,
      `lost_after_ms: ${opts.lostAfterMs ?? 120_000}`,
      'gitlab:',
      `  url: ${gitlab.url}`,
      `  token: ${token}`,
      `  webhook_secret: ${webhookSecret}`,
      ...(opts.tls ? ['tls:', `  cert_file: ${opts.tls.certFile}`, `  key_file: ${opts.tls.keyFile}`] : []),
      opts.leaderConfig ?? '',
    ].join('\n'),
  );
  const processes: ManagedProcess[] = [];
  const runIds = new Set<string>();

  const admin = async (args: string[]): Promise<string> => {
    const ran = await runSecd(['admin', ...args, '--config', leaderYml]);
    if (ran.code !== 0) throw new Error(`secd admin ${args.join(' ')} exited ${ran.code}: ${ran.stderr}`);
    return ran.stdout;
  };

  const leaders = leaderUrls.map((url, i) => {
    const p = new ManagedProcess(i === 0 ? 'leader' : `leader ${i + 1}`, root, [CLI, 'leader', '--config', leaderYmls[i]!], async () => {
      await waitUntil(`${url} to answer /healthz`, async () => (await request(`${url}/healthz`, ca).catch(() => null))?.status === 200, 20_000);
    });
    processes.push(p);
    return p;
  });
  const leader = leaders[0]!;
  await leader.start();
  // A standby is started once the first leader leads, so that the first one is the active one.
  for (const other of leaders.slice(1)) await other.start();
  const vip = ha ? await startWebhookVip(leaderUrl) : null;
  gitlab.addWebhook({ url: `${vip?.url ?? leaderUrl}/v1/hook`, secret: webhookSecret, kind: 'system' });

  // Read with the API's own schemas: an answer that drifts from them fails the test that reads it.
  // Every leader serves the API: ask the first that answers (a killed one does not).
  const answering = async (path: string) => {
    let last: unknown;
    for (const base of leaderUrls) {
      try {
        return await request(`${base}${path}`, ca);
      } catch (err) {
        last = err;
      }
    }
    throw last;
  };
  const getJson = async <T>(path: string, schema: z.ZodType<T>): Promise<T> => {
    const res = await answering(path);
    if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${res.body}`);
    const read = schema.safeParse(JSON.parse(res.body));
    if (!read.success) throw new ApiShapeError(path, read.error);
    return read.data;
  };
  // Only the active leader holds the nodes' connections: with several, the first that lists any.
  const apiNodes = async () => {
    if (leaders.length === 1) return (await getJson('/api/v1/nodes', apiNodesAnswerSchema)).nodes;
    for (const base of leaderUrls) {
      const res = await request(`${base}/api/v1/nodes`, ca).catch(() => null);
      if (res?.status !== 200) continue;
      const nodes = apiNodesAnswerSchema.parse(JSON.parse(res.body)).nodes;
      if (nodes.length > 0) return nodes;
    }
    return [];
  };

  const nodes = new Map<string, ClusterProcess>();
  const smiDirs = new Map<string, string>();
  for (const spec of opts.nodes) {
    const dir = join(root, 'nodes', spec.id);
    await mkdir(dir, { recursive: true });
    let smi = join(dir, 'no-nvidia-smi');
    if (spec.gpus !== null) {
      smi = await writeFakeNvidiaSmi(join(dir, 'smi'), spec.gpus);
      smiDirs.set(spec.id, join(dir, 'smi'));
    }
    const issued = (await admin(['node-token', spec.id])).trim().split('\n').at(-1)!;
    const nodeToken = spec.badToken ? `${issued.slice(0, -4)}AAAA` : issued;
    const nodeYml = join(dir, 'node.yml');
    await writeFile(
      nodeYml,
      [
        `leader: [${leaderUrls.map((u) => `${u.replace(/^http/, 'ws')}/v1/nodes`).join(', ')}]`,
        `node_id: ${spec.id}`,
        `token: ${nodeToken}`,
        `work_dir: ${join(dir, 'work')}`,
        `cache_root: ${join(root, 'cache')}`,
        `nvidia_smi: ${smi}`,
        `report_interval_ms: ${opts.reportIntervalMs ?? 300}`,
        `max_cpu_runs: ${spec.maxCpuRuns ?? 2}`,
        'memory_limit_bytes: 268435456',
        ...(opts.tls && !spec.noCa ? [`ca_file: ${opts.tls.caFile}`] : []),
      ].join('\n'),
    );
    const proc = new ManagedProcess(`node ${spec.id}`, root, [CLI, 'node', '--config', nodeYml], async () => {
      if (spec.badToken || spec.noCa) return;
      await waitUntil(`node ${spec.id} to be up`, async () => (await apiNodes()).some((n) => n.id === spec.id && n.state === 'up'), 20_000);
    });
    processes.push(proc);
    nodes.set(spec.id, proc);
  }
  if (opts.startNodes !== false) await Promise.all([...nodes.values()].map((n) => n.start()));

  const repos: ResearcherRepo[] = [];
  const cluster: ProcessCluster = {
    root,
    gitlab,
    gpg,
    leaderUrl,
    leader,
    leaders,
    leaderUrls,
    vip,
    nodes,
    smiDir(nodeId) {
      const dir = smiDirs.get(nodeId);
      if (!dir) throw new Error(`node ${nodeId} has no fake nvidia-smi`);
      return dir;
    },
    admin,
    async addResearcher(spec) {
      const researcher = await makeResearcher(gitlab, gpg, spec, (runId) => {
        runIds.add(runId);
        return cluster.run(runId);
      });
      repos.push(researcher.repo);
      return researcher;
    },
    getJson,
    run: (id) => getJson(`/api/v1/runs/${id}`, apiRunDetailSchema),
    apiNodes,
    waitFor: (what, check, timeoutMs = 60_000) => waitUntil(what, check, timeoutMs, () => cluster.logs()),
    waitForRunState: (id, states, timeoutMs = 60_000) =>
      cluster.waitFor(
        `run ${id} to be ${states.join(' or ')}`,
        async () => {
          // A leader that is restarting answers nothing for a while; an answer of the wrong shape is a bug.
          const r = await cluster.run(id).catch((err: unknown) => {
            if (err instanceof ApiShapeError) throw err;
            return undefined;
          });
          return r && states.includes(r.state) ? r : undefined;
        },
        timeoutMs,
      ),
    async logs() {
      const parts: string[] = [];
      for (const p of processes) parts.push(`----- ${p.name}\n${(await readFile(p.logFile, 'utf8').catch(() => '')).split('\n').slice(-80).join('\n')}`);
      return parts.join('\n');
    },
    async close() {
      await Promise.all(processes.map((p) => p.kill('SIGKILL')));
      // Nodes stopped by SIGKILL leave their containers behind by design (a restart adopts them).
      const left = await engine.findRunContainers().catch(() => []);
      for (const c of left) if (runIds.has(c.runId)) await engine.removeContainer(c.id).catch(() => undefined);
      // ...and the outputs volumes of those runs, which only a finished delivery removes.
      for (const runId of runIds) await engine.removeVolume(outputsVolumeName(runId)).catch(() => false);
      await vip?.close();
      await gitlab.close();
      await gpg.close();
      await Promise.all(repos.map((r) => r.close()));
      await rm(root, { recursive: true, force: true });
    },
  };
  return cluster;
}

/** The leader's API answered something its own schema (web/api-schema.ts) does not describe. */
class ApiShapeError extends Error {
  constructor(path: string, error: z.ZodError) {
    const issue = error.issues[0];
    super(`GET ${path} answered a shape web/api-schema.ts does not describe: ${issue ? `${issue.path.join('.')}: ${issue.message}` : error.message}`);
    this.name = 'ApiShapeError';
  }
}
