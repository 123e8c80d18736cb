/**
 * The parts of a leader that leader.ts wires: the release desk over the stores and mirrors, the
 * dataset step, how the leader reaches projects (the GitLab API, mirrors, git URLs with the token)
 * and the nodes' websocket, which only the active leader serves (a standby answers 503).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { RunRow } from '../../storage/run-store.js';
import type { StateStores } from '../../storage/state-stores.js';
import { GitMirror } from '../../scheduler/verify/git-mirror.js';
import { RunDatasets } from '../../scheduler/policy/dataset-access.js';
import { createMysqlDatasetServer } from '../../scheduler/policy/mysql-grants.js';
import { createGitLabClient } from '../../scheduler/gitlab/gitlab-client.js';
import type { CommitStatusState, GitLabApi } from '../../scheduler/gitlab/gitlab-port.js';
import { errorText } from '../../scheduler/common/errors.js';
import type { Log } from '../../scheduler/common/log.js';
import type { NodeRegistry } from '../../scheduler/cluster/node-registry.js';
import { ReleaseDesk } from '../../scheduler/release/release-desk.js';
import { attachNodeEndpoint, type UpgradeVerdict } from '../../scheduler/common/websocket.js';
import { mysqlAdminWarnings } from './mysql-admin-warnings.js';
import { unconfiguredGitLab, withReviewApi } from './unconfigured-gitlab.js';
import type { UpConfig } from '../config/up-config.js';

/** What these parts read of the leader's settings (leader.ts's LeaderSettings is one). */
type LeaderSettings = Omit<UpConfig, 'node'>;

/** Where the nodes' websocket is served (DESIGN §7). */
export const NODES_PATH = '/v1/nodes';

/** Add `oauth2:<token>@` to an http(s) URL: GitLab's way for a token to speak git. */
export function withGitCredentials(url: string, token: string): string {
  const u = new URL(url);
  u.username = 'oauth2';
  u.password = token;
  return u.toString();
}

/** What the release desk is built from (the leader's stores, GitLab, mirrors and status poster). */
export interface ReleaseWiring {
  stores: StateStores;
  gitlab: GitLabApi;
  mirrorOf(projectId: number): GitMirror;
  projectGitUrl(run: Pick<RunRow, 'project'>): string;
  log: Log;
  now: () => Date;
  postStatus(runId: string, state: CommitStatusState, description: string, channel: 'run' | 'release'): void;
}

// Output release: review runs push to the review project; the leader releases from the run's mirror.
export function leaderReleaseDesk(config: LeaderSettings, w: ReleaseWiring): ReleaseDesk {
  const reviewProject = config.release.review_project;
  const reviewUrl = () => w.projectGitUrl({ project: reviewProject });
  return new ReleaseDesk({
    state: w.stores,
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
export function leaderDatasets(config: LeaderSettings, stores: StateStores, log: Log): RunDatasets {
  const mysqlCfg = config.mysql;
  if (mysqlCfg) for (const warning of mysqlAdminWarnings(mysqlCfg)) log.warn({ mysql_host: mysqlCfg.host }, warning);
  return new RunDatasets({
    store: stores.datasets,
    runs: stores.runs,
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
export interface ProjectAccess {
  /** The GitLab API, or one that says it is not configured. */
  gitlab: GitLabApi;
  mirrorOf(projectId: number): GitMirror;
  projectGitUrl(run: Pick<RunRow, 'project'>): string;
}

export function projectAccess(config: LeaderSettings, override: GitLabApi | undefined): ProjectAccess {
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

// The nodes' websocket on the leader's own server: a node proves its id with its token. Only the
// active leader takes nodes; a standby answers 503, and the node tries the next leader of its list.
export function attachNodes(server: FastifyInstance, registry: NodeRegistry, nodeLog: Log, isActive: () => boolean): { close(): Promise<void> } {
  return attachNodeEndpoint(server.server, {
    path: NODES_PATH,
    log: nodeLog,
    authenticate: async (headers, remote): Promise<UpgradeVerdict> => {
      if (!isActive()) return { ok: false, status: 503, message: 'this leader is a standby: connect to the active leader' };
      const claimed = typeof headers['x-secd-node'] === 'string' ? headers['x-secd-node'] : null;
      const bearer = /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization ?? '')?.[1] ?? null;
      const verdict = claimed && bearer ? await registry.authenticate(claimed, bearer) : { ok: false as const, reason: 'no bearer token or no X-Secd-Node header' };
      if (!verdict.ok) {
        nodeLog.warn({ remote, node: claimed, reason: verdict.reason }, 'node refused');
        // The reason stays in the leader's log: the answer does not tell a stranger which node ids exist.
        return { ok: false, status: 401, message: 'node token refused' };
      }
      // The lease may have gone while the token was checked.
      if (!isActive()) return { ok: false, status: 503, message: 'this leader is a standby: connect to the active leader' };
      return { ok: true, nodeId: claimed! };
    },
    accept: (nodeId, socket) => registry.connect(nodeId, socket),
  });
}
