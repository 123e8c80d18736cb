/**
 * Merge requests, as far as secd's output review (DESIGN §10) meets them: per project, created over
 * the API from a branch of the double's own repository (`sha` = that branch's head, kept current when
 * the branch is pushed again, as GitLab's refresh does), read one at a time or listed by source
 * branch and state, closed or reopened by `state_event`, commented on, and their approvals. Every
 * change a person or the API makes sends a Merge Request Hook, built by merge-request-events.ts.
 *
 * The test side plays the people: approve, unapprove and close as a given user (each recorded, then
 * hooked), and a forged hook that claims what never happened. GitLab's rules kept: either branch
 * missing is 422, a second open merge request for a source branch is 409, only members with
 * Developer or above (or secd's own user, the admin token's) may approve or close, nobody approves
 * twice. Deliberate simplifications: source and target are always the same project; no merging; no
 * approval rules (`approvals_required` is 0, the author may approve, approvals survive a push); notes
 * send no Note Hook.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ACCESS, type DoubleProject, type DoubleState, type DoubleUser } from './double-state.js';
import type { HookSender } from './hook-sender.js';
import { HttpError, pageOf, readParams, sendJson } from './http-helpers.js';
import { approvalsJson, mergeRequestJson, noteJson, userOf } from './merge-request-answers.js';
import { buildMergeRequestEvent, type Change, type MergeRequestAction, type MergeRequestSnapshot } from './merge-request-events.js';
import { BLANK_SHA, type PushEvent } from './push-events.js';

/** A comment on a merge request. */
export interface DoubleNote {
  id: number;
  body: string;
  authorId: number;
  at: string;
}

/** One user's approval of a merge request. */
export interface DoubleApproval {
  userId: number;
  at: string;
}

/** A merge request the double keeps, for assertions (the live record: it changes as things happen). */
export interface DoubleMergeRequest extends MergeRequestSnapshot {
  projectId: number;
  closedBy: number | null;
  closedAt: string | null;
  notes: DoubleNote[];
  approvals: DoubleApproval[];
}

/** What a forged hook claims. */
export interface ForgedHook {
  action: MergeRequestAction;
  /** who the hook says acted */
  userId: number;
}

const MAX_API_BODY = 1024 * 1024;
const STATES = ['opened', 'closed', 'locked', 'merged', 'all'] as const;
const NOT_FOUND = { message: '404 Not found' };

/** Merge requests of every project, their routes under /projects/:id/merge_requests, and the test-side controls. */
export class MergeRequests {
  private readonly byProject = new Map<number, DoubleMergeRequest[]>();
  private nextId = 1;
  private nextNoteId = 1;
  private hookChain: Promise<void> = Promise.resolve();

  constructor(
    private readonly state: DoubleState,
    private readonly hooks: HookSender,
  ) {}

  /** The project's merge requests, oldest first (live records). */
  of(projectId: number): DoubleMergeRequest[] {
    this.state.project(projectId);
    let list = this.byProject.get(projectId);
    if (!list) this.byProject.set(projectId, (list = []));
    return list;
  }

  // ----- REST ----------------------------------------------------------------------------------

  /** Answer a request under /projects/:id/merge_requests; `rest` is what follows it. Returns the status sent. */
  async handle(req: IncomingMessage, res: ServerResponse, method: string, project: DoubleProject, rest: string[], query: URLSearchParams): Promise<number> {
    if (rest.length === 0 && method === 'POST') return this.create(res, project, await readParams(req, query, MAX_API_BODY));
    if (rest.length === 0 && method === 'GET') return this.list(res, project, query);
    if (rest.length === 0 || rest.length > 2) throw new HttpError(404, { error: '404 Not Found' });
    if (!/^\d+$/.test(rest[0]!)) throw new HttpError(400, { error: 'merge_request_iid is invalid' });
    const sub = rest[1];
    const known =
      (sub === undefined && (method === 'GET' || method === 'PUT')) ||
      (sub === 'approvals' && method === 'GET') ||
      (sub === 'notes' && (method === 'GET' || method === 'POST'));
    if (!known) throw new HttpError(404, { error: '404 Not Found' });
    const mr = this.of(project.id).find((m) => m.iid === Number(rest[0]));
    if (!mr) throw new HttpError(404, NOT_FOUND);
    if (sub === 'approvals') return this.answer(res, 200, approvalsJson(this.state, mr));
    if (sub === 'notes' && method === 'GET') return this.answer(res, 200, mr.notes.map((n) => noteJson(this.state, mr, n)));
    if (sub === 'notes') return this.addNote(res, mr, await readParams(req, query, MAX_API_BODY));
    if (method === 'PUT') return this.update(res, project, mr, await readParams(req, query, MAX_API_BODY));
    return this.answer(res, 200, mergeRequestJson(this.state, mr));
  }

  private answer(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): number {
    sendJson(res, status, body, headers);
    return status;
  }

