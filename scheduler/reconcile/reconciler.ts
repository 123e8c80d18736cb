/**
 * The reconciler loop (DESIGN §11): on leader start and every `reconcile_interval_ms`, for each
 * known project (at most PROJECTS_PER_ROUND a round, in turn), read the run branch's head from
 * GitLab and run it as a push when no run covers it (the decisions are in missed-pushes.ts).
 *
 * A found push goes through the webhook's own path: a Push Hook body is classified by intake
 * (classifyDelivery, with the leader's webhook secret and rules) and accepted by the lifecycle
 * (acceptPush: delivery key and (project, ref, before, after) dedupe, then verification, policy and
 * the queue). Cost per project and round: GET /projects/:id and GET .../branches/:branch; a head not
 * covered adds one GET .../events?action=pushed. A GitLab error is logged and the project is read
 * again next round; nothing here throws into the leader. Rounds never overlap: a round still going
 * when the next is due makes that one wait.
 */
import type { Log } from '../common/log.js';
import { errorText } from '../common/errors.js';
import type { GitLabApi } from '../gitlab/gitlab-port.js';
import { classifyDelivery, type IntakeConfig } from '../intake/intake.js';
import type { PushEvent } from '../intake/push-event.js';
import { missedPushBody, projectsOfRound, pushOfHead, reconcileDeliveryKey, runBranchOf, uncoveredHeads } from './missed-pushes.js';

/** The most projects one round reads (three GitLab calls at most each). */
export const PROJECTS_PER_ROUND = 50;

/** The `X-Gitlab-Event` a reconciled push is classified as: a project hook's push. */
const CLASSIFIED_AS = 'Push Hook';

/** The event a reconciled push's delivery is stored under (the webhook's are GitLab's header). */
export const RECONCILED_EVENT = 'Reconciled Push';

/** What one project came to in a round (for logs and tests). */
export type ProjectOutcome =
  | { kind: 'skipped'; reason: string }
  | { kind: 'no_branch' }
  | { kind: 'covered'; commit: string }
  | { kind: 'unknown_pusher'; commit: string }
  | { kind: 'ignored'; commit: string; reason: string }
  | { kind: 'started'; commit: string; runId: string; duplicate: boolean }
  | { kind: 'failed'; error: string };

/** What the reconciler needs from the leader. */
export interface ReconcilerDeps {
  gitlab: Pick<GitLabApi, 'getProject'> & Required<Pick<GitLabApi, 'getBranchHead' | 'listPushEvents'>>;
  /** The runs table (storage/run-heads.ts). */
  runs: { knownProjects(): Promise<number[]>; hasRunAt(projectId: number, ref: string, commit: string): Promise<boolean> };
  /** The webhook's intake settings: the same secret, run branch and review project. */
  intake: IntakeConfig;
  /** The lifecycle's acceptPush: what a webhook's accepted push is handed to. */
  acceptPush(push: PushEvent, deliveryKey: string, event: string): Promise<{ run_id: string; duplicate: boolean }>;
  log: Log;
  intervalMs: number;
  projectsPerRound?: number;
}

/** Looks for missed pushes on start and every interval until closed. */
export class MissedPushReconciler {
  private cursor: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private current: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** The head each project was last warned about (no pusher known): warned once, not every round. */
  private readonly warnedHeads = new Map<number, string>();
  /** The GitLab error each project was last warned about. */
  private readonly warnedFailures = new Map<number, string>();

  constructor(private readonly deps: ReconcilerDeps) {}

  /** Run a round now, then one every interval. */
  start(): void {
    this.tick();
  }

  /** One round over the next projects; every project's outcome, by id. */
  async round(): Promise<Map<number, ProjectOutcome>> {
    const { ids, cursor } = projectsOfRound(await this.deps.runs.knownProjects(), this.cursor, this.deps.projectsPerRound ?? PROJECTS_PER_ROUND);
    this.cursor = cursor;
    const outcomes = new Map<number, ProjectOutcome>();
    for (const id of ids) {
      if (this.closed) break;
      const outcome = await this.checkProject(id).catch((err: unknown): ProjectOutcome => ({ kind: 'failed', error: errorText(err) }));
      if (outcome.kind === 'failed') {
        // The same failure again (a deleted project's 404, say) is said once, then only at debug level.
        const say = this.warnedFailures.get(id) === outcome.error ? this.deps.log.debug.bind(this.deps.log) : this.deps.log.warn.bind(this.deps.log);
        say({ project_id: id, err: outcome.error }, 'reconcile: could not read the project from GitLab (will retry next round)');
        this.warnedFailures.set(id, outcome.error);
      } else {
        this.warnedFailures.delete(id);
      }
      outcomes.set(id, outcome);
    }
    return outcomes;
  }

