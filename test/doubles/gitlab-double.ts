/**
 * An honest stand-in for the few parts of GitLab that secd touches (DESIGN §9): the REST calls of
 * scheduler/gitlab/gitlab-port.ts, real git over smart HTTP through `git http-backend`, and push webhooks
 * sent the way GitLab sends them (shapes from test/fixtures/gitlab/*.json, behaviour from
 * GitLab's Git::BranchHooksService, Git::TagHooksService and Gitlab::DataBuilder::Push).
 *
 * It is a library for integration tests and the benchmark, compiled into dist/ too: plain node:http,
 * no test-runner imports. Everything it did is kept in inspectable lists (statuses, deliveries,
 * apiRequests), and `idle()` waits until every push it took has been turned into deliveries.
 *
 * This file is its face: one server that routes /api/v4 to the REST API and `*.git` to git over HTTP.
 * The parts, one idea each, sit in ./gitlab/: the state they share (double-state.ts), the REST API
 * (rest-api.ts), git smart HTTP (git-smart-http.ts), push events (push-events.ts) and hook sending
 * (hook-sender.ts). Deliberate simplifications, each documented where it lives: no protected-branch
 * enforcement, only direct project members (no groups), the admin token is the only API credential.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DoubleState, type DoubleProject, type DoubleUser, type DoubleWebhook } from './gitlab/double-state.js';
import { GitSmartHttp, type RecordedGitRequest } from './gitlab/git-smart-http.js';
import { HookSender, type RawSend, type RecordedDelivery } from './gitlab/hook-sender.js';
import { sendJson } from './gitlab/http-helpers.js';
import { PushEventBuilder } from './gitlab/push-events.js';
import { RestApi, type RecordedApiRequest, type RecordedStatus, type RejectedStatus } from './gitlab/rest-api.js';

export { ACCESS, BOT_USER_ID, type DoubleProject, type DoubleUser, type DoubleWebhook } from './gitlab/double-state.js';
export type { RecordedGitRequest } from './gitlab/git-smart-http.js';
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
  /** Resolve once every push taken so far has been turned into deliveries and they were sent. */
  idle(): Promise<void>;
  /** Resolve once at least `n` deliveries are recorded; reject after `timeoutMs` (default 10 s). */
  waitForDeliveries(n: number, timeoutMs?: number): Promise<RecordedDelivery[]>;
  /** Stop listening, wait for pending deliveries, remove the temporary data dir. */
  close(): Promise<void>;
}

/** Start a GitLab double listening on 127.0.0.1. */
export async function startGitLabDouble(opts: StartOptions): Promise<GitLabDouble> {
  const double = new GitLabDoubleServer(opts);
  await double.listen(opts.port ?? 0);
  return double;
}

class GitLabDoubleServer implements GitLabDouble {
  private readonly state: DoubleState;
  private readonly api: RestApi;
  private readonly hooks: HookSender;
  private readonly git: GitSmartHttp;
  private readonly server: Server;
  private closed = false;

  constructor(opts: StartOptions) {
    this.state = new DoubleState(opts);
    this.api = new RestApi(this.state);
    this.hooks = new HookSender(this.state);
    this.git = new GitSmartHttp(this.state, new PushEventBuilder(this.state), this.hooks);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.state.internalErrors.push(`request ${req.method} ${req.url}: ${String(err)}`);
        if (!res.headersSent) sendJson(res, 500, { message: '500 Internal Server Error' });
        else res.destroy();
      });
    });
  }

  get url(): string {
    return this.state.url;
  }
  get token(): string {
    return this.state.token;
  }
  get botUser(): DoubleUser {
    return this.state.botUser;
  }
  get statuses(): RecordedStatus[] {
    return this.api.statuses;
  }
  get rejectedStatuses(): RejectedStatus[] {
    return this.api.rejectedStatuses;
  }
  get deliveries(): RecordedDelivery[] {
    return this.hooks.deliveries;
  }
  get apiRequests(): RecordedApiRequest[] {
    return this.api.apiRequests;
  }
  get gitRequests(): RecordedGitRequest[] {
    return this.git.gitRequests;
  }
  get internalErrors(): string[] {
    return this.state.internalErrors;
  }

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    this.state.url = `http://127.0.0.1:${addr.port}`;
  }

  addUser(u: { username: string; name?: string; email: string; password?: string; gpgKeys?: string[] }): DoubleUser {
    return this.state.addUser(u);
  }
  addGpgKey(userId: number, armored: string): void {
    this.state.addGpgKey(userId, armored);
  }
  addProject(p: { path: string; defaultBranch?: string; members?: number[] }): DoubleProject {
    return this.state.addProject(p);
  }
  addMember(projectId: number, userId: number, accessLevel?: number): void {
    this.state.addMember(projectId, userId, accessLevel);
  }
  project(idOrPath: number | string): DoubleProject {
    return this.state.project(idOrPath);
  }
  gitUrl(projectPath: string, user?: { username: string; password: string }): string {
    return this.state.gitUrl(projectPath, user);
  }
  repoDir(projectPath: string): string {
    return this.state.repoDir(projectPath);
  }
  addWebhook(h: { url: string; secret: string; kind: 'project' | 'system'; projectId?: number }): DoubleWebhook {
    return this.state.addWebhook(h);
  }
  redeliver(i: number): Promise<RecordedDelivery> {
    return this.hooks.redeliver(i);
  }
  sendRaw(r: RawSend): Promise<RecordedDelivery> {
    return this.hooks.sendRaw(r);
  }
  idle(): Promise<void> {
    return this.state.idle();
  }
  waitForDeliveries(n: number, timeoutMs = 10_000): Promise<RecordedDelivery[]> {
    return this.hooks.waitForDeliveries(n, timeoutMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    this.git.killBackends();
    await this.state.idle();
    this.state.removeDataDir();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const query = q < 0 ? '' : rawUrl.slice(q + 1);
    if (rawPath === '/api/v4' || rawPath.startsWith('/api/v4/')) {
      await this.api.handle(req, res, rawPath.slice('/api/v4'.length), new URLSearchParams(query));
      return;
    }
    const git = /^\/(.+?)\.git(\/.*)?$/.exec(rawPath);
    if (git) {
      await this.git.handle(req, res, decodeURIComponent(git[1]!), git[2] ?? '/', query);
      return;
    }
    sendJson(res, 404, { error: '404 Not Found' });
  }
}
