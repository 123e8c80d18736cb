/**
 * Missed pushes (DESIGN §11): GitLab does not retry a webhook delivery that failed, so a push made
 * while the leader was down or restarting would never run. The reconciler reads each known project's
 * run-branch head and decides here, without I/O, whether that head is a push secd never saw, and if
 * so which push it was.
 *
 * Decisions made here:
 * - Only the branch a push would run is read: the project's default branch (or `gitlab.run_branch`),
 *   never a results branch (`secd-…`) and never the output review project, as intake decides for a
 *   webhook (scheduler/intake/intake.ts); the synthesized push then goes through intake's own
 *   classification too, so the two can never disagree.
 * - A head is covered when any run, accepted or rejected, exists for that (project, ref, commit): a
 *   rejected push was answered, finding it again would only repeat the refusal.
 * - The pusher is whoever GitLab's push event says pushed that head (`author` of the newest event
 *   whose `push_data.commit_to` is the head on that branch), never the commit's author or committer:
 *   DESIGN §13's identity rules (membership, the head signed by the pusher's own key) then apply as
 *   to any push. No such event (a bulk push of many refs, more than the newest 100 pushes ago,
 *   events expired after 3 years): the head is left alone and logged, since running it as nobody,
 *   or as a guess, is worse than not running it.
 * - The push's `before` is the event's `commit_from` (forty zeros for a created branch), GitLab's
 *   own `before` for that push, not "the last head secd ran": with the same (project, ref, before,
 *   after) as the webhook GitLab tried to send, intake's replay check (`findPush`) makes a late or
 *   re-sent delivery of the same push a duplicate of the reconciled run, and the other way round.
 *   The range checked is no smaller: verification checks every ancestor secd did not verify itself
 *   (scheduler/verify/verify-push.ts), whatever `before` says.
 */
import type { GitLabProject, GitLabPushEvent } from '../gitlab/gitlab-port.js';
import { RESULTS_BRANCH_PREFIX, type IntakeConfig } from '../intake/intake.js';

/** Forty zeros: GitLab's `before` of a push that created its branch. */
export const BLANK_COMMIT = '0'.repeat(40);

/** Where runs start from, as intake reads it (`gitlab.run_branch` and `release.review_project`). */
export type RunBranchSettings = Pick<IntakeConfig, 'runBranch' | 'reviewProject'>;

/** The branch of a project whose head the reconciler reads, or why it reads none. */
export type RunBranchChoice =
  | { ok: true; branch: string }
  | { ok: false; code: 'review_project' | 'no_default_branch' | 'results_branch'; reason: string };

/** Which branch of `project` a push would start a run from (intake's rules for a webhook). */
export function runBranchOf(project: Pick<GitLabProject, 'path_with_namespace' | 'default_branch'>, s: RunBranchSettings): RunBranchChoice {
  if (s.reviewProject !== undefined && project.path_with_namespace.toLowerCase() === s.reviewProject.toLowerCase()) {
    return { ok: false, code: 'review_project', reason: `the output review project (${s.reviewProject}) never starts runs` };
  }
  const branch = s.runBranch === 'default' ? project.default_branch : s.runBranch;
  if (branch === null) return { ok: false, code: 'no_default_branch', reason: 'the project has no default branch yet' };
  if (branch.startsWith(RESULTS_BRANCH_PREFIX)) return { ok: false, code: 'results_branch', reason: `${branch} is a secd results branch` };
  return { ok: true, branch };
}

/** One run-branch head as GitLab shows it now. */
export interface HeadSeen {
  projectId: number;
  /** `refs/heads/<branch>` */
  ref: string;
  commit: string;
}

/**
 * The heads no run covers, in the order given; `hasRunAt` is the runs table (any state), asked
 * about one head after another (the only I/O here is the caller's).
 */
export async function uncoveredHeads(
  heads: readonly HeadSeen[],
  hasRunAt: (projectId: number, ref: string, commit: string) => boolean | Promise<boolean>,
): Promise<HeadSeen[]> {
  const uncovered: HeadSeen[] = [];
  for (const h of heads) if (!(await hasRunAt(h.projectId, h.ref, h.commit))) uncovered.push(h);
  return uncovered;
}

/** The push that made a head, as GitLab's push events tell it. */
export interface MissedPush {
  before: string;
  after: string;
  pusher: { id: number; username: string; name: string };
  /** the push event's id, for logs */
  eventId: number;
}

/**
 * The push that moved `branch` to `head`: the newest push event (GitLab lists them newest first)
 * of that branch whose `commit_to` is the head. Null when the events do not say.
 */
export function pushOfHead(events: readonly GitLabPushEvent[], branch: string, head: string): MissedPush | null {
  const event = events.find(
    (e) => e.push_data.ref_type === 'branch' && e.push_data.ref === branch && e.push_data.action !== 'removed' && e.push_data.commit_to === head,
  );
  if (!event) return null;
  return {
    before: event.push_data.commit_from ?? BLANK_COMMIT,
    after: head,
    pusher: { id: event.author.id, username: event.author.username, name: event.author.name },
    eventId: event.id,
  };
}

/**
 * The Push Hook body GitLab would have sent for `push` (the fields intake reads; `commits` empty and
 * `total_commits_count` 0, since verification lists `before..after` in git itself). `http_url_to_repo`
 * is stored as the run's fetch URL, as a webhook's `git_http_url` would be.
 */
export function missedPushBody(project: GitLabProject, branch: string, push: MissedPush): Record<string, unknown> {
  const webUrl = project.http_url_to_repo.replace(/\.git$/, '');
  return {
    object_kind: 'push',
    event_name: 'push',
    before: push.before,
    after: push.after,
    ref: `refs/heads/${branch}`,
    checkout_sha: push.after,
    user_id: push.pusher.id,
    user_username: push.pusher.username,
    user_name: push.pusher.name,
    user_email: null,
    project_id: project.id,
    project: {
      id: project.id,
      path_with_namespace: project.path_with_namespace,
      default_branch: project.default_branch,
      git_http_url: project.http_url_to_repo,
      web_url: webUrl,
    },
    commits: [],
    total_commits_count: 0,
  };
}

/**
 * The delivery key of a reconciled push: one per (project, ref, before, after), so a second round
 * that finds the same head before its run is visible claims nothing new. A webhook of the same push
 * has GitLab's own key; the (project, ref, before, after) check catches that one.
 */
export function reconcileDeliveryKey(projectId: number, ref: string, push: Pick<MissedPush, 'before' | 'after'>): string {
  return `secd-reconcile:${projectId}:${push.before}:${push.after}:${ref}`;
}

/**
 * The projects of one round: at most `cap`, starting after `cursor` (the last id of the round
 * before) and wrapping around, so every known project is read within ceil(n / cap) rounds.
 */
export function projectsOfRound(known: readonly number[], cursor: number | null, cap: number): { ids: number[]; cursor: number | null } {
  if (known.length === 0) return { ids: [], cursor: null };
  const sorted = [...known].sort((a, b) => a - b);
  if (sorted.length <= cap) return { ids: sorted, cursor: null };
  const start = cursor === null ? 0 : sorted.findIndex((id) => id > cursor);
  const from = start < 0 ? 0 : start;
  const ids = [...sorted.slice(from), ...sorted.slice(0, from)].slice(0, cap);
  return { ids, cursor: ids[ids.length - 1]! };
}