  /** POST: Grape's required parameters first, then MergeRequests::BuildService's branch checks (422), then the open duplicate (409). */
  private async create(res: ServerResponse, project: DoubleProject, params: Record<string, string>): Promise<number> {
    const missing = ['title', 'source_branch', 'target_branch'].filter((k) => !params[k]);
    if (missing.length > 0) throw new HttpError(400, { error: missing.map((k) => `${k} is missing`).join(', ') });
    const source = params.source_branch!;
    const target = params.target_branch!;
    if (source === target) throw new HttpError(422, { message: ['You must select different branches'] });
    const sha = await this.branchHead(project, source);
    if (sha === null) throw new HttpError(422, { message: [`Source branch "${source}" does not exist`] });
    if ((await this.branchHead(project, target)) === null) throw new HttpError(422, { message: [`Target branch "${target}" does not exist`] });
    this.refuseDuplicate(project, source, null);
    const now = new Date().toISOString();
    const iid = this.of(project.id).length + 1;
    const mr: DoubleMergeRequest = {
      id: this.nextId++,
      iid,
      projectId: project.id,
      title: params.title!,
      description: params.description ?? '',
      sourceBranch: source,
      targetBranch: target,
      state: 'opened',
      sha,
      authorId: this.state.botUser.id,
      createdAt: now,
      updatedAt: now,
      webUrl: `${this.state.projectUrls(project).web}/-/merge_requests/${iid}`,
      closedBy: null,
      closedAt: null,
      notes: [],
      approvals: [],
    };
    this.of(project.id).push(mr);
    this.hook(project, mr, this.state.botUser, 'open');
    return this.answer(res, 201, mergeRequestJson(this.state, mr));
  }

  /** GitLab's MergeRequest#validate_branches: one open merge request per source branch. */
  private refuseDuplicate(project: DoubleProject, source: string, except: DoubleMergeRequest | null): void {
    const open = this.of(project.id).find((m) => m !== except && m.state === 'opened' && m.sourceBranch === source);
    if (open) throw new HttpError(409, { message: [`Another open merge request already exists for this source branch: !${open.iid}`] });
  }

  /** GET: filtered by source_branch, target_branch and state (default all), newest first, paged. */
  private list(res: ServerResponse, project: DoubleProject, query: URLSearchParams): number {
    const state = query.get('state') ?? 'all';
    if (!(STATES as readonly string[]).includes(state)) throw new HttpError(400, { error: 'state does not have a valid value' });
    const source = query.get('source_branch');
    const target = query.get('target_branch');
    const found = this.of(project.id)
      .filter((m) => (state === 'all' || m.state === state) && (source === null || m.sourceBranch === source) && (target === null || m.targetBranch === target))
      .reverse();
    const { slice, headers } = pageOf(found, query);
    return this.answer(res, 200, slice.map((m) => mergeRequestJson(this.state, m)), headers);
  }

  /** PUT: state_event close|reopen, title, description; at least one of them. */
  private update(res: ServerResponse, project: DoubleProject, mr: DoubleMergeRequest, params: Record<string, string>): number {
    const event = params.state_event;
    if (event !== undefined && event !== 'close' && event !== 'reopen') throw new HttpError(400, { error: 'state_event does not have a valid value' });
    if (params.title === '') throw new HttpError(400, { error: 'title is empty' });
    if (event === undefined && params.title === undefined && params.description === undefined) {
      throw new HttpError(400, { error: 'state_event, title, description are missing, at least one parameter must be provided' });
    }
    if (params.title !== undefined) mr.title = params.title;
    if (params.description !== undefined) mr.description = params.description;
    mr.updatedAt = new Date().toISOString();
    // Closing a closed merge request (or reopening an open one) changes nothing, as on GitLab.
    if (event === 'close' && mr.state === 'opened') this.close(project, mr, this.state.botUser);
    else if (event === 'reopen' && mr.state === 'closed') this.reopen(project, mr, this.state.botUser);
    else if (event === undefined) this.hook(project, mr, this.state.botUser, 'update');
    return this.answer(res, 200, mergeRequestJson(this.state, mr));
  }

  private addNote(res: ServerResponse, mr: DoubleMergeRequest, params: Record<string, string>): number {
    if (!params.body) throw new HttpError(400, { error: 'body is missing' });
    const note: DoubleNote = { id: this.nextNoteId++, body: params.body, authorId: this.state.botUser.id, at: new Date().toISOString() };
    mr.notes.push(note);
    return this.answer(res, 201, noteJson(this.state, mr, note));
  }

  // ----- what people do (the test side) --------------------------------------------------------

  /** `userId` approves: recorded, then the `approval` hook. Throws where GitLab would refuse. */
  approve(projectId: number, iid: number, userId: number): void {
    const { project, mr, user } = this.acting(projectId, iid, userId, 'approve');
    if (mr.state !== 'opened') throw new Error(`approveMergeRequest: !${iid} is ${mr.state}`);
    if (mr.approvals.some((a) => a.userId === userId)) throw new Error(`approveMergeRequest: ${user.username} already approved !${iid}`);
    mr.approvals.push({ userId, at: new Date().toISOString() });
    this.hook(project, mr, user, 'approval');
  }

