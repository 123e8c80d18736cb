/**
 * Runs that have already ended, as the leader meets them again after a crash or a lost ack.
 *
 * - A node sends a run's result until the leader acknowledges it, so a leader killed between
 *   recording the result and sending the ack gets the same result again from the node: an expected
 *   case, acknowledged quietly (debug). A result that disagrees with the recorded end (another end
 *   state, another branch) is a real error: the recorded end stands and the log says both.
 * - A run's final commit status is posted after its end is committed; a leader killed in between
 *   posts it when it starts again (`postMissingFinalStatuses`), and when the node re-sends the result.
 *   `statusPosted` on the run says what GitLab took, so nothing is posted twice; for a post GitLab
 *   took just before the leader died, before it could write that down, the restarted leader reads
 *   the commit's statuses back from GitLab (GitLabApi.listCommitStatuses) and posts nothing when
 *   the run's final status is there.
 */
import type { RunReleaseRow } from '../../storage/release-store.js';
import type { RunRow } from '../../storage/run-store.js';
import { isTerminal, type RunState } from '../../storage/run-states.js';
import type { RunOutcome } from '../contract/run-spec.js';
import type { CommitStatusState } from '../gitlab/gitlab-port.js';
import { errorText } from '../common/errors.js';
import { failpoint } from '../common/failpoints.js';
import type { GitLabApi } from '../gitlab/gitlab-port.js';
import type { LifecycleContext } from './lifecycle-context.js';

/** How far back a restarted leader looks for ended runs whose final status GitLab never took. */
export const FINAL_STATUS_LOOKBACK_MS = 24 * 3600_000;

/** The `secd` commit status a run ending in `state` gets; null while it has not ended. */
export function finalStatusOf(state: RunState): CommitStatusState | null {
  if (!isTerminal(state)) return null;
  return state === 'succeeded' ? 'success' : state === 'cancelled' ? 'canceled' : 'failed';
}

/** Whether `state` is one of the final commit statuses (success, failed, canceled). */
export function isFinalStatus(state: CommitStatusState): boolean {
  return state === 'success' || state === 'failed' || state === 'canceled';
}

/** What the leader recorded of the end a node reported: a review run's node end and review branch, or the run's end and branch. */
export interface RecordedEnd {
  end: string;
  branch: string | null;
}

/** The end recorded for a run that ended (or is held for review), or null while it is still going. */
export async function recordedEndOf(ctx: LifecycleContext, run: RunRow): Promise<RecordedEnd | null> {
  const release = ctx.deps.release ? await ctx.deps.release.store.get(run.id) : undefined;
  // A review run's node end and branch are the release record's (the run's branch is the released one).
  if (release?.policy === 'review' && release.nodeEnd !== null && (run.state === 'held' || isTerminal(run.state))) {
    return { end: release.nodeEnd, branch: release.reviewBranch };
  }
  if (isTerminal(run.state)) return { end: run.state, branch: run.branch };
  return null;
}

/**
 * A result for a run that already ended: quiet when it says what was recorded (and the final status
 * goes out if it never did), an error when it disagrees. `mapped` is the outcome as the leader reads
 * it now (a cancel by a lost GPU reads as failed).
 */
export async function onResultOfEndedRun(
  ctx: LifecycleContext,
  nodeId: string,
  run: RunRow,
  recorded: RecordedEnd,
  given: RunOutcome,
  mapped: RunOutcome,
): Promise<void> {
  const { log } = ctx.deps;
  const sameEnd = recorded.end === given.end || recorded.end === mapped.end;
  if (sameEnd && recorded.branch === given.branch) {
    log.debug({ runId: run.id, nodeId, end: recorded.end, branch: recorded.branch }, 'a result re-sent for a run that already ended (the node sends it until acknowledged): acknowledged again');
    postFinalStatusIfMissing(ctx, run);
    return;
  }
  log.error(
    {
      runId: run.id,
      nodeId,
      state: run.state,
      recorded,
      reported: { end: given.end, branch: given.branch, reason: given.reason },
    },
    'a node reported a result that disagrees with the recorded end of the run; the recorded end stands',
  );
}

/** Post a run's final status again when GitLab never took it (see the module comment). */
function postFinalStatusIfMissing(ctx: LifecycleContext, run: RunRow): void {
  const final = finalStatusOf(run.state);
  if (final !== null && run.statusPosted !== final) ensureStatus(ctx, run, 'run', final, run.reason);
}

