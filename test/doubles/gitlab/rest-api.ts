/**
 * The REST calls of scheduler/gitlab/gitlab-port.ts, answered as GitLab answers them: the admin token
 * by `PRIVATE-TOKEN` or `Authorization: Bearer`, paginated members with GitLab's headers, GPG keys,
 * SSH keys and emails of a user, a user as an administrator sees one (with the primary `email`),
 * users by name, projects, a branch and its head commit, a project's push events (project-events.ts), commit statuses with GitLab's parameter
 * checks and its status state machine (so pending or running posted twice is a 400, as on GitLab),
 * and merge requests (handed to merge-requests.ts). Every answer is recorded.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { DoubleProject, DoubleState, DoubleUser, Identity } from './double-state.js';
import { apiUserJson, HttpError, lastSegment, readBody, safeEqual, sendJson } from './http-helpers.js';
import type { MergeRequests } from './merge-requests.js';
import type { ProjectEvents } from './project-events.js';

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

/** One API request the double answered. */
export interface RecordedApiRequest {
  method: string;
  path: string;
  status: number;
  at: string;
}

const STATUS_STATES: readonly DoubleStatusState[] = ['pending', 'running', 'success', 'failed', 'canceled', 'skipped'];
const MAX_API_BODY = 1024 * 1024;

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

/** Answers /api/v4 requests from the double's state and records them. */
export class RestApi {
  /** every accepted commit status, in order */
  readonly statuses: RecordedStatus[] = [];
  /** every refused commit status, in order */
  readonly rejectedStatuses: RejectedStatus[] = [];
  /** every API request, in order */
  readonly apiRequests: RecordedApiRequest[] = [];
  private nextStatusId = 1;

  constructor(
    private readonly state: DoubleState,
    private readonly mergeRequests: MergeRequests,
    private readonly projectEvents: ProjectEvents,
  ) {}

  /** Answer one request; `path` is what follows /api/v4. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
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
        sendJson(res, 200, this.userJson(this.state.botUser));
      } else if (method === 'GET' && seg.length === 2 && seg[0] === 'projects') {
        sendJson(res, 200, this.projectJson(this.apiProject(seg[1]!)));
      } else if (method === 'GET' && seg[0] === 'projects' && seg[2] === 'members' &&
        (seg.length === 3 || (seg.length === 4 && seg[3] === 'all'))) {
        this.sendMembers(res, this.apiProject(seg[1]!), query);
      } else if (method === 'GET' && seg.length === 1 && seg[0] === 'users') {
        // GET /users?username= : GitLab matches the username case-insensitively and answers a list.
        const wanted = query.get('username');
        const found = wanted ? this.state.findUserByName(wanted) : undefined;
        sendJson(res, 200, found ? [this.userJson(found)] : []);
      } else if (method === 'GET' && seg.length === 3 && seg[0] === 'users' && seg[2] === 'gpg_keys') {
        const keys = /^\d+$/.test(seg[1]!) ? this.state.gpgKeys.get(Number(seg[1])) : undefined;
        if (!keys) throw new HttpError(404, { message: '404 User Not Found' });
        sendJson(res, 200, keys);
      } else if (method === 'GET' && seg.length === 3 && seg[0] === 'users' && seg[2] === 'keys') {
        sendJson(res, 200, this.ofUser(this.state.sshKeys, seg[1]!));
      } else if (method === 'GET' && seg.length === 3 && seg[0] === 'users' && seg[2] === 'emails') {
        // An administrator's call; like the GitLab versions whose docs say so, the primary is not listed.
        sendJson(res, 200, this.ofUser(this.state.emails, seg[1]!));
      } else if (method === 'GET' && seg.length === 2 && seg[0] === 'users') {
        const user = /^\d+$/.test(seg[1]!) ? this.state.users.get(Number(seg[1])) : undefined;
        if (!user) throw new HttpError(404, { message: '404 User Not Found' });
        // The admin token sees the primary email and when the account was confirmed.
        sendJson(res, 200, { ...this.userJson(user), email: user.email, confirmed_at: '2024-01-01T00:00:00.000Z', is_admin: false });
      } else if (method === 'GET' && seg.length === 5 && seg[0] === 'projects' && seg[2] === 'repository' && seg[3] === 'branches') {
        sendJson(res, 200, await this.branchJson(this.apiProject(seg[1]!), seg[4]!));
      } else if (method === 'GET' && seg.length === 3 && seg[0] === 'projects' && seg[2] === 'events') {
        const page = this.projectEvents.list(this.apiProject(seg[1]!), query);
        sendJson(res, 200, page.slice, page.headers);
      } else if (method === 'GET' && seg.length === 6 && seg[0] === 'projects' && seg[3] === 'commits' && seg[5] === 'statuses') {
        sendJson(res, 200, await this.commitStatuses(this.apiProject(seg[1]!), seg[4]!, query));
      } else if (method === 'POST' && seg.length === 4 && seg[0] === 'projects' && seg[2] === 'statuses') {
        status = 201;
        await this.postStatus(req, res, seg[1]!, seg[3]!, query);
      } else if (seg.length >= 3 && seg[0] === 'projects' && seg[2] === 'merge_requests') {
        status = await this.mergeRequests.handle(req, res, method, this.apiProject(seg[1]!), seg.slice(3), query);
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
    if (given === undefined || !safeEqual(given, this.state.token)) return null;
    return { user: this.state.botUser, bot: true };
  }

  /** A user's list from `lists`, by the id in the path; GitLab's 404 for an unknown user. */
  private ofUser<T>(lists: Map<number, T[]>, id: string): T[] {
    const list = /^\d+$/.test(id) ? lists.get(Number(id)) : undefined;
    if (!list) throw new HttpError(404, { message: '404 User Not Found' });
    return list;
  }

