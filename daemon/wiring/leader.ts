/**
 * Wires a leader from configuration: the only place that creates the database, the GitLab client,
 * the mirrors, the node registry and the HTTP server. For `secd up` it also starts the in-process
 * node that up.ts wires, and treats it like any node (its view beside the registry's, its handle
 * beside theirs).
 */
import { mysqlAdminWarnings } from './mysql-admin-warnings.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { isWritable, openDatabase, type SqliteDatabase } from '../../storage/database.js';
import { newRunId } from '../../storage/run-id.js';
import { RunStore, type RunRow } from '../../storage/run-store.js';
import { GitMirror } from '../../scheduler/verify/git-mirror.js';
import { RunDatasets } from '../../scheduler/policy/dataset-access.js';
import { createMysqlDatasetServer } from '../../scheduler/policy/mysql-grants.js';
import { DatasetStore } from '../../storage/dataset-store.js';
import { createGitLabClient } from '../../scheduler/gitlab/gitlab-client.js';
import { startGitLabWatches, type GitLabWatches } from '../../scheduler/gitlab/gitlab-check.js';
import type { CommitStatusState, GitLabApi, GitLabReviewApi } from '../../scheduler/gitlab/gitlab-port.js';
import { errorText } from '../../scheduler/common/errors.js';
import type { Log } from '../../scheduler/common/log.js';
import { NodeRegistry } from '../../scheduler/cluster/node-registry.js';
import { RunLifecycle, type LifecycleDeps, type NodeHandle } from '../../scheduler/lifecycle/run-lifecycle.js';
import { NodeStore } from '../../storage/node-store.js';
import { IN_FLIGHT_STATES } from '../../storage/run-states.js';
import { KeyCache } from '../../scheduler/verify/key-cache.js';
import { keyringCalls } from '../../scheduler/verify/member-keyring.js';
import { verifyPush } from '../../scheduler/verify/verify-push.js';
import type { VerifyPushRequest } from '../../scheduler/lifecycle/run-checks.js';
import { apiNodeList } from '../../web/api-nodes.js';
import { buildLeaderServer } from '../../web/leader-server.js';
import { createLeaderMetrics, queuedToAssignedSeconds, type LeaderMetrics } from '../../web/metrics.js';
import { StatusFeed } from '../../web/status-feed.js';
import { countRunsByState } from '../../storage/run-counts.js';
import { runHeads } from '../../storage/run-heads.js';
import { startMissedPushReconciler } from '../../scheduler/reconcile/reconciler.js';
import type { LocalNodeConfig, UpConfig } from '../config/up-config.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import type { LocalNode } from '../node/local-node.js';
import { startInProcessNode } from './up.js';
import { unconfiguredGitLab, withReviewApi } from './unconfigured-gitlab.js';
import { ReleaseDesk } from '../../scheduler/release/release-desk.js';
import { ReleaseStore } from '../../storage/release-store.js';
import { attachNodeEndpoint, type UpgradeVerdict } from '../../scheduler/common/websocket.js';
import type { StatusMessage } from '../../scheduler/contract/protocol.js';

/** A started leader, for main and for tests. */
export interface RunningLeader {
  url: string;
  store: RunStore;
  lifecycle: RunLifecycle;
  server: FastifyInstance;
  localNode: LocalNode | null;
  /** The networked nodes (`secd node`) and their tokens. */
  registry: NodeRegistry;
  nodeStore: NodeStore;
  /** The status page's live feed: the node registry pushes each status report in (`status.onNodeStatus`). */
  status: StatusFeed;
  metrics: LeaderMetrics;
  /** The GitLab token check and webhook delivery watch (null without a `gitlab:` section). */
  gitlabWatches: GitLabWatches | null;
  /** Datasets, grants and the per-run dataset audit (what `secd admin dataset|grant` edit). */
  datasetStore: DatasetStore;
  /** Output release records (policies, reviews, approvals). */
  releaseStore: ReleaseStore;
  close(): Promise<void>;
}

