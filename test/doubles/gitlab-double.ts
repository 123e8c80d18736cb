/**
 * An honest stand-in for the few parts of GitLab that secd touches (DESIGN §9): the REST calls of
 * scheduler/gitlab/gitlab-port.ts, real git over smart HTTP through `git http-backend`, and push webhooks
 * sent the way GitLab sends them (shapes from shared/fixtures/gitlab/*.json, behaviour from
 * GitLab's Git::BranchHooksService, Git::TagHooksService and Gitlab::DataBuilder::Push).
 *
 * It is a library for integration tests and the benchmark, compiled into dist/ too: plain node:http,
 * no test-runner imports. Everything it did is kept in inspectable lists (statuses, deliveries,
 * apiRequests), and `idle()` waits until every push it took has been turned into deliveries.
 *
 * Deliberate simplifications, each documented where it lives: no protected-branch enforcement,
 * only direct project members (no groups), the admin token is the only API credential.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Forty zeros: GitLab's `before` for a created ref and `after` for a deleted one. */
export const BLANK_SHA = '0'.repeat(40);

/** The GitLab version the double claims in `User-Agent` (as in the recorded delivery). */
export const GITLAB_VERSION = '17.1.0';

/** User id of `secd-bot`, the owner of the admin token (kept out of the 1, 2, ... range of addUser). */
export const BOT_USER_ID = 9999;

/** GitLab access levels. */
export const ACCESS = { guest: 10, reporter: 20, developer: 30, maintainer: 40, owner: 50 } as const;

/** How to start the double. */
export interface StartOptions {
  /** the admin/API token: `PRIVATE-TOKEN`, `Authorization: Bearer`, or git password for user `oauth2` */
  token: string;
  /** where bare repositories live; a temporary directory (removed on close) by default */
  dataDir?: string;
  /** port to listen on (127.0.0.1); 0 = any free port (default) */
  port?: number;
}

/** A GitLab user known to the double. */
export interface DoubleUser {
  id: number;
  username: string;
  name: string;
  email: string;
  /** password / personal access token for git over HTTP (generated when not given) */
  password: string;
}

/** A project (and its bare repository). */
export interface DoubleProject {
  id: number;
  /** "group/name" (path_with_namespace) */
  path: string;
  /** last path segment */
  name: string;
  /** everything before the last segment */
  namespace: string;
  defaultBranch: string;
  /** user id -> access level (direct members only) */
  members: Map<number, number>;
}

/** A webhook registration: a project hook or a system hook. */
export interface DoubleWebhook {
  id: number;
  /** sent as X-Gitlab-Webhook-UUID */
  uuid: string;
  url: string;
  secret: string;
  kind: 'project' | 'system';
  /** for project hooks: the project it belongs to; absent = every project */
  projectId?: number;
}

/** Commit-status states GitLab accepts. */
export type DoubleStatusState = 'pending' | 'running' | 'success' | 'failed' | 'canceled' | 'skipped';

/** One accepted POST /projects/:id/statuses/:sha (a history: pending then running share `id`). */
export interface RecordedStatus {
  /** GitLab's status record id: a transition of a pending/running status keeps its id */
  id: number;
  projectId: number;
  /** the full commit sha */
  sha: string;
  state: DoubleStatusState;
  name: string;
  ref: string | null;
  target_url: string | null;
  description: string | null;
  at: string;
}

/** One refused POST /projects/:id/statuses/:sha. */
export interface RejectedStatus {
  /** the `:id` as given in the URL */
  project: string;
  sha: string;
  /** the parameters as received (query + body) */
  params: Record<string, string>;
  httpStatus: number;
  /** the JSON body the double answered */
  response: unknown;
  at: string;
}

/** One webhook delivery attempt (or a raw send), as GitLab's "Recent events" would show it. */
export interface RecordedDelivery {
  /** position in `deliveries` */
  index: number;
  /** the hook it was sent for; null for a raw send to an unregistered URL */
  hookId: number | null;
  url: string;
  /** X-Gitlab-Event, e.g. "Push Hook" */
  event: string;
  /** the request headers exactly as sent (besides Host, Content-Length, Connection) */
  headers: Record<string, string>;
  /** the request body exactly as sent */
  body: string;
  /** HTTP status of the answer; null when no answer came (refused, timeout) */
  status: number | null;
  /** the answer's body (first 16 KiB) */
  responseBody: string;
  /** why no answer came, if none did */
  error: string | null;
  durationMs: number;
  at: string;
  /** index of the delivery this one re-sent, if any */
  redeliveryOf: number | null;
  /** true for sendRaw() */
  raw: boolean;
}

/** One API request the double answered. */
export interface RecordedApiRequest {
  method: string;
  path: string;
  status: number;
  at: string;
}

/** One git smart-HTTP request the double answered. */
export interface RecordedGitRequest {
  method: string;
  /** the path after the host, without the query */
  path: string;
  /** git-upload-pack or git-receive-pack */
  service: string;
  /** the authenticated username, null when none */
  user: string | null;
  /** Content-Encoding of the request body (git gzips large fetch requests) */
  contentEncoding: string | null;
  status: number;
  at: string;
}

/** A commit as it appears in `commits[]` of a push event. */
export interface PushEventCommit {
  id: string;
  message: string;
  title: string;
  timestamp: string;
  url: string;
  author: { name: string; email: string };
  added: string[];
  modified: string[];
  removed: string[];
}

/** `project` of a push event (every field of push_event_webhook.json plus ci_config_path). */
export interface PushEventProject {
  id: number;
  name: string;
  description: string;
  web_url: string;
  avatar_url: string | null;
  git_ssh_url: string;
  git_http_url: string;
  namespace: string;
  visibility_level: number;
  path_with_namespace: string;
  default_branch: string;
  ci_config_path: string | null;
  homepage: string;
  url: string;
  ssh_url: string;
  http_url: string;
}

