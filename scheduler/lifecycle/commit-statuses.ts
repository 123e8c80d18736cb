/**
 * The GitLab commit status of each run, which is what a researcher sees beside their commit:
 * pending (verifying, queued) -> running (building, running) -> success | failed | canceled, its
 * description in words (status-words.ts): `queued: 2nd in line…`, `building on gpu-03`,
 * `running on gpu-03 (2× H100), 2 h 50 min left`. Posts for one run go out in the order they were
 * asked for, each after the previous one finished. A failed post is logged and dropped: GitLab being
 * down never stops a run.
 *
 * When to post. GitLab keeps every post as a record of the status, so words are not re-posted on
 * every change:
 * - a new GitLab state (pending -> running -> success) goes out at once;
 * - new words in the same GitLab state go out at once when the run's own state changed (verifying ->
 *   queued, building -> running); within one state at most once a minute (WORDS_EVERY_MS) and only
 *   when the words differ: a run moving from 2nd to 1st in line. Words held back meanwhile go out
 *   when the minute is up, unless the run moved on (a run placed at once never posts its place);
 * - the time left of a running run: at most every 30 minutes (TIME_LEFT_EVERY_MS), by `flush()`,
 *   which the leader calls on its one-second sweep and which also sends words a minute held back.
 * A repeated state is what GitLab's status state machine refuses in releases before gitlab-org/gitlab
 * MR 198626 (400 "Cannot transition status via :enqueue from :pending"): the first such refusal turns
 * repeats off for this leader's life (one info line), and the run page carries the words instead.
 */
import type { ReleaseStore } from '../../storage/release-store.js';
import type { RunRow, RunStore } from '../../storage/run-store.js';
import type { RunState } from '../../storage/run-states.js';
import { GitLabError, type CommitStatusState, type GitLabApi } from '../gitlab/gitlab-port.js';
import { errorText } from '../common/errors.js';
import { runWords, withSecdYmlWarnings, type GpuModel } from './status-words.js';
import type { Log } from '../common/log.js';
import type { NodeHandle } from './lifecycle-deps.js';

/** The status's name in GitLab's pipeline widget. */
const STATUS_NAME = 'secd';

/**
 * The second status of a run whose outputs are reviewed (DESIGN §10): pending "outputs held for
 * review (0/2 approvals)", then success when released or failed when withheld. A status of its own,
 * because GitLab's state machine never lets the run's `secd` status go from running back to pending.
 */
export const RELEASE_STATUS_NAME = 'secd/release';

/** New words in the same state (a place in line) go out at most this often per run. */
export const WORDS_EVERY_MS = 60_000;
/** A running run's time left goes out at most this often. */
export const TIME_LEFT_EVERY_MS = 30 * 60_000;

/** Which of a run's statuses a post is for. */
export type StatusChannel = 'run' | 'release';

/** What GitLab last took for a run's `secd` status in this leader's life. */
interface Shown {
  state: CommitStatusState;
  runState: RunState;
  text: string;
  atMs: number;
  /** When flush() last looked at its time left. */
  checkedMs: number;
}

/** What the poster needs; `nodes` and `now` give the words their node's GPU models and time left. */
export interface CommitStatusDeps {
  store: RunStore;
  releases?: ReleaseStore;
  gitlab: GitLabApi;
  log: Log;
  publicUrl: string;
  nodes?: () => NodeHandle[];
  now?: () => Date;
}

/** The ordered poster of commit statuses; `statusPosted` on the run remembers the last state GitLab took. */
export class CommitStatuses {
  private readonly chains = new Map<string, Promise<void>>();
  private readonly shown = new Map<string, Shown>();
  /** Words held back by the once-a-minute rule: posted by flush() when their minute is up. */
  private readonly heldBack = new Map<string, { state: CommitStatusState; runState: RunState; description: string }>();
  private repeatsRefused = false;

  constructor(private readonly deps: CommitStatusDeps) {}

  /** Post `state` for a run once every post asked for before it has finished; never rejects. */
  post(runId: string, state: CommitStatusState, description: string, channel: StatusChannel = 'run'): Promise<void> {
    const key = `${channel}:${runId}`;
    const previous = this.chains.get(key) ?? Promise.resolve();
    const next = previous.then(() => (channel === 'run' ? this.postRun(runId, state, description) : this.postRelease(runId, state, description)));
    this.chains.set(key, next);
    void next.then(() => {
      if (this.chains.get(key) === next) this.chains.delete(key);
    });
    return next;
  }

  /**
   * Post what waits: words held back by the once-a-minute rule, and the time left of runs running
   * since their last post 30 minutes ago. Resolves once the posts it started have finished; never
   * rejects (a post that fails is logged, a store that fails is logged here).
   */
  async flush(): Promise<void> {
    const started: Promise<void>[] = [];
    try {
      await this.startWaitingPosts(started);
    } catch (err) {
      this.deps.log.warn({ err: errorText(err) }, 'could not look for commit statuses to post again');
    }
    await Promise.all(started);
  }

