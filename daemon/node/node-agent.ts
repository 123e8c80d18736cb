/**
 * `secd node`'s connection to the leader: says hello with its inventory and the runs it holds,
 * reports GPU and host telemetry every `report_interval_ms`, executes what the leader assigns, and
 * reports phases and results. Nothing is lost while it is disconnected, since the runs and their
 * results live on disk (NodeRuns) and are listed again in the next hello.
 *
 * Several leaders (DESIGN §11): node.yml's `leader:` may list every leader sharing one state
 * database; exactly one is active and the others answer the upgrade with 503. Choices made here:
 * - A sweep tries the leaders in the order written, starting with the one that last accepted (the
 *   first at start). A connection that ends before the leader's welcome (503 from a standby, 401, a
 *   connection error, a welcome from an ex-leader) moves on to the next URL at once; only once a whole
 *   sweep failed does the capped exponential backoff with jitter apply, so a restarted leader is not
 *   hit by every node at once. With one leader this is the old single-URL behaviour exactly.
 * - Losing a welcomed connection counts as one failed sweep for the backoff: the next sweep starts
 *   after the first (jittered) delay, with the leader just lost, then the others.
 * - A sweep in which some leader answered 503 is refused by a live standby: a takeover is at most a
 *   lease away, so the next sweep comes within STANDBY_BACKOFF's second however many failed, instead
 *   of after a delay grown to 15 s that would leave the node away from the new leader long after it
 *   took over (measured: test/bench/failover.ts). A refused upgrade costs the standby next to nothing.
 * - connectClient (scheduler/common/websocket.ts) reports a refused upgrade only as text ("the
 *   leader answered 503: …"), so the agent treats every failed connect alike; the status is read
 *   from that text for the log's wording only.
 * - Every leader -> node message carries the sender's lease `epoch`. The agent remembers the newest
 *   seen on any connection (for its lifetime: a restarted node learns it again from the first
 *   welcome) and drops a message of an older epoch with a warning naming both, then closes that
 *   connection, since it comes from an ex-leader; the next sweep starts after that leader. A message
 *   without an epoch does not parse (the protocol requires it).
 */
import type { Log } from '../../scheduler/common/log.js';
import {
  encodeMessage,
  parseLeaderMessage,
  PROTOCOL_VERSION,
  type LeaderMessage,
  type NodeMessage,
} from '../../scheduler/contract/protocol.js';
import { readInventory, readStatus, type NodeSensors } from '../telemetry/node-report.js';
import type { NodeRuns } from './node-runs.js';
import type { ClientSocket, ClientSocketHandlers } from '../../scheduler/common/websocket.js';

/** What the agent is given by main. */
export interface NodeAgentDeps {
  nodeId: string;
  hostname: string;
  maxCpuRuns: number;
  reportIntervalMs: number;
  runs: Pick<NodeRuns, 'attach' | 'assign' | 'cancel' | 'acknowledge' | 'held' | 'pendingResults' | 'gpusInUse' | 'images'>;
  gpu: NodeSensors['gpu'];
  host: NodeSensors['host'];
  /** The leaders' websocket URLs in the order node.yml lists them (at least one). */
  leaders: readonly string[];
  /** Open one connection to the leader at `url` (scheduler/common/websocket.ts's connectClient in production). */
  connect(url: string, handlers: ClientSocketHandlers): ClientSocket;
  log: Log;
  now(): Date;
  /** [0, 1) for jitter; injectable for tests. */
  random?(): number;
  /** First reconnect delay and its cap. */
  backoff?: { initialMs: number; maxMs: number };
  /** How long an unacknowledged result waits before it is sent again. */
  resendMs?: number;
  /** Why work_dir's disk is under the node's watermark, or null when it has room (sent with every status). */
  diskLow?(): Promise<string | null>;
}

/** Reconnect delays after a failed sweep of the leaders: 0.5 s doubling to 15 s, each drawn from [d/2, d). */
export const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 15_000 };

/** Reconnect delays after a sweep a standby refused (503): at most a second, from [d/2, d). */
export const STANDBY_BACKOFF = { initialMs: 500, maxMs: 1000 };

/** The delay after failed sweep `attempt` (0-based): capped exponential with jitter in [d/2, d). */
export function reconnectDelay(attempt: number, backoff: { initialMs: number; maxMs: number }, random: number): number {
  const d = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + (random * d) / 2);
}

/** One connection attempt: the socket, which leader it goes to, and whether it was found stale. */
interface Link {
  socket: ClientSocket;
  /** Index into `leaders`. */
  leader: number;
  /** Closed by us for an older epoch: its messages are ignored until it reports closed. */
  stale: boolean;
}