/** The body of a Push Hook / Tag Push Hook / System Hook (push) delivery. */
export interface PushEvent {
  object_kind: 'push' | 'tag_push';
  event_name: 'push' | 'tag_push';
  before: string;
  after: string;
  ref: string;
  ref_protected: boolean;
  checkout_sha: string | null;
  message: string | null;
  user_id: number;
  user_name: string;
  user_username: string;
  user_email: string;
  user_avatar: string;
  project_id: number;
  project: PushEventProject;
  commits: PushEventCommit[];
  total_commits_count: number;
  push_options: Record<string, never>;
  repository: {
    name: string;
    url: string;
    description: string;
    homepage: string;
    git_http_url: string;
    git_ssh_url: string;
    visibility_level: number;
  };
}

/** What sendRaw() sends. */
export interface RawSend {
  /** the hook URL; default: the first registered hook's */
  url?: string;
  body: string;
  /**
   * Headers on top of the standard set for that hook (Content-Type, User-Agent, X-Gitlab-Event:
   * Push Hook, X-Gitlab-Token, fresh UUIDs); `null` removes a standard header.
   */
  headers?: Record<string, string | null>;
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

// ---------------------------------------------------------------------------------------------

const STATUS_STATES: readonly DoubleStatusState[] = ['pending', 'running', 'success', 'failed', 'canceled', 'skipped'];
const HOOK_TIMEOUT_MS = 10_000; // GitLab's default webhook timeout
const MAX_RESPONSE_BODY = 16 * 1024;
const MAX_API_BODY = 1024 * 1024;

type Identity = { user: DoubleUser; bot: boolean };
type RefMap = Map<string, string>;

interface GpgKey {
  id: number;
  key: string;
  created_at: string;
}

/** GitLab's status state machine, as far as the commit-status API drives it. */
type LiveState = 'created' | 'pending' | 'running';
const TRANSITION: Record<DoubleStatusState, { event: string; from: readonly LiveState[] }> = {
  pending: { event: 'enqueue', from: ['created'] },
  // the API first calls a non-raising `enqueue` (created -> pending), then `run!` (pending -> running)
  running: { event: 'run', from: ['created', 'pending'] },
  success: { event: 'success', from: ['created', 'pending', 'running'] },
  failed: { event: 'drop', from: ['created', 'pending', 'running'] },
  canceled: { event: 'cancel', from: ['created', 'pending', 'running'] },
  skipped: { event: 'skip', from: ['created', 'pending'] },
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`HTTP ${status}`);
  }
}

class GitLabDoubleServer implements GitLabDouble {
  url = '';
  readonly token: string;
  readonly botUser: DoubleUser;
  readonly statuses: RecordedStatus[] = [];
  readonly rejectedStatuses: RejectedStatus[] = [];
  readonly deliveries: RecordedDelivery[] = [];
  readonly apiRequests: RecordedApiRequest[] = [];
  readonly gitRequests: RecordedGitRequest[] = [];
  readonly internalErrors: string[] = [];

  private readonly dataDir: string;
  private readonly ownsDataDir: boolean;
  private readonly reposDir: string;
  private readonly homeDir: string;
  private readonly server: Server;
  private readonly users = new Map<number, DoubleUser>();
  private readonly gpgKeys = new Map<number, GpgKey[]>();
  private readonly projects = new Map<number, DoubleProject>();
  private readonly hooks: DoubleWebhook[] = [];
  private readonly pending = new Set<Promise<unknown>>();
  private readonly repoLocks = new Map<number, Promise<void>>();
  private readonly children = new Set<ChildProcess>();
  private deliveryChain: Promise<void> = Promise.resolve();
  private nextUserId = 1;
  private nextGpgKeyId = 1;
  private nextStatusId = 1;
  private nextHookId = 1;
  private closed = false;

