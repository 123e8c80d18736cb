/**
 * What GitLab's API answers about a merge request, built from the double's record: one merge request
 * (Entities::MergeRequest), its approvals in the documented shape (test/fixtures/gitlab/
 * merge_request_approvals_api.json: `approved_by: [{user: {...}}]`), and a note. Pure functions of
 * the state; the routes in merge-requests.ts send them.
 */
import type { DoubleState, DoubleUser } from './double-state.js';
import { apiUserJson, avatarUrl } from './http-helpers.js';
import type { DoubleMergeRequest, DoubleNote } from './merge-requests.js';

/** A user by id, secd's own user included. */
export function userOf(state: DoubleState, userId: number): DoubleUser | undefined {
  return userId === state.botUser.id ? state.botUser : state.users.get(userId);
}

function userJson(state: DoubleState, userId: number) {
  const user = userOf(state, userId);
  if (!user) throw new Error(`merge request answer: no user ${userId}`);
  return apiUserJson(state.url, user);
}

/** Entities::MergeRequest: the fields GitLab answers for one merge request. */
export function mergeRequestJson(state: DoubleState, mr: DoubleMergeRequest) {
  const project = state.project(mr.projectId);
  return {
    id: mr.id,
    iid: mr.iid,
    project_id: mr.projectId,
    title: mr.title,
    description: mr.description,
    state: mr.state,
    created_at: mr.createdAt,
    updated_at: mr.updatedAt,
    merged_by: null,
    merge_user: null,
    merged_at: null,
    closed_by: mr.closedBy === null ? null : userJson(state, mr.closedBy),
    closed_at: mr.closedAt,
    target_branch: mr.targetBranch,
    source_branch: mr.sourceBranch,
    user_notes_count: mr.notes.length,
    upvotes: 0,
    downvotes: 0,
    author: userJson(state, mr.authorId),
    assignees: [],
    assignee: null,
    reviewers: [],
    source_project_id: mr.projectId,
    target_project_id: mr.projectId,
    labels: [],
    draft: false,
    work_in_progress: false,
    milestone: null,
    merge_when_pipeline_succeeds: false,
    merge_status: 'can_be_merged',
    detailed_merge_status: mr.state === 'opened' ? 'mergeable' : 'not_open',
    sha: mr.sha,
    merge_commit_sha: null,
    squash_commit_sha: null,
    discussion_locked: null,
    should_remove_source_branch: null,
    force_remove_source_branch: false,
    reference: `!${mr.iid}`,
    references: { short: `!${mr.iid}`, relative: `!${mr.iid}`, full: `${project.path}!${mr.iid}` },
    web_url: mr.webUrl,
    time_stats: { time_estimate: 0, total_time_spent: 0, human_time_estimate: null, human_total_time_spent: null },
    squash: false,
    task_completion_status: { count: 0, completed_count: 0 },
    has_conflicts: false,
    blocking_discussions_resolved: true,
  };
}

/**
 * GET .../approvals in the documented shape. The double has no approval rules, so nothing is
 * required and `approved` only says someone approved: like GitLab's own, these fields are not secd's rule.
 */
export function approvalsJson(state: DoubleState, mr: DoubleMergeRequest) {
  return {
    id: mr.id,
    iid: mr.iid,
    project_id: mr.projectId,
    title: mr.title,
    description: mr.description,
    state: mr.state,
    created_at: mr.createdAt,
    updated_at: mr.updatedAt,
    merge_status: 'can_be_merged',
    approvals_required: 0,
    approvals_left: 0,
    approved: mr.approvals.length > 0,
    approved_by: mr.approvals.map((a) => {
      const user = userOf(state, a.userId);
      if (!user) throw new Error(`approvals answer: no user ${a.userId}`);
      return {
        user: {
          name: user.name,
          username: user.username,
          id: user.id,
          state: 'active',
          avatar_url: avatarUrl(user.email),
          web_url: `${state.url}/${user.username}`,
        },
      };
    }),
  };
}

/** One note (Entities::Note) on a merge request. */
export function noteJson(state: DoubleState, mr: DoubleMergeRequest, note: DoubleNote) {
  return {
    id: note.id,
    type: null,
    body: note.body,
    attachment: null,
    author: userJson(state, note.authorId),
    created_at: note.at,
    updated_at: note.at,
    system: false,
    noteable_id: mr.id,
    noteable_type: 'MergeRequest',
    project_id: mr.projectId,
    noteable_iid: mr.iid,
    resolvable: false,
    confidential: false,
    internal: false,
  };
}
