/**
 * The leader's view of its networked nodes: one `RemoteNode` per node known to the database, each a
 * `NodeHandle` the lifecycle assigns runs to exactly as it does to the in-process node.
 *
 * A node is `up` while its connection is open and it has spoken within `node_timeout_ms`; otherwise
 * it is `down` (and its connection, if any, is dropped so the node reconnects). Assignments and
 * cancels are kept per node and re-sent until the node answers (or, for cancels, until the run's
 * result arrives), so a cut connection loses nothing: the node's `hello` tells the lifecycle what it
 * still holds, and the rest is re-sent.
 *
 * The websocket itself is behind `NodeConnection` (scheduler/common/websocket.ts in production, in-memory pairs
 * in tests).
 */
import type { NodeStore } from '../../storage/node-store.js';
import type { Log } from '../common/log.js';
import { failpoint } from '../common/failpoints.js';
import { encodeMessage, parseNodeMessage, PROTOCOL_VERSION, type HeldRun, type HelloMessage, type StatusMessage } from '../contract/protocol.js';
import type { RunOutcome, RunPhase } from '../contract/run-spec.js';
import { foreignBusyChanged, nodeHelloOf, type NodeView } from './node-view.js';
import { helloFromStore, RemoteNode, storedHelloOf, type NodeConnection } from './remote-node.js';

/** Where the registry reports what nodes say about their runs (the lifecycle). */
export interface NodeRunReports {
  onPhase(nodeId: string, runId: string, phase: RunPhase, at: string): void;
  onResult(nodeId: string, runId: string, outcome: RunOutcome): void;
  /** A node (re)connected and listed the runs it holds. */
  onNodeHello(nodeId: string, held: ReadonlyArray<{ runId: string; phase: HeldRun['phase'] }>): void;
  /** What a node can take changed (undrained, a GPU freed by a foreign process...): plan again. */
  scheduleSoon(): void;
}

/** What the registry is given by main. */
export interface NodeRegistryDeps {
  store: NodeStore;
  log: Log;
  now(): Date;
  /** A node silent this long is down. */
  nodeTimeoutMs: number;
  /** How long an unanswered assign or cancel waits before it is sent again. */
  resendMs?: number;
  /** How often `last_seen` is written to the database per node (it is exact in memory). */
  persistSeenMs?: number;
  /** Called with every status a node reports (the status page's live feed). */
  onStatus?(nodeId: string, status: StatusMessage): void;
}

/** Close codes the leader uses; the node treats 4401 and 4409 as "stop and tell the operator". */
export const CLOSE_CODES = {
  /** Token revoked while connected. */
  revoked: 4401,
  /** The node id is taken (the in-process node) or the hello names another node. */
  conflict: 4409,
  /** Protocol version or a hello that does not parse. */
  badHello: 4400,
  /** Silent longer than node_timeout_ms. */
  silent: 4408,
  /** A newer connection of the same node replaced this one. */
  replaced: 4000,
} as const;

/** Every networked node the leader knows, and their connections. */
export class NodeRegistry {
  private readonly nodes = new Map<string, RemoteNode>();
  private reports: NodeRunReports | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly startedMs: number;
  private readonly resendMs: number;
  private readonly persistSeenMs: number;
  /** Node ids that are not ours to give out (the in-process node). */
  private readonly reserved = new Set<string>();
  // Last view handed out per node (see views()); weak, so a forgotten node takes its view with it.
  private readonly viewCache = new WeakMap<RemoteNode, { lastSeenMs: number | null; view: NodeView }>();

  constructor(private readonly deps: NodeRegistryDeps) {
    this.startedMs = deps.now().getTime();
    this.resendMs = deps.resendMs ?? 3000;
    this.persistSeenMs = deps.persistSeenMs ?? 30_000;
    this.refreshFromStore();
  }

  /** Connect the registry to the lifecycle (they need each other, so this happens after both exist). */
  attach(reports: NodeRunReports): void {
    this.reports = reports;
  }

  /** Refuse connections claiming this id (the in-process node of `secd up`). */
  reserve(nodeId: string): void {
    this.reserved.add(nodeId);
  }

  /** Check liveness, re-send what is unanswered and pick up operators' drain/revoke every `tickMs`. */
  start(tickMs = 1000): void {
    this.timer ??= setInterval(() => this.tick(), tickMs);
    this.timer.unref();
  }

  /** Stop the timer and close every connection. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const node of this.nodes.values()) {
      node.connection?.close(1001, 'leader shutting down');
      node.connection = null;
    }
  }

  /** Every known, non-revoked node, up or not. */
  handles(): RemoteNode[] {
    return [...this.nodes.values()].filter((n) => !n.revoked && !this.reserved.has(n.id));
  }

  /** The node with this id, if known. */
  get(id: string): RemoteNode | undefined {
    return this.nodes.get(id);
  }

  /** Since when the node has been down (null while up); unknown nodes count as down since the leader started. */
  downSince(id: string): Date | null {
    const node = this.nodes.get(id);
    if (!node) return new Date(this.startedMs);
    if (node.isUp()) return null;
    return new Date(node.downSinceMs);
  }

