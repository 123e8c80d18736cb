/**
 * The GitLab REST adapter: the only file that speaks GitLab's HTTP API.
 * Uses node:http(s) directly so an isolated cluster's own CA (`gitlab.ca_file`) can be trusted.
 * Every answer is read against its schema (gitlab-answers.ts) before secd looks at it: a malformed
 * one is a GitLabAnswerError naming the field, which callers handle as they handle GitLab failing.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { z } from 'zod';
import {
  gitlabApprovalsSchema,
  gitlabBranchSchema,
  gitlabCommitStatusList,
  gitlabEmailList,
  gitlabGpgKeyList,
  gitlabMemberList,
  gitlabMergeRequestList,
  gitlabMergeRequestSchema,
  gitlabProjectSchema,
  gitlabPushEventList,
  gitlabSshKeyList,
  gitlabUserDetailSchema,
  gitlabUserList,
  gitlabUserSchema,
  parseGitLabAnswer,
  type GitLabGpgKey,
  type GitLabMember,
  type GitLabMergeRequest,
  type GitLabProject,
  type GitLabPushEvent,
  type GitLabSshKey,
  type GitLabUser,
} from './gitlab-answers.js';
import type { CommitStatus, GitLabApi, GitLabReviewApi, GitLabUserLookup } from './gitlab-port.js';
import { GitLabAnswerError, GitLabError } from './gitlab-port.js';

/** Where GitLab is and how to authenticate. */
export interface GitLabClientOptions {
  url: string;
  token: string;
  /** PEM text of extra CAs to trust. */
  ca?: string;
  timeoutMs?: number;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Everything the HTTP adapter offers: the run path's calls, user lookup and output review. */
export type GitLabClient = GitLabApi &
  Required<Pick<GitLabApi, 'getBranchHead' | 'listUserSshKeys' | 'listUserEmails' | 'listPushEvents' | 'listCommitStatuses'>> &
  GitLabUserLookup &
  GitLabReviewApi;

/** Build a GitLabApi (and the lookup and review calls) over HTTP(S). */
export function createGitLabClient(opts: GitLabClientOptions): GitLabClient {
  const base = new URL(opts.url.endsWith('/') ? opts.url : `${opts.url}/`);
  const timeoutMs = opts.timeoutMs ?? 10_000;

  function call(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<Answer> {
    const url = new URL(`api/v4${path}`, base);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          headers: {
            'PRIVATE-TOKEN': opts.token,
            Accept: 'application/json',
            ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}),
          },
          ...(opts.ca ? { ca: opts.ca } : {}),
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`GitLab did not answer ${method} ${path} within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  async function getJson<T>(path: string, schema: z.ZodType<T>): Promise<{ value: T; headers: Answer['headers'] }> {
    return sendJson('GET', path, undefined, schema);
  }

  async function sendJson<T>(
    method: 'GET' | 'POST' | 'PUT',
    path: string,
    body: unknown,
    schema: z.ZodType<T>,
  ): Promise<{ value: T; headers: Answer['headers'] }> {
    const answer = await call(method, path, body);
    if (answer.status < 200 || answer.status >= 300) throw new GitLabError(answer.status, path, answer.body);
    const read = parseGitLabAnswer(schema, answer.body);
    if (!read.ok) throw new GitLabAnswerError(answer.status, path, answer.body, read.field, read.problem);
    return { value: read.value, headers: answer.headers };
  }

  async function getAllPages<T>(path: string, schema: z.ZodType<T[]>): Promise<T[]> {
    const all: T[] = [];
    let page = '1';
    // GitLab caps per_page at 100; X-Next-Page is empty on the last page.
    for (let guard = 0; guard < 1000 && page; guard++) {
      const sep = path.includes('?') ? '&' : '?';
      const { value, headers } = await getJson(`${path}${sep}per_page=100&page=${page}`, schema);
      all.push(...value);
      const next = headers['x-next-page'];
      page = typeof next === 'string' ? next.trim() : '';
    }
    return all;
  }

  return {
    async getProject(projectId: number): Promise<GitLabProject> {
      return (await getJson(`/projects/${projectId}`, gitlabProjectSchema)).value;
    },
    listProjectMembers(projectId: number): Promise<GitLabMember[]> {
      return getAllPages(`/projects/${projectId}/members/all`, gitlabMemberList);
    },
    listUserGpgKeys(userId: number): Promise<GitLabGpgKey[]> {
      return getAllPages(`/users/${userId}/gpg_keys`, gitlabGpgKeyList);
    },
    listUserSshKeys(userId: number): Promise<GitLabSshKey[]> {
      return getAllPages(`/users/${userId}/keys`, gitlabSshKeyList);
    },
    async listUserEmails(userId: number): Promise<string[]> {
      // Both answers at once: the primary email from the user, the secondary ones from their list.
      // Older GitLab versions leave the primary out of /emails, newer ones list it too: the union,
      // without repeats, covers both.
      const [user, secondary] = await Promise.all([
        getJson(`/users/${userId}`, gitlabUserDetailSchema),
        getAllPages(`/users/${userId}/emails`, gitlabEmailList),
      ]);
      const emails: string[] = [];
      const add = (email: string) => {
        const lower = email.toLowerCase();
        if (!emails.includes(lower)) emails.push(lower);
      };
      if (user.value.email && user.value.confirmed_at) add(user.value.email);
      for (const e of secondary) if (e.confirmed_at) add(e.email);
      return emails;
    },
    async findUserByUsername(username: string): Promise<GitLabUser | null> {
      const { value } = await getJson(`/users?username=${encodeURIComponent(username)}`, gitlabUserList);
      const lower = username.toLowerCase();
      return value.find((u) => u.username.toLowerCase() === lower) ?? null;
    },
    async getBranchHead(projectId: number, branch: string): Promise<string | null> {
      const path = `/projects/${projectId}/repository/branches/${encodeURIComponent(branch)}`;
      const answer = await call('GET', path);
      if (answer.status === 404) return null;
      if (answer.status < 200 || answer.status >= 300) throw new GitLabError(answer.status, path, answer.body);
      const read = parseGitLabAnswer(gitlabBranchSchema, answer.body);
      if (!read.ok) throw new GitLabAnswerError(answer.status, path, answer.body, read.field, read.problem);
      return read.value.commit.id;
    },
    async listPushEvents(projectId: number): Promise<GitLabPushEvent[]> {
      // One page: the reconciler looks for the push of a current head, which is among the newest.
      return (await getJson(`/projects/${projectId}/events?action=pushed&sort=desc&per_page=100`, gitlabPushEventList)).value;
    },
    async listCommitStatuses(projectId: number, sha: string): Promise<Array<{ name: string; status: string; target_url: string | null }>> {
      // GitLab's default answers the newest status of each name, which is all a restart asks.
      return (await getJson(`/projects/${projectId}/repository/commits/${sha}/statuses?per_page=100`, gitlabCommitStatusList)).value;
    },
    async postCommitStatus(projectId: number, sha: string, status: CommitStatus): Promise<void> {
      const path = `/projects/${projectId}/statuses/${sha}`;
      const body: CommitStatus = {
        ...status,
        ...(status.description !== undefined ? { description: status.description.slice(0, 255) } : {}),
      };
      const answer = await call('POST', path, body);
      if (answer.status < 200 || answer.status >= 300) throw new GitLabError(answer.status, path, answer.body);
    },
    async getProjectByPath(path: string): Promise<GitLabProject> {
      return (await getJson(`/projects/${encodeURIComponent(path)}`, gitlabProjectSchema)).value;
    },
    async getCurrentUser(): Promise<GitLabUser> {
      return (await getJson('/user', gitlabUserSchema)).value;
    },
    async createMergeRequest(projectId, mr): Promise<GitLabMergeRequest> {
      const body = { source_branch: mr.sourceBranch, target_branch: mr.targetBranch, title: mr.title, description: mr.description };
      return (await sendJson('POST', `/projects/${projectId}/merge_requests`, body, gitlabMergeRequestSchema)).value;
    },
    findMergeRequests(projectId: number, sourceBranch: string): Promise<GitLabMergeRequest[]> {
      return getAllPages(`/projects/${projectId}/merge_requests?source_branch=${encodeURIComponent(sourceBranch)}&state=all`, gitlabMergeRequestList);
    },
    async getMergeRequest(projectId: number, iid: number): Promise<GitLabMergeRequest> {
      return (await getJson(`/projects/${projectId}/merge_requests/${iid}`, gitlabMergeRequestSchema)).value;
    },
    async getMergeRequestApprovals(projectId: number, iid: number): Promise<Array<{ id: number; username: string }>> {
      const { value } = await getJson(`/projects/${projectId}/merge_requests/${iid}/approvals`, gitlabApprovalsSchema);
      return value.approved_by.map((a) => a.user);
    },
    async closeMergeRequest(projectId: number, iid: number): Promise<GitLabMergeRequest> {
      const path = `/projects/${projectId}/merge_requests/${iid}`;
      return (await sendJson('PUT', path, { state_event: 'close' }, gitlabMergeRequestSchema)).value;
    },
    async addMergeRequestNote(projectId: number, iid: number, body: string): Promise<void> {
      const path = `/projects/${projectId}/merge_requests/${iid}/notes`;
      const answer = await call('POST', path, { body });
      if (answer.status < 200 || answer.status >= 300) throw new GitLabError(answer.status, path, answer.body);
    },
  };
}
