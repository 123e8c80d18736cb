/**
 * Wires a leader (and, for `secd up`, its in-process node) from configuration: the only place that
 * creates the database, the GitLab client, the mirrors, the container engine and the HTTP server.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { isWritable, openDatabase, type SqliteDatabase } from '../storage/database.js';
import { newRunId } from '../storage/run-id.js';
import { RunStore, type RunRow } from '../storage/run-store.js';
import { GitMirror } from '../scheduler/git-mirror.js';
import { createGitLabClient } from '../scheduler/gitlab-client.js';
import type { GitLabApi } from '../scheduler/gitlab-port.js';
import type { Log } from '../scheduler/log.js';
import { RunLifecycle } from '../scheduler/run-lifecycle.js';
import { verifyPush } from '../scheduler/verify-push.js';
import { buildLeaderServer, type ApiNode } from '../web/leader-server.js';
import { createLeaderMetrics, queuedToAssignedSeconds, type LeaderMetrics } from '../web/metrics.js';
import { StatusFeed } from '../web/status-feed.js';
import { countRunsByState } from '../storage/run-counts.js';
import type { LocalNodeConfig, UpConfig } from './config.js';
import type { ContainerEngine } from './container-engine.js';
import { LocalNode } from './local-node.js';
import { nodeExecutorDeps } from './node-executor.js';

/** A started leader, for main and for tests. */
export interface RunningLeader {
  url: string;
  store: RunStore;
  lifecycle: RunLifecycle;
  server: FastifyInstance;
  localNode: LocalNode | null;
  /** The status page's live feed: the node registry pushes each status report in (`status.onNodeStatus`). */
  status: StatusFeed;
  metrics: LeaderMetrics;
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
}

/** Add `oauth2:<token>@` to an http(s) URL: GitLab's way for a token to speak git. */
export function withGitCredentials(url: string, token: string): string {
  const u = new URL(url);
  u.username = 'oauth2';
  u.password = token;
  return u.toString();
}

/** Start the leader described by `config` and listen on `config.listen`. */
export async function startLeader(config: UpConfig, opts: StartLeaderOptions): Promise<RunningLeader> {
  const now = opts.now ?? (() => new Date());
  const log = opts.log;
  const db: SqliteDatabase = openDatabase(join(config.data_dir, 'secd.db'));
  const store = new RunStore(db, now);
  const gitlabCfg = config.gitlab;
  const ca = gitlabCfg?.ca_file ? readFileSync(gitlabCfg.ca_file, 'utf8') : undefined;
  const gitlab: GitLabApi | null =
    opts.gitlab ?? (gitlabCfg ? createGitLabClient({ url: gitlabCfg.url, token: gitlabCfg.token, ...(ca ? { ca } : {}) }) : null);

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

  let localNode: LocalNode | null = null;
  if (opts.localNode) {
    localNode = new LocalNode(opts.localNode.node_id, nodeExecutorDeps(opts.localNode, config.limits, opts.engine, log, now), {
      maxCpuRuns: opts.localNode.max_cpu_runs,
      gpus: () => [],
      log: log.child({ node: opts.localNode.node_id }),
    });
  }
  const nodes = () => (localNode ? [localNode] : []);
  const apiNodes = (): ApiNode[] =>
    nodes().map((n) => ({
      id: n.id,
      hostname: n.id,
      state: n.state(),
      last_seen: now().toISOString(),
      cpus: 0,
      memory_bytes: 0,
      load: null,
      runs: n.runIds(),
      gpus: [],
    }));
  const metrics = createLeaderMetrics({ nodes: apiNodes, runCounts: () => countRunsByState(db) });
  const status = new StatusFeed({ nodes: apiNodes, store, now });

  const lifecycle = new RunLifecycle({
    store,
    gitlab: gitlab ?? unconfiguredGitLab,
    log: log.child({ component: 'lifecycle' }),
    now,
    newRunId,
    verifyPush: ({ projectId, project, before, after }) =>
      verifyPush(
        { projectId, before, after, fetchUrl: projectGitUrl({ project }), alreadyVerified: (sha) => store.isVerified(projectId, sha) },
        { mirror: mirrorOf(projectId), gitlab: gitlab ?? unconfiguredGitLab, now },
      ),
    readFileAt: (projectId, sha, path) => mirrorOf(projectId).readFile(sha, path),
    // The in-process node clones from the leader's mirror (already holding the verified commit).
    sourceFor: (run) => (localNode && run.node === localNode.id ? mirrorOf(run.projectId).dir : projectGitUrl(run)),
    resultsRemoteFor: (run) => projectGitUrl(run),
    nodes,
    onAssigned: (run) => {
      const waited = queuedToAssignedSeconds(store.events(run.id));
      if (waited !== null) metrics.observeScheduling(waited);
    },
    settings: {
      publicUrl: config.public_url,
      maxRunforHours: config.limits.max_runfor_hours,
      maxGpusPerRun: config.limits.max_gpus_per_run,
    },
  });
  localNode?.attach(lifecycle);

  const server = buildLeaderServer({
    store,
    lifecycle,
    log: log.child({ component: 'http' }),
    intake: gitlabCfg ? { webhookSecret: gitlabCfg.webhook_secret, runBranch: gitlabCfg.run_branch } : null,
    healthy: () => isWritable(db),
    nodes: apiNodes,
    status,
    metrics,
  });

  const { host } = config.listen;
  await server.listen({ host, port: config.listen.port });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : config.listen.port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info({ url, data_dir: config.data_dir, gitlab: gitlabCfg?.url ?? null }, 'leader listening');
  lifecycle.resume();
  status.start();

  return {
    url,
    store,
    lifecycle,
    server,
    localNode,
    status,
    metrics,
    async close() {
      status.close();
      await server.close();
      await lifecycle.close();
      await localNode?.close();
      await lifecycle.idle();
      db.close();
    },
  };
}

const unconfiguredGitLab: GitLabApi = {
  async getProject() {
    throw new Error('GitLab is not configured');
  },
  async listProjectMembers() {
    throw new Error('GitLab is not configured');
  },
  async listUserGpgKeys() {
    throw new Error('GitLab is not configured');
  },
  async postCommitStatus() {
    throw new Error('GitLab is not configured');
  },
};
