/**
 * An honest stand-in for the few parts of GitLab that secd touches (DESIGN §9): the REST calls of
 * scheduler/gitlab/gitlab-port.ts, real git over smart HTTP through `git http-backend`, push webhooks
 * sent the way GitLab sends them (shapes from test/fixtures/gitlab/*.json, behaviour from
 * GitLab's Git::BranchHooksService, Git::TagHooksService and Gitlab::DataBuilder::Push), and the
 * merge requests of output review with their approvals, notes and Merge Request Hooks, users' SSH
 * keys (usage, expiry) and secondary emails, the push event GitLab's "Test" button sends, and the
 * project activity (push events, GET /projects/:id/events) GitLab records for every push.
 *
 * It is a library for integration tests and the benchmark, compiled into dist/ too: plain node:http,
 * no test-runner imports. Everything it did is kept in inspectable lists (statuses, deliveries,
 * apiRequests), and `idle()` waits until every push it took has been turned into deliveries.
 *
 * This file is its face: one server that routes /api/v4 to the REST API and `*.git` to git over HTTP.
 * The parts, one idea each, sit in ./gitlab/: the state they share (double-state.ts), the REST API
 * (rest-api.ts), git smart HTTP (git-smart-http.ts), push events (push-events.ts), merge requests
 * (merge-requests.ts, their answers and events beside it) and hook sending (hook-sender.ts). Deliberate simplifications, each documented where it lives: no protected-branch
 * enforcement, only direct project members (no groups), the admin token is the only API credential.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DoubleState, type DoubleProject, type DoubleUser, type DoubleWebhook, type StoredSshKey } from './gitlab/double-state.js';
import { GitSmartHttp, type RecordedGitRequest } from './gitlab/git-smart-http.js';
import { HookSender, type RawSend, type RecordedDelivery } from './gitlab/hook-sender.js';
import { sendJson } from './gitlab/http-helpers.js';
import { MergeRequests, type DoubleMergeRequest, type ForgedHook } from './gitlab/merge-requests.js';
import { PushEventBuilder } from './gitlab/push-events.js';
import { ProjectEvents } from './gitlab/project-events.js';
import { BOT_USER_ID } from './gitlab/double-state.js';
import { RestApi, type RecordedApiRequest, type RecordedStatus, type RejectedStatus } from './gitlab/rest-api.js';

export { ACCESS, BOT_USER_ID, type DoubleProject, type DoubleUser, type DoubleWebhook, type StoredSshKey } from './gitlab/double-state.js';
export type { RecordedGitRequest } from './gitlab/git-smart-http.js';
export type { DoubleApproval, DoubleMergeRequest, DoubleNote, ForgedHook } from './gitlab/merge-requests.js';
export type { MergeRequestAction, MergeRequestEvent } from './gitlab/merge-request-events.js';
export { GITLAB_VERSION, type RawSend, type RecordedDelivery } from './gitlab/hook-sender.js';
export { BLANK_SHA, type PushEvent, type PushEventCommit, type PushEventProject } from './gitlab/push-events.js';
export type { DoubleStatusState, RecordedApiRequest, RecordedStatus, RejectedStatus } from './gitlab/rest-api.js';

/** How to start the double. */
export interface StartOptions {
  /** the admin/API token: `PRIVATE-TOKEN`, `Authorization: Bearer`, or git password for user `oauth2` */
  token: string;
  /** where bare repositories live; a temporary directory (removed on close) by default */
  dataDir?: string;
  /** port to listen on (127.0.0.1); 0 = any free port (default) */
  port?: number;
}

/** A running GitLab double. */
export interface GitLabDouble {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** the admin token (user `secd-bot`) */
  readonly token: string;
  /** the user behind the admin token */
  readonly botUser: DoubleUser;
  /** every accepted commit status, in order */
  readonly statuses: RecordedStatus[];
  /** every refused commit status, in order */
  readonly rejectedStatuses: RejectedStatus[];
  /** every webhook delivery, redelivery and raw send, in order */
  readonly deliveries: RecordedDelivery[];
  /** every API request, in order */
  readonly apiRequests: RecordedApiRequest[];
  /** every git smart-HTTP request, in order */
  readonly gitRequests: RecordedGitRequest[];
  /** failures inside the double itself (git errors while building events, ...) */
  readonly internalErrors: string[];

