/**
 * The leader's run lifecycle: from an accepted push to a terminal state.
 * It owns `state` (one writer), posts GitLab commit statuses, asks the pure planner for placements
 * and applies them, and turns what nodes report into transitions.
 */
import type { RunRow, RunStore } from '../../storage/run-store.js';
import type { RunState } from '../../storage/run-states.js';
import type { RunDatasets } from '../policy/dataset-access.js';
import type { CommitStatusState, GitLabApi } from '../gitlab/gitlab-port.js';
import { errorText } from '../common/errors.js';
import type { Log } from '../common/log.js';
import { planRuns, type PlannedNode } from '../plan/plan.js';
import { resolveRunConfig, type RunConfig } from '../policy/project-policy.js';
import type { PushEvent } from '../intake/push-event.js';
import type { RunOutcome, RunPhase, RunSpec } from '../contract/run-spec.js';

/** What verification of a push concluded (see verify-push.ts). */
export type PushVerification =
  | { ok: true; commits: string[]; head: { sha: string; fingerprint: string; username: string } }
  | { ok: false; code: string; reason: string };

/** A node the leader can give work to: the in-process node of `secd up`, or a websocket session. */
export interface NodeHandle {
  readonly id: string;
  state(): 'up' | 'down' | 'draining';
  /** UUIDs of every GPU the node has. */
  gpus(): string[];
  /** UUIDs of GPUs busy with processes that are not secd's. */
  foreignBusyGpus(): string[];
  /** How many CPU-only runs it runs at once. */
  cpuSlots(): number;
  /** Projects whose image the node holds (the planner prefers such a node); absent = none known. */
  images?(): string[];
  /** Start a run; idempotent by run id. */
  assign(spec: RunSpec): void;
  /** Stop a run; its partial outputs are still delivered. */
  cancel(runId: string, reason: string): void;
}

/** Everything the lifecycle needs, handed down by main. */
export interface LifecycleDeps {
  store: RunStore;
  gitlab: GitLabApi;
  log: Log;
  now(): Date;
  newRunId(): string;
  /** Verify every commit of a push (fetches into the project's mirror). */
  verifyPush(input: { projectId: number; project: string; before: string; after: string }): Promise<PushVerification>;
  /** A file at a commit from the project's mirror, or null when absent. */
  readFileAt(projectId: number, sha: string, path: string): Promise<Buffer | null>;
  /** Where a node clones the run's commit from, and where it pushes results. */
  sourceFor(run: RunRow): string;
  resultsRemoteFor(run: RunRow): string;
  nodes(): NodeHandle[];
  /** Told each time a queued run is assigned (the scheduling-latency metric); optional. */
  onAssigned?(run: RunRow): void;
  /** Since when a node has been down (null while up); runs on a node down longer than lostAfterMs end `lost`. */
  nodeDownSince?(nodeId: string): Date | null;
  /** The dataset step (dataset-access.ts): policy, temporary MySQL accounts; absent = runs get no datasets. */
  datasets?: RunDatasets;
  settings: {
    publicUrl: string;
    maxRunforHours: number;
    maxGpusPerRun: number;
    /** How long a down node's runs wait for it before they end `lost` (default 10 min). */
    lostAfterMs?: number;
  };
}

const IN_FLIGHT: readonly RunState[] = ['assigned', 'building', 'running', 'uploading'];
const STATUS_NAME = 'secd';

/** The leader's run lifecycle. */
export class RunLifecycle {
  private readonly projectChains = new Map<number, Promise<void>>();
  private readonly statusChains = new Map<string, Promise<void>>();
  private scheduleQueued = false;
  private closed = false;
  private readonly pending = new Set<Promise<unknown>>();
  /** Runs whose dataset account is being created: their node gets the spec once it exists. */
  private readonly assigning = new Set<string>();

  constructor(private readonly deps: LifecycleDeps) {}

