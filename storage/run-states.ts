/**
 * The run state machine: one union, one transition table (DESIGN §6).
 * The leader owns `state`; nodes report observations that the leader turns into transitions.
 */

/** Every state a run can be in. */
export type RunState =
  /** the webhook was accepted; nothing checked yet */
  | 'received'
  /** every pushed commit carries a good signature */
  | 'verified'
  /** secd.yml and Dockerfile passed policy; waiting for a node */
  | 'queued'
  /** a node and GPUs were chosen; the node has been told */
  | 'assigned'
  /** the node is cloning and running `docker build` */
  | 'building'
  /** the container is running */
  | 'running'
  /** the node is copying outputs and pushing the results branch */
  | 'uploading'
  /** terminal: exit code 0 and results pushed */
  | 'succeeded'
  /** terminal: build failed, non-zero exit, or results could not be pushed */
  | 'failed'
  /** terminal: bad signature, bad secd.yml or no Dockerfile */
  | 'rejected'
  /** terminal: stopped at its `runfor` limit (partial results pushed) */
  | 'timed_out'
  /** terminal: superseded by a newer push or cancelled by an operator */
  | 'cancelled'
  /** terminal: its node stayed away longer than `lost_after` */
  | 'lost'
  /** the outputs went to the review project and wait for output checkers (DESIGN §10) */
  | 'held'
  /** terminal: the review was closed without enough approvals; nothing reached the researcher */
  | 'withheld';

/** Every state, in the order a run moves through them (the API, metrics and the page list them so). */
export const RUN_STATES = [
  'received', 'verified', 'queued', 'assigned', 'building', 'running', 'uploading',
  'held', 'succeeded', 'failed', 'rejected', 'timed_out', 'cancelled', 'lost', 'withheld',
] as const satisfies readonly RunState[];

/**
 * The legal transitions. A cancelled or timed-out run passes through `uploading` to push what it has.
 * A `review` run passes through `held` whatever its end: released, it ends as the node saw it end
 * (`succeeded`, `failed`, `timed_out`, `cancelled`); withheld, `withheld`.
 */
export const RUN_TRANSITIONS: Record<RunState, readonly RunState[]> = {
  received: ['verified', 'rejected', 'cancelled'],
  verified: ['queued', 'rejected', 'cancelled'],
  queued: ['assigned', 'rejected', 'cancelled'],
  assigned: ['queued', 'building', 'running', 'uploading', 'failed', 'cancelled', 'lost'],
  building: ['running', 'uploading', 'failed', 'cancelled', 'lost'],
  running: ['uploading', 'failed', 'timed_out', 'cancelled', 'lost'],
  uploading: ['held', 'succeeded', 'failed', 'timed_out', 'cancelled', 'lost'],
  held: ['succeeded', 'failed', 'timed_out', 'cancelled', 'withheld'],
  succeeded: [],
  failed: [],
  rejected: [],
  timed_out: [],
  cancelled: [],
  lost: [],
  withheld: [],
};

/**
 * In flight: a node and its GPUs (or a CPU slot) were given to the run and are not free again until
 * it ends. The planner counts these as holding resources, the leader asks a returning node about
 * them, and a dataset account lives only as long as its run is in one.
 */
export const IN_FLIGHT_STATES = ['assigned', 'building', 'running', 'uploading'] as const satisfies readonly RunState[];

/** Whether a run in `state` holds a node's resources (one of IN_FLIGHT_STATES). */
export function isInFlight(state: RunState): boolean {
  return (IN_FLIGHT_STATES as readonly RunState[]).includes(state);
}

/** Terminal states never change again. */
export function isTerminal(state: RunState): boolean {
  return RUN_TRANSITIONS[state].length === 0;
}

/** Whether `from -> to` is in the table. */
export function canTransition(from: RunState, to: RunState): boolean {
  return RUN_TRANSITIONS[from].includes(to);
}

/** For exhaustive switches: the compiler proves this is unreachable. */
export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(value)}`);
}