  /** Add a user; ids are 1, 2, ... */
  addUser(u: { username: string; name?: string; email: string; password?: string; gpgKeys?: string[] }): DoubleUser;
  /** Add an armored public key to a user's GPG keys. */
  addGpgKey(userId: number, armored: string): void;
  /**
   * Add an OpenSSH public key line to a user's SSH keys; `usageType` defaults to GitLab's
   * `auth_and_signing`, `expiresAt` (ISO) to never. Returns the key as GET /users/:id/keys lists it.
   */
  addSshKey(userId: number, k: { key: string; usageType?: StoredSshKey['usage_type']; expiresAt?: string | null; title?: string }): StoredSshKey;
  /** Remove one of a user's SSH keys by its id. */
  removeSshKey(userId: number, keyId: number): void;
  /** Add a secondary email, confirmed unless `confirmed: false` (the primary is the user's `email`). */
  addEmail(userId: number, email: string, opts?: { confirmed?: boolean }): void;
  /**
   * Press "Test > Push events" of the project's hooks as `userId` (an administrator, say): the
   * default branch's newest three commits sent as a push by that user, to every hook. Resolves
   * once the deliveries are queued; `idle()` waits for them.
   */
  sendTestPushEvent(projectId: number, userId: number): Promise<void>;
  /** Add a project and create its bare repository (`git init --bare -b <defaultBranch>`). */
  addProject(p: { path: string; defaultBranch?: string; members?: number[] }): DoubleProject;
  /** Make a user a direct member (Developer by default) or change their level. */
  addMember(projectId: number, userId: number, accessLevel?: number): void;
  /** The project with this id or path. */
  project(idOrPath: number | string): DoubleProject;
  /** Clone URL with credentials embedded: the user's, or `oauth2:<admin token>` by default. */
  gitUrl(projectPath: string, user?: { username: string; password: string }): string;
  /** The bare repository's directory, for assertions with plain git. */
  repoDir(projectPath: string): string;
  /** Register a webhook. */
  addWebhook(h: { url: string; secret: string; kind: 'project' | 'system'; projectId?: number }): DoubleWebhook;
  /** Re-send delivery `i` with exactly the same headers (same Idempotency-Key) and body. */
  redeliver(i: number): Promise<RecordedDelivery>;
  /** Send an arbitrary body/headers to a hook URL (malformed-input tests). */
  sendRaw(r: RawSend): Promise<RecordedDelivery>;
  /**
   * `userId` approves merge request `iid` (a member with Developer or above, or the bot), as in
   * GitLab's web page: recorded, then a Merge Request Hook with action `approval` to the project's
   * hooks and the system hooks. Throws where GitLab would refuse (not open, approved twice).
   */
  approveMergeRequest(projectId: number, iid: number, userId: number): void;
  /** `userId` takes their approval back: removed, then the `unapproval` hook. */
  unapproveMergeRequest(projectId: number, iid: number, userId: number): void;
  /** `userId` closes the open merge request: closed_by them, closed_at now, then the `close` hook. */
  closeMergeRequestAs(projectId: number, iid: number, userId: number): void;
  /** Send a Merge Request Hook claiming `action` by `userId` without recording anything (a forged hook). */
  sendMergeRequestHook(projectId: number, iid: number, claim: ForgedHook): void;
  /** The project's merge requests, oldest first, with their notes and approvals (live records). */
  mergeRequests(projectId: number): DoubleMergeRequest[];
  /** Resolve once every push and merge-request change so far has been turned into deliveries and they were sent. */
  idle(): Promise<void>;
  /** Resolve once at least `n` deliveries are recorded; reject after `timeoutMs` (default 10 s). */
  waitForDeliveries(n: number, timeoutMs?: number): Promise<RecordedDelivery[]>;
  /** Stop listening, wait for pending deliveries, remove the temporary data dir. */
  close(): Promise<void>;
}