  /**
   * Record an accepted push as a run (once per delivery key) and start its checks after returning.
   * Returns what the webhook answer reports.
   */
  acceptPush(push: PushEvent, deliveryKey: string, event: string): { run_id: string; duplicate: boolean } {
    const { store } = this.deps;
    const claimed = store.claimDelivery(deliveryKey, event, () => {
      const run = store.createRun({
        id: this.deps.newRunId(),
        projectId: push.project.id,
        project: push.project.path_with_namespace,
        ref: push.ref,
        beforeSha: push.before,
        commit: push.after,
        user: push.user_username,
        userId: push.user_id,
        deliveryKey,
        fetchUrl: push.project.git_http_url,
      });
      return { run_id: run.id };
    });
    if (!claimed.first) {
      const previous = claimed.outcome as { run_id: string };
      return { run_id: previous.run_id, duplicate: true };
    }
    const runId = claimed.value.run_id;
    this.track(this.postStatus(runId, 'pending', 'verifying the pushed commits'));
    this.enqueueProject(push.project.id, runId);
    return { run_id: runId, duplicate: false };
  }

  /** After a restart: carry every unfinished run on from where SQLite says it is. */
  resume(): void {
    const { store } = this.deps;
    for (const run of store.inStates(['received', 'verified'])) this.enqueueProject(run.projectId, run.id);
    this.scheduleSoon();
  }

  /** A node observed a phase change of one of its runs. */
  onPhase(nodeId: string, runId: string, phase: RunPhase, at: string): void {
    const run = this.deps.store.get(runId);
    if (!run || run.node !== nodeId) {
      this.deps.log.warn({ runId, nodeId, phase }, 'phase report for a run this node does not hold');
      return;
    }
    if (run.state === phase) return;
    const reason =
      phase === 'building' ? 'building the image' : phase === 'running' ? 'container running' : 'pushing results';
    const patch = phase === 'running' ? { startedAt: at } : {};
    const result = this.deps.store.transition(runId, phase, reason, patch);
    if (!result.ok) {
      this.deps.log.warn({ runId, phase, result }, 'ignored a phase report the state table does not allow');
      return;
    }
    if (phase === 'building' || phase === 'running') this.track(this.postStatus(runId, 'running', reason));
  }

  /** A node finished a run: record the end, free its GPUs, tell GitLab, and plan again. */
  onResult(nodeId: string, runId: string, outcome: RunOutcome): void {
    const { store, log } = this.deps;
    const run = store.get(runId);
    if (!run || run.node !== nodeId) {
      log.warn({ runId, nodeId }, 'result for a run this node does not hold');
      return;
    }
    if (run.state === 'assigned' || run.state === 'building' || run.state === 'running') {
      // The node's `uploading` report was lost with a connection (or a leader restart): every run
      // passes through it before its end, so record it first.
      store.transition(runId, 'uploading', 'pushing results');
    }
    const result = store.transition(runId, outcome.end, outcome.reason, {
      exitCode: outcome.exitCode,
      imageId: outcome.imageId,
      branch: outcome.branch,
      ...(outcome.startedAt ? { startedAt: run.startedAt ?? outcome.startedAt } : {}),
      finishedAt: outcome.finishedAt,
    });
    if (!result.ok) {
      log.warn({ runId, outcome: outcome.end, result }, 'ignored a result the state table does not allow');
    } else {
      const state: CommitStatusState =
        outcome.end === 'succeeded' ? 'success' : outcome.end === 'cancelled' ? 'canceled' : 'failed';
      this.track(this.postStatus(runId, state, outcome.reason));
    }
    if (this.deps.datasets) this.track(this.deps.datasets.release(runId, outcome.datasetBytes));
    this.scheduleSoon();
  }

