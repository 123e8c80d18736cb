/**
 * Push events as GitLab builds them after a push (Git::BranchHooksService, Git::TagHooksService and
 * Gitlab::DataBuilder::Push; shapes from test/fixtures/gitlab/*.json): one event per changed branch
 * or tag, the newest 20 commits oldest first with their changed files, and the true commit count.
 * Pure reading of the bare repository; sending the events is the hook sender's job.
 */
import { avatarUrl, lastSegment } from './http-helpers.js';
import type { DoubleProject, DoubleState, DoubleUser } from './double-state.js';

/** Forty zeros: GitLab's `before` for a created ref and `after` for a deleted one. */
export const BLANK_SHA = '0'.repeat(40);

/** A ref name -> object id snapshot of a repository. */
export type RefMap = Map<string, string>;

/** A commit as it appears in `commits[]` of a push event. */
export interface PushEventCommit {
  id: string;
  message: string;
  title: string;
  timestamp: string;
  url: string;
  author: { name: string; email: string };
  added: string[];
  modified: string[];
  removed: string[];
}

/** `project` of a push event (every field of push_event_webhook.json plus ci_config_path). */
export interface PushEventProject {
  id: number;
  name: string;
  description: string;
  web_url: string;
  avatar_url: string | null;
  git_ssh_url: string;
  git_http_url: string;
  namespace: string;
  visibility_level: number;
  path_with_namespace: string;
  default_branch: string;
  ci_config_path: string | null;
  homepage: string;
  url: string;
  ssh_url: string;
  http_url: string;
}

/** The body of a Push Hook / Tag Push Hook / System Hook (push) delivery. */
export interface PushEvent {
  object_kind: 'push' | 'tag_push';
  event_name: 'push' | 'tag_push';
  before: string;
  after: string;
  ref: string;
  ref_protected: boolean;
  checkout_sha: string | null;
  message: string | null;
  user_id: number;
  user_name: string;
  user_username: string;
  user_email: string;
  user_avatar: string;
  project_id: number;
  project: PushEventProject;
  commits: PushEventCommit[];
  total_commits_count: number;
  push_options: Record<string, never>;
  repository: {
    name: string;
    url: string;
    description: string;
    homepage: string;
    git_http_url: string;
    git_ssh_url: string;
    visibility_level: number;
  };
}

/** Builds the push events for one accepted push from the refs before and after it. */
export class PushEventBuilder {
  constructor(private readonly state: DoubleState) {}

  /** One event per changed branch or tag, as GitLab's post-receive processing builds them. */
  async build(project: DoubleProject, user: DoubleUser, before: RefMap, after: RefMap): Promise<PushEvent[]> {
    const refs = [...new Set([...before.keys(), ...after.keys()])]
      .filter((r) => r.startsWith('refs/heads/') || r.startsWith('refs/tags/'))
      .filter((r) => before.get(r) !== after.get(r))
      .sort();
    const events: PushEvent[] = [];
    for (const ref of refs) {
      const oldrev = before.get(ref) ?? BLANK_SHA;
      const newrev = after.get(ref) ?? BLANK_SHA;
      try {
        events.push(
          ref.startsWith('refs/tags/')
            ? await this.buildTagEvent(project, user, ref, oldrev, newrev)
            : await this.buildBranchEvent(project, user, ref, oldrev, newrev, after),
        );
      } catch (err) {
        this.state.internalErrors.push(`building the push event for ${project.path} ${ref}: ${String(err)}`);
      }
    }
    return events;
  }

  /**
   * What GitLab's "Test" button for push events sends (Gitlab::DataBuilder::Push.build_sample): the
   * default branch's newest three commits (fewer when it has fewer) as a push by `user`, the one who
   * clicked, usually an administrator, with `before` the oldest of them and `after` the newest.
   * Nothing was pushed: the commits are whoever's they are.
   */
  async buildTestEvent(project: DoubleProject, user: DoubleUser): Promise<PushEvent> {
    const repo = this.state.repoDir(project.path);
    const ref = `refs/heads/${project.defaultBranch}`;
    const newest = (await this.state.git(repo, ['rev-list', '--max-count=3', ref, '--'])).split('\n').filter(Boolean);
    if (newest.length === 0) throw new Error(`buildTestEvent: ${project.path} has no commits on ${project.defaultBranch}`);
    return this.pushEvent(project, user, {
      kind: 'push',
      ref,
      oldrev: newest[newest.length - 1]!,
      newrev: newest[0]!,
      protected: true,
      checkoutSha: newest[0]!,
      message: null,
      commits: await this.describeCommits(project, [...newest].reverse()),
      total: newest.length,
    });
  }

  /**
   * Git::BranchHooksService: a created default branch lists its history, another created branch
   * the commits not on the default branch, an update `oldrev..newrev`, a deletion nothing. The
   * payload carries the newest 20, oldest first, and the true count.
   */
  private async buildBranchEvent(
    project: DoubleProject,
    user: DoubleUser,
    ref: string,
    oldrev: string,
    newrev: string,
    after: RefMap,
  ): Promise<PushEvent> {
    const repo = this.state.repoDir(project.path);
    const branch = ref.slice('refs/heads/'.length);
    const isDefault = branch === project.defaultBranch;
    let range: string[] | null;
    if (newrev === BLANK_SHA) range = null;
    else if (oldrev !== BLANK_SHA) range = [newrev, `^${oldrev}`];
    else {
      const defaultSha = after.get(`refs/heads/${project.defaultBranch}`);
      range = !isDefault && defaultSha ? [newrev, `^${defaultSha}`] : [newrev];
    }
    let commits: PushEventCommit[] = [];
    let total = 0;
    if (range) {
      total = Number((await this.state.git(repo, ['rev-list', '--count', ...range, '--'])).trim());
      const newest = (await this.state.git(repo, ['rev-list', '--max-count=20', ...range, '--'])).split('\n').filter(Boolean);
      commits = await this.describeCommits(project, newest.reverse());
    }
    return this.pushEvent(project, user, {
      kind: 'push',
      ref,
      oldrev,
      newrev,
      protected: isDefault,
      checkoutSha: newrev === BLANK_SHA ? null : newrev,
      message: null,
      commits,
      total,
    });
  }

