/**
 * The project activity GitLab records for pushes (EventCreateService#push after each pushed ref,
 * PushEventPayloadService for `push_data`) and answers on GET /projects/:id/events, shaped after
 * test/fixtures/gitlab/api_project_events_pushed.json: `author` is the pusher, `commit_from` null for
 * a created ref, `commit_to` null for a deleted one, `commit_title` the newest commit's first line
 * cut to 70 characters. Recorded for every accepted push whether or not a webhook reached anyone,
 * as GitLab does, so a test can push while secd is down and secd can still learn who pushed.
 *
 * Deliberate simplifications: no bulk-push event (GitLab folds a push of more than
 * `push_event_activities_limit` refs into one event without refs; the double records one per ref),
 * and only the `action`, `target_type`, `sort`, `page` and `per_page` parameters are applied (the
 * `before`/`after` date filters are ignored).
 */
import type { DoubleProject, DoubleUser, DoubleState } from './double-state.js';
import { apiUserJson, pageOf } from './http-helpers.js';
import { BLANK_SHA, type PushEvent } from './push-events.js';

/** One recorded push event as the API answers it. */
export interface ProjectPushEvent {
  id: number;
  title: null;
  project_id: number;
  action_name: 'pushed to' | 'pushed new' | 'deleted';
  target_id: null;
  target_iid: null;
  target_type: null;
  author_id: number;
  target_title: null;
  created_at: string;
  author: ReturnType<typeof apiUserJson>;
  imported: false;
  imported_from: 'none';
  push_data: {
    commit_count: number;
    action: 'pushed' | 'created' | 'removed';
    ref_type: 'branch' | 'tag';
    commit_from: string | null;
    commit_to: string | null;
    ref: string;
    commit_title: string | null;
    ref_count: null;
  };
  author_username: string;
}

/** Every project's push events, oldest first; ids rise across projects as GitLab's do. */
export class ProjectEvents {
  private readonly byProject = new Map<number, ProjectPushEvent[]>();
  private nextId = 1;

  constructor(private readonly state: DoubleState) {}

  /** Record the event of one pushed ref, by the user who pushed it. */
  record(project: DoubleProject, user: DoubleUser, push: PushEvent): ProjectPushEvent {
    const created = push.before === BLANK_SHA;
    const removed = push.after === BLANK_SHA;
    const tag = push.ref.startsWith('refs/tags/');
    const newest = push.commits.at(-1);
    const event: ProjectPushEvent = {
      id: this.nextId++,
      title: null,
      project_id: project.id,
      action_name: created ? 'pushed new' : removed ? 'deleted' : 'pushed to',
      target_id: null,
      target_iid: null,
      target_type: null,
      author_id: user.id,
      target_title: null,
      created_at: new Date().toISOString(),
      author: apiUserJson(this.state.url, user),
      imported: false,
      imported_from: 'none',
      push_data: {
        commit_count: push.total_commits_count,
        action: created ? 'created' : removed ? 'removed' : 'pushed',
        ref_type: tag ? 'tag' : 'branch',
        commit_from: created ? null : push.before,
        commit_to: removed ? null : push.after,
        ref: push.ref.replace(/^refs\/(heads|tags)\//, ''),
        commit_title: newest ? newest.message.split('\n')[0]!.trim().slice(0, 70) : null,
        ref_count: null,
      },
      author_username: user.username,
    };
    let list = this.byProject.get(project.id);
    if (!list) this.byProject.set(project.id, (list = []));
    list.push(event);
    return event;
  }

  /** GET /projects/:id/events: one page, newest first unless `sort=asc`. */
  list(project: DoubleProject, query: URLSearchParams): { slice: ProjectPushEvent[]; headers: Record<string, string> } {
    const action = query.get('action');
    const targetType = query.get('target_type');
    // Every event the double records is a push: any other action or target type lists nothing.
    const all = (action === null || action === 'pushed') && targetType === null ? (this.byProject.get(project.id) ?? []) : [];
    const ordered = query.get('sort') === 'asc' ? [...all] : [...all].reverse();
    return pageOf(ordered, query);
  }
}