  /**
   * A node (re)connected and listed the runs it still holds (spec on its disk). Each of its runs in
   * flight carries on from what the node says; one the node never received is sent again; one the
   * node no longer has ends `lost`. A run the node holds that the leader already ended is cancelled
   * there. Runs the node finished report their results themselves (re-sent until acknowledged).
   */
  onNodeHello(nodeId: string, held: ReadonlyArray<{ runId: string; phase: 'assigned' | 'finished' | RunPhase }>): void {
    const { store, log } = this.deps;
    const handle = this.deps.nodes().find((n) => n.id === nodeId);
    const heldById = new Map(held.map((h) => [h.runId, h]));
    const at = this.deps.now().toISOString();
    for (const run of store.inStates(IN_FLIGHT)) {
      if (run.node !== nodeId) continue;
      const h = heldById.get(run.id);
      if (h === undefined) {
        if (run.state === 'assigned') {
          // Assigned before the node had it on disk (or before a leader restart): send it again.
          this.handOver(handle, run);
          continue;
        }
        const reason = `node ${nodeId} came back without this run (it no longer holds it)`;
        log.warn({ runId: run.id, nodeId, state: run.state }, 'node no longer holds its run');
        if (store.transition(run.id, 'lost', reason).ok) this.track(this.postStatus(run.id, 'failed', reason));
        continue;
      }
      if (h.phase === 'building' || h.phase === 'running' || h.phase === 'uploading') this.onPhase(nodeId, run.id, h.phase, at);
    }
    for (const h of held) {
      if (h.phase === 'finished') continue;
      const run = store.get(h.runId);
      if (!run || run.node !== nodeId) {
        handle?.cancel(h.runId, 'the leader has no record of this run on this node');
      } else if (!IN_FLIGHT.includes(run.state)) {
        handle?.cancel(h.runId, `the leader already ended this run (${run.state}: ${run.reason})`);
      }
    }
    this.scheduleSoon();
  }

  /** End `lost` every run whose node has been down longer than `lostAfterMs`; call it periodically. */
  sweepLostRuns(): void {
    const downSince = this.deps.nodeDownSince;
    if (!downSince || this.closed) return;
    const { store, log } = this.deps;
    const lostAfterMs = this.deps.settings.lostAfterMs ?? 600_000;
    const now = this.deps.now().getTime();
    let lost = 0;
    for (const run of store.inStates(IN_FLIGHT)) {
      if (run.node === null) continue;
      const since = downSince(run.node);
      if (since === null || now - since.getTime() < lostAfterMs) continue;
      const minutes = Math.round(((now - since.getTime()) / 60_000) * 10) / 10;
      const reason = `node ${run.node} has been unreachable for ${minutes} min (lost_after is ${lostAfterMs / 60_000} min)`;
      log.warn({ runId: run.id, node: run.node }, 'run lost: its node stayed away');
      if (store.transition(run.id, 'lost', reason).ok) {
        lost++;
        this.track(this.postStatus(run.id, 'failed', reason));
      }
    }
    if (lost > 0) this.scheduleSoon();
  }

  /** Plan on the next tick (many events in one tick give one planning round). */
  scheduleSoon(): void {
    if (this.scheduleQueued || this.closed) return;
    this.scheduleQueued = true;
    setImmediate(() => {
      this.scheduleQueued = false;
      this.schedule();
    });
  }