  constructor(opts: StartOptions) {
    if (!opts.token) throw new Error('startGitLabDouble: token is required');
    this.token = opts.token;
    this.ownsDataDir = opts.dataDir === undefined;
    this.dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'gitlab-double-'));
    this.reposDir = join(this.dataDir, 'repositories');
    this.homeDir = join(this.dataDir, 'home');
    mkdirSync(this.reposDir, { recursive: true });
    mkdirSync(this.homeDir, { recursive: true });
    this.botUser = {
      id: BOT_USER_ID,
      username: 'secd-bot',
      name: 'secd bot',
      email: 'secd-bot@noreply.gitlab.invalid',
      password: opts.token,
    };
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.internalErrors.push(`request ${req.method} ${req.url}: ${String(err)}`);
        if (!res.headersSent) sendJson(res, 500, { message: '500 Internal Server Error' });
        else res.destroy();
      });
    });
  }

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${addr.port}`;
  }

  // ----- setup ---------------------------------------------------------------------------------

  addUser(u: { username: string; name?: string; email: string; password?: string; gpgKeys?: string[] }): DoubleUser {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(u.username)) throw new Error(`addUser: invalid username ${u.username}`);
    if (u.username === 'oauth2' || u.username === this.botUser.username || this.findUserByName(u.username)) {
      throw new Error(`addUser: username ${u.username} is taken`);
    }
    if (this.nextUserId === BOT_USER_ID) this.nextUserId++;
    const user: DoubleUser = {
      id: this.nextUserId++,
      username: u.username,
      name: u.name ?? u.username,
      email: u.email,
      password: u.password ?? `glpat-${randomBytes(12).toString('hex')}`,
    };
    this.users.set(user.id, user);
    this.gpgKeys.set(user.id, []);
    for (const key of u.gpgKeys ?? []) this.addGpgKey(user.id, key);
    return user;
  }

  addGpgKey(userId: number, armored: string): void {
    const keys = this.gpgKeys.get(userId);
    if (!keys) throw new Error(`addGpgKey: no user ${userId}`);
    keys.push({ id: this.nextGpgKeyId++, key: armored, created_at: new Date().toISOString() });
  }

  addProject(p: { path: string; defaultBranch?: string; members?: number[] }): DoubleProject {
    const segments = p.path.split('/');
    if (segments.length < 2 || segments.some((s) => !/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(s) || s.endsWith('.git'))) {
      throw new Error(`addProject: path must be "group/name", got ${p.path}`);
    }
    if (this.findProjectByPath(p.path)) throw new Error(`addProject: ${p.path} exists`);
    const project: DoubleProject = {
      id: this.projects.size + 1,
      path: p.path,
      name: segments[segments.length - 1]!,
      namespace: segments.slice(0, -1).join('/'),
      defaultBranch: p.defaultBranch ?? 'main',
      members: new Map(),
    };
    const dir = this.repoDir(p.path);
    mkdirSync(dir, { recursive: true });
    const env = this.gitEnv();
    execFileSync('git', ['init', '--quiet', '--bare', '-b', project.defaultBranch, dir], { env });
    execFileSync('git', ['--git-dir', dir, 'config', 'http.receivepack', 'true'], { env });
    this.projects.set(project.id, project);
    for (const userId of p.members ?? []) this.addMember(project.id, userId);
    return project;
  }

  addMember(projectId: number, userId: number, accessLevel: number = ACCESS.developer): void {
    const project = this.projects.get(projectId);
    if (!project) throw new Error(`addMember: no project ${projectId}`);
    if (!this.users.has(userId)) throw new Error(`addMember: no user ${userId}`);
    project.members.set(userId, accessLevel);
  }

  project(idOrPath: number | string): DoubleProject {
    const project = typeof idOrPath === 'number' ? this.projects.get(idOrPath) : this.findProjectByPath(idOrPath);
    if (!project) throw new Error(`no project ${idOrPath}`);
    return project;
  }

  gitUrl(projectPath: string, user?: { username: string; password: string }): string {
    const project = this.project(projectPath);
    const u = new URL(`${this.url}/${project.path}.git`);
    u.username = encodeURIComponent(user ? user.username : 'oauth2');
    u.password = encodeURIComponent(user ? user.password : this.token);
    return u.toString();
  }

  repoDir(projectPath: string): string {
    return join(this.reposDir, `${projectPath}.git`);
  }

  addWebhook(h: { url: string; secret: string; kind: 'project' | 'system'; projectId?: number }): DoubleWebhook {
    if (h.projectId !== undefined && !this.projects.has(h.projectId)) throw new Error(`addWebhook: no project ${h.projectId}`);
    const hook: DoubleWebhook = { id: this.nextHookId++, uuid: randomUUID(), url: h.url, secret: h.secret, kind: h.kind };
    if (h.projectId !== undefined) hook.projectId = h.projectId;
    this.hooks.push(hook);
    return hook;
  }

  // ----- waiting and closing -------------------------------------------------------------------

  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  async waitForDeliveries(n: number, timeoutMs = 10_000): Promise<RecordedDelivery[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.deliveries.length < n) {
      if (Date.now() > deadline) {
        throw new Error(`waitForDeliveries: ${this.deliveries.length} of ${n} deliveries after ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.deliveries;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    for (const child of this.children) child.kill('SIGKILL');
    await this.idle();
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  // ----- HTTP dispatch -------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const query = q < 0 ? '' : rawUrl.slice(q + 1);
    if (rawPath === '/api/v4' || rawPath.startsWith('/api/v4/')) {
      await this.handleApi(req, res, rawPath.slice('/api/v4'.length), new URLSearchParams(query));
      return;
    }
    const git = /^\/(.+?)\.git(\/.*)?$/.exec(rawPath);
    if (git) {
      await this.handleGit(req, res, decodeURIComponent(git[1]!), git[2] ?? '/', query);
      return;
    }
    sendJson(res, 404, { error: '404 Not Found' });
  }

  // ----- REST API ------------------------------------------------------------------------------

  private async handleApi(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const method = req.method ?? 'GET';
    const record = (status: number) =>
      this.apiRequests.push({ method, path: `/api/v4${path}`, status, at: new Date().toISOString() });
    try {
      const seg = path.split('/').slice(1).map((s) => decodeURIComponent(s));
      if (this.apiIdentity(req) === null) {
        const response = { message: '401 Unauthorized' };
        if (method === 'POST' && seg.length === 4 && seg[0] === 'projects' && seg[2] === 'statuses') {
          this.rejectedStatuses.push({
            project: seg[1]!, sha: seg[3]!, params: Object.fromEntries(query.entries()), httpStatus: 401, response,
            at: new Date().toISOString(),
          });
        }
        req.resume();
        throw new HttpError(401, response);
      }
      let status = 200;
      if (method === 'GET' && seg.length === 1 && seg[0] === 'user') {
        sendJson(res, 200, this.userJson(this.botUser));
      } else if (method === 'GET' && seg.length === 2 && seg[0] === 'projects') {
        sendJson(res, 200, this.projectJson(this.apiProject(seg[1]!)));
      } else if (method === 'GET' && seg[0] === 'projects' && seg[2] === 'members' &&
        (seg.length === 3 || (seg.length === 4 && seg[3] === 'all'))) {
        this.sendMembers(res, this.apiProject(seg[1]!), query);
      } else if (method === 'GET' && seg.length === 1 && seg[0] === 'users') {
        // GET /users?username= : GitLab matches the username case-insensitively and answers a list.
        const wanted = query.get('username');
        const found = wanted ? this.findUserByName(wanted) : undefined;
        sendJson(res, 200, found ? [this.userJson(found)] : []);
      } else if (method === 'GET' && seg.length === 3 && seg[0] === 'users' && seg[2] === 'gpg_keys') {
        const keys = /^\d+$/.test(seg[1]!) ? this.gpgKeys.get(Number(seg[1])) : undefined;
        if (!keys) throw new HttpError(404, { message: '404 User Not Found' });
        sendJson(res, 200, keys);
      } else if (method === 'POST' && seg.length === 4 && seg[0] === 'projects' && seg[2] === 'statuses') {
        status = 201;
        await this.postStatus(req, res, seg[1]!, seg[3]!, query);
      } else {
        throw new HttpError(404, { error: '404 Not Found' });
      }
      record(status);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      sendJson(res, err.status, err.body);
      record(err.status);
    }
  }

  /** The admin token by `PRIVATE-TOKEN` or `Authorization: Bearer`; null when absent or wrong. */
  private apiIdentity(req: IncomingMessage): Identity | null {
    const header = req.headers['private-token'];
    let given = typeof header === 'string' ? header : undefined;
    const auth = req.headers.authorization;
    if (given === undefined && auth && /^Bearer /i.test(auth)) given = auth.slice(7).trim();
    if (given === undefined || !safeEqual(given, this.token)) return null;
    return { user: this.botUser, bot: true };
  }

  private apiProject(id: string): DoubleProject {
    const project = /^\d+$/.test(id) ? this.projects.get(Number(id)) : this.findProjectByPath(id);
    if (!project) throw new HttpError(404, { message: '404 Project Not Found' });
    return project;
  }

  private sendMembers(res: ServerResponse, project: DoubleProject, query: URLSearchParams): void {
    const members = [...project.members.entries()]
      .map(([userId, level]) => ({ user: this.users.get(userId)!, level }))
      .sort((a, b) => a.user.id - b.user.id);
    const perPageRaw = Number(query.get('per_page') ?? '20');
    const perPage = Number.isInteger(perPageRaw) && perPageRaw >= 1 ? Math.min(perPageRaw, 100) : 20;
    const pageRaw = Number(query.get('page') ?? '1');
    const page = Number.isInteger(pageRaw) && pageRaw >= 1 ? pageRaw : 1;
    const total = members.length;
    const totalPages = Math.max(1, Math.ceil(total / perPage));
    const slice = members.slice((page - 1) * perPage, page * perPage);
    const base = `${this.url}/api/v4/projects/${project.id}/members/all`;
    const link = (p: number) => `<${base}?page=${p}&per_page=${perPage}>`;
    const links = [];
    if (page > 1) links.push(`${link(page - 1)}; rel="prev"`);
    if (page < totalPages) links.push(`${link(page + 1)}; rel="next"`);
    links.push(`${link(1)}; rel="first"`, `${link(totalPages)}; rel="last"`);
    sendJson(
      res,
      200,
      slice.map(({ user, level }) => ({
        ...this.userJson(user),
        access_level: level,
        created_at: '2024-01-01T00:00:00.000Z',
        expires_at: null,
        membership_state: 'active',
      })),
      {
        'X-Page': String(page),
        'X-Per-Page': String(perPage),
        'X-Total': String(total),
        'X-Total-Pages': String(totalPages),
        'X-Next-Page': page < totalPages ? String(page + 1) : '',
        'X-Prev-Page': page > 1 ? String(page - 1) : '',
        Link: links.join(', '),
      },
    );
  }

  /**
   * POST /projects/:id/statuses/:sha, following GitLab's API: parameter errors first (Grape's
   * `{"error": ...}`), then the state machine of the latest pending/running status for (sha, name):
   * a finished status is never changed, the next post starts a new one (so success twice is fine,
   * pending or running twice is a 400, as on GitLab).
   */
  private async postStatus(
    req: IncomingMessage,
    res: ServerResponse,
    projectRef: string,
    shaParam: string,
    query: URLSearchParams,
  ): Promise<void> {
    const params: Record<string, string> = Object.fromEntries(query.entries());
    const reject = (httpStatus: number, response: unknown): never => {
      this.rejectedStatuses.push({ project: projectRef, sha: shaParam, params, httpStatus, response, at: new Date().toISOString() });
      throw new HttpError(httpStatus, response);
    };
    const raw = await readBody(req, MAX_API_BODY);
    const type = (req.headers['content-type'] ?? '').toLowerCase();
    if (raw.length > 0) {
      if (type.includes('json')) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(raw.toString('utf8'));
        } catch {
          reject(400, { error: 'The provided content-type \'application/json\' is not valid JSON' });
        }
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
          for (const [k, v] of Object.entries(parsed)) if (v !== null && v !== undefined) params[k] = String(v);
        }
      } else {
        for (const [k, v] of new URLSearchParams(raw.toString('utf8'))) params[k] = v;
      }
    }
    const state = params.state;
    if (state === undefined || state === '') reject(400, { error: 'state is missing' });
    if (!STATUS_STATES.includes(state as DoubleStatusState)) reject(400, { error: 'state does not have a valid value' });
    const wanted = state as DoubleStatusState;
    const name = params.name ?? params.context ?? 'default';
    const targetUrl = params.target_url ?? null;
    const description = params.description ?? null;
    if (targetUrl !== null) {
      if (!/^https?:\/\//i.test(targetUrl)) {
        reject(400, { message: { target_url: ['is blocked: Only allowed schemes are http, https'] } });
      }
      if (targetUrl.length > 255) reject(400, { message: { target_url: ['is too long (maximum is 255 characters)'] } });
    }
    if (description !== null && description.length > 255) {
      reject(400, { message: { description: ['is too long (maximum is 255 characters)'] } });
    }
    const project = /^\d+$/.test(projectRef) ? this.projects.get(Number(projectRef)) : this.findProjectByPath(projectRef);
    if (!project) reject(404, { message: '404 Project Not Found' });
    const sha = await this.resolveCommit(project!, shaParam);
    if (sha === null) reject(404, { message: '404 Commit Not Found' });

    const live = [...this.statuses]
      .reverse()
      .find((s) => s.projectId === project!.id && s.sha === sha && s.name === name);
    const current: LiveState = live && (live.state === 'pending' || live.state === 'running') ? live.state : 'created';
    const rule = TRANSITION[wanted];
    if (!rule.from.includes(current)) {
      // `running` from `running`: the silent enqueue fails, then run! complains about :run
      reject(400, { message: `Cannot transition status via :${rule.event} from :${current}` });
    }
    const recorded: RecordedStatus = {
      id: current === 'created' ? this.nextStatusId++ : live!.id,
      projectId: project!.id,
      sha: sha!,
      state: wanted,
      name,
      ref: params.ref ?? null,
      target_url: targetUrl,
      description,
      at: new Date().toISOString(),
    };
    this.statuses.push(recorded);
    const finished = ['success', 'failed', 'canceled', 'skipped'].includes(wanted);
    sendJson(res, 201, {
      id: recorded.id,
      sha: recorded.sha,
      ref: recorded.ref ?? project!.defaultBranch,
      status: recorded.state,
      name: recorded.name,
      target_url: recorded.target_url,
      description: recorded.description,
      created_at: recorded.at,
      started_at: wanted === 'running' ? recorded.at : null,
      finished_at: finished ? recorded.at : null,
      allow_failure: false,
      coverage: null,
      pipeline_id: project!.id * 1000 + recorded.id,
      author: this.userJson(this.botUser),
    });
  }

  private async resolveCommit(project: DoubleProject, rev: string): Promise<string | null> {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_./-]*$/.test(rev)) return null;
    try {
      const out = await this.git(this.repoDir(project.path), ['rev-parse', '--verify', '--quiet', `${rev}^{commit}`]);
      return out.trim() || null;
    } catch {
      return null;
    }
  }

  private userJson(user: DoubleUser) {
    return {
      id: user.id,
      username: user.username,
      name: user.name,
      state: 'active',
      locked: false,
      avatar_url: avatarUrl(user.email),
      web_url: `${this.url}/${user.username}`,
    };
  }

  private projectJson(project: DoubleProject) {
    const urls = this.projectUrls(project);
    return {
      id: project.id,
      description: '',
      name: project.name,
      name_with_namespace: project.path.split('/').join(' / '),
      path: project.name,
      path_with_namespace: project.path,
      created_at: '2024-01-01T00:00:00.000Z',
      default_branch: project.defaultBranch,
      ssh_url_to_repo: urls.ssh,
      http_url_to_repo: urls.http,
      web_url: urls.web,
      visibility: 'private',
      namespace: {
        name: lastSegment(project.namespace),
        path: lastSegment(project.namespace),
        kind: 'group',
        full_path: project.namespace,
      },
    };
  }

  private projectUrls(project: DoubleProject) {
    const host = new URL(this.url).hostname;
    return {
      web: `${this.url}/${project.path}`,
      http: `${this.url}/${project.path}.git`,
      ssh: `git@${host}:${project.path}.git`,
    };
  }

  // ----- git over smart HTTP -------------------------------------------------------------------

  private async handleGit(req: IncomingMessage, res: ServerResponse, projectPath: string, rest: string, query: string): Promise<void> {
    const identity = this.gitIdentity(req);
    const service = rest.startsWith('/git-') ? rest.slice(1) : new URLSearchParams(query).get('service') ?? '';
    const encoding = req.headers['content-encoding'];
    res.on('finish', () =>
      this.gitRequests.push({
        method: req.method ?? 'GET',
        path: `/${projectPath}.git${rest}`,
        service,
        user: identity?.user.username ?? null,
        contentEncoding: typeof encoding === 'string' ? encoding : null,
        status: res.statusCode,
        at: new Date().toISOString(),
      }),
    );
    if (!identity) {
      res.writeHead(401, { 'Content-Type': 'text/plain', 'WWW-Authenticate': 'Basic realm="GitLab"' });
      res.end('HTTP Basic: Access denied\n');
      req.resume();
      return;
    }
    const project = this.findProjectByPath(projectPath);
    const level = project ? (identity.bot ? ACCESS.owner : project.members.get(identity.user.id) ?? 0) : 0;
    if (!project || level < ACCESS.reporter) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end("The project you were looking for could not be found or you don't have permission to view it.\n");
      req.resume();
      return;
    }
    const receivePack = service === 'git-receive-pack';
    if (receivePack && level < ACCESS.developer) {
      res.writeHead(403, { 'Content-Type': 'text/plain' });
      res.end('You are not allowed to push code to this project.\n');
      req.resume();
      return;
    }
    const env = this.cgiEnv(req, project, rest, query, identity.user.username);
    if (!(req.method === 'POST' && rest === '/git-receive-pack')) {
      await this.runHttpBackend(req, res, env);
      return;
    }
    // A push: snapshot refs before and after under a per-repository lock, then send the webhooks
    // once the git client has its answer. The work is tracked before the response can end, so
    // idle() called right after `git push` returns always waits for it.
    await this.track(async () => {
      const repo = this.repoDir(project.path);
      const events = await this.withRepoLock(project.id, async () => {
        const before = await this.snapshotRefs(repo);
        const result = await this.runHttpBackend(req, res, env);
        if (result.status !== 200 || result.exitCode !== 0) return [];
        const after = await this.snapshotRefs(repo);
        return this.buildPushEvents(project, identity.user, before, after);
      });
      for (const event of events) this.enqueueHookDeliveries(project, event);
    });
  }

  /** `oauth2` + admin token = secd-bot; a registered user's username + password. */
  private gitIdentity(req: IncomingMessage): Identity | null {
    const auth = req.headers.authorization;
    if (!auth || !/^Basic /i.test(auth)) return null;
    const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return null;
    const username = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    if (username === 'oauth2' || username === this.botUser.username) {
      return safeEqual(password, this.token) ? { user: this.botUser, bot: true } : null;
    }
    const user = this.findUserByName(username);
    return user && safeEqual(password, user.password) ? { user, bot: false } : null;
  }

  private cgiEnv(req: IncomingMessage, project: DoubleProject, rest: string, query: string, remoteUser: string): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...this.gitEnv(),
      GIT_PROJECT_ROOT: this.reposDir,
      GIT_HTTP_EXPORT_ALL: '1',
      GATEWAY_INTERFACE: 'CGI/1.1',
      SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: `/${project.path}.git${rest}`,
      QUERY_STRING: query,
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_USER: remoteUser,
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    };
    const length = req.headers['content-length'];
    if (length !== undefined) env.CONTENT_LENGTH = length;
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined) env.HTTP_CONTENT_ENCODING = encoding; // http-backend inflates gzip itself
    const protocol = req.headers['git-protocol'];
    if (typeof protocol === 'string') env.HTTP_GIT_PROTOCOL = protocol; // protocol v2
    return env;
  }

  /** Run `git http-backend` as a CGI; resolves when it exited and the response is finished. */
  private runHttpBackend(
    req: IncomingMessage,
    res: ServerResponse,
    env: NodeJS.ProcessEnv,
  ): Promise<{ status: number; exitCode: number | null }> {
    return new Promise((resolve) => {
      const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      this.children.add(child);
      let stderr = '';
      let head = Buffer.alloc(0);
      let status = 0;
      let exitCode: number | null = null;
      let childDone = false;
      let responseDone = false;
      const finish = () => {
        if (!childDone || !responseDone) return;
        this.children.delete(child);
        resolve({ status, exitCode });
      };
      child.stderr.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString('utf8')).slice(-8192);
      });
      child.stdin.on('error', () => {}); // EPIPE when the backend answers before reading everything
      req.pipe(child.stdin);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const parsed = parseCgiHead(head);
        if (!parsed) return;
        child.stdout.off('data', onData);
        status = parsed.status;
        res.writeHead(parsed.status, parsed.headers);
        if (parsed.body.length > 0) res.write(parsed.body);
        child.stdout.pipe(res);
      };
      child.stdout.on('data', onData);
      const onChildDone = (code: number | null, err?: Error) => {
        if (childDone) return;
        childDone = true;
        exitCode = code;
        if (err) stderr += String(err);
        if (!res.headersSent) {
          status = 502;
          sendText(res, 502, `git http-backend failed: ${stderr}`);
        }
        if (code !== 0) this.internalErrors.push(`git http-backend ${env.REQUEST_METHOD} ${env.PATH_INFO} exited ${code}: ${stderr.trim()}`);
        finish();
      };
      child.on('close', (code) => onChildDone(code));
      child.on('error', (err) => onChildDone(null, err));
      res.on('close', () => {
        responseDone = true;
        finish();
      });
    });
  }

  private async withRepoLock<T>(projectId: number, fn: () => Promise<T>): Promise<T> {
    const previous = this.repoLocks.get(projectId) ?? Promise.resolve();
    let release!: () => void;
    const mine = previous.then(() => new Promise<void>((r) => (release = r)));
    this.repoLocks.set(projectId, mine);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.repoLocks.get(projectId) === mine) this.repoLocks.delete(projectId);
    }
  }

  private async snapshotRefs(repo: string): Promise<RefMap> {
    const out = await this.git(repo, ['for-each-ref', '--format=%(objectname) %(refname)']);
    const refs: RefMap = new Map();
    for (const line of out.split('\n')) {
      const space = line.indexOf(' ');
      if (space > 0) refs.set(line.slice(space + 1), line.slice(0, space));
    }
    return refs;
  }

  // ----- push events ---------------------------------------------------------------------------

  /** One event per changed branch or tag, as GitLab's post-receive processing builds them. */
  private async buildPushEvents(project: DoubleProject, user: DoubleUser, before: RefMap, after: RefMap): Promise<PushEvent[]> {
    const refs = [...new Set([...before.keys(), ...after.keys()])]
      .filter((r) => r.startsWith('refs/heads/') || r.startsWith('refs/tags/'))
      .filter((r) => before.get(r) !== after.get(r))
      .sort();
    const events: PushEvent[] = [];
    for (const ref of refs) {
      const oldrev = before.get(ref) ?? BLANK_SHA;
      const newrev = after.get(ref) ?? BLANK_SHA;
      try {
        events.push(
          ref.startsWith('refs/tags/')
            ? await this.buildTagEvent(project, user, ref, oldrev, newrev)
            : await this.buildBranchEvent(project, user, ref, oldrev, newrev, after),
        );
      } catch (err) {
        this.internalErrors.push(`building the push event for ${project.path} ${ref}: ${String(err)}`);
      }
    }
    return events;
  }

  /**
   * Git::BranchHooksService: a created default branch lists its history, another created branch
   * the commits not on the default branch, an update `oldrev..newrev`, a deletion nothing. The
   * payload carries the newest 20, oldest first, and the true count.
   */
  private async buildBranchEvent(
    project: DoubleProject,
    user: DoubleUser,
    ref: string,
    oldrev: string,
    newrev: string,
    after: RefMap,
  ): Promise<PushEvent> {
    const repo = this.repoDir(project.path);
    const branch = ref.slice('refs/heads/'.length);
    const isDefault = branch === project.defaultBranch;
    let range: string[] | null;
    if (newrev === BLANK_SHA) range = null;
    else if (oldrev !== BLANK_SHA) range = [newrev, `^${oldrev}`];
    else {
      const defaultSha = after.get(`refs/heads/${project.defaultBranch}`);
      range = !isDefault && defaultSha ? [newrev, `^${defaultSha}`] : [newrev];
    }
    let commits: PushEventCommit[] = [];
    let total = 0;
    if (range) {
      total = Number((await this.git(repo, ['rev-list', '--count', ...range, '--'])).trim());
      const newest = (await this.git(repo, ['rev-list', '--max-count=20', ...range, '--'])).split('\n').filter(Boolean);
      commits = await this.describeCommits(project, newest.reverse());
    }
    return this.pushEvent(project, user, {
      kind: 'push',
      ref,
      oldrev,
      newrev,
      protected: isDefault,
      checkoutSha: newrev === BLANK_SHA ? null : newrev,
      message: null,
      commits,
      total,
    });
  }

  /** Git::TagHooksService: the tag's commit as the only commit; the tag message as `message`. */
  private async buildTagEvent(project: DoubleProject, user: DoubleUser, ref: string, oldrev: string, newrev: string): Promise<PushEvent> {
    const repo = this.repoDir(project.path);
    let checkoutSha: string | null = null;
    let message: string | null = null;
    let commits: PushEventCommit[] = [];
    if (newrev !== BLANK_SHA) {
      checkoutSha = (await this.git(repo, ['rev-parse', '--verify', `${newrev}^{commit}`])).trim();
      const type = (await this.git(repo, ['cat-file', '-t', newrev])).trim();
      message = type === 'tag' ? await this.git(repo, ['for-each-ref', '--format=%(contents)', ref]) : '';
      message = message.replace(/\n+$/, '');
      commits = await this.describeCommits(project, [checkoutSha]);
    }
    return this.pushEvent(project, user, {
      kind: 'tag_push',
      ref,
      oldrev,
      newrev,
      protected: false,
      checkoutSha,
      message,
      commits,
      total: commits.length,
    });
  }

  /** Commit#hook_attrs(with_changed_files: true) for each sha, in the order given. */
  private async describeCommits(project: DoubleProject, shas: string[]): Promise<PushEventCommit[]> {
    if (shas.length === 0) return [];
    const out = await this.git(this.repoDir(project.path), [
      'log', '--no-walk=unsorted', '-z', '--format=%x1e%H%x1f%an%x1f%ae%x1f%cI%x1f%B%x1f',
      '--name-status', '-M', '--diff-merges=first-parent', ...shas, '--',
    ]);
    const web = this.projectUrls(project).web;
    const commits: PushEventCommit[] = [];
    for (const record of out.split('\x1e').slice(1)) {
      const fields = record.split('\x1f');
      const [id, authorName, authorEmail, timestamp, message] = fields as [string, string, string, string, string];
      const changes = fields.slice(5).join('\x1f').split('\0').filter((t) => t !== '' && t !== '\n').map((t) => t.replace(/^\n/, ''));
      const added: string[] = [];
      const modified: string[] = [];
      const removed: string[] = [];
      for (let i = 0; i < changes.length; ) {
        const code = changes[i]!;
        if (code.startsWith('R') || code.startsWith('C')) {
          added.push(changes[i + 2]!); // GitLab lists a renamed or copied file under its new path only
          i += 3;
        } else {
          const file = changes[i + 1]!;
          if (code === 'A') added.push(file);
          else if (code === 'D') removed.push(file);
          else modified.push(file);
          i += 2;
        }
      }
      commits.push({
        id,
        message,
        title: commitTitle(message),
        timestamp,
        url: `${web}/-/commit/${id}`,
        author: { name: authorName, email: authorEmail },
        added,
        modified,
        removed,
      });
    }
    return commits;
  }

  private pushEvent(
    project: DoubleProject,
    user: DoubleUser,
    e: {
      kind: 'push' | 'tag_push';
      ref: string;
      oldrev: string;
      newrev: string;
      protected: boolean;
      checkoutSha: string | null;
      message: string | null;
      commits: PushEventCommit[];
      total: number;
    },
  ): PushEvent {
    const urls = this.projectUrls(project);
    const hookProject: PushEventProject = {
      id: project.id,
      name: project.name,
      description: '',
      web_url: urls.web,
      avatar_url: null,
      git_ssh_url: urls.ssh,
      git_http_url: urls.http,
      namespace: lastSegment(project.namespace),
      visibility_level: 0,
      path_with_namespace: project.path,
      default_branch: project.defaultBranch,
      ci_config_path: null,
      homepage: urls.web,
      url: urls.ssh,
      ssh_url: urls.ssh,
      http_url: urls.http,
    };
    return {
      object_kind: e.kind,
      event_name: e.kind,
      before: e.oldrev,
      after: e.newrev,
      ref: e.ref,
      ref_protected: e.protected,
      checkout_sha: e.checkoutSha,
      message: e.message,
      user_id: user.id,
      user_name: user.name,
      user_username: user.username,
      user_email: user.email,
      user_avatar: avatarUrl(user.email),
      project_id: project.id,
      project: hookProject,
      commits: e.commits,
      total_commits_count: e.total,
      push_options: {},
      repository: {
        name: hookProject.name,
        url: hookProject.url,
        description: hookProject.description,
        homepage: hookProject.homepage,
        git_http_url: hookProject.git_http_url,
        git_ssh_url: hookProject.git_ssh_url,
        visibility_level: hookProject.visibility_level,
      },
    };
  }

  // ----- webhook delivery ----------------------------------------------------------------------

  /** Queue one delivery per matching hook; deliveries go out one at a time, in order. */
  private enqueueHookDeliveries(project: DoubleProject, event: PushEvent): void {
    const eventUuid = randomUUID();
    const body = JSON.stringify(event);
    for (const hook of this.hooks) {
      if (hook.kind === 'project' && hook.projectId !== undefined && hook.projectId !== project.id) continue;
      const name = hook.kind === 'system' ? 'System Hook' : event.object_kind === 'tag_push' ? 'Tag Push Hook' : 'Push Hook';
      const headers = this.hookHeaders(hook, name, eventUuid);
      this.enqueue(() => this.deliver({ hookId: hook.id, url: hook.url, event: name, headers, body, redeliveryOf: null, raw: false }));
    }
  }

  private hookHeaders(hook: DoubleWebhook, event: string, eventUuid: string): Record<string, string> {
    return {
      'Content-Type': 'application/json',
      'User-Agent': `GitLab/${GITLAB_VERSION}`,
      'Idempotency-Key': randomUUID(),
      'X-Gitlab-Event': event,
      'X-Gitlab-Webhook-UUID': hook.uuid,
      'X-Gitlab-Instance': this.url,
      'X-Gitlab-Event-UUID': eventUuid,
      'X-Gitlab-Token': hook.secret,
    };
  }

  redeliver(i: number): Promise<RecordedDelivery> {
    const original = this.deliveries[i];
    if (!original) return Promise.reject(new Error(`redeliver: no delivery ${i}`));
    return this.enqueue(() =>
      this.deliver({
        hookId: original.hookId,
        url: original.url,
        event: original.event,
        headers: { ...original.headers },
        body: original.body,
        redeliveryOf: i,
        raw: original.raw,
      }),
    );
  }

  sendRaw(r: RawSend): Promise<RecordedDelivery> {
    const url = r.url ?? this.hooks[0]?.url;
    if (!url) return Promise.reject(new Error('sendRaw: no url and no webhook registered'));
    const hook = this.hooks.find((h) => h.url === url);
    const headers: Record<string, string> = hook
      ? this.hookHeaders(hook, hook.kind === 'system' ? 'System Hook' : 'Push Hook', randomUUID())
      : { 'Content-Type': 'application/json', 'User-Agent': `GitLab/${GITLAB_VERSION}` };
    for (const [k, v] of Object.entries(r.headers ?? {})) {
      for (const existing of Object.keys(headers)) if (existing.toLowerCase() === k.toLowerCase()) delete headers[existing];
      if (v !== null) headers[k] = v;
    }
    const body = r.body;
    return this.enqueue(() =>
      this.deliver({
        hookId: hook?.id ?? null,
        url,
        event: headers['X-Gitlab-Event'] ?? '',
        headers,
        body,
        redeliveryOf: null,
        raw: true,
      }),
    );
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const result = this.deliveryChain.then(job);
    this.deliveryChain = result.then(
      () => undefined,
      () => undefined,
    );
    return this.track(() => result);
  }

  private async deliver(d: Omit<RecordedDelivery, 'index' | 'status' | 'responseBody' | 'error' | 'durationMs' | 'at'>): Promise<RecordedDelivery> {
    const at = new Date().toISOString();
    const started = performance.now();
    const answer = await postOnce(d.url, d.headers, d.body);
    const delivery: RecordedDelivery = {
      index: this.deliveries.length,
      ...d,
      status: answer.status,
      responseBody: answer.body,
      error: answer.error,
      durationMs: performance.now() - started,
      at,
    };
    this.deliveries.push(delivery);
    return delivery;
  }

  // ----- helpers -------------------------------------------------------------------------------

  /** Keep `fn`'s promise in the pending set until it settles; idle() waits for that set. */
  private track<T>(fn: () => Promise<T>): Promise<T> {
    const p = fn();
    this.pending.add(p);
    const forget = () => this.pending.delete(p);
    p.then(forget, (err: unknown) => {
      forget();
      this.internalErrors.push(String(err));
    });
    return p;
  }

  /** Git's environment: no system or global config, so the host's ~/.gitconfig never leaks in. */
  private gitEnv(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: this.homeDir,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      LANG: 'C',
    };
  }

  private git(gitDir: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('git', ['--git-dir', gitDir, ...args], { env: this.gitEnv(), maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`git ${args.join(' ')}: ${stderr || err.message}`));
        else resolve(stdout);
      });
    });
  }

  private findUserByName(username: string): DoubleUser | undefined {
    const lower = username.toLowerCase();
    for (const u of this.users.values()) if (u.username.toLowerCase() === lower) return u;
    return undefined;
  }

  /** GitLab paths are case-insensitive. */
  private findProjectByPath(path: string): DoubleProject | undefined {
    const lower = path.toLowerCase();
    for (const p of this.projects.values()) if (p.path.toLowerCase() === lower) return p;
    return undefined;
  }
}

