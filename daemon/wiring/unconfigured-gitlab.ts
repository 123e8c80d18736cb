/**
 * The GitLab a leader without a `gitlab:` section talks to: every call fails with the same sentence,
 * so the lifecycle's usual error paths say it (the webhook itself already answers 503).
 */
import type { GitLabApi } from '../../scheduler/gitlab/gitlab-port.js';

/** A GitLab port whose every call throws "GitLab is not configured". */
export const unconfiguredGitLab: GitLabApi = {
  async getProject() {
    throw new Error('GitLab is not configured');
  },
  async listProjectMembers() {
    throw new Error('GitLab is not configured');
  },
  async listUserGpgKeys() {
    throw new Error('GitLab is not configured');
  },
  async postCommitStatus() {
    throw new Error('GitLab is not configured');
  },
};
