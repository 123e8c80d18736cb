/**
 * The GitLab commit status of each run, which is what a researcher sees beside their commit:
 * pending (verifying, queued) -> running -> success | failed | canceled. Posts for one run go out in
 * the order they were asked for, each after the previous one finished, and never the same state twice
 * in a row: GitLab answers 400 to a repeated pending or running. A failed post is logged and dropped:
 * GitLab being down never stops a run.
 */
import type { RunStore } from '../../storage/run-store.js';
import type { CommitStatusState, GitLabApi } from '../gitlab/gitlab-port.js';
import { errorText } from '../common/errors.js';
import type { Log } from '../common/log.js';

/** The status's name in GitLab's pipeline widget. */
const STATUS_NAME = 'secd';

/** The ordered poster of commit statuses; `statusPosted` on the run remembers the last one GitLab took. */
export class CommitStatuses {
  private readonly chains = new Map<string, Promise<void>>();

  constructor(private readonly deps: { store: RunStore; gitlab: GitLabApi; log: Log; publicUrl: string }) {}

  /** Post `state` for a run once every post asked for before it has finished; never rejects. */
  post(runId: string, state: CommitStatusState, description: string): Promise<void> {
    const previous = this.chains.get(runId) ?? Promise.resolve();
    const next = previous.then(async () => {
      const run = this.deps.store.get(runId);
      if (!run || run.statusPosted === state) return;
      try {
        await this.deps.gitlab.postCommitStatus(run.projectId, run.commit, {
          state,
          name: STATUS_NAME,
          target_url: `${this.deps.publicUrl.replace(/\/$/, '')}/runs/${run.id}`,
          description: oneLine(description),
        });
        this.deps.store.update(runId, { statusPosted: state });
      } catch (err) {
        this.deps.log.warn({ err: errorText(err), runId, state }, 'could not post the commit status');
      }
    });
    this.chains.set(runId, next);
    void next.then(() => {
      if (this.chains.get(runId) === next) this.chains.delete(runId);
    });
    return next;
  }
}

/** GitLab shows one line of at most 255 characters. */
function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 255 ? `${line.slice(0, 252)}...` : line;
}