/** Split a CGI answer into status, headers and the start of the body; null until complete. */
function parseCgiHead(buf: Buffer): { status: number; headers: Record<string, string>; body: Buffer } | null {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  let end: number;
  let sepLength: number;
  if (crlf >= 0 && (lf < 0 || crlf < lf)) {
    end = crlf;
    sepLength = 4;
  } else if (lf >= 0) {
    end = lf;
    sepLength = 2;
  } else {
    return null;
  }
  let status = 200;
  const headers: Record<string, string> = {};
  for (const line of buf.subarray(0, end).toString('latin1').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else headers[key] = value;
  }
  return { status, headers, body: buf.subarray(end + sepLength) };
}

/** One POST as GitLab's webhook worker sends it: fixed headers, Content-Length, 10 s timeout. */
function postOnce(url: string, headers: Record<string, string>, body: string): Promise<{ status: number | null; body: string; error: string | null }> {
  return new Promise((resolve) => {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      resolve({ status: null, body: '', error: `invalid URL ${url}` });
      return;
    }
    const payload = Buffer.from(body, 'utf8');
    const sent: Record<string, string> = { ...headers };
    if (!Object.keys(sent).some((k) => k.toLowerCase() === 'content-length')) sent['Content-Length'] = String(payload.length);
    const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = request(target, { method: 'POST', headers: sent, timeout: HOOK_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < MAX_RESPONSE_BODY) chunks.push(c);
        size += c.length;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? null, body: Buffer.concat(chunks).subarray(0, MAX_RESPONSE_BODY).toString('utf8'), error: null }),
      );
      res.on('error', (err) => resolve({ status: res.statusCode ?? null, body: '', error: String(err) }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${HOOK_TIMEOUT_MS} ms`)));
    req.on('error', (err) => resolve({ status: null, body: '', error: err.message }));
    req.end(payload);
  });
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new HttpError(413, { message: '413 Request Entity Too Large' }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain' });
  res.end(text);
}

function safeEqual(a: string, b: string): boolean {
  // Hash first so the comparison takes the same time whatever the lengths.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  let diff = 0;
  for (let i = 0; i < ha.length; i++) diff |= ha[i]! ^ hb[i]!;
  return diff === 0;
}

function avatarUrl(email: string): string {
  const hash = createHash('sha256').update(email.trim().toLowerCase()).digest('hex');
  return `https://www.gravatar.com/avatar/${hash}?s=80&d=identicon`;
}

function lastSegment(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Commit#title: the first line, cut at a word boundary to at most 81 characters when >= 100. */
function commitTitle(message: string): string {
  if (message.trim() === '') return 'No commit message';
  const first = message.split(/[\r\n]/, 1)[0]!;
  if (first.length < 100) return first;
  const room = 81 - 3;
  const space = first.lastIndexOf(' ', room);
  return `${first.slice(0, space >= 0 ? space : room)}...`;
}