/** Start a GitLab double listening on 127.0.0.1. */
export async function startGitLabDouble(opts: StartOptions): Promise<GitLabDouble> {
  const state = new DoubleState(opts);
  const hooks = new HookSender(state);
  const mergeRequests = new MergeRequests(state, hooks);
  const projectEvents = new ProjectEvents(state);
  const api = new RestApi(state, mergeRequests, projectEvents);
  const events = new PushEventBuilder(state);
  const git = new GitSmartHttp(state, events, hooks, mergeRequests, projectEvents);
  const server = createServer((req, res) => {
    route(req, res, api, git).catch((err: unknown) => {
      state.internalErrors.push(`request ${req.method} ${req.url}: ${String(err)}`);
      if (!res.headersSent) sendJson(res, 500, { message: '500 Internal Server Error' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  let closed = false;
  return {
    url: state.url,
    token: state.token,
    botUser: state.botUser,
    // The parts' own lists, not copies: a test reads what happened up to the moment it looks.
    statuses: api.statuses,
    rejectedStatuses: api.rejectedStatuses,
    deliveries: hooks.deliveries,
    apiRequests: api.apiRequests,
    gitRequests: git.gitRequests,
    internalErrors: state.internalErrors,
    addUser: (u) => state.addUser(u),
    addGpgKey: (userId, armored) => state.addGpgKey(userId, armored),
    addSshKey: (userId, k) => state.addSshKey(userId, k),
    removeSshKey: (userId, keyId) => state.removeSshKey(userId, keyId),
    addEmail: (userId, email, opts) => state.addEmail(userId, email, opts),
    sendTestPushEvent: (projectId, userId) =>
      state.track(async () => {
        const project = state.project(projectId);
        const user = userId === BOT_USER_ID ? state.botUser : state.users.get(userId);
        if (!user) throw new Error(`sendTestPushEvent: no user ${userId}`);
        hooks.send(project, await events.buildTestEvent(project, user));
      }),
    addProject: (p) => state.addProject(p),
    addMember: (projectId, userId, accessLevel) => state.addMember(projectId, userId, accessLevel),
    project: (idOrPath) => state.project(idOrPath),
    gitUrl: (projectPath, user) => state.gitUrl(projectPath, user),
    repoDir: (projectPath) => state.repoDir(projectPath),
    addWebhook: (h) => state.addWebhook(h),
    redeliver: (i) => hooks.redeliver(i),
    sendRaw: (r) => hooks.sendRaw(r),
    approveMergeRequest: (projectId, iid, userId) => mergeRequests.approve(projectId, iid, userId),
    unapproveMergeRequest: (projectId, iid, userId) => mergeRequests.unapprove(projectId, iid, userId),
    closeMergeRequestAs: (projectId, iid, userId) => mergeRequests.closeAs(projectId, iid, userId),
    sendMergeRequestHook: (projectId, iid, claim) => mergeRequests.forge(projectId, iid, claim),
    mergeRequests: (projectId) => mergeRequests.of(projectId),
    idle: () => state.idle(),
    waitForDeliveries: (n, timeoutMs = 10_000) => hooks.waitForDeliveries(n, timeoutMs),
    async close() {
      if (closed) return;
      closed = true;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      git.killBackends();
      await state.idle();
      state.removeDataDir();
    },
  };
}

/** /api/v4 goes to the REST API, `<path>.git/...` to git over HTTP, anything else is GitLab's 404. */
async function route(req: IncomingMessage, res: ServerResponse, api: RestApi, git: GitSmartHttp): Promise<void> {
  const rawUrl = req.url ?? '/';
  const q = rawUrl.indexOf('?');
  const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
  const query = q < 0 ? '' : rawUrl.slice(q + 1);
  if (rawPath === '/api/v4' || rawPath.startsWith('/api/v4/')) {
    await api.handle(req, res, rawPath.slice('/api/v4'.length), new URLSearchParams(query));
    return;
  }
  const repo = /^\/(.+?)\.git(\/.*)?$/.exec(rawPath);
  if (repo) {
    await git.handle(req, res, decodeURIComponent(repo[1]!), repo[2] ?? '/', query);
    return;
  }
  sendJson(res, 404, { error: '404 Not Found' });
}