  /** Git::TagHooksService: the tag's commit as the only commit; the tag message as `message`. */
  private async buildTagEvent(project: DoubleProject, user: DoubleUser, ref: string, oldrev: string, newrev: string): Promise<PushEvent> {
    const repo = this.state.repoDir(project.path);
    let checkoutSha: string | null = null;
    let message: string | null = null;
    let commits: PushEventCommit[] = [];
    if (newrev !== BLANK_SHA) {
      checkoutSha = (await this.state.git(repo, ['rev-parse', '--verify', `${newrev}^{commit}`])).trim();
      const type = (await this.state.git(repo, ['cat-file', '-t', newrev])).trim();
      message = type === 'tag' ? await this.state.git(repo, ['for-each-ref', '--format=%(contents)', ref]) : '';
      message = message.replace(/\n+$/, '');
      commits = await this.describeCommits(project, [checkoutSha]);
    }
    return this.pushEvent(project, user, {
      kind: 'tag_push',
      ref,
      oldrev,
      newrev,
      protected: false,
      checkoutSha,
      message,
      commits,
      total: commits.length,
    });
  }

  /** Commit#hook_attrs(with_changed_files: true) for each sha, in the order given. */
  private async describeCommits(project: DoubleProject, shas: string[]): Promise<PushEventCommit[]> {
    if (shas.length === 0) return [];
    const out = await this.state.git(this.state.repoDir(project.path), [
      'log', '--no-walk=unsorted', '-z', '--format=%x1e%H%x1f%an%x1f%ae%x1f%cI%x1f%B%x1f',
      '--name-status', '-M', '--diff-merges=first-parent', ...shas, '--',
    ]);
    const web = this.state.projectUrls(project).web;
    const commits: PushEventCommit[] = [];
    for (const record of out.split('\x1e').slice(1)) {
      const fields = record.split('\x1f');
      const [id, authorName, authorEmail, timestamp, message] = fields as [string, string, string, string, string];
      const changes = fields.slice(5).join('\x1f').split('\0').filter((t) => t !== '' && t !== '\n').map((t) => t.replace(/^\n/, ''));
      const added: string[] = [];
      const modified: string[] = [];
      const removed: string[] = [];
      for (let i = 0; i < changes.length; ) {
        const code = changes[i]!;
        if (code.startsWith('R') || code.startsWith('C')) {
          added.push(changes[i + 2]!); // GitLab lists a renamed or copied file under its new path only
          i += 3;
        } else {
          const file = changes[i + 1]!;
          if (code === 'A') added.push(file);
          else if (code === 'D') removed.push(file);
          else modified.push(file);
          i += 2;
        }
      }
      commits.push({
        id,
        message,
        title: commitTitle(message),
        timestamp,
        url: `${web}/-/commit/${id}`,
        author: { name: authorName, email: authorEmail },
        added,
        modified,
        removed,
      });
    }
    return commits;
  }

  private pushEvent(
    project: DoubleProject,
    user: DoubleUser,
    e: {
      kind: 'push' | 'tag_push';
      ref: string;
      oldrev: string;
      newrev: string;
      protected: boolean;
      checkoutSha: string | null;
      message: string | null;
      commits: PushEventCommit[];
      total: number;
    },
  ): PushEvent {
    const hookProject = hookProjectOf(this.state, project);
    return {
      object_kind: e.kind,
      event_name: e.kind,
      before: e.oldrev,
      after: e.newrev,
      ref: e.ref,
      ref_protected: e.protected,
      checkout_sha: e.checkoutSha,
      message: e.message,
      user_id: user.id,
      user_name: user.name,
      user_username: user.username,
      user_email: user.email,
      user_avatar: avatarUrl(user.email),
      project_id: project.id,
      project: hookProject,
      commits: e.commits,
      total_commits_count: e.total,
      push_options: {},
      repository: {
        name: hookProject.name,
        url: hookProject.url,
        description: hookProject.description,
        homepage: hookProject.homepage,
        git_http_url: hookProject.git_http_url,
        git_ssh_url: hookProject.git_ssh_url,
        visibility_level: hookProject.visibility_level,
      },
    };
  }
}

/** `project` as every webhook of a project carries it (Project#hook_attrs). */
export function hookProjectOf(state: DoubleState, project: DoubleProject): PushEventProject {
  const urls = state.projectUrls(project);
  return {
    id: project.id,
    name: project.name,
    description: '',
    web_url: urls.web,
    avatar_url: null,
    git_ssh_url: urls.ssh,
    git_http_url: urls.http,
    namespace: lastSegment(project.namespace),
    visibility_level: 0,
    path_with_namespace: project.path,
    default_branch: project.defaultBranch,
    ci_config_path: null,
    homepage: urls.web,
    url: urls.ssh,
    ssh_url: urls.ssh,
    http_url: urls.http,
  };
}

/** Commit#title: the first line, cut at a word boundary to at most 81 characters when >= 100. */
export function commitTitle(message: string): string {
  if (message.trim() === '') return 'No commit message';
  const first = message.split(/[\r\n]/, 1)[0]!;
  if (first.length < 100) return first;
  const room = 81 - 3;
  const space = first.lastIndexOf(' ', room);
  return `${first.slice(0, space >= 0 ? space : room)}...`;
}
