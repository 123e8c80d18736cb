/**
 * One whole secd on this machine for end-to-end tests: a GitLab double serving real git, a leader
 * with its in-process node driving the real Docker Engine, and researchers with real GnuPG keys.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseUpConfig } from '../../daemon/config/up-config.js';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { startLeader, type RunningLeader } from '../../daemon/wiring/leader.js';
import { silentLog, type Log } from '../../scheduler/common/log.js';
import type { RunRow } from '../../storage/run-store.js';
import { isTerminal, type RunState } from '../../storage/run-states.js';
import { startGitLabDouble, type GitLabDouble } from '../doubles/gitlab-double.js';
import type { ResearcherRepo } from './git-repo.js';
import { createGpgHome, type GpgHome } from './gpg.js';
import { makeResearcher, type Researcher as ResearcherOf, type ResearcherSpec } from './researcher.js';
import { ensureBusyboxImage } from './test-images.js';

/** A researcher of this harness: `pushRun` answers the run as the leader's store holds it. */
export type Researcher = ResearcherOf<RunRow>;

/** A running secd + GitLab double. */
export interface Cluster {
  gitlab: GitLabDouble;
  leader: RunningLeader;
  gpg: GpgHome;
  hookUrl: string;
  /** The up.yml the leader was started with (on disk, for the CLI). */
  configFile: string;
  /** The in-process node's cache_root. */
  cacheRoot: string;
  webhookSecret: string;
  /** Add a user with a fresh key uploaded to GitLab, a project they belong to, and a repo. */
  addResearcher(spec: ResearcherSpec): Promise<Researcher>;
  /** Wait until the run reaches a terminal state (or the timeout passes) and return it. */
  waitForRun(runId: string, timeoutMs?: number): Promise<RunRow>;
  /** Wait until the double has made `n` deliveries and the leader finished the work they started. */
  settle(): Promise<void>;
  /**
   * The output review project of DESIGN §10 (`secd/output-review`, the leader's default) with
   * output checkers: a user per name, each a Developer of the project. Returns the project's id and
   * the checkers' user ids by name.
   */
  addReviewProject(checkers: readonly string[]): { id: number; users: Record<string, number> };
  /** Wait until the run is in `state` (or the timeout passes) and return it. */
  waitForState(runId: string, state: RunState, timeoutMs?: number): Promise<RunRow>;
  /**
   * Stop the leader (and its in-process node) and start it again on the same port and data dir, as
   * a restart of `secd up` would; `leader` is the new one afterwards.
   */
  restartLeader(): Promise<void>;
  close(): Promise<void>;
}

/** Options of a test cluster. */
export interface ClusterOptions {
  /** Extra YAML appended to the leader's config (limits...). */
  extraConfig?: string;
  webhookKind?: 'project' | 'system';
  /** The leader's `mysql:` section (the dataset server); absent: none. */
  mysql?: { host: string; port: number; admin_user: string; admin_password: string; user_prefix?: string };
  /** The in-process node's `dataset_root`. */
  datasetRoot?: string;
  /** Where the leader logs (default: nowhere). */
  log?: Log;
}

/** Start a GitLab double and a leader with its in-process node. */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const root = await mkdtemp(join(tmpdir(), 'secd-e2e-'));
  const token = 'glpat-test-admin-token';
  const webhookSecret = 'hook-secret-for-tests';
  const gitlab = await startGitLabDouble({ token, dataDir: join(root, 'gitlab') });
  const engine = createDockerEngine();
  await ensureBusyboxImage(engine);
  const m = opts.mysql;
  const configText = [
    'listen: 127.0.0.1:0',
    'public_url: http://127.0.0.1:1',
    `data_dir: ${join(root, 'leader')}`,
    'gitlab:',
    `  url: ${gitlab.url}`,
    `  token: ${token}`,
    `  webhook_secret: ${webhookSecret}`,
    ...(m
      ? ['mysql:', `  host: ${m.host}`, `  port: ${m.port}`, `  admin_user: ${m.admin_user}`, `  admin_password: "${m.admin_password}"`]
      : []),
    ...(m?.user_prefix ? [`  user_prefix: ${m.user_prefix}`] : []),
    'node:',
    '  node_id: e2e-node',
    ...(opts.datasetRoot ? [`  dataset_root: ${opts.datasetRoot}`] : []),
    `  work_dir: ${join(root, 'node')}`,
    `  cache_root: ${join(root, 'cache')}`,
    '  max_cpu_runs: 4',
    '  memory_limit_bytes: 536870912',
    opts.extraConfig ?? '',
  ].join('\n');
  const configFile = join(root, 'up.yml');
  // On disk too, for tests that drive the CLI (`secd admin ... --config`).
  await writeFile(configFile, configText);
  const config = parseUpConfig(configText, configFile, {});
  let leader = await startLeader(config, { log: opts.log ?? silentLog, engine, localNode: config.node });
  const hookUrl = `${leader.url}/v1/hook`;
  gitlab.addWebhook({ url: hookUrl, secret: webhookSecret, kind: opts.webhookKind ?? 'system' });
  const gpg = await createGpgHome();
  const repos: ResearcherRepo[] = [];

  const settle = async () => {
    for (let i = 0; i < 3; i++) {
      await gitlab.idle();
      await leader.lifecycle.idle();
      await leader.localNode?.idle();
    }
  };

  return {
    gitlab,
    get leader() {
      return leader;
    },
    gpg,
    hookUrl,
    configFile,
    cacheRoot: join(root, 'cache'),
    webhookSecret,
    async addResearcher(spec) {
      const researcher = await makeResearcher(gitlab, gpg, spec, async (runId) => {
        const run = await leader.store.get(runId);
        if (!run) throw new Error(`secd answered run ${runId}, which its store does not hold`);
        return run;
      });
      repos.push(researcher.repo);
      return researcher;
    },
    async waitForRun(runId, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const run = await leader.store.get(runId);
        if (run && isTerminal(run.state)) {
          await settle();
          return (await leader.store.get(runId))!;
        }
        if (Date.now() > deadline) throw new Error(`run ${runId} still ${run?.state ?? 'missing'} after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    settle,
    addReviewProject(checkers) {
      const users: Record<string, number> = {};
      for (const name of checkers) users[name] = gitlab.addUser({ username: name, email: `${name}@example.org` }).id;
      const project = gitlab.addProject({ path: 'secd/output-review', members: Object.values(users) });
      return { id: project.id, users };
    },
    async waitForState(runId, state, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const run = await leader.store.get(runId);
        if (run?.state === state) {
          await settle();
          return (await leader.store.get(runId))!;
        }
        if (run && isTerminal(run.state)) throw new Error(`run ${runId} ended ${run.state} (${run.reason}), never ${state}`);
        if (Date.now() > deadline) throw new Error(`run ${runId} still ${run?.state ?? 'missing'} after ${timeoutMs} ms, not ${state}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async restartLeader() {
      await settle();
      const port = Number(new URL(leader.url).port);
      await leader.close();
      leader = await startLeader({ ...config, listen: { host: '127.0.0.1', port } }, { log: opts.log ?? silentLog, engine, localNode: config.node });
    },
    async close() {
      await leader.close();
      await gitlab.close();
      await gpg.close();
      await Promise.all(repos.map((r) => r.close()));
      await rm(root, { recursive: true, force: true });
    },
  };
}