  /**
   * The API's view of every node. The status page's feed asks several times a second over every node:
   * a node whose state, hello, status and last-seen time did not change keeps its view object (and
   * its ISO time is not formatted again), so the API's cache (web/api-nodes.ts) finds it unchanged.
   */
  views(): NodeView[] {
    const nowMs = this.deps.now().getTime();
    return this.handles().map((n) => {
      const state = n.state(nowMs);
      const cached = this.viewCache.get(n);
      if (cached && cached.lastSeenMs === n.lastSeenMs && cached.view.state === state && cached.view.hello === n.hello && cached.view.status === n.status) {
        return cached.view;
      }
      const view: NodeView = {
        id: n.id,
        state,
        lastSeen: n.lastSeenMs === null ? null : new Date(n.lastSeenMs).toISOString(),
        hello: n.hello,
        status: n.status,
      };
      this.viewCache.set(n, { lastSeenMs: n.lastSeenMs, view });
      return view;
    });
  }

  /**
   * Whether a connecting node may go on to the websocket: a reserved id is refused like an unknown
   * one, with a reason that says why.
   */
  authenticate(nodeId: string, token: string): { ok: true } | { ok: false; reason: string } {
    if (this.reserved.has(nodeId)) return { ok: false, reason: `node id ${nodeId} is the leader's in-process node` };
    const auth = this.deps.store.authenticate(nodeId, token);
    if (!auth.ok) return { ok: false, reason: auth.reason };
    return { ok: true };
  }

  /** A node's websocket opened (its token already checked): returns what to do with its frames. */
  connect(nodeId: string, connection: NodeConnection): { message(text: string): void; close(code: number, reason: string): void } {
    const node = this.nodeFor(nodeId);
    const log = this.deps.log.child({ node: nodeId, remote: connection.remote });
    let current = true;
    return {
      message: (text) => {
        if (!current) return;
        this.onMessage(node, connection, text, log, () => {
          current = false;
        });
      },
      close: (code, reason) => {
        if (!current || node.connection !== connection) return;
        current = false;
        const wasUp = node.isUp();
        node.connection = null;
        node.greeted = false;
        if (wasUp) node.downSinceMs = this.deps.now().getTime();
        if (node.lastSeenMs !== null) this.deps.store.recordSeen(nodeId, new Date(node.lastSeenMs).toISOString());
        log.info({ code, reason }, 'node disconnected');
      },
    };
  }

  private nodeFor(nodeId: string): RemoteNode {
    let node = this.nodes.get(nodeId);
    if (!node) {
      const row = this.deps.store.get(nodeId);
      node = new RemoteNode(
        nodeId,
        {
          hello: helloFromStore(row?.inventory),
          lastSeenMs: null,
          downSinceMs: this.deps.now().getTime(),
          draining: row?.draining ?? false,
          revoked: row?.revoked ?? false,
        },
        () => this.deps.now().getTime(),
        this.deps.nodeTimeoutMs,
      );
      this.nodes.set(nodeId, node);
    }
    return node;
  }

  private onMessage(node: RemoteNode, connection: NodeConnection, text: string, log: NodeRegistryDeps['log'], drop: () => void): void {
    const parsed = parseNodeMessage(text);
    if (!parsed.ok) {
      log.warn({ reason: parsed.reason }, 'dropped a message from a node');
      return;
    }
    const msg = parsed.message;
    const nowMs = this.deps.now().getTime();
    if (msg.type === 'hello') {
      this.onHello(node, connection, msg, log, drop);
      return;
    }
    if (node.connection !== connection || !node.greeted) {
      log.warn({ type: msg.type }, 'dropped a message sent before hello');
      return;
    }
    node.lastSeenMs = nowMs;
    if (nowMs - node.lastPersistedSeenMs >= this.persistSeenMs) {
      node.lastPersistedSeenMs = nowMs;
      this.deps.store.recordSeen(node.id, new Date(nowMs).toISOString());
    }
    switch (msg.type) {
      case 'status': {
        const before = node.status;
        node.status = msg;
        if (msg.images) node.imageProjects = msg.images;
        if (foreignBusyChanged(before, msg)) this.reports?.scheduleSoon();
        this.deps.onStatus?.(node.id, msg);
        return;
      }
      case 'run.ack':
        node.pendingAssign.delete(msg.run_id);
        return;
      case 'run.event':
        node.pendingAssign.delete(msg.run_id);
        this.reports?.onPhase(node.id, msg.run_id, msg.phase, msg.at);
        return;
      case 'run.result':
        node.pendingAssign.delete(msg.run_id);
        node.pendingCancel.delete(msg.run_id);
        // Recorded first, acknowledged after: a crash in between means the node sends it again.
        failpoint('leader.result.received');
        this.reports?.onResult(node.id, msg.run_id, msg.outcome);
        failpoint('leader.result.recorded');
        node.send({ type: 'run.result.ack', run_id: msg.run_id });
        return;
      default: {
        const never: never = msg;
        return never;
      }
    }
  }