  /** Stop the timer and wait for a round in progress. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.current;
  }

  private tick(): void {
    if (this.closed) return;
    this.current = this.round()
      .catch((err: unknown) => this.deps.log.error({ err: errorText(err) }, 'reconcile round failed'))
      .finally(() => {
        if (this.closed) return;
        this.timer = setTimeout(() => this.tick(), this.deps.intervalMs);
        this.timer.unref();
      });
  }

  private async checkProject(projectId: number): Promise<ProjectOutcome> {
    const { gitlab, runs, log } = this.deps;
    const project = await gitlab.getProject(projectId);
    const choice = runBranchOf(project, this.deps.intake);
    if (!choice.ok) return { kind: 'skipped', reason: choice.reason };
    const commit = await gitlab.getBranchHead(projectId, choice.branch);
    if (commit === null) return { kind: 'no_branch' };
    const head = { projectId, ref: `refs/heads/${choice.branch}`, commit };
    if ((await uncoveredHeads([head], (p, ref, c) => runs.hasRunAt(p, ref, c))).length === 0) return { kind: 'covered', commit };

    const push = pushOfHead(await gitlab.listPushEvents(projectId), choice.branch, commit);
    const where = { project_id: projectId, project: project.path_with_namespace, ref: head.ref, commit };
    if (!push) {
      const say = this.warnedHeads.get(projectId) === commit ? log.debug.bind(log) : log.warn.bind(log);
      say(where, 'reconcile: a head no run covers, but GitLab\'s push events do not say who pushed it; not run (push again to run it)');
      this.warnedHeads.set(projectId, commit);
      return { kind: 'unknown_pusher', commit };
    }
    const deliveryKey = reconcileDeliveryKey(projectId, head.ref, push);
    const decision = classifyDelivery(
      {
        headers: { 'x-gitlab-token': this.deps.intake.webhookSecret, 'x-gitlab-event': CLASSIFIED_AS, 'idempotency-key': deliveryKey },
        rawBody: JSON.stringify(missedPushBody(project, choice.branch, push)),
      },
      this.deps.intake,
    );
    if (decision.kind !== 'accepted') {
      const reason = decision.kind === 'ignored' ? decision.reason : 'message' in decision ? decision.message : decision.kind;
      log.info({ ...where, reason }, 'reconcile: missed push not run');
      return { kind: 'ignored', commit, reason };
    }
    // Checked again: a webhook for this head may have landed while GitLab answered. One that lands
    // between this look and acceptPush is the same push (same project, ref, before and after), which
    // acceptPush answers as a duplicate of whichever run was stored first.
    if (await runs.hasRunAt(projectId, head.ref, commit)) return { kind: 'covered', commit };
    const accepted = await this.deps.acceptPush(decision.push, decision.deliveryKey, RECONCILED_EVENT);
    log.info(
      { ...where, before: push.before, pusher: push.pusher.username, pusher_id: push.pusher.id, push_event: push.eventId, run_id: accepted.run_id, duplicate: accepted.duplicate },
      'reconcile: missed push found, run started',
    );
    return { kind: 'started', commit, runId: accepted.run_id, duplicate: accepted.duplicate };
  }
}

/**
 * Start the reconciler for a leader with GitLab configured; null (and a log line) when the GitLab
 * client cannot read branch heads or push events (a replacement client in tests of other paths).
 */
export function startMissedPushReconciler(deps: Omit<ReconcilerDeps, 'gitlab'> & { gitlab: GitLabApi }): MissedPushReconciler | null {
  const { getBranchHead, listPushEvents } = deps.gitlab;
  if (!getBranchHead || !listPushEvents) {
    deps.log.info({}, 'reconcile: this GitLab client cannot list branch heads and push events; missed pushes are not looked for');
    return null;
  }
  const gitlab = deps.gitlab;
  const reconciler = new MissedPushReconciler({
    ...deps,
    gitlab: {
      getProject: (id) => gitlab.getProject(id),
      getBranchHead: (id, branch) => getBranchHead.call(gitlab, id, branch),
      listPushEvents: (id) => listPushEvents.call(gitlab, id),
    },
  });
  reconciler.start();
  return reconciler;
}
