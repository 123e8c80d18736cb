/**
 * A run container's life once it is running, one road for both ways in: a container this daemon just
 * started (runContainer) and one it found after a restart (adoptContainer). The runfor limit and the
 * cancel signal take the same turn — stop: signal, grace, SIGKILL; the first reason wins — then the
 * container is waited for, its output delivered, the engine's record of it read, the executor's last
 * look taken (its /outputs) and the container removed unless it is kept.
 *
 * The adapter hands its engine calls in as a SupervisedContainer in secd's own terms, so this file
 * knows nothing of dockerode and the sequence is written once.
 */
import type { AdoptRequest, ContainerEnd, ContainerRunResult, EngineLogger, RunHooks } from './container-engine.js';

/** What the engine recorded about a container, as supervision needs it. */
export interface ContainerRecord {
  /** Engine state: created, running, exited, dead... */
  status: string;
  running: boolean;
  /** ISO-8601 UTC; null when it never started. */
  startedAt: string | null;
  /** ISO-8601 UTC; null while it runs. */
  finishedAt: string | null;
  oomKilled: boolean;
  exitCode: number | null;
  labels: Record<string, string>;
}

/** The engine calls supervision makes on one container; expected outcomes are values, the rest throws. */
export interface SupervisedContainer {
  id: string;
  /** Log fields naming the run and the container. */
  ids: Record<string, unknown>;
  /** Resolves once it has ended, with its exit status; null when it was removed behind our back. */
  wait(): Promise<number | null>;
  /** true: the engine stopped a running container; false: it had already ended, or is gone. */
  stop(graceSeconds: number): Promise<boolean>;
  /** The engine's record; null when the container is gone. */
  inspect(): Promise<ContainerRecord | null>;
  /** Force-removes it; a missing container is not an error. */
  remove(): Promise<void>;
}

/** What the adapter gives every supervision: its logger, its clock, its wording of engine errors. */
export interface SupervisorContext {
  log: EngineLogger;
  now(): Date;
  /** The engine's own sentence for an error it threw (for the log). */
  describeError(err: unknown): string;
}

/** How to supervise one container. */
export interface Supervision {
  /** The request's grace and keep settings (a run's and an adoption's are the same). */
  limits: Pick<AdoptRequest, 'stopGraceMs' | 'keepContainer'>;
  hooks: RunHooks;
  /**
   * What is left of the run's limit, from now; null when the container had already ended (adopted
   * after it exited): then nothing is stopped and `onStarted` is not called.
   */
  timeLeftMs: number | null;
  /** Start time to report when the engine's record has none. */
  startedAt: string | null;
  /** The line logged at the end ("container run ended"). */
  endMessage: string;
  /** Hands the container's whole output to `hooks.onLog`, once it has ended. */
  deliverOutput(): Promise<void>;
}

/** A container's supervisor, see the header. */
export interface ContainerSupervisor {
  /** Watch a running (or ended) container to its end, then collect and remove it. */
  supervise(c: SupervisedContainer, s: Supervision): Promise<ContainerRunResult>;
  /** Removes the container unless it is kept for debugging; a failure is logged, never thrown. */
  removeUnlessKept(c: SupervisedContainer, keep: boolean): Promise<void>;
}

/** The supervisor an adapter uses for all its containers. */
export function containerSupervisor(ctx: SupervisorContext): ContainerSupervisor {
  const { log } = ctx;

  async function removeUnlessKept(c: SupervisedContainer, keep: boolean): Promise<void> {
    if (keep) return;
    try {
      await c.remove();
    } catch (err) {
      log.warn({ ...c.ids, err: ctx.describeError(err) }, 'could not remove the container');
    }
  }

  async function supervise(c: SupervisedContainer, s: Supervision): Promise<ContainerRunResult> {
    const { ids } = c;
    const { hooks } = s;
    // Timeout and cancel take the same road: stop (signal, grace, SIGKILL); the first reason wins.
    let stopReason: 'timed_out' | 'cancelled' | null = null;
    let stopping: Promise<boolean> | null = null;
    const graceSeconds = Math.ceil(s.limits.stopGraceMs / 1000);
    const requestStop = (why: 'timed_out' | 'cancelled') => {
      if (stopReason !== null) return;
      stopReason = why;
      log.info({ ...ids, why }, 'stopping container');
      stopping = (async () => {
        try {
          await hooks.onStopping?.(why);
        } catch (err) {
          log.error({ ...ids, err: ctx.describeError(err) }, 'could not note why the container is stopped; stopping it anyway');
        }
        return c.stop(graceSeconds);
      })().catch((err: unknown) => {
        log.error({ ...ids, err: ctx.describeError(err) }, 'could not stop the container');
        return false;
      });
    };
    let clearTimer = () => {};
    const onAbort = () => requestStop('cancelled');
    if (s.timeLeftMs !== null) {
      hooks.onStarted?.(c.id);
      clearTimer = setLongTimeout(() => requestStop('timed_out'), s.timeLeftMs);
      hooks.signal?.addEventListener('abort', onAbort, { once: true });
      if (hooks.signal?.aborted) onAbort();
    }

    let exitCode: number | null;
    try {
      exitCode = await c.wait();
    } finally {
      clearTimer();
      hooks.signal?.removeEventListener('abort', onAbort);
    }
    let end: ContainerEnd = 'exited';
    if (stopping !== null && stopReason !== null && (await stopping)) end = stopReason;

    await s.deliverOutput();

    let startedAt = s.startedAt;
    let finishedAt = ctx.now().toISOString();
    let oomKilled = false;
    const last = await c.inspect();
    if (last) {
      startedAt = last.startedAt ?? startedAt;
      finishedAt = last.finishedAt ?? finishedAt;
      oomKilled = last.oomKilled;
      if (exitCode === null) exitCode = last.exitCode;
    }
    if (hooks.onExited) {
      // The caller's last look at the ended container (its outputs) before it is removed.
      try {
        await hooks.onExited(c.id);
      } catch (err) {
        log.error({ ...ids, err: ctx.describeError(err) }, 'reading the ended container failed');
      }
    }
    await removeUnlessKept(c, s.limits.keepContainer);
    log.info({ ...ids, end, exitCode, oomKilled }, s.endMessage);
    return { end, exitCode, oomKilled, startedAt, finishedAt, containerId: c.id, reason: null };
  }

  return { supervise, removeUnlessKept };
}

/** The result of a container that never ran: cancelled before it started, or refused by the engine. */
export function notStartedResult(end: ContainerEnd, reason: string | null, containerId: string | null, at: Date): ContainerRunResult {
  return { end, exitCode: null, oomKilled: false, startedAt: null, finishedAt: at.toISOString(), containerId, reason };
}

/** setTimeout that also waits past ~24.8 days, where the plain one fires at once: runs may be allowed longer. */
export function setLongTimeout(fn: () => void, ms: number): () => void {
  const MAX = 2 ** 31 - 1;
  let handle: NodeJS.Timeout;
  const arm = (left: number) => {
    handle = setTimeout(() => (left > MAX ? arm(left - MAX) : fn()), Math.min(left, MAX));
  };
  arm(Math.max(0, ms));
  return () => clearTimeout(handle);
}
