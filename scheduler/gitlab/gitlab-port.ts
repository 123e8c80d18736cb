/**
 * The handful of GitLab API calls secd makes, in secd's own types (the answers' types are inferred
 * from their schemas in gitlab-answers.ts). The only HTTP adapter is scheduler/gitlab/gitlab-client.ts;
 * tests of logic use fakes, tests of the adapter use test/doubles/gitlab-double.ts.
 */
import type { GitLabGpgKey, GitLabMember, GitLabMergeRequest, GitLabProject, GitLabPushEvent, GitLabSshKey, GitLabUser } from './gitlab-answers.js';

export type { GitLabGpgKey, GitLabMember, GitLabMergeRequest, GitLabProject, GitLabPushEvent, GitLabSshKey, GitLabUser } from './gitlab-answers.js';

/** States GitLab accepts on POST /projects/:id/statuses/:sha. */
export type CommitStatusState = 'pending' | 'running' | 'success' | 'failed' | 'canceled' | 'skipped';

/** Body of POST /projects/:id/statuses/:sha. */
export interface CommitStatus {
  state: CommitStatusState;
  name: string;
  target_url?: string;
  description?: string;
}

/** Looking users up by name (`secd admin grant` checks the user exists); throws GitLabError as GitLabApi does. */
export interface GitLabUserLookup {
  /** The user with exactly this username (GitLab compares case-insensitively), or null. */
  findUserByUsername(username: string): Promise<GitLabUser | null>;
}

/**
 * What secd asks of GitLab. Every method throws GitLabError on a non-2xx answer, and its subclass
 * GitLabAnswerError on a 2xx answer of the wrong shape: callers treat both as "GitLab failed".
 */
export interface GitLabApi {
  getProject(projectId: number): Promise<GitLabProject>;
  /** All members including inherited ones, every page. */
  listProjectMembers(projectId: number): Promise<GitLabMember[]>;
  listUserGpgKeys(userId: number): Promise<GitLabGpgKey[]>;
  postCommitStatus(projectId: number, sha: string, status: CommitStatus): Promise<void>;
  /**
   * GET /users/:id/keys, every page: the user's SSH keys with their usage and expiry. Optional so
   * fakes of other steps need not have it; verification of a push requires it (VerifyPushDeps).
   */
  listUserSshKeys?(userId: number): Promise<GitLabSshKey[]>;
  /**
   * The user's own verified emails, lower-cased, the primary first: the primary `email` of GET
   * /users/:id (an administrator's token sees it; it counts once the account is confirmed) and the
   * confirmed secondary emails of GET /users/:id/emails. A committer email counts for a key only if
   * it is one of these (DESIGN §13). Optional as listUserSshKeys is.
   */
  listUserEmails?(userId: number): Promise<string[]>;
  /**
   * The commit a branch points at now, or null when GitLab has no such branch. Optional: where it
   * is absent (an adapter or a fake that cannot tell) the lifecycle skips the "still the head?" check.
   */
  getBranchHead?(projectId: number, branch: string): Promise<string | null>;
  /**
   * GET /projects/:id/events?action=pushed, the newest page only (at most 100, newest first): who
   * pushed which commit to which ref. The reconciler (scheduler/reconcile) reads the pusher of a
   * head no webhook announced from it. Optional: without it no missed push is looked for.
   */
  listPushEvents?(projectId: number): Promise<GitLabPushEvent[]>;
  /**
   * The newest commit status of each name on a commit (GET /projects/:id/repository/commits/:sha/statuses).
   * A restarted leader reads it before posting a final status it may have posted just before it
   * died (scheduler/lifecycle/ended-runs.ts). Optional: without it that status is posted again.
   */
  listCommitStatuses?(projectId: number, sha: string): Promise<Array<{ name: string; status: string; target_url: string | null }>>;
}

/**
 * What output review (DESIGN §10) asks of GitLab: the review project, secd's own user, and the merge
 * requests that hold a run's outputs. Throws GitLabError / GitLabAnswerError as GitLabApi does.
 */
export interface GitLabReviewApi {
  /** GET /projects/:url-encoded-path (`release.review_project` is a path). */
  getProjectByPath(path: string): Promise<GitLabProject>;
  /** GET /user: the token's own user (secd's bot), whose approvals never count. */
  getCurrentUser(): Promise<GitLabUser>;
  /**
   * POST /projects/:id/merge_requests. GitLab answers 409 (a GitLabError with status 409) when an
   * open merge request exists for the source branch, and 422 when either branch does not exist.
   */
  createMergeRequest(
    projectId: number,
    mr: { sourceBranch: string; targetBranch: string; title: string; description: string },
  ): Promise<GitLabMergeRequest>;
  /** GET /projects/:id/merge_requests?source_branch=…&state=all, every page. */
  findMergeRequests(projectId: number, sourceBranch: string): Promise<GitLabMergeRequest[]>;
  /** GET /projects/:id/merge_requests/:iid. */
  getMergeRequest(projectId: number, iid: number): Promise<GitLabMergeRequest>;
  /** GET /projects/:id/merge_requests/:iid/approvals: the users in `approved_by`, as GitLab lists them. */
  getMergeRequestApprovals(projectId: number, iid: number): Promise<Array<{ id: number; username: string }>>;
  /** PUT /projects/:id/merge_requests/:iid with state_event=close (closing a closed one changes nothing). */
  closeMergeRequest(projectId: number, iid: number): Promise<GitLabMergeRequest>;
  /** POST /projects/:id/merge_requests/:iid/notes: a comment by secd's user. */
  addMergeRequestNote(projectId: number, iid: number, body: string): Promise<void>;
}

/** An answer from GitLab secd cannot use (here: a non-2xx one), with its status code and body text. */
export class GitLabError extends Error {
  constructor(
    readonly status: number,
    readonly path: string,
    readonly body: string,
  ) {
    super(`GitLab answered ${status} for ${path}: ${body.slice(0, 200)}`);
    this.name = 'GitLabError';
  }
}

/** A 2xx answer that is not what GitLab documents: the first wrong field and what is wrong with it. */
export class GitLabAnswerError extends GitLabError {
  constructor(
    status: number,
    path: string,
    body: string,
    readonly field: string,
    readonly problem: string,
  ) {
    super(status, path, body);
    this.message = `GitLab's answer to ${path} is malformed at ${field}: ${problem}`;
    this.name = 'GitLabAnswerError';
  }
}