/** A node's link to its leader. */
export class NodeAgent {
  private link: Link | null = null;
  private welcomed = false;
  /** Failed sweeps (or lost connections) since the last welcome: picks the backoff delay. */
  private attempt = 0;
  /** The leader that last accepted, where every sweep starts. */
  private preferred = 0;
  /** Leaders tried and failed in the current sweep. */
  private triedInSweep = 0;
  /** Whether a leader of the current sweep answered 503 (a live standby). */
  private standbyInSweep = false;
  /** The newest leader epoch seen on any message, or null before the first. */
  private newestEpoch: number | null = null;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private resendTimer: NodeJS.Timeout | null = null;
  private sampling = false;
  /** The image list the leader last heard on this connection. */
  private imagesSent = '';
  private readonly resultSentAt = new Map<string, number>();
  private readonly log: Log;

  constructor(private readonly deps: NodeAgentDeps) {
    if (deps.leaders.length === 0) throw new Error('NodeAgent needs at least one leader URL');
    this.log = deps.log.child({ component: 'node-agent' });
    // Attached before the runs recover, so that nothing they report is missed.
    deps.runs.attach({
      phase: (runId, phase, at) => this.send({ type: 'run.event', run_id: runId, phase, at }),
      result: (runId, outcome) => {
        if (this.send({ type: 'run.result', run_id: runId, outcome })) this.resultSentAt.set(runId, this.deps.now().getTime());
      },
    });
  }

  /** Whether the leader welcomed the current connection. */
  get connected(): boolean {
    return this.welcomed && this.link !== null && !this.link.stale;
  }

  /** The URL of the leader that welcomed the current connection, or null while not connected. */
  get leader(): string | null {
    return this.connected ? this.deps.leaders[this.link!.leader]! : null;
  }

  /** The newest leader epoch this node has seen, or null before any message carried one. */
  get epoch(): number | null {
    return this.newestEpoch;
  }

  /** Start connecting (and keep reconnecting until stop()); call it after `runs.recover()`, so hello lists every run. */
  start(): void {
    const resendMs = this.deps.resendMs ?? 3000;
    this.resendTimer = setInterval(() => this.resendResults(resendMs), Math.min(resendMs, 1000));
    this.resendTimer.unref();
    this.connect();
  }

