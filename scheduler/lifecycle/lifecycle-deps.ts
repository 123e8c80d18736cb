/**
 * What the run lifecycle needs from the rest of the leader, handed down by main: the run store, GitLab,
 * the clock, verification, the mirror's files and the nodes it can give work to. A file of its own so
 * the lifecycle's steps (checks, plan apply, hand-over, node reports) name these ports without
 * importing the face (run-lifecycle.ts), which re-exports them.
 */
import type { RunRow, RunStore } from '../../storage/run-store.js';
import type { RunDatasets } from '../policy/dataset-access.js';
import type { GitLabApi } from '../gitlab/gitlab-port.js';
import type { Log } from '../common/log.js';
import type { RunSpec } from '../contract/run-spec.js';
import type { PlannedGpu } from '../plan/plan-types.js';
import type { ReleaseDesk } from '../release/release-desk.js';
import type { ReleaseStore } from '../../storage/release-store.js';
import type { IntakeGateOptions } from './intake-gate.js';

/** What verification of a push concluded (see verify-push.ts). */
export type PushVerification =
  | {
      ok: true;
      commits: string[];
      head: { sha: string; fingerprint: string; username: string };
      /** Commits accepted because a later signed commit of the pusher vouched for them (DESIGN §13). */
      vouched?: Array<{ commit: string; by: string }>;
    }
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
  /** Each GPU and MIG device with its model, memory and MIG profile (requests by model/memory/MIG); absent: plain GPUs. */
  gpuDetails?(): PlannedGpu[];
  /** Set while the node's disk is under its watermark (the node's sentence); absent or null: it has room. */
  diskLow?(): string | null;
  /** GPUs the node reports lost or failing: their runs are stopped with the reason. */
  gpuTroubles?(): Array<{ uuid: string; health: 'lost' | 'error'; problem: string }>;
  /** Start a run; idempotent by run id. */
  assign(spec: RunSpec): void;
  /** Stop a run; its partial outputs are still delivered. */
  cancel(runId: string, reason: string): void;
}

/** Everything the lifecycle needs, handed down by main. */
export interface LifecycleDeps {
  /** The runs, as the active leader writes them (fenced where several leaders share the state). */
  store: RunStore;
  /** Where accepted webhooks are stored (any leader may store one: not fenced); default `store`. */
  intakeStore?: RunStore;
  /** False while this leader is a standby: it stores pushes and starts nothing (default: always active). */
  isActive?(): boolean;
  gitlab: GitLabApi;
  log: Log;
  now(): Date;
  newRunId(): string;
  /** Verify every commit of a push (fetches into the project's mirror). */
  verifyPush(input: {
    projectId: number;
    project: string;
    before: string;
    after: string;
    /** The run's pusher: GitLab user id (null on rows from before ids were kept) and username. */
    pusher?: { id: number | null; username: string };
  }): Promise<PushVerification>;
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
  /**
   * Output release (scheduler/release/): each run's policy, held runs and their reviews; absent =
   * every run is `direct` (tests of other steps, and a leader built without it).
   */
  release?: { desk: ReleaseDesk; store: ReleaseStore };
  settings: {
    publicUrl: string;
    maxRunforHours: number;
    maxGpusPerRun: number;
    /** How long a down node's runs wait for it before they end `lost` (default 10 min). */
    lostAfterMs?: number;
    /** Half-life of the GPU-hours fair share counts (leader.yml limits.fair_share_half_life_hours; default 168). */
    fairShareHalfLifeHours?: number;
    /** How accepted pushes' background work is paced around webhook bursts (intake-gate.ts); default INTAKE_GATE_DEFAULTS. */
    intakeGate?: Partial<IntakeGateOptions>;
  };
}
