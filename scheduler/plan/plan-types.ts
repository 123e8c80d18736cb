/**
 * The planner's input and output: a snapshot of the cluster in, placements out. Its own file so the
 * planner's parts (plan.ts, cluster-state.ts) and the plan check (plan-check.ts) share the shapes
 * without importing each other; plan.ts re-exports them, so callers import the planner from one place.
 */

/** A queued run as the planner sees it. */
export interface PlannedRun {
  id: string;
  user: string;
  /** The project (path with namespace); nodes report which projects' images they hold. */
  project: string;
  /** GPUs wanted (0 = a CPU-only run). */
  gpus: number;
  /** ISO-8601 time the run was queued: FIFO within a user, and how long it has waited. */
  queuedAt: string;
}

/** A run that holds a node's resources now (assigned, building, running or uploading). */
export interface RunningRun {
  id: string;
  user: string;
  nodeId: string;
  /** UUIDs of the GPUs it holds; empty for a CPU-only run (which holds one CPU slot). */
  gpus: string[];
}

/** A node as the planner sees it: what it has; the planner subtracts what is in use. */
export interface PlannedNode {
  id: string;
  state: 'up' | 'down' | 'draining';
  /** UUIDs of every GPU the node has, in index order. */
  gpus: string[];
  /** UUIDs of GPUs busy with processes that are not secd's: never given out while busy. */
  foreignBusyGpus: string[];
  /** How many CPU-only runs it runs at once (`max_cpu_runs`). */
  cpuSlots: number;
  /** Projects whose image the node already holds (a run there skips most of its build). */
  images: string[];
}

/** Input of one planning round. */
export interface PlanSnapshot {
  queued: PlannedRun[];
  running: RunningRun[];
  nodes: PlannedNode[];
}

/** Knobs of the planner. */
export interface PlanOptions {
  /** How long a GPU run waits before it claims a node (rule 4). */
  reserveAfterMs: number;
}

/** One decision: run `runId` on `nodeId` with exactly these GPUs. */
export interface Placement {
  runId: string;
  nodeId: string;
  gpus: string[];
}

/** A waiting GPU run's claim on a node: nobody else takes GPUs there until it fits. */
export interface Reservation {
  runId: string;
  nodeId: string;
  /** The node's free GPUs held back for the run by this plan. */
  heldGpus: string[];
  /** How many more GPUs must free up there before the run fits. */
  missing: number;
}

/** Why a run can never start on this cluster. */
export type ImpossibleCode = 'more_gpus_than_any_node' | 'no_cpu_slots';

/** A run no node can ever take; the leader rejects it with `reason`. */
export interface ImpossibleRun {
  runId: string;
  code: ImpossibleCode;
  reason: string;
}

/** The result of one planning round: every queued run appears in exactly one of placements, waiting, impossible. */
export interface Plan {
  placements: Placement[];
  /** Runs that stay queued (fit no node now, or lost their turn to lighter users). */
  waiting: string[];
  /** Claims of waiting GPU runs (each run also listed in `waiting`). */
  reservations: Reservation[];
  impossible: ImpossibleRun[];
}
