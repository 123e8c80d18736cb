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
 *
 * The store is async and a frame is handled synchronously: what a frame changes in memory (up, down,
 * pending sends) changes at once; its store writes and its reports to the lifecycle run in the
 * background, in order per node (node-work.ts), errors logged. A result is acknowledged only once the
 * lifecycle's report of it finished. `refresh()` reads the nodes the database knows (once before the
 * first plan, then every tick); `close()` waits for the writes in flight.
 */
import type { NodeRow } from '../../storage/node-store.js';
import { errorText } from '../common/errors.js';
import { failpoint } from '../common/failpoints.js';
import { encodeMessage, parseNodeMessage, PROTOCOL_VERSION, type HelloMessage } from '../contract/protocol.js';
import { CLOSE_CODES, type NodeRegistryDeps, type NodeRunReports } from './node-registry-deps.js';
import { foreignBusyChanged, nodeHelloOf, type NodeView } from './node-view.js';
import { NodeWork } from './node-work.js';
import { helloFromStore, RemoteNode, stampEpoch, storedHelloOf, type NodeConnection } from './remote-node.js';

export { CLOSE_CODES, type NodeRegistryDeps, type NodeRunReports } from './node-registry-deps.js';

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
  private readonly work: NodeWork;
  private refreshing: Promise<void> | null = null;
  private closed = false;

  /** Knows no node until `refresh()` read them. */
  constructor(private readonly deps: NodeRegistryDeps) {
    this.startedMs = deps.now().getTime();
    this.resendMs = deps.resendMs ?? 3000;
    this.persistSeenMs = deps.persistSeenMs ?? 30_000;
    this.work = new NodeWork(deps.log);
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

  /**
   * Stop the timer, close every connection and wait for the store writes and reports in flight
   * (close the database after this resolves). Frames that arrive later change nothing stored.
   */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const node of this.nodes.values()) {
      node.connection?.close(1001, 'leader shutting down');
      node.connection = null;
    }
    this.closed = true;
    await this.work.idle();
  }

  /** Wait until the background work started so far (and what it started) settled: tests. */
  idle(): Promise<void> {
    return this.work.idle();
  }

  /**
   * Read the nodes the database knows and pick up what operators changed with `secd admin node ...`
   * (drain, undrain, revoke, new nodes). The leader awaits one before its first plan, so a restarted
   * leader knows its nodes (down, with their last inventory) from the start; the tick runs it again.
   * One at a time: a call while one runs gets that one. Rejects when the store does.
   */
  refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    const running = this.work.track(this.refreshFromStore()).finally(() => {
      if (this.refreshing === running) this.refreshing = null;
    });
    this.refreshing = running;
    return running;
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
  async authenticate(nodeId: string, token: string): Promise<{ ok: true } | { ok: false; reason: string }> {
    if (this.reserved.has(nodeId)) return { ok: false, reason: `node id ${nodeId} is the leader's in-process node` };
    const auth = await this.deps.store.authenticate(nodeId, token);
    if (!auth.ok) return { ok: false, reason: auth.reason };
    // The row just read: a node that joined since the last refresh connects knowing its flags.
    if (!this.nodes.has(nodeId)) this.nodes.set(nodeId, this.nodeOf(auth.node, this.deps.now().getTime(), null));
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
        if (node.lastSeenMs !== null) {
          const at = new Date(node.lastSeenMs).toISOString();
          this.persist(nodeId, 'could not record when the node was last seen', () => this.deps.store.recordSeen(nodeId, at));
        }
        log.info({ code, reason }, 'node disconnected');
      },
    };
  }

  /**
   * The node a connection is for. `authenticate` or a refresh normally made it; one made here (a
   * connection let in some other way) starts with no stored hello and takes its flags from the next
   * refresh.
   */
  private nodeFor(nodeId: string): RemoteNode {
    let node = this.nodes.get(nodeId);
    if (!node) {
      node = this.nodeOf({ id: nodeId, inventory: null, draining: false, revoked: false, lastSeen: null }, this.deps.now().getTime(), null);
      this.nodes.set(nodeId, node);
    }
    return node;
  }

  /** A node as the database last knew it, down since `downSinceMs`. */
  private nodeOf(row: Pick<NodeRow, 'id' | 'inventory' | 'draining' | 'revoked' | 'lastSeen'>, downSinceMs: number, lastSeenMs: number | null): RemoteNode {
    return new RemoteNode(
      row.id,
      { hello: helloFromStore(row.inventory), lastSeenMs, downSinceMs, draining: row.draining, revoked: row.revoked },
      () => this.deps.now().getTime(),
      this.deps.nodeTimeoutMs,
      () => this.deps.epoch?.() ?? null,
    );
  }

  /** A store write for `nodeId`, after its earlier ones; a failure is logged as `what`. Nothing after close. */
  private persist(nodeId: string, what: string, write: () => Promise<unknown>): void {
    if (this.closed) return;
    void this.work.after(`write:${nodeId}`, what, { node: nodeId }, write);
  }

  /** A report to the lifecycle, after the node's earlier ones; true once it finished. */
  private report(nodeId: string, what: string, context: Record<string, unknown>, call: (reports: NodeRunReports) => unknown): Promise<boolean> {
    return this.work.after(`report:${nodeId}`, what, { node: nodeId, ...context }, () => (this.reports ? call(this.reports) : undefined));
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
      const at = new Date(nowMs).toISOString();
      this.persist(node.id, 'could not record when the node was last seen', () => this.deps.store.recordSeen(node.id, at));
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
        void this.report(node.id, "could not record a run's phase", { runId: msg.run_id }, (r) => r.onPhase(node.id, msg.run_id, msg.phase, msg.at));
        return;
      case 'run.result': {
        node.pendingAssign.delete(msg.run_id);
        node.pendingCancel.delete(msg.run_id);
        const runId = msg.run_id;
        // Recorded first, acknowledged after: a crash (or a failed write) in between means the node sends it again.
        void this.report(node.id, "could not record a run's result (not acknowledged: the node sends it again)", { runId }, async (r) => {
          failpoint('leader.result.received');
          // The lifecycle answers false when its write failed (it logged why): not acknowledged either.
          if ((await r.onResult(node.id, runId, msg.outcome)) === false) throw new Error('the result could not be recorded');
          failpoint('leader.result.recorded');
        }).then((recorded) => {
          if (recorded) node.send({ type: 'run.result.ack', run_id: runId });
        });
        return;
      }
      default: {
        const never: never = msg;
        return never;
      }
    }
  }

  private onHello(node: RemoteNode, connection: NodeConnection, hello: HelloMessage, log: NodeRegistryDeps['log'], drop: () => void): void {
    const refuse = (code: number, errCode: string, message: string) => {
      log.warn({ code: errCode }, `node refused: ${message}`);
      connection.send(encodeMessage(stampEpoch({ type: 'error', code: errCode, message }, this.deps.epoch?.() ?? null)));
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
    const stored = storedHelloOf(node.hello);
    this.persist(node.id, "could not record the node's hello", () => this.deps.store.recordHello(node.id, hello.hostname, stored));
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
    const held = hello.runs.map((r) => ({ runId: r.run_id, phase: r.phase }));
    // The cancels go after what the lifecycle sends again (even when its report failed: they stand).
    void this.report(node.id, "could not take up the runs the node's hello lists", {}, (r) => r.onNodeHello(node.id, held)).then(() => {
      for (const [runId, entry] of node.pendingCancel) if (entry.sentMs === 0) node.sendCancel(runId, entry);
    });
  }

  private tick(): void {
    const nowMs = this.deps.now().getTime();
    // What operators changed applies when the (async) read returns; liveness and re-sends are checked now.
    this.refresh().catch((err: unknown) => this.deps.log.warn({ err: errorText(err) }, 'could not read the nodes from the database (will retry)'));
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
  private async refreshFromStore(): Promise<void> {
    for (const flags of await this.deps.store.flags()) {
      if (!this.nodes.has(flags.id)) {
        const row = await this.deps.store.get(flags.id);
        // A connection may have made it while the row was read: that one stays.
        if (!row || this.nodes.has(row.id)) continue;
        // Down since the leader started: a restarted leader gives nodes lost_after to come back.
        this.nodes.set(row.id, this.nodeOf(row, this.startedMs, row.lastSeen ? Date.parse(row.lastSeen) : null));
        continue;
      }
      const node = this.nodes.get(flags.id)!;
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