  /** `userId` takes their approval back: removed, then the `unapproval` hook. */
  unapprove(projectId: number, iid: number, userId: number): void {
    const { project, mr, user } = this.acting(projectId, iid, userId, 'unapprove');
    const at = mr.approvals.findIndex((a) => a.userId === userId);
    if (at < 0) throw new Error(`unapproveMergeRequest: ${user.username} has not approved !${iid}`);
    mr.approvals.splice(at, 1);
    this.hook(project, mr, user, 'unapproval');
  }

  /** `userId` closes the merge request in GitLab's web page: closed_by them, then the `close` hook. */
  closeAs(projectId: number, iid: number, userId: number): void {
    const { project, mr, user } = this.acting(projectId, iid, userId, 'close');
    if (mr.state !== 'opened') throw new Error(`closeMergeRequestAs: !${iid} is ${mr.state}`);
    this.close(project, mr, user);
  }

  /** A hook that claims `action` by `userId` happened to the merge request; nothing is recorded. */
  forge(projectId: number, iid: number, claim: ForgedHook): void {
    const project = this.state.project(projectId);
    const mr = this.find(project, iid, 'sendMergeRequestHook');
    const user = this.user(claim.userId, 'sendMergeRequestHook');
    this.hook(project, mr, user, claim.action);
  }

  /** After a push: an open merge request whose source branch moved takes the new head and sends `update` with `oldrev`. */
  refresh(project: DoubleProject, event: PushEvent): void {
    if (event.object_kind !== 'push' || event.after === BLANK_SHA) return;
    const branch = event.ref.slice('refs/heads/'.length);
    for (const mr of this.of(project.id)) {
      if (mr.state !== 'opened' || mr.sourceBranch !== branch || mr.sha === event.after) continue;
      const oldrev = mr.sha;
      mr.sha = event.after;
      mr.updatedAt = new Date().toISOString();
      this.hook(project, mr, this.state.users.get(event.user_id) ?? this.state.botUser, 'update', {}, { oldrev });
    }
  }

  private close(project: DoubleProject, mr: DoubleMergeRequest, user: DoubleUser): void {
    const before = mr.updatedAt;
    mr.state = 'closed';
    mr.closedBy = user.id;
    mr.closedAt = mr.updatedAt = new Date().toISOString();
    this.hook(project, mr, user, 'close', { state_id: { previous: 1, current: 2 }, updated_at: { previous: before, current: mr.updatedAt } });
  }

  private reopen(project: DoubleProject, mr: DoubleMergeRequest, user: DoubleUser): void {
    this.refuseDuplicate(project, mr.sourceBranch, mr);
    const before = mr.updatedAt;
    mr.state = 'opened';
    mr.closedBy = mr.closedAt = null;
    mr.updatedAt = new Date().toISOString();
    this.hook(project, mr, user, 'reopen', { state_id: { previous: 2, current: 1 }, updated_at: { previous: before, current: mr.updatedAt } });
  }

  /** Who may approve or close: a member with Developer or above (GitLab's :update_merge_request / approval rule). */
  private acting(projectId: number, iid: number, userId: number, what: string) {
    const project = this.state.project(projectId);
    const mr = this.find(project, iid, what);
    const user = this.user(userId, what);
    const level = user === this.state.botUser ? ACCESS.owner : project.members.get(userId) ?? 0;
    if (level < ACCESS.developer) {
      throw new Error(`${what}: ${user.username} is not a member of ${project.path} with Developer or above`);
    }
    return { project, mr, user };
  }

  private find(project: DoubleProject, iid: number, what: string): DoubleMergeRequest {
    const mr = this.of(project.id).find((m) => m.iid === iid);
    if (!mr) throw new Error(`${what}: ${project.path} has no merge request !${iid}`);
    return mr;
  }

  private user(userId: number, what: string): DoubleUser {
    const user = userOf(this.state, userId);
    if (!user) throw new Error(`${what}: no user ${userId}`);
    return user;
  }

  /**
   * Send the event, in the order things happened: the merge request is copied now, the commit read
   * and the deliveries queued behind the previous event (tracked, so idle() waits for them).
   */
  private hook(project: DoubleProject, mr: DoubleMergeRequest, user: DoubleUser, action: MergeRequestAction, changes: Record<string, Change> = {}, extra: Record<string, unknown> = {}): void {
    const { projectId: _p, closedBy: _c, closedAt: _a, notes: _n, approvals: _ap, ...snapshot } = mr;
    const next = this.hookChain.then(async () => {
      const event = await buildMergeRequestEvent(this.state, project, { ...snapshot }, user, action, changes, extra);
      this.hooks.sendEvent(project, 'Merge Request Hook', event);
    });
    this.hookChain = next.catch(() => undefined);
    void this.state.track(() => next);
  }

  private async branchHead(project: DoubleProject, branch: string): Promise<string | null> {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_./-]*$/.test(branch)) return null;
    try {
      const out = await this.state.git(this.state.repoDir(project.path), ['rev-parse', '--verify', '--quiet', `refs/heads/${branch}^{commit}`]);
      return out.trim() || null;
    } catch {
      return null;
    }
  }
}
