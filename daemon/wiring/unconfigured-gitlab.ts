/**
 * The GitLab a leader without a `gitlab:` section talks to: every call fails with the same sentence,
 * so the lifecycle's usual error paths say it (the webhook itself already answers 503).
 */
import type { GitLabApi, GitLabReviewApi } from '../../scheduler/gitlab/gitlab-port.js';

const notConfigured = (): never => {
  throw new Error('GitLab is not configured');
};

/** A GitLab port whose every call throws "GitLab is not configured". */
export const unconfiguredGitLab: GitLabApi & GitLabReviewApi = {
  getProject: async () => notConfigured(),
  listProjectMembers: async () => notConfigured(),
  listUserGpgKeys: async () => notConfigured(),
  postCommitStatus: async () => notConfigured(),
  getProjectByPath: async () => notConfigured(),
  getCurrentUser: async () => notConfigured(),
  createMergeRequest: async () => notConfigured(),
  findMergeRequests: async () => notConfigured(),
  getMergeRequest: async () => notConfigured(),
  getMergeRequestApprovals: async () => notConfigured(),
  closeMergeRequest: async () => notConfigured(),
  addMergeRequestNote: async () => notConfigured(),
};

/**
 * A GitLab port with the review calls: `gitlab` itself when it has them, else one whose review calls
 * fail saying so (a replacement client in tests of other paths). Held runs then stay held: a review
 * that cannot be opened releases nothing.
 */
export function withReviewApi(gitlab: GitLabApi & Partial<GitLabReviewApi>): GitLabApi & GitLabReviewApi {
  const missing = async (): Promise<never> => {
    throw new Error('this GitLab client cannot open output reviews');
  };
  return {
    getProject: (...a) => gitlab.getProject(...a),
    listProjectMembers: (...a) => gitlab.listProjectMembers(...a),
    listUserGpgKeys: (...a) => gitlab.listUserGpgKeys(...a),
    postCommitStatus: (...a) => gitlab.postCommitStatus(...a),
    ...(gitlab.getBranchHead ? { getBranchHead: (p: number, b: string) => gitlab.getBranchHead!(p, b) } : {}),
    getProjectByPath: gitlab.getProjectByPath?.bind(gitlab) ?? missing,
    getCurrentUser: gitlab.getCurrentUser?.bind(gitlab) ?? missing,
    createMergeRequest: gitlab.createMergeRequest?.bind(gitlab) ?? missing,
    findMergeRequests: gitlab.findMergeRequests?.bind(gitlab) ?? missing,
    getMergeRequest: gitlab.getMergeRequest?.bind(gitlab) ?? missing,
    getMergeRequestApprovals: gitlab.getMergeRequestApprovals?.bind(gitlab) ?? missing,
    closeMergeRequest: gitlab.closeMergeRequest?.bind(gitlab) ?? missing,
    addMergeRequestNote: gitlab.addMergeRequestNote?.bind(gitlab) ?? missing,
  };
}
