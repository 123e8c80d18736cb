/**
 * Merge-request events as GitLab builds them (Gitlab::DataBuilder::MergeRequest / hook_attrs; shape
 * from test/fixtures/gitlab/merge_request_event_webhook.json): the acting user, the project, the
 * merge request's attributes with `action` and its `last_commit`, and what changed. The same body
 * goes to project hooks ("Merge Request Hook") and system hooks ("System Hook"). Like GitLab's, the
 * event proves nothing: `user` and `action` are what the sender says, which is why secd re-reads
 * the API. Pure reading of the bare repository; sending is the hook sender's job.
 */
import type { DoubleProject, DoubleState, DoubleUser } from './double-state.js';
import { avatarUrl } from './http-helpers.js';
import { commitTitle, hookProjectOf, type PushEventProject } from './push-events.js';

/** What happened, as `object_attributes.action` says it (the values GitLab documents). */
export type MergeRequestAction =
  | 'open'
  | 'close'
  | 'reopen'
  | 'update'
  | 'approved'
  | 'unapproved'
  | 'approval'
  | 'unapproval'
  | 'merge';

/** The merge request as the event describes it, taken when the event happened. */
export interface MergeRequestSnapshot {
  id: number;
  iid: number;
  title: string;
  description: string;
  sourceBranch: string;
  targetBranch: string;
  state: 'opened' | 'closed' | 'merged' | 'locked';
  sha: string;
  authorId: number;
  createdAt: string;
  updatedAt: string;
  webUrl: string;
}

/** A `changes` entry: the value before and after. */
export interface Change {
  previous: unknown;
  current: unknown;
}

/** The body of a Merge Request Hook delivery (the fields of the documented sample secd's tests meet). */
export interface MergeRequestEvent {
  object_kind: 'merge_request';
  event_type: 'merge_request';
  user: { id: number; name: string; username: string; avatar_url: string; email: string };
  project: PushEventProject;
  repository: { name: string; url: string; description: string; homepage: string };
  object_attributes: Record<string, unknown> & {
    id: number;
    iid: number;
    action: MergeRequestAction;
    state: string;
    source_branch: string;
    target_branch: string;
    last_commit: { id: string; message: string; title: string; timestamp: string; url: string; author: { name: string; email: string } };
    url: string;
  };
  labels: never[];
  changes: Record<string, Change>;
  assignees: never[];
  reviewers: never[];
}

const STATE_ID = { opened: 1, closed: 2, merged: 3, locked: 4 } as const;

/** GitLab's hook timestamps ("2013-12-03T17:23:34Z": seconds, no fraction). */
export function hookTime(iso: string): string {
  return iso.replace(/\.\d+Z$/, 'Z');
}

/** Build one event; `extra` adds attributes some actions carry (`oldrev` on an update with new commits). */
export async function buildMergeRequestEvent(
  state: DoubleState,
  project: DoubleProject,
  mr: MergeRequestSnapshot,
  user: DoubleUser,
  action: MergeRequestAction,
  changes: Record<string, Change> = {},
  extra: Record<string, unknown> = {},
): Promise<MergeRequestEvent> {
  const hookProject = hookProjectOf(state, project);
  const lastCommit = await describeCommit(state, project, mr.sha);
  return {
    object_kind: 'merge_request',
    event_type: 'merge_request',
    user: { id: user.id, name: user.name, username: user.username, avatar_url: avatarUrl(user.email), email: user.email },
    project: hookProject,
    repository: { name: hookProject.name, url: hookProject.url, description: hookProject.description, homepage: hookProject.homepage },
    object_attributes: {
      id: mr.id,
      iid: mr.iid,
      target_branch: mr.targetBranch,
      source_branch: mr.sourceBranch,
      source_project_id: project.id,
      author_id: mr.authorId,
      assignee_ids: [],
      assignee_id: null,
      reviewer_ids: [],
      title: mr.title,
      created_at: hookTime(mr.createdAt),
      updated_at: hookTime(mr.updatedAt),
      last_edited_at: null,
      last_edited_by_id: null,
      milestone_id: null,
      state_id: STATE_ID[mr.state],
      state: mr.state,
      blocking_discussions_resolved: true,
      work_in_progress: false,
      draft: false,
      first_contribution: false,
      merge_status: 'can_be_merged',
      target_project_id: project.id,
      description: mr.description,
      prepared_at: hookTime(mr.createdAt),
      total_time_spent: 0,
      time_change: 0,
      human_total_time_spent: null,
      human_time_change: null,
      human_time_estimate: null,
      url: mr.webUrl,
      source: hookProject,
      target: hookProject,
      last_commit: lastCommit,
      labels: [],
      action,
      detailed_merge_status: mr.state === 'opened' ? 'mergeable' : 'not_open',
      ...extra,
    },
    labels: [],
    changes,
    assignees: [],
    reviewers: [],
  };
}

/** Commit#hook_attrs (without changed files) for the merge request's head. */
async function describeCommit(state: DoubleState, project: DoubleProject, sha: string): Promise<MergeRequestEvent['object_attributes']['last_commit']> {
  const out = await state.git(state.repoDir(project.path), ['log', '-1', '-z', '--format=%an%x1f%ae%x1f%cI%x1f%B', sha, '--']);
  const [name, email, timestamp, message] = out.replace(/\0$/, '').split('\x1f') as [string, string, string, string];
  return {
    id: sha,
    message,
    title: commitTitle(message),
    timestamp,
    url: `${state.projectUrls(project).web}/-/commit/${sha}`,
    author: { name, email },
  };
}