/** Options main (or a test) passes besides the config. */
export interface StartLeaderOptions {
  log: Log;
  engine: ContainerEngine;
  /** Run a node in this process (`secd up`). */
  localNode: LocalNodeConfig | null;
  now?: () => Date;
  /** Replace the GitLab client (tests of failure paths). */
  gitlab?: GitLabApi;
  /** Where plain lines for the person starting the leader go (GitLab problems); default stderr. */
  say?: (line: string) => void;
  /** Pace accepted pushes' background work otherwise than the defaults (scheduler/lifecycle/intake-gate.ts; benchmarks). */
  intakeGate?: LifecycleDeps['settings']['intakeGate'];
}

/** Add `oauth2:<token>@` to an http(s) URL: GitLab's way for a token to speak git. */
export function withGitCredentials(url: string, token: string): string {
  const u = new URL(url);
  u.username = 'oauth2';
  u.password = token;
  return u.toString();
}

/** What a leader is configured with: leader.yml, or up.yml less its node section. */
export type LeaderSettings = Omit<UpConfig, 'node'>;

/** Where the nodes' websocket is served (DESIGN §7). */
export const NODES_PATH = '/v1/nodes';

/** Start the leader described by `config` and listen on `config.listen`. */
export async function startLeader(config: LeaderSettings, opts: StartLeaderOptions): Promise<RunningLeader> {
  const now = opts.now ?? (() => new Date());
  const log = opts.log;
  const db: SqliteDatabase = openDatabase(join(config.data_dir, 'secd.db'));
  const store = new RunStore(db, now);
  const datasetStore = new DatasetStore(db, now);
  const datasets = leaderDatasets(config, datasetStore, store, log);
  const gitlabCfg = config.gitlab;
  const { gitlab, mirrorOf, projectGitUrl } = projectAccess(config, opts.gitlab);
  const releaseStore = new ReleaseStore(db, now);
  const say = opts.say ?? ((line: string) => void process.stderr.write(`${line}\n`));
  let gitlabWatches: GitLabWatches | null = null;

  const local = opts.localNode ? await startInProcessNode(opts.localNode, { limits: config.limits, engine: opts.engine, log, now }) : null;
  const localNode = local?.node ?? null;
  const nodeStore = new NodeStore(db, now);
  const registry = new NodeRegistry({
    store: nodeStore,
    log: log.child({ component: 'nodes' }),
    now,
    nodeTimeoutMs: config.node_timeout_ms,
    onStatus: (nodeId, report) => onNodeStatus(nodeId, report),
  });
  if (localNode) registry.reserve(localNode.id);
  const nodes = (): NodeHandle[] => [...(local ? [local.handle] : []), ...registry.handles()];
  const apiNodes = apiNodeList({
    views: () => [...(local ? [local.view()] : []), ...registry.views()],
    inFlight: () => store.inStates(IN_FLIGHT_STATES),
  });
  const metrics = createLeaderMetrics({ nodes: apiNodes, runCounts: () => countRunsByState(db) });
  const status = new StatusFeed({ nodes: apiNodes, store, now, releases: releaseStore });
  // Every node's status report, networked or in-process, reaches the status page the same way.
  const onNodeStatus = (nodeId: string, report: StatusMessage) => status.onNodeStatus(nodeId, report.gpus, report.at);

  const releaseDesk = leaderReleaseDesk(config, { store, releaseStore, gitlab, mirrorOf, projectGitUrl, log, now, postStatus: (...a) => lifecycle.postStatus(...a) });
  // GitLab users' parsed GPG keys, kept between pushes (scheduler/verify/key-cache.ts).
  const keyCache = new KeyCache();
  const lifecycle = new RunLifecycle({
    store,
    gitlab,
    log: log.child({ component: 'lifecycle' }),
    now,
    newRunId,
    // The pusher comes from the run (run-checks.ts); a caller that names none is refused, never run as nobody.
    verifyPush: ({ projectId, project, before, after, pusher }: VerifyPushRequest) =>
      verifyPush(
        {
          projectId,
          before,
          after,
          fetchUrl: projectGitUrl({ project }),
          pusher: pusher ?? { id: null, username: 'an unnamed pusher' },
          alreadyVerified: (sha) => store.isVerified(projectId, sha),
        },
        { mirror: mirrorOf(projectId), gitlab: keyringCalls(gitlab), now, keyCache },
      ),
    readFileAt: (projectId, sha, path) => mirrorOf(projectId).readFile(sha, path),
    // The in-process node clones from the leader's mirror (already holding the verified commit).
    sourceFor: (run) => (localNode && run.node === localNode.id ? mirrorOf(run.projectId).dir : projectGitUrl(run)),
    resultsRemoteFor: (run) => projectGitUrl(run),
    nodes,
    nodeDownSince: (nodeId) => (localNode && nodeId === localNode.id ? null : registry.downSince(nodeId)),
    datasets,
    release: { desk: releaseDesk, store: releaseStore },
    onAssigned: (run) => {
      const waited = queuedToAssignedSeconds(store.events(run.id));
      if (waited !== null) metrics.observeScheduling(waited);
    },
    settings: {
      publicUrl: config.public_url,
      maxRunforHours: config.limits.max_runfor_hours,
      maxGpusPerRun: config.limits.max_gpus_per_run,
      lostAfterMs: config.lost_after_ms,
      fairShareHalfLifeHours: config.limits.fair_share_half_life_hours,
      ...(opts.intakeGate ? { intakeGate: opts.intakeGate } : {}),
    },
  });
  local?.attach(lifecycle, onNodeStatus);
  registry.attach(lifecycle);

  const intake = gitlabCfg ? { webhookSecret: gitlabCfg.webhook_secret, runBranch: gitlabCfg.run_branch, reviewProject: config.release.review_project } : null;
  const server = buildLeaderServer({
    store,
    lifecycle,
    log: log.child({ component: 'http' }),
    intake,
    healthy: () => isWritable(db),
    gitlabCheck: () => gitlabWatches?.token?.current() ?? null,
    nodes: apiNodes,
    status,
    metrics,
    readToken: config.api.read_token,
    releases: releaseStore,
    ...(config.tls ? { https: { cert: readFileSync(config.tls.cert_file, 'utf8'), key: readFileSync(config.tls.key_file, 'utf8') } } : {}),
  });
  const endpoint = attachNodes(server, registry, log.child({ component: 'nodes' }));
  if (gitlabCfg) {
    const review = gitlab as GitLabApi & { getCurrentUser?: GitLabReviewApi['getCurrentUser'] };
    gitlabWatches = startGitLabWatches({
      gitlabUrl: gitlabCfg.url,
      currentUser: review.getCurrentUser ? () => review.getCurrentUser!() : null,
      hookUrl: `${config.public_url.replace(/\/+$/, '')}/v1/hook`,
      log: log.child({ component: 'gitlab' }),
      say,
      now,
    });
    // Any request to the hook, even one with a wrong secret, proves GitLab reaches the leader.
    server.addHook('onRequest', async (req) => {
      if (req.url.split('?')[0] === '/v1/hook') gitlabWatches?.hook.delivered();
    });
  }

  const { host } = config.listen;
  await server.listen({ host, port: config.listen.port });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : config.listen.port;
  const url = `${config.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info({ url, data_dir: config.data_dir, gitlab: gitlabCfg?.url ?? null }, 'leader listening');
  // Temporary dataset accounts of runs that are not in flight are leftovers of a previous leader.
  await datasets.dropLeftovers().catch((err: unknown) =>
    log.warn({ err: errorText(err) }, 'could not drop leftover dataset accounts (will retry)'),
  );
  // Runs that ended by any path (lost nodes included) lose their dataset account within seconds.
  let datasetSweep: Promise<void> = Promise.resolve();
  const datasetSweepTimer = setInterval(() => {
    datasetSweep = datasetSweep.then(() => datasets.sweep()).catch(() => undefined);
  }, 5000);
  datasetSweepTimer.unref();
  // The in-process node restarted with this process: it says what its work dir still holds, like any node.
  if (localNode) {
    const hello = await localNode.recover();
    lifecycle.onNodeHello(localNode.id, hello.runs.map((r) => ({ runId: r.run_id, phase: r.phase })));
  }
  lifecycle.resume();
  // Pushes whose webhook never came (GitLab does not retry): looked for now and every interval (DESIGN §11).
  const reconciler = intake ? startMissedPushReconciler({ gitlab, runs: runHeads(db), intake, acceptPush: (...a) => lifecycle.acceptPush(...a), log: log.child({ component: 'reconcile' }), intervalMs: config.reconcile_interval_ms }) : null;
  registry.start();
  const sweep = setInterval(() => lifecycle.sweepLostRuns(), Math.min(1000, config.lost_after_ms));
  sweep.unref();
  // Held runs' approvals are read again now and then: a lost merge-request hook delays nothing for long.
  const releasePoll = setInterval(() => lifecycle.pollReleases(), config.release.poll_interval_ms);
  releasePoll.unref();
  status.start();

  return {
    url,
    store,
    lifecycle,
    server,
    localNode,
    registry,
    nodeStore,
    status,
    metrics,
    gitlabWatches,
    datasetStore,
    releaseStore,
    async close() {
      gitlabWatches?.close();
      await reconciler?.close();
      clearInterval(sweep);
      clearInterval(releasePoll);
      local?.close();
      clearInterval(datasetSweepTimer);
      status.close();
      await endpoint.close();
      registry.close();
      await server.close();
      await lifecycle.close();
      await localNode?.close();
      await lifecycle.idle();
      await datasetSweep;
      await datasets.sweep().catch(() => undefined);
      await datasets.close();
      db.close();
    },
  };
}

/** What the release desk is built from (the leader's stores, GitLab, mirrors and status poster). */
interface ReleaseWiring {
  store: RunStore;
  releaseStore: ReleaseStore;
  gitlab: GitLabApi;
  mirrorOf(projectId: number): GitMirror;
  projectGitUrl(run: Pick<RunRow, 'project'>): string;
  log: Log;
  now: () => Date;
  postStatus(runId: string, state: CommitStatusState, description: string, channel: 'run' | 'release'): void;
}

// Output release: review runs push to the review project; the leader releases from the run's mirror.
function leaderReleaseDesk(config: LeaderSettings, w: ReleaseWiring): ReleaseDesk {
  const reviewProject = config.release.review_project;
  const reviewUrl = () => w.projectGitUrl({ project: reviewProject });
  return new ReleaseDesk({
    runs: w.store,
    releases: w.releaseStore,
    gitlab: withReviewApi(w.gitlab),
    git: {
      async fetchReviewBranch(run, branch) {
        const mirror = w.mirrorOf(run.projectId);
        try {
          await mirror.fetch(reviewUrl(), [`refs/heads/${branch}`]);
        } catch (err) {
          // A branch that is gone fails the fetch: "gone" only when the remote really lacks it.
          if (/couldn't find remote ref/i.test(errorText(err))) return null;
          throw err;
        }
        return mirror.fetchedHead(`refs/heads/${branch}`);
      },
      listFiles: (run, commit, path) => w.mirrorOf(run.projectId).listFiles(commit, path),
      pushToReview: (run, commit, branch) => w.mirrorOf(run.projectId).pushNewBranch(reviewUrl(), commit, branch),
      pushToResearcher: (run, commit, branch) => w.mirrorOf(run.projectId).pushNewBranch(w.projectGitUrl(run), commit, branch),
    },
    postStatus: w.postStatus,
    reviewRemote: reviewUrl,
    settings: { reviewProject, approvals: config.release.approvals, default: config.release.default, checks: config.release.checks },
    log: w.log.child({ component: 'release' }),
    now: w.now,
  });
}

// The dataset step: policy over the dataset store, temporary accounts on the configured MySQL.
function leaderDatasets(config: LeaderSettings, datasetStore: DatasetStore, store: RunStore, log: Log): RunDatasets {
  const mysqlCfg = config.mysql;
  if (mysqlCfg) for (const warning of mysqlAdminWarnings(mysqlCfg)) log.warn({ mysql_host: mysqlCfg.host }, warning);
  return new RunDatasets({
    store: datasetStore,
    runs: store,
    server: mysqlCfg
      ? createMysqlDatasetServer({ host: mysqlCfg.host, port: mysqlCfg.port }, { user: mysqlCfg.admin_user, password: mysqlCfg.admin_password })
      : null,
    endpoint: mysqlCfg ? { host: mysqlCfg.host, port: mysqlCfg.port } : null,
    userPrefix: mysqlCfg?.user_prefix ?? 'secd_',
    maxConnections: mysqlCfg?.max_connections_per_run ?? 8,
    log: log.child({ component: 'datasets' }),
  });
}

/** How the leader reaches projects: the GitLab API, one mirror per project, and git URLs for nodes. */
interface ProjectAccess {
  /** The GitLab API, or one that says it is not configured. */
  gitlab: GitLabApi;
  mirrorOf(projectId: number): GitMirror;
  projectGitUrl(run: Pick<RunRow, 'project'>): string;
}

function projectAccess(config: LeaderSettings, override: GitLabApi | undefined): ProjectAccess {
  const gitlabCfg = config.gitlab;
  const ca = gitlabCfg?.ca_file ? readFileSync(gitlabCfg.ca_file, 'utf8') : undefined;
  const gitlab: GitLabApi | null =
    override ?? (gitlabCfg ? createGitLabClient({ url: gitlabCfg.url, token: gitlabCfg.token, ...(ca ? { ca } : {}) }) : null);

  const mirrors = new Map<number, GitMirror>();
  const mirrorOf = (projectId: number): GitMirror => {
    let m = mirrors.get(projectId);
    if (!m) {
      m = new GitMirror(join(config.data_dir, 'mirrors', `${projectId}.git`), gitlabCfg?.ca_file ? { caFile: gitlabCfg.ca_file } : {});
      mirrors.set(projectId, m);
    }
    return m;
  };
  // The token goes only to the configured GitLab: the project's URL is built from gitlab.url and the
  // project path, never taken from the webhook body.
  const projectGitUrl = (run: Pick<RunRow, 'project'>): string => {
    if (!gitlabCfg) throw new Error('GitLab is not configured');
    const base = gitlabCfg.url.replace(/\/+$/, '');
    return withGitCredentials(`${base}/${run.project}.git`, gitlabCfg.token);
  };
  return { gitlab: gitlab ?? unconfiguredGitLab, mirrorOf, projectGitUrl };
}

// The nodes' websocket on the leader's own server: a node proves its id with its token.
function attachNodes(server: FastifyInstance, registry: NodeRegistry, nodeLog: Log): { close(): Promise<void> } {
  return attachNodeEndpoint(server.server, {
    path: NODES_PATH,
    log: nodeLog,
    authenticate: (headers, remote): UpgradeVerdict => {
      const claimed = typeof headers['x-secd-node'] === 'string' ? headers['x-secd-node'] : null;
      const bearer = /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization ?? '')?.[1] ?? null;
      const verdict = claimed && bearer ? registry.authenticate(claimed, bearer) : { ok: false as const, reason: 'no bearer token or no X-Secd-Node header' };
      if (!verdict.ok) {
        nodeLog.warn({ remote, node: claimed, reason: verdict.reason }, 'node refused');
        // The reason stays in the leader's log: the answer does not tell a stranger which node ids exist.
        return { ok: false, status: 401, message: 'node token refused' };
      }
      return { ok: true, nodeId: claimed! };
    },
    accept: (nodeId, socket) => registry.connect(nodeId, socket),
  });

}