/** The names of a run's two statuses (commit-statuses.ts's STATUS_NAME and RELEASE_STATUS_NAME). */
const STATUS_NAMES = { run: 'secd', release: 'secd/release' } as const;

/**
 * Post a status the leader has no record of GitLab taking, unless GitLab shows it already for this
 * run (its target URL names the run): the leader may have died after GitLab took it and before it
 * wrote that down. Without GitLab's list (or when reading it fails) the status is posted.
 */
function ensureStatus(ctx: LifecycleContext, run: RunRow, channel: 'run' | 'release', state: CommitStatusState, description: string): void {
  const key = `${channel}:${run.id}`;
  if (ctx.finalChecks.has(key)) return;
  ctx.finalChecks.add(key);
  const { gitlab, log } = ctx.deps;
  const check = (async () => {
    if (gitlab.listCommitStatuses) {
      try {
        const shown = (await gitlab.listCommitStatuses(run.projectId, run.commit)).find((s) => s.name === STATUS_NAMES[channel]);
        if (shown?.status === state && (shown.target_url ?? '').endsWith(`/runs/${run.id}`)) {
          if (channel === 'run') await ctx.deps.store.update(run.id, { statusPosted: state });
          else await ctx.deps.release?.store.update(run.id, { statusPosted: state });
          log.info({ runId: run.id, state, channel }, 'GitLab already shows the final status (taken just before a restart): not posted again');
          return;
        }
      } catch (err) {
        log.warn({ runId: run.id, err: errorText(err) }, 'could not read the commit statuses from GitLab: posting the final status');
      }
    }
    ctx.postStatus(run.id, state, description, channel);
  })().finally(() => ctx.finalChecks.delete(key));
  ctx.track(check);
}

/**
 * After a restart: the final status of every run that ended within the lookback and whose status
 * GitLab never took, and of a reviewed run its `secd/release` status (released or withheld) too.
 */
export async function postMissingFinalStatuses(ctx: LifecycleContext): Promise<number> {
  const { store, now } = ctx.deps;
  const since = now().getTime() - FINAL_STATUS_LOOKBACK_MS;
  let posted = 0;
  for (const run of await store.list({ limit: 1000 })) {
    const final = finalStatusOf(run.state);
    if (final === null) continue;
    // A reviewed run ends when its review is decided, which may be days after its node finished.
    const row = ctx.deps.release ? await ctx.deps.release.store.get(run.id) : undefined;
    const times = [run.finishedAt, row?.decidedAt].map((t) => Date.parse(t ?? '')).filter(Number.isFinite);
    if (times.length === 0 || Math.max(...times) < since) continue;
    const release = missingReleaseStatus(row);
    if (release) {
      ensureStatus(ctx, run, 'release', release.state, release.description);
      posted += 1;
    }
    if (run.statusPosted === final) continue;
    ensureStatus(ctx, run, 'run', final, run.reason);
    posted += 1;
  }
  return posted;
}

/** The `secd/release` status a decided review never got posted, in the release desk's words. */
function missingReleaseStatus(row: RunReleaseRow | undefined): { state: CommitStatusState; description: string } | null {
  if (!row || row.outcome === null) return null;
  const state: CommitStatusState = row.outcome === 'released' ? 'success' : 'failed';
  if (row.statusPosted === state) return null;
  const by = row.decidedBy ?? 'an unknown reviewer';
  return { state, description: row.outcome === 'released' ? `released after review by ${by}` : `outputs withheld at review by ${by}` };
}

/**
 * `gitlab` as the commit-status poster uses it, with the failpoint `leader.status.taken` passed once
 * GitLab took a run's final status and before the leader records that (crash tests kill it there).
 * Every other call is the API's own (through the prototype).
 */
export function withFailpointAfterFinalPosts(gitlab: GitLabApi): GitLabApi {
  const wrapped = Object.create(gitlab) as GitLabApi;
  wrapped.postCommitStatus = async (projectId, sha, status) => {
    await gitlab.postCommitStatus(projectId, sha, status);
    if (status.name === STATUS_NAMES.run && isFinalStatus(status.state)) failpoint('leader.status.taken');
  };
  return wrapped;
}
