/**
 * The handful of GitLab API calls secd makes, in secd's own types. The only HTTP adapter is
 * scheduler/gitlab/gitlab-client.ts; tests of logic use fakes, tests of the adapter use test/doubles/gitlab-double.ts.
 */

/** GET /projects/:id (fields secd reads). */
export interface GitLabProject {
  id: number;
  path_with_namespace: string;
  default_branch: string;
  http_url_to_repo: string;
}

/** One entry of GET /projects/:id/members/all. */
export interface GitLabMember {
  id: number;
  username: string;
  name: string;
  state: string;
  access_level: number;
}

/** One entry of GET /users/:id/gpg_keys: the armored public key only, no fingerprint. */
export interface GitLabGpgKey {
  id: number;
  key: string;
  created_at: string;
}

/** States GitLab accepts on POST /projects/:id/statuses/:sha. */
export type CommitStatusState = 'pending' | 'running' | 'success' | 'failed' | 'canceled' | 'skipped';

/** Body of POST /projects/:id/statuses/:sha. */
export interface CommitStatus {
  state: CommitStatusState;
  name: string;
  target_url?: string;
  description?: string;
}

/** One entry of GET /users?username= (fields secd reads). */
export interface GitLabUser {
  id: number;
  username: string;
  name: string;
  state: string;
}

/** Looking users up by name (`secd admin grant` checks the user exists); throws GitLabError on a non-2xx answer. */
export interface GitLabUserLookup {
  /** The user with exactly this username (GitLab compares case-insensitively), or null. */
  findUserByUsername(username: string): Promise<GitLabUser | null>;
}

/** What secd asks of GitLab. Every method throws GitLabError on a non-2xx answer. */
export interface GitLabApi {
  getProject(projectId: number): Promise<GitLabProject>;
  /** All members including inherited ones, every page. */
  listProjectMembers(projectId: number): Promise<GitLabMember[]>;
  listUserGpgKeys(userId: number): Promise<GitLabGpgKey[]>;
  postCommitStatus(projectId: number, sha: string, status: CommitStatus): Promise<void>;
}

/** A non-2xx answer from GitLab, with its status code and body text. */
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