  /** Wait for every background step started so far (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  /** Stop starting new work. */
  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
  }

  private schedule(): void {
    const { store, log } = this.deps;
    const queued = store.inStates(['queued']);
    if (queued.length === 0) return;
    const handles = this.deps.nodes();
    const active = store.inStates(IN_FLIGHT);
    // The planner subtracts what running runs hold and what foreign processes use from what nodes have.
    const nodes: PlannedNode[] = handles.map((h) => ({
      id: h.id,
      state: h.state(),
      gpus: h.gpus(),
      foreignBusyGpus: h.foreignBusyGpus(),
      cpuSlots: h.cpuSlots(),
      images: h.images?.() ?? [],
    }));
    const plan = planRuns(
      {
        queued: queued.map((r) => ({
          id: r.id,
          user: r.user,
          project: r.project,
          gpus: (r.config as RunConfig).gpus,
          queuedAt: r.createdAt,
        })),
        running: active.flatMap((r) => (r.node ? [{ id: r.id, user: r.user, nodeId: r.node, gpus: r.gpus }] : [])),
        nodes,
      },
      this.deps.now(),
    );
    for (const impossible of plan.impossible) {
      log.info({ runId: impossible.runId, code: impossible.code }, 'run can never start here: rejected');
      this.reject(impossible.runId, `no node can run it: ${impossible.reason}`);
    }
    for (const placement of plan.placements) {
      const handle = handles.find((h) => h.id === placement.nodeId);
      // Re-check at apply time: transition() only moves a run that is still queued.
      const gpuNote = placement.gpus.length ? ` with ${placement.gpus.length} GPU(s)` : '';
      const moved = store.transition(placement.runId, 'assigned', `assigned to ${placement.nodeId}${gpuNote}`, {
        node: placement.nodeId,
        gpus: placement.gpus,
      });
      if (!moved.ok || !handle) continue;
      log.info({ runId: placement.runId, node: placement.nodeId, gpus: placement.gpus }, 'run assigned');
      this.deps.onAssigned?.(moved.run);
      this.handOver(handle, moved.run);
    }
  }

  /**
   * Send an assigned run to its node. With datasets, the run's temporary account is created first
   * (awaited), so the credentials exist before the container can start; a run cancelled or failed
   * meanwhile is not sent, and its account is dropped.
   */
  private handOver(handle: NodeHandle | undefined, run: RunRow): void {
    const datasets = this.deps.datasets;
    if (!handle) return;
    if (!datasets || datasets.specFor(run.id) !== null) {
      handle.assign(this.specFor(run));
      return;
    }
    if (this.assigning.has(run.id)) return;
    this.assigning.add(run.id);
    const task = (async () => {
      const opened = await datasets.open(run);
      if (!opened.ok) {
        this.fail(run.id, opened.reason);
        await datasets.release(run.id);
        return;
      }
      const current = this.deps.store.get(run.id);
      const node = this.deps.nodes().find((n) => n.id === run.node) ?? handle;
      if (current?.state !== 'assigned' || current.node !== run.node) {
        await datasets.release(run.id);
        return;
      }
      node.assign(this.specFor(current));
    })().finally(() => this.assigning.delete(run.id));
    this.track(task);
  }

  private specFor(run: RunRow): RunSpec {
    const config = run.config as RunConfig;
    const access = this.deps.datasets?.specFor(run.id) ?? null;
    return {
      runId: run.id,
      project: run.project,
      commit: run.commit,
      source: this.deps.sourceFor(run),
      user: run.user,
      signer: run.signer,
      runforMs: config.runforMs,
      gpus: run.gpus,
      cacheDir: config.cacheDir,
      mountPath: config.mountPath,
      env: access?.env ?? {},
      ...(access ? { datasets: access.datasets } : {}),
      warnings: run.warnings,
      createdAt: run.createdAt,
      resultsRemote: this.deps.resultsRemoteFor(run),
    };
  }

  private enqueueProject(projectId: number, runId: string): void {
    // One project's pushes are checked in order: they share a mirror, and a newer push cancels older runs.
    const previous = this.projectChains.get(projectId) ?? Promise.resolve();
    const next = previous.then(() => this.checkRun(runId)).catch((err: unknown) => {
      this.deps.log.error({ err, runId }, 'checking a run failed');
      this.fail(runId, `secd could not check this push: ${errorText(err)}`);
    });
    this.projectChains.set(projectId, next);
    this.track(next);
  }

  private async checkRun(runId: string): Promise<void> {
    if (this.closed) return;
    let run = this.deps.store.get(runId);
    if (run?.state === 'received') {
      await this.verify(run);
      run = this.deps.store.get(runId);
    }
    if (run?.state === 'verified') await this.applyPolicy(run);
  }

  private async verify(run: RunRow): Promise<void> {
    const { store, log } = this.deps;
    const verification = await this.deps.verifyPush({
      projectId: run.projectId,
      project: run.project,
      before: run.beforeSha,
      after: run.commit,
    });
    if (!verification.ok) {
      log.info({ runId: run.id, code: verification.code, reason: verification.reason }, 'push rejected');
      this.reject(run.id, verification.reason);
      return;
    }
    store.markVerified(run.projectId, verification.commits, verification.head.fingerprint);
    const n = verification.commits.length;
    store.transition(run.id, 'verified', `${n} commit${n === 1 ? '' : 's'} verified, signed by ${verification.head.fingerprint}`, {
      signer: verification.head.fingerprint,
    });
  }

  private async applyPolicy(run: RunRow): Promise<void> {
    const { store } = this.deps;
    const [yml, dockerfile] = await Promise.all([
      this.deps.readFileAt(run.projectId, run.commit, 'secd.yml'),
      this.deps.readFileAt(run.projectId, run.commit, 'Dockerfile'),
    ]);
    if (!dockerfile) {
      this.reject(run.id, `no Dockerfile at the root of commit ${run.commit.slice(0, 8)}: secd builds the repository's Dockerfile`);
      return;
    }
    const largestNodeGpus = Math.max(0, ...this.deps.nodes().map((n) => n.gpus().length));
    const policy = resolveRunConfig(yml === null ? null : yml.toString('utf8'), {
      maxRunforHours: this.deps.settings.maxRunforHours,
      maxGpusPerRun: this.deps.settings.maxGpusPerRun,
      largestNodeGpus,
    });
    if (!policy.ok) {
      this.reject(run.id, policy.reason);
      return;
    }
    const access = this.deps.datasets?.forRun(run.user, policy.config.datasets);
    if (access && !access.ok) {
      this.reject(run.id, access.reason);
      return;
    }
    const queued = store.transition(run.id, 'queued', 'waiting for a node', {
      config: policy.config,
      warnings: policy.warnings,
    });
    if (!queued.ok) return;
    this.track(this.postStatus(run.id, 'pending', 'queued: waiting for a node'));
    this.supersedeOlderRuns(queued.run);
    this.scheduleSoon();
  }

  private supersedeOlderRuns(newest: RunRow): void {
    const { store } = this.deps;
    const reason = `superseded by a newer push (${newest.commit.slice(0, 8)}, run ${newest.id})`;
    for (const run of store.activeRunsOfProject(newest.projectId)) {
      if (run.id === newest.id || run.ref !== newest.ref || run.createdAt > newest.createdAt) continue;
      if (IN_FLIGHT.includes(run.state) && !this.assigning.has(run.id)) {
        const node = this.deps.nodes().find((n) => n.id === run.node);
        node?.cancel(run.id, reason);
        continue;
      }
      if (store.transition(run.id, 'cancelled', reason).ok) this.track(this.postStatus(run.id, 'canceled', reason));
    }
  }

  private reject(runId: string, reason: string): void {
    if (this.deps.store.transition(runId, 'rejected', reason).ok) this.track(this.postStatus(runId, 'failed', reason));
  }

  private fail(runId: string, reason: string): void {
    const run = this.deps.store.get(runId);
    if (!run) return;
    const to: RunState = run.state === 'received' || run.state === 'verified' || run.state === 'queued' ? 'rejected' : 'failed';
    if (this.deps.store.transition(runId, to, reason).ok) this.track(this.postStatus(runId, 'failed', reason));
  }

  /**
   * Post a commit status, in order per run and never the same state twice in a row (GitLab answers
   * 400 to a repeated pending or running). Failures are logged: GitLab being down never stops a run.
   */
  private postStatus(runId: string, state: CommitStatusState, description: string): Promise<void> {
    const previous = this.statusChains.get(runId) ?? Promise.resolve();
    const next = previous.then(async () => {
      const run = this.deps.store.get(runId);
      if (!run || run.statusPosted === state) return;
      try {
        await this.deps.gitlab.postCommitStatus(run.projectId, run.commit, {
          state,
          name: STATUS_NAME,
          target_url: `${this.deps.settings.publicUrl.replace(/\/$/, '')}/runs/${run.id}`,
          description: oneLine(description),
        });
        this.deps.store.update(runId, { statusPosted: state });
      } catch (err) {
        this.deps.log.warn({ err: errorText(err), runId, state }, 'could not post the commit status');
      }
    });
    this.statusChains.set(runId, next);
    void next.then(() => {
      if (this.statusChains.get(runId) === next) this.statusChains.delete(runId);
    });
    return next;
  }

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 255 ? `${line.slice(0, 252)}...` : line;
}
