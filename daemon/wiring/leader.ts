/**
 * Wires a leader from configuration: the only place that creates the state database, the GitLab
 * client, the mirrors, the node registry and the HTTP server. For `secd up` it also starts the
 * in-process node that up.ts wires, and treats it like any node (its view beside the registry's,
 * its handle beside theirs).
 *
 * Every leader serves intake, the API, /metrics and the status page; only the active one plans,
 * takes nodes, creates dataset accounts and posts statuses (leader-active.ts). With `state: sqlite`
 * this process is the one leader and active at once; with `state: { mysql }` it is active while it
 * holds the lease (leader-role.ts), and its writes as the active leader are fenced by its epoch.
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { newRunId } from '../../storage/run-id.js';
import type { RunStore } from '../../storage/run-store.js';
import { stateStores, type StateStores } from '../../storage/state-stores.js';
import { isStateWritable } from '../../storage/state-health.js';
import { startGitLabWatches, type GitLabWatches } from '../../scheduler/gitlab/gitlab-check.js';
import type { GitLabApi, GitLabReviewApi } from '../../scheduler/gitlab/gitlab-port.js';
import type { Log } from '../../scheduler/common/log.js';
import { NodeRegistry } from '../../scheduler/cluster/node-registry.js';
import { RunLifecycle, type LifecycleDeps, type NodeHandle } from '../../scheduler/lifecycle/run-lifecycle.js';
import type { NodeStore } from '../../storage/node-store.js';
import { IN_FLIGHT_STATES } from '../../storage/run-states.js';
import { KeyCache } from '../../scheduler/verify/key-cache.js';
import { keyringCalls } from '../../scheduler/verify/member-keyring.js';
import { verifyPush } from '../../scheduler/verify/verify-push.js';
import type { VerifyPushRequest } from '../../scheduler/lifecycle/run-checks.js';
import type { LeadershipView } from '../../scheduler/ha/leadership.js';
import { apiNodeList } from '../../web/api-nodes.js';
import { buildLeaderServer } from '../../web/leader-server.js';
import { createLeaderMetrics, queuedToAssignedSeconds, type LeaderMetrics } from '../../web/metrics.js';
import { StatusFeed } from '../../web/status-feed.js';
import { countRunsByState } from '../../storage/run-counts.js';
import { runHeads } from '../../storage/run-heads.js';
import type { DatasetStore } from '../../storage/dataset-store.js';
import type { ReleaseStore } from '../../storage/release-store.js';
import type { StatusMessage } from '../../scheduler/contract/protocol.js';
import { DEFAULT_LEASE_MS, type HaConfig, type StateConfig } from '../config/state-config.js';
import type { LocalNodeConfig, UpConfig } from '../config/up-config.js';
import type { ContainerEngine } from '../engine/container-engine.js';
import type { LocalNode } from '../node/local-node.js';
import { startInProcessNode } from './up.js';
import { attachNodes, leaderDatasets, leaderReleaseDesk, projectAccess } from './leader-parts.js';
import { openLeaderState } from './leader-state.js';
import { startActiveDuties, type ActiveDuties } from './leader-active.js';

export { NODES_PATH, withGitCredentials } from './leader-parts.js';

/** A started leader, for main and for tests. */
export interface RunningLeader {
  url: string;
  /** The runs (the active leader's writes: fenced where leaders share the state). */
  store: RunStore;
  /** Every store, over the same scope as `store`. */
  stores: StateStores;
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
  /** Active or standby, and the epoch (what /healthz says). */
  role(): LeadershipView;
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
  /**
   * This leader led and lost the lease (another leader took over). `secd leader` exits so that
   * systemd starts it again as a standby; the default closes the leader.
   */
  onLostLease?: (reason: string) => void;
}

/** What a leader is configured with: leader.yml (with `state:` and `ha:`), or up.yml less its node section. */
export type LeaderSettings = Omit<UpConfig, 'node'> & { state?: StateConfig; ha?: HaConfig };

/** How often the active leader looks for pushes other leaders stored, where leaders share the state. */
const INTAKE_POLL_MS = 500;