  /** Close the connection and stop reconnecting. Runs keep going (a restarted node adopts them). */
  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.statusTimer) clearInterval(this.statusTimer);
    if (this.resendTimer) clearInterval(this.resendTimer);
    this.link?.socket.close(1000, 'node stopping');
    this.link = null;
    this.welcomed = false;
  }

  private connect(): void {
    if (this.stopped) return;
    const leader = (this.preferred + this.triedInSweep) % this.deps.leaders.length;
    const url = this.deps.leaders[leader]!;
    // The link exists before the socket, so that a `closed` reported during connect still counts.
    const link = { leader, stale: false } as Link;
    this.link = link;
    link.socket = this.deps.connect(url, {
      open: () => {
        if (this.link !== link) return;
        void this.sayHello(link).catch((err: unknown) => {
          this.log.error({ err, leader: url }, 'could not say hello');
          link.socket.close(1011, 'hello failed');
        });
      },
      message: (text) => {
        if (this.link === link && !link.stale) this.onMessage(link, text);
      },
      closed: (why) => {
        if (this.link !== link) return;
        this.link = null;
        const wasWelcomed = this.welcomed;
        this.welcomed = false;
        if (this.statusTimer) clearInterval(this.statusTimer);
        this.statusTimer = null;
        if (this.stopped) return;
        this.afterClose(link, url, why, wasWelcomed);
      },
    });
  }

  /** Where to go after a connection ended: the next leader at once, or a new sweep after the backoff. */
  private afterClose(link: Link, url: string, why: string, wasWelcomed: boolean): void {
    const n = this.deps.leaders.length;
    if (wasWelcomed) {
      // A new sweep, from the leader just lost, or from the one after it when that one is an ex-leader.
      this.preferred = link.stale ? (link.leader + 1) % n : link.leader;
      this.triedInSweep = 0;
      this.retryLater(why, { leader: url }, 'lost the leader', 'warn');
      return;
    }
    if (/answered 401/.test(why)) this.log.error({ leader: url, why }, 'the leader refused this node: check its token (secd admin node-token)');
    else if (/answered 503/.test(why)) {
      this.standbyInSweep = true;
      this.log.info({ leader: url, why }, 'this leader is a standby');
    }
    else this.log.info({ leader: url, why }, 'could not reach this leader');
    this.triedInSweep++;
    if (this.triedInSweep < n) {
      this.schedule(0);
      return;
    }
    this.triedInSweep = 0;
    const standby = this.standbyInSweep;
    this.standbyInSweep = false;
    this.retryLater(why, { leaders: this.deps.leaders }, n === 1 ? 'could not reach the leader' : 'no leader accepted this node', 'info', standby);
  }

  /** Start the next sweep after the backoff delay for `attempt`, and count it. */
  private retryLater(why: string, fields: object, message: string, level: 'info' | 'warn', standby = false): void {
    const backoff = this.deps.backoff ?? DEFAULT_BACKOFF;
    const capped = standby ? { initialMs: backoff.initialMs, maxMs: Math.min(backoff.maxMs, STANDBY_BACKOFF.maxMs) } : backoff;
    const delay = reconnectDelay(this.attempt, capped, (this.deps.random ?? Math.random)());
    this.attempt++;
    this.log[level]({ ...fields, why, retry_in_ms: delay }, message);
    this.schedule(delay);
  }

  private schedule(delay: number): void {
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  private async sayHello(link: Link): Promise<void> {
    const inventory = await readInventory(this.deps);
    if (this.link !== link) return;
    link.socket.send(
      encodeMessage({
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        node_id: this.deps.nodeId,
        hostname: this.deps.hostname,
        inventory,
        max_cpu_runs: this.deps.maxCpuRuns,
        runs: this.deps.runs.held(),
        images: this.deps.runs.images(),
      }),
    );
    this.imagesSent = this.deps.runs.images().join('\n');
  }

  private onMessage(link: Link, text: string): void {
    const url = this.deps.leaders[link.leader]!;
    const parsed = parseLeaderMessage(text);
    if (!parsed.ok) {
      this.log.warn({ leader: url, reason: parsed.reason }, 'dropped a message from the leader');
      return;
    }
    const msg: LeaderMessage = parsed.message;
    if (!this.fromCurrentLeader(link, msg)) return;
    switch (msg.type) {
      case 'welcome':
        this.welcomed = true;
        this.attempt = 0;
        this.triedInSweep = 0;
        this.preferred = link.leader;
        this.log.info({ leader: url, epoch: msg.epoch ?? null, nodeTimeoutMs: msg.node_timeout_ms }, 'connected to the leader');
        this.resultSentAt.clear();
        this.resendResults(0);
        void this.report();
        this.statusTimer = setInterval(() => void this.report(), this.deps.reportIntervalMs);
        return;
      case 'run.assign':
        void this.deps.runs.assign(msg.spec).then(
          () => {
            if (this.link === link) this.send({ type: 'run.ack', run_id: msg.spec.runId });
          },
          (err: unknown) => this.log.error({ err, runId: msg.spec.runId }, 'could not take the assignment (it will be sent again)'),
        );
        return;
      case 'run.cancel':
        this.deps.runs.cancel(msg.run_id, msg.reason);
        return;
      case 'run.result.ack':
        this.resultSentAt.delete(msg.run_id);
        void this.deps.runs.acknowledge(msg.run_id).catch((err: unknown) => this.log.warn({ err, runId: msg.run_id }, 'could not remove a run folder'));
        return;
      case 'error':
        this.log.error({ leader: url, code: msg.code }, `the leader refused this node: ${msg.message}`);
        return;
      default: {
        const never: never = msg;
        return never;
      }
    }
  }

  /**
   * Whether `msg` may be acted on: one of the newest epoch seen so far, or newer (which
   * it then becomes). One of an older epoch comes from an ex-leader: dropped, and its link closed.
   */
  private fromCurrentLeader(link: Link, msg: LeaderMessage): boolean {
    if (this.newestEpoch === null || msg.epoch >= this.newestEpoch) {
      this.newestEpoch = msg.epoch;
      return true;
    }
    this.log.warn(
      { leader: this.deps.leaders[link.leader], type: msg.type, epoch: msg.epoch, newest_epoch: this.newestEpoch },
      `dropped a ${msg.type} of leader epoch ${msg.epoch}, older than epoch ${this.newestEpoch} already seen: closing the connection to this ex-leader`,
    );
    link.stale = true;
    link.socket.close(1008, `leader epoch ${msg.epoch} is older than ${this.newestEpoch}`);
    return false;
  }

  private send(message: NodeMessage): boolean {
    if (!this.link || this.link.stale || !this.welcomed) return false;
    this.link.socket.send(encodeMessage(message));
    return true;
  }

  private resendResults(resendMs: number): void {
    if (!this.welcomed) return;
    const now = this.deps.now().getTime();
    for (const { runId, outcome } of this.deps.runs.pendingResults()) {
      const sent = this.resultSentAt.get(runId);
      if (sent !== undefined && now - sent < resendMs) continue;
      if (this.send({ type: 'run.result', run_id: runId, outcome })) this.resultSentAt.set(runId, now);
    }
  }

  private async report(): Promise<void> {
    if (this.sampling || !this.welcomed) return;
    this.sampling = true;
    try {
      const status = await readStatus(this.deps, { now: () => this.deps.now(), ours: () => this.deps.runs.gpusInUse(), log: this.log });
      const diskLow = await this.deps.diskLow?.().catch(() => null);
      if (diskLow) status.disk_low = diskLow;
      const images = this.deps.runs.images();
      if (images.join('\n') !== this.imagesSent) {
        status.images = images;
        this.imagesSent = images.join('\n');
      }
      this.send(status);
    } catch (err) {
      this.log.warn({ err }, 'could not sample the host');
    } finally {
      this.sampling = false;
    }
  }
}