  private onHello(node: RemoteNode, connection: NodeConnection, hello: HelloMessage, log: NodeRegistryDeps['log'], drop: () => void): void {
    const refuse = (code: number, errCode: string, message: string) => {
      log.warn({ code: errCode }, `node refused: ${message}`);
      connection.send(encodeMessage({ type: 'error', code: errCode, message }));
      connection.close(code, message);
      drop();
    };
    if (hello.protocol !== PROTOCOL_VERSION) {
      return refuse(CLOSE_CODES.badHello, 'protocol', `this leader speaks protocol ${PROTOCOL_VERSION}, the node ${hello.protocol}`);
    }
    if (hello.node_id !== node.id) {
      return refuse(CLOSE_CODES.conflict, 'node_id', `the token is node ${node.id}'s but the hello says ${hello.node_id}`);
    }
    if (node.connection && node.connection !== connection) {
      log.info({ previous: node.connection.remote }, 'a new connection replaces the previous one');
      node.connection.close(CLOSE_CODES.replaced, 'replaced by a newer connection');
    }
    const nowMs = this.deps.now().getTime();
    node.connection = connection;
    node.greeted = true;
    node.lastSeenMs = nowMs;
    node.lastPersistedSeenMs = nowMs;
    node.status = null;
    node.hello = nodeHelloOf(hello);
    node.imageProjects = hello.images ?? [];
    this.deps.store.recordHello(node.id, hello.hostname, storedHelloOf(node.hello));
    log.info(
      { gpus: hello.inventory.gpus.length, cpus: hello.inventory.cpus, runs: hello.runs.map((r) => `${r.run_id}:${r.phase}`) },
      'node up',
    );
    node.send({ type: 'welcome', protocol: PROTOCOL_VERSION, node_id: node.id, node_timeout_ms: this.deps.nodeTimeoutMs });
    // The lifecycle decides from SQLite and this hello what to send again (a run that ended while the
    // node was away must not be started by a stale assignment); a cancel stands for runs still held.
    node.pendingAssign.clear();
    const stillHeld = new Set(hello.runs.filter((r) => r.phase !== 'finished').map((r) => r.run_id));
    for (const runId of node.pendingCancel.keys()) if (!stillHeld.has(runId)) node.pendingCancel.delete(runId);
    for (const entry of node.pendingCancel.values()) entry.sentMs = 0;
    this.reports?.onNodeHello(
      node.id,
      hello.runs.map((r) => ({ runId: r.run_id, phase: r.phase })),
    );
    for (const [runId, entry] of node.pendingCancel) if (entry.sentMs === 0) node.sendCancel(runId, entry);
  }

  private tick(): void {
    const nowMs = this.deps.now().getTime();
    this.refreshFromStore();
    for (const node of this.nodes.values()) {
      if (node.connection && node.greeted && node.lastSeenMs !== null && nowMs - node.lastSeenMs > this.deps.nodeTimeoutMs) {
        this.deps.log.warn({ node: node.id, silentMs: nowMs - node.lastSeenMs }, 'node down: silent longer than node_timeout_ms');
        node.downSinceMs = node.lastSeenMs + this.deps.nodeTimeoutMs;
        const conn = node.connection;
        node.connection = null;
        node.greeted = false;
        conn.close(CLOSE_CODES.silent, 'silent longer than node_timeout_ms');
        conn.terminate();
        continue;
      }
      if (!node.isUp()) continue;
      for (const [, entry] of node.pendingAssign) if (nowMs - entry.sentMs >= this.resendMs) node.sendAssign(entry);
      for (const [runId, entry] of node.pendingCancel) if (nowMs - entry.sentMs >= this.resendMs) node.sendCancel(runId, entry);
    }
  }

  /** Pick up what operators changed with `secd admin node ...` (drain, undrain, revoke, new nodes). */
  private refreshFromStore(): void {
    for (const flags of this.deps.store.flags()) {
      const node = this.nodes.get(flags.id);
      if (!node) {
        const row = this.deps.store.get(flags.id);
        if (!row) continue;
        this.nodes.set(
          row.id,
          new RemoteNode(
            row.id,
            {
              hello: helloFromStore(row.inventory),
              lastSeenMs: row.lastSeen ? Date.parse(row.lastSeen) : null,
              // Down since the leader started: a restarted leader gives nodes lost_after to come back.
              downSinceMs: this.startedMs,
              draining: row.draining,
              revoked: row.revoked,
            },
            () => this.deps.now().getTime(),
            this.deps.nodeTimeoutMs,
          ),
        );
        continue;
      }
      if (node.draining !== flags.draining) {
        node.draining = flags.draining;
        this.deps.log.info({ node: node.id, draining: flags.draining }, flags.draining ? 'node draining' : 'node takes runs again');
        this.reports?.scheduleSoon();
      }
      if (flags.revoked && !node.revoked) {
        this.deps.log.warn({ node: node.id }, 'node token revoked: closing its connection');
        node.connection?.close(CLOSE_CODES.revoked, 'token revoked');
        node.connection = null;
        node.greeted = false;
        node.downSinceMs = this.deps.now().getTime();
      }
      node.revoked = flags.revoked;
    }
  }
}
