/**
 * `secd node`'s connection to the leader: says hello with its inventory and the runs it holds,
 * reports GPU and host telemetry every `report_interval_ms`, executes what the leader assigns, and
 * reports phases and results. A lost connection is retried with capped exponential backoff and
 * jitter (so a restarted leader is not hit by every node at once); nothing is lost meanwhile, since
 * the runs and their results live on disk (NodeRuns) and are listed again in the next hello.
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
  /** Open one connection to the leader (scheduler/common/websocket.ts's connectClient in production). */
  connect(handlers: ClientSocketHandlers): ClientSocket;
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

/** Reconnect delays: 0.5 s doubling to 15 s, each drawn from [d/2, d). */
export const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 15_000 };

/** The delay before reconnect attempt `attempt` (0-based): capped exponential with jitter in [d/2, d). */
export function reconnectDelay(attempt: number, backoff: { initialMs: number; maxMs: number }, random: number): number {
  const d = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + (random * d) / 2);
}

/** A node's link to its leader. */
export class NodeAgent {
  private socket: ClientSocket | null = null;
  private welcomed = false;
  private attempt = 0;
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
    return this.welcomed;
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
    this.socket?.close(1000, 'node stopping');
    this.socket = null;
    this.welcomed = false;
  }

  private connect(): void {
    if (this.stopped) return;
    let socket: ClientSocket | null = null;
    socket = this.deps.connect({
      open: () => {
        void this.sayHello(socket!).catch((err: unknown) => {
          this.log.error({ err }, 'could not say hello');
          socket?.close(1011, 'hello failed');
        });
      },
      message: (text) => {
        if (this.socket === socket) this.onMessage(socket!, text);
      },
      closed: (why) => {
        if (this.socket !== socket) return;
        this.socket = null;
        const wasWelcomed = this.welcomed;
        this.welcomed = false;
        if (this.statusTimer) clearInterval(this.statusTimer);
        this.statusTimer = null;
        if (this.stopped) return;
        const delay = reconnectDelay(this.attempt, this.deps.backoff ?? DEFAULT_BACKOFF, (this.deps.random ?? Math.random)());
        this.attempt++;
        if (wasWelcomed) this.log.warn({ why, retry_in_ms: delay }, 'lost the leader');
        else if (/answered 401/.test(why)) this.log.error({ why, retry_in_ms: delay }, 'the leader refused this node: check its token (secd admin node-token)');
        else this.log.info({ why, retry_in_ms: delay }, 'could not reach the leader');
        this.reconnectTimer = setTimeout(() => {
          this.reconnectTimer = null;
          this.connect();
        }, delay);
      },
    });
    this.socket = socket;
  }

  private async sayHello(socket: ClientSocket): Promise<void> {
    const inventory = await readInventory(this.deps);
    if (this.socket !== socket) return;
    socket.send(
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

  private onMessage(socket: ClientSocket, text: string): void {
    const parsed = parseLeaderMessage(text);
    if (!parsed.ok) {
      this.log.warn({ reason: parsed.reason }, 'dropped a message from the leader');
      return;
    }
    const msg: LeaderMessage = parsed.message;
    switch (msg.type) {
      case 'welcome':
        this.welcomed = true;
        this.attempt = 0;
        this.log.info({ nodeTimeoutMs: msg.node_timeout_ms }, 'connected to the leader');
        this.resultSentAt.clear();
        this.resendResults(0);
        void this.report();
        this.statusTimer = setInterval(() => void this.report(), this.deps.reportIntervalMs);
        return;
      case 'run.assign':
        void this.deps.runs.assign(msg.spec).then(
          () => {
            if (this.socket === socket) this.send({ type: 'run.ack', run_id: msg.spec.runId });
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
        this.log.error({ code: msg.code }, `the leader refused this node: ${msg.message}`);
        return;
      default: {
        const never: never = msg;
        return never;
      }
    }
  }

  private send(message: NodeMessage): boolean {
    if (!this.socket || !this.welcomed) return false;
    this.socket.send(encodeMessage(message));
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