/** Start the leader described by `config` and listen on `config.listen`. */
export async function startLeader(config: LeaderSettings, opts: StartLeaderOptions): Promise<RunningLeader> {
  const now = opts.now ?? (() => new Date());
  const log = opts.log;
  const stateConfig: StateConfig = config.state ?? { engine: 'sqlite' };
  const opened = await openLeaderState({ state: stateConfig, ha: config.ha ?? { lease_ms: DEFAULT_LEASE_MS }, dataDir: config.data_dir, log });
  const role = opened.role;
  // The active leader's writes (fenced where leaders share the state) and every leader's intake and reads.
  const stores = stateStores(role.activeScope, now);
  const shared = stateStores(role.plainScope, now);
  const store = stores.runs;
  const datasets = leaderDatasets(config, stores, log);
  const gitlabCfg = config.gitlab;
  const { gitlab, mirrorOf, projectGitUrl } = projectAccess(config, opts.gitlab);
  const say = opts.say ?? ((line: string) => void process.stderr.write(`${line}\n`));
  let gitlabWatches: GitLabWatches | null = null;

  const local = opts.localNode ? await startInProcessNode(opts.localNode, { limits: config.limits, engine: opts.engine, log, now }) : null;
  const localNode = local?.node ?? null;
  const registry = new NodeRegistry({
    store: stores.nodes,
    log: log.child({ component: 'nodes' }),
    now,
    nodeTimeoutMs: config.node_timeout_ms,
    onStatus: (nodeId, report) => onNodeStatus(nodeId, report),
    epoch: () => role.epoch(),
  });
  if (localNode) registry.reserve(localNode.id);
  const nodes = (): NodeHandle[] => [...(local ? [local.handle] : []), ...registry.handles()];
  const apiNodes = apiNodeList({
    views: () => [...(local ? [local.view()] : []), ...registry.views()],
    inFlight: () => shared.runs.inStates(IN_FLIGHT_STATES),
  });
  const metrics = createLeaderMetrics({ nodes: apiNodes, runCounts: () => countRunsByState(shared.scope), role: () => role.view() });
  const status = new StatusFeed({ nodes: apiNodes, store: shared.runs, now, releases: shared.releases, log: log.child({ component: 'status' }) });
  // Every node's status report, networked or in-process, reaches the status page the same way.
  const onNodeStatus = (nodeId: string, report: StatusMessage) => status.onNodeStatus(nodeId, report.gpus, report.at);

  const releaseDesk = leaderReleaseDesk(config, { stores, gitlab, mirrorOf, projectGitUrl, log, now, postStatus: (...a) => lifecycle.postStatus(...a) });
  // GitLab users' parsed GPG keys, kept between pushes (scheduler/verify/key-cache.ts).
  const keyCache = new KeyCache();
  const lifecycle = new RunLifecycle({
    store,
    intakeStore: shared.runs,
    isActive: () => role.isActive(),
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
    release: { desk: releaseDesk, store: stores.releases },
    onAssigned: (run) => {
      void store
        .events(run.id)
        .then((events) => {
          const waited = queuedToAssignedSeconds(events);
          if (waited !== null) metrics.observeScheduling(waited);
        })
        .catch(() => undefined);
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
    store: shared.runs,
    lifecycle,
    log: log.child({ component: 'http' }),
    intake,
    // Writable for intake (any leader stores webhooks): the plain scope, not the fenced one.
    healthy: () => isStateWritable(shared.scope),
    role: () => role.view(),
    gitlabCheck: () => gitlabWatches?.token?.current() ?? null,
    nodes: apiNodes,
    status,
    metrics,
    readToken: config.api.read_token,
    releases: shared.releases,
    ...(config.tls ? { https: { cert: readFileSync(config.tls.cert_file, 'utf8'), key: readFileSync(config.tls.key_file, 'utf8') } } : {}),
  });
  const endpoint = attachNodes(server, registry, log.child({ component: 'nodes' }), () => role.isActive());
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
  log.info({ url, data_dir: config.data_dir, state: opened.where, gitlab: gitlabCfg?.url ?? null }, 'leader listening');
  status.start();

  // The active leader's duties start when this process leads: at once with one leader (SQLite).
  let duties: Promise<ActiveDuties> | null = null;
  role.whenActive((epoch) => {
    log.info({ epoch, state: opened.where }, 'active: planning, taking nodes and posting statuses');
    duties = startActiveDuties({
      lifecycle,
      registry,
      datasets,
      localNode,
      gitlab,
      runHeads: runHeads(shared.scope),
      intake,
      log,
      settings: {
        reconcileIntervalMs: config.reconcile_interval_ms,
        lostAfterMs: config.lost_after_ms,
        releasePollIntervalMs: config.release.poll_interval_ms,
        intakePollMs: stateConfig.engine === 'mysql' ? INTAKE_POLL_MS : null,
      },
    });
    duties.catch((err: unknown) => log.error({ err }, 'could not start the active leader\'s duties'));
  });
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      gitlabWatches?.close();
      await (await duties?.catch(() => null))?.close();
      local?.close();
      status.close();
      await endpoint.close();
      await registry.close();
      await server.close();
      await lifecycle.close();
      await localNode?.close();
      await lifecycle.idle();
      // Accounts are the active leader's business: a standby never made or drops one.
      if (duties) await datasets.sweep().catch(() => undefined);
      await datasets.close();
      await role.stop();
      await opened.close();
    })());
  role.onLost((reason) => {
    log.error({ reason }, 'lost the leader lease after leading: this leader stops acting (another leader is active)');
    if (opts.onLostLease) opts.onLostLease(reason);
    else void close();
  });
  await role.start();
  // One leader (SQLite) is active at once: its duties are running when startLeader returns, as before.
  await (duties as Promise<ActiveDuties> | null)?.catch(() => null);

  return {
    url,
    store,
    stores,
    lifecycle,
    server,
    localNode,
    registry,
    nodeStore: stores.nodes,
    status,
    metrics,
    gitlabWatches,
    datasetStore: stores.datasets,
    releaseStore: stores.releases,
    role: () => role.view(),
    close,
  };
}