  private apiProject(id: string): DoubleProject {
    const project = this.state.findProjectByRef(id);
    if (!project) throw new HttpError(404, { message: '404 Project Not Found' });
    return project;
  }

  private sendMembers(res: ServerResponse, project: DoubleProject, query: URLSearchParams): void {
    const members = [...project.members.entries()]
      .map(([userId, level]) => ({ user: this.state.users.get(userId)!, level }))
      .sort((a, b) => a.user.id - b.user.id);
    const perPageRaw = Number(query.get('per_page') ?? '20');
    const perPage = Number.isInteger(perPageRaw) && perPageRaw >= 1 ? Math.min(perPageRaw, 100) : 20;
    const pageRaw = Number(query.get('page') ?? '1');
    const page = Number.isInteger(pageRaw) && pageRaw >= 1 ? pageRaw : 1;
    const total = members.length;
    const totalPages = Math.max(1, Math.ceil(total / perPage));
    const slice = members.slice((page - 1) * perPage, page * perPage);
    const base = `${this.state.url}/api/v4/projects/${project.id}/members/all`;
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
    const project = this.state.findProjectByRef(projectRef);
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
      author: this.userJson(this.state.botUser),
    });
  }

  /** GET /projects/:id/repository/branches/:branch as GitLab answers it (the name arrives %2F-encoded). */
  private async branchJson(project: DoubleProject, branch: string) {
    const ref = `refs/heads/${branch}`;
    const sha = /^[A-Za-z0-9_][A-Za-z0-9_./-]*$/.test(branch) ? await this.resolveCommit(project, ref) : null;
    if (sha === null) throw new HttpError(404, { message: '404 Branch Not Found' });
    const web = this.state.projectUrls(project).web;
    return {
      name: branch,
      merged: false,
      protected: branch === project.defaultBranch,
      default: branch === project.defaultBranch,
      developers_can_push: false,
      developers_can_merge: false,
      can_push: true,
      web_url: `${web}/-/tree/${branch}`,
      commit: { id: sha, short_id: sha.slice(0, 8), web_url: `${web}/-/commit/${sha}` },
    };
  }

  /**
   * GET /projects/:id/repository/commits/:sha/statuses, newest first: the newest status of each name,
   * or with `all=true` every status record (a pending -> running -> success record is one, as on GitLab).
   */
  private async commitStatuses(project: DoubleProject, rev: string, query: URLSearchParams): Promise<unknown[]> {
    const sha = await this.resolveCommit(project, rev);
    if (sha === null) throw new HttpError(404, { message: '404 Commit Not Found' });
    const mine = this.statuses.filter((s) => s.projectId === project.id && s.sha === sha).reverse();
    const key = (s: RecordedStatus) => (query.get('all') === 'true' ? String(s.id) : s.name);
    const shown = mine.filter((s, i) => mine.findIndex((o) => key(o) === key(s)) === i);
    return shown.map((s) => ({ id: s.id, sha: s.sha, ref: s.ref, status: s.state, name: s.name, target_url: s.target_url, description: s.description, created_at: s.at }));
  }

  private async resolveCommit(project: DoubleProject, rev: string): Promise<string | null> {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_./-]*$/.test(rev)) return null;
    try {
      const out = await this.state.git(this.state.repoDir(project.path), ['rev-parse', '--verify', '--quiet', `${rev}^{commit}`]);
      return out.trim() || null;
    } catch {
      return null;
    }
  }

  private userJson(user: DoubleUser) {
    return apiUserJson(this.state.url, user);
  }

  private projectJson(project: DoubleProject) {
    const urls = this.state.projectUrls(project);
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
}
