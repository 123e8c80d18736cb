/**
 * Which leader this process is (DESIGN §11), as the wiring sees it: a sole leader (state: sqlite —
 * one process owns the file, so it is active from the start) or one of several leaders sharing a
 * MySQL state database, active only while it holds the lease (scheduler/ha/leadership.ts).
 *
 * Choices made here:
 * - A sole leader still takes a new epoch at every start (the lease row's epoch + 1), so nodes see
 *   the epoch rise across restarts exactly as they do across failovers, and refuse an older one.
 * - Active is a one-way door for a process. A leader that loses its lease after leading exits (the
 *   wiring's `onLost`) and systemd starts it again as a standby: the RunLifecycle, node sockets and
 *   commit-status memory of the epoch it led are thrown away whole rather than unwound piece by
 *   piece (Kubernetes' controllers do the same on a lost election). Its writes were fenced anyway:
 *   nothing it does between the loss and the exit reaches the database.
 * - The active leader's writes go through `activeScope`: fenced on MySQL (the epoch checked in the
 *   same transaction), plain on SQLite (one process). Intake writes (a webhook stored by whichever
 *   leader got it) use the plain scope: any leader may store a delivery.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Log } from '../../scheduler/common/log.js';
import { holderName, Leadership, type LeadershipView } from '../../scheduler/ha/leadership.js';
import { LeaderLease } from '../../storage/sql/leader-lease.js';
import type { StateDatabase } from '../../storage/sql/state-database.js';
import { fencedScope, plainScope, type StateScope } from '../../storage/sql/state-scope.js';

/** The leader role of this process. */
export interface LeaderRole {
  /** True while this process may plan, talk to nodes, create dataset accounts and post statuses. */
  isActive(): boolean;
  /** Role and epoch for /healthz and the nodes. */
  view(): LeadershipView;
  /** The epoch this process leads (null while standby). */
  epoch(): number | null;
  /** Writes of the active leader (fenced on MySQL). */
  readonly activeScope: StateScope;
  /** Writes any leader may make (intake), and every read. */
  readonly plainScope: StateScope;
  /** Calls `fn` once, when this process becomes active (at once for a sole leader). */
  whenActive(fn: (epoch: number) => void): void;
  /** Calls `fn` once, when this process stops being active after it was (the lease lost). */
  onLost(fn: (reason: string) => void): void;
  /** Start contending (shared) or leading (sole). */
  start(): Promise<void>;
  /** Step down and release the lease. */
  stop(): Promise<void>;
}

/** The one leader of a SQLite state: active from `start()`, with a new epoch each start. */
export function soleLeader(state: StateDatabase, log: Log): LeaderRole {
  let epoch: number | null = null;
  const active: Array<(epoch: number) => void> = [];
  const scope = plainScope(state);
  return {
    isActive: () => epoch !== null,
    view: () => ({ role: epoch !== null ? 'active' : 'standby', epoch: epoch ?? 0 }),
    epoch: () => epoch,
    activeScope: scope,
    plainScope: scope,
    whenActive(fn) {
      if (epoch !== null) fn(epoch);
      else active.push(fn);
    },
    onLost: () => undefined,
    async start() {
      epoch = await new LeaderLease(state).seize(newHolder());
      log.info({ epoch }, 'leading (state: sqlite, one leader)');
      for (const fn of active.splice(0)) fn(epoch);
    },
    async stop() {
      epoch = null;
    },
  };
}

/** One of several leaders on a shared MySQL state: active while it holds the lease. */
export function sharedLeader(state: StateDatabase, o: { leaseMs: number; log: Log }): LeaderRole {
  const leadership = new Leadership({ state, holder: newHolder(), leaseMs: o.leaseMs, log: o.log });
  let led: number | null = null;
  let lost = false;
  const active: Array<(epoch: number) => void> = [];
  const lostListeners: Array<(reason: string) => void> = [];
  leadership.onRoleChange((change) => {
    if (change.role === 'active' && led === null && !lost) {
      led = change.epoch;
      for (const fn of active.splice(0)) fn(change.epoch);
    } else if (change.role === 'standby' && led !== null && !lost) {
      lost = true;
      for (const fn of lostListeners.splice(0)) fn(change.reason);
    }
  });
  return {
    isActive: () => !lost && leadership.isActive(),
    view: () => leadership.view(),
    epoch: () => (!lost && leadership.isActive() ? led : null),
    activeScope: fencedScope(state, (fn) => leadership.inFencedTransaction(fn)),
    plainScope: plainScope(state),
    whenActive(fn) {
      if (led !== null && !lost) fn(led);
      else active.push(fn);
    },
    onLost(fn) {
      lostListeners.push(fn);
    },
    async start() {
      leadership.start();
    },
    stop: () => leadership.stop(),
  };
}

/** This process's name in the lease row. */
function newHolder(): string {
  return holderName(hostname(), process.pid, randomBytes(4).toString('hex'));
}