  private async startWaitingPosts(started: Promise<void>[]): Promise<void> {
    if (this.repeatsRefused) return;
    const nowMs = this.nowMs();
    // Over copies: posts started here change both maps while this looks at the store.
    for (const [runId, held] of [...this.heldBack]) {
      if (this.heldBack.get(runId) !== held) continue;
      // Held-back words are a repeat of the state GitLab has, about the state the run was in: a run
      // that moved on since (placed, ended) has other words, or posted its own.
      const run = await this.deps.store.get(runId);
      // Replaced or posted while the store answered: the newer words are the ones to look at.
      if (this.heldBack.get(runId) !== held) continue;
      if (run?.statusPosted !== held.state || run.state !== held.runState) {
        this.heldBack.delete(runId);
        continue;
      }
      const last = this.shown.get(runId);
      if (!last || nowMs - last.atMs >= WORDS_EVERY_MS) started.push(this.post(runId, held.state, held.description));
    }
    for (const [runId, last] of [...this.shown]) {
      if (last.runState !== 'running' || this.heldBack.has(runId)) continue;
      if (nowMs - Math.max(last.atMs, last.checkedMs) < TIME_LEFT_EVERY_MS) continue;
      last.checkedMs = nowMs;
      const run = await this.deps.store.get(runId);
      if (run?.state === 'running' && run.statusPosted === 'running') started.push(this.post(runId, 'running', last.text));
      else if ((!run || run.statusPosted !== 'running') && this.shown.get(runId) === last) this.shown.delete(runId);
    }
  }

  /** One post of a run's `secd` status; a store or GitLab failure is logged (the chain never rejects). */
  private async postRun(runId: string, state: CommitStatusState, description: string): Promise<void> {
    try {
      await this.postRunNow(runId, state, description);
    } catch (err) {
      this.deps.log.warn({ err: errorText(err), runId, state, channel: 'run' }, 'could not post the commit status');
    }
  }

  private async postRunNow(runId: string, state: CommitStatusState, description: string): Promise<void> {
    const run = await this.deps.store.get(runId);
    if (!run) return;
    const text = oneLine(withSecdYmlWarnings(await this.wordsOf(run, description), run.warnings));
    const repeat = run.statusPosted === state;
    const nowMs = this.nowMs();
    const last = this.shown.get(runId);
    if (repeat) {
      // A final state is never posted twice (a restart posts the ones GitLab never took: ended-runs.ts).
      if (state !== 'pending' && state !== 'running') return;
      if (this.repeatsRefused || last?.text === text) {
        this.heldBack.delete(runId);
        return;
      }
      if (last && last.runState === run.state) {
        const every = run.state === 'running' ? TIME_LEFT_EVERY_MS : WORDS_EVERY_MS;
        if (nowMs - last.atMs < every) {
          if (run.state !== 'running') this.heldBack.set(runId, { state, runState: run.state, description });
          return;
        }
      }
    }
    try {
      await this.deps.gitlab.postCommitStatus(run.projectId, run.commit, { state, name: STATUS_NAME, target_url: this.targetUrl(run.id), description: text });
      if (!repeat) await this.deps.store.update(runId, { statusPosted: state });
      this.heldBack.delete(runId);
      if (state === 'pending' || state === 'running') {
        this.shown.set(runId, { state, runState: run.state, text, atMs: nowMs, checkedMs: nowMs });
      } else {
        this.shown.delete(runId);
      }
    } catch (err) {
      if (repeat && err instanceof GitLabError && err.status === 400) {
        this.repeatsRefused = true;
        this.heldBack.clear();
        this.deps.log.info({ runId, state }, 'GitLab refuses a repeated commit status state: new words go out only with a new state; the run page has them all');
        return;
      }
      this.deps.log.warn({ err: errorText(err), runId, state, channel: 'run' }, 'could not post the commit status');
    }
  }

  private async postRelease(runId: string, state: CommitStatusState, description: string): Promise<void> {
    try {
      const run = await this.deps.store.get(runId);
      const releases = this.deps.releases;
      if (!run || !releases) return;
      if ((await releases.get(runId))?.statusPosted === state) return;
      await this.deps.gitlab.postCommitStatus(run.projectId, run.commit, { state, name: RELEASE_STATUS_NAME, target_url: this.targetUrl(run.id), description: oneLine(description) });
      await releases.update(runId, { statusPosted: state });
    } catch (err) {
      this.deps.log.warn({ err: errorText(err), runId, state, channel: 'release' }, 'could not post the commit status');
    }
  }

  /** A building or running run's words (its node, GPUs and time left); any other run's: `description`. */
  private async wordsOf(run: RunRow, description: string): Promise<string> {
    if (run.state !== 'building' && run.state !== 'running') return description;
    const details = new Map<string, GpuModel>();
    const handle = this.deps.nodes?.().find((n) => n.id === run.node);
    for (const g of handle?.gpuDetails?.() ?? []) details.set(g.uuid, { name: g.name, migProfile: g.mig?.profile ?? null });
    const events = await this.deps.store.events(run.id);
    const clockFrom = events.find((e) => e.to === 'building')?.at ?? run.startedAt;
    const runforMs = (run.config as { runforMs?: unknown } | null)?.runforMs;
    return runWords(
      {
        state: run.state,
        reason: description,
        node: run.node,
        gpus: run.gpus.map((u) => details.get(u) ?? null),
        runforMs: typeof runforMs === 'number' ? runforMs : null,
        clockFrom,
      },
      new Date(this.nowMs()),
    );
  }

  private targetUrl(runId: string): string {
    return `${this.deps.publicUrl.replace(/\/$/, '')}/runs/${runId}`;
  }

  private nowMs(): number {
    return (this.deps.now?.() ?? new Date()).getTime();
  }
}

/** GitLab shows one line of at most 255 characters. */
function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 255 ? `${line.slice(0, 252)}...` : line;
}
