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
  /** GPUs wanted (0 = a CPU-only run); with `gpuRequest.mig`, MIG devices wanted. */
  gpus: number;
  /** What each GPU must be (secd.yml `gpu: { model, memory, mig }`); absent: any whole GPU. */
  gpuRequest?: GpuRequest;
  /** ISO-8601 time the run was queued: FIFO within a user, and how long it has waited. */
  queuedAt: string;
  /** Its `runfor` hard limit in ms (reservations.ts: it may backfill where it ends in time); absent: none known. */
  runforMs?: number;
}

/** A run that holds a node's resources now (assigned, building, running or uploading). */
export interface RunningRun {
  id: string;
  user: string;
  nodeId: string;
  /** UUIDs of the GPUs it holds; empty for a CPU-only run (which holds one CPU slot). */
  gpus: string[];
  /** ISO-8601 time its container started; null or absent while it is still being built. */
  startedAt?: string | null;
  /** Its `runfor` hard limit in ms: it ends by `startedAt + runforMs`; absent: no known end. */
  runforMs?: number;
}

/** What a GPU run asks of each GPU it gets, beyond a count (gpu-eligibility.ts applies it). */
export interface GpuRequest {
  /** A case-insensitive substring of the GPU's name ("H100"). */
  model?: string;
  /** The least memory per GPU (per MIG device, with `mig`), in bytes. */
  memoryBytes?: number;
  /** A MIG profile ("3g.40gb"): the run gets MIG devices of it, never whole GPUs. */
  mig?: string;
}

/** One GPU of a node, or one MIG device of a MIG-mode GPU, as the planner tells them apart. */
export interface PlannedGpu {
  uuid: string;
  /** The model name as nvidia-smi prints it (a MIG device: its GPU's). */
  name: string;
  memoryBytes: number | null;
  /** Set for a MIG device: its profile and the UUID of the GPU it is a slice of. */
  mig: { profile: string; gpu: string } | null;
  /** A GPU in MIG mode: never given whole (its MIG devices are listed beside it). */
  migMode?: boolean;
}

/** A node as the planner sees it: what it has; the planner subtracts what is in use. */
export interface PlannedNode {
  id: string;
  state: 'up' | 'down' | 'draining';
  /** UUIDs of every GPU the node has, in index order, each MIG-mode GPU followed by its MIG devices. */
  gpus: string[];
  /**
   * UUIDs of GPUs busy with processes that are not secd's, or lost, or in error: never given out
   * while so (they still count as the node's, for what it can ever run).
   */
  foreignBusyGpus: string[];
  /**
   * What each of `gpus` is; absent (or a UUID missing here): a whole GPU of unknown model and
   * memory, or, for a `MIG-` UUID, a MIG device of unknown profile.
   */
  gpuDetails?: PlannedGpu[];
  /** How many CPU-only runs it runs at once (`max_cpu_runs`). */
  cpuSlots: number;
  /** Projects whose image the node already holds (a run there skips most of its build). */
  images: string[];
  /** Set while the node's disk is under its watermark (its sentence): it takes no new run, like a draining node. */
  diskLow?: string;
}

/** Input of one planning round. */
export interface PlanSnapshot {
  queued: PlannedRun[];
  running: RunningRun[];
  nodes: PlannedNode[];
  /** Each user's decayed GPU-hours (fair-share.ts); absent or a user missing: none. */
  usage?: Record<string, number>;
}

/** Knobs of the planner. */
export interface PlanOptions {
  /** How long a GPU run waits before it claims a node (rule 4). */
  reserveAfterMs: number;
  /** How many waiting GPU runs at the head of the line get a start time besides the overdue ones (rule 6; EASY: 1). */
  headReservations: number;
  /** What each GPU in use (running or placed) adds to its user's decayed GPU-hours in the fair-share order (rule 3). */
  inUseGpuHours: number;
}

/** One decision: run `runId` on `nodeId` with exactly these GPUs. */
export interface Placement {
  runId: string;
  nodeId: string;
  gpus: string[];
}

/**
 * A waiting GPU run's hold on a node. With `startsAt` (every GPU it waits for has a known end): it
 * starts there by then on `gpus`, and others take those GPUs only if they end by then. Without (a
 * claim): nobody else takes GPUs there until it fits.
 */
export interface Reservation {
  runId: string;
  nodeId: string;
  /** The node's free GPUs held back for the run by this plan. */
  heldGpus: string[];
  /** How many more GPUs must free up there before the run fits. */
  missing: number;
  /** ISO-8601 time by which it starts at the latest (reservations.ts); absent for a claim. */
  startsAt?: string;
  /** The GPUs it starts on (with `startsAt` only). */
  gpus?: string[];
}

/** Why a run can never start on this cluster. */
export type ImpossibleCode = 'more_gpus_than_any_node' | 'no_matching_gpus' | 'no_cpu_slots';

/** A run no node can ever take; the leader rejects it with `reason`. */
export interface ImpossibleRun {
  runId: string;
  code: ImpossibleCode;
  reason: string;
}

/** The result of one planning round: every queued run appears in exactly one of placements, waiting, impossible. */
export interface Plan {
  placements: Placement[];
  /**
   * Runs that stay queued (fit no node now, or lost their turn to lighter users), in line order:
   * those holding reservations first, then in the order their turns came (queue-place.ts numbers them).
   */
  waiting: string[];
  /** Claims of waiting GPU runs (each run also listed in `waiting`). */
  reservations: Reservation[];
  impossible: ImpossibleRun[];
}
