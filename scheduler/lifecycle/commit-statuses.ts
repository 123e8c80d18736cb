/**
 * The GitLab commit status of each run, which is what a researcher sees beside their commit:
 * pending (verifying, queued) -> running -> success | failed | canceled. Posts for one run go out in
 * the order they were asked for, each after the previous one finished, and never the same state twice
 * in a row: GitLab answers 400 to a repeated pending or running. A failed post is logged and dropped:
 * GitLab being down never stops a run.
 */
import type { ReleaseStore } from '../../storage/release-store.js';
import type { RunStore } from '../../storage/run-store.js';
import type { CommitStatusState, GitLabApi } from '../gitlab/gitlab-port.js';
import { errorText } from '../common/errors.js';
import { withSecdYmlWarnings } from './status-words.js';
import type { Log } from '../common/log.js';

/** The status's name in GitLab's pipeline widget. */
const STATUS_NAME = 'secd';

/**
 * The second status of a run whose outputs are reviewed (DESIGN §10): pending "outputs held for
 * review (0/2 approvals)", then success when released or failed when withheld. A status of its own,
 * because GitLab's state machine never lets the run's `secd` status go from running back to pending.
 */
export const RELEASE_STATUS_NAME = 'secd/release';

/** Which of a run's statuses a post is for. */
export type StatusChannel = 'run' | 'release';

/** The ordered poster of commit statuses; `statusPosted` on the run remembers the last one GitLab took. */
export class CommitStatuses {
  private readonly chains = new Map<string, Promise<void>>();

  constructor(private readonly deps: { store: RunStore; releases?: ReleaseStore; gitlab: GitLabApi; log: Log; publicUrl: string }) {}

  /** Post `state` for a run once every post asked for before it has finished; never rejects. */
  post(runId: string, state: CommitStatusState, description: string, channel: StatusChannel = 'run'): Promise<void> {
    const key = `${channel}:${runId}`;
    const previous = this.chains.get(key) ?? Promise.resolve();
    const next = previous.then(async () => {
      const run = this.deps.store.get(runId);
      if (!run) return;
      const releases = this.deps.releases;
      if (channel === 'release' && !releases) return;
      const posted = channel === 'run' ? run.statusPosted : (releases?.get(runId)?.statusPosted ?? null);
      if (posted === state) return;
      try {
        await this.deps.gitlab.postCommitStatus(run.projectId, run.commit, {
          state,
          name: channel === 'run' ? STATUS_NAME : RELEASE_STATUS_NAME,
          target_url: `${this.deps.publicUrl.replace(/\/$/, '')}/runs/${run.id}`,
          // The run's own status carries secd.yml's warnings (an unknown key runs with the default):
          // GitLab refuses a second pending, so the first status that goes out after them says so.
          description: oneLine(channel === 'run' ? withSecdYmlWarnings(description, run.warnings) : description),
        });
        if (channel === 'run') this.deps.store.update(runId, { statusPosted: state });
        else releases?.update(runId, { statusPosted: state });
      } catch (err) {
        this.deps.log.warn({ err: errorText(err), runId, state, channel }, 'could not post the commit status');
      }
    });
    this.chains.set(key, next);
    void next.then(() => {
      if (this.chains.get(key) === next) this.chains.delete(key);
    });
    return next;
  }
}

/** GitLab shows one line of at most 255 characters. */
function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 255 ? `${line.slice(0, 252)}...` : line;
}
