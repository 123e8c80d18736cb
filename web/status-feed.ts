/**
 * What the status page shows, kept current for every open page: the nodes (from the node registry),
 * the queue, the runs held for output review with their approval counts, and the recent runs (from
 * the state database) and each GPU's utilisation history. A page gets one
 * snapshot when it connects and then only what changed, computed once per change for all pages
 * (never per page), so 100 nodes × 8 GPUs and many open pages cost the leader little.
 *
 * The node registry pushes each status report in with `onNodeStatus` (history at the node's own
 * sample times, and an update out within ~100 ms); without it the feed samples `nodes()` once per
 * `pollMs`, so the page works with any source of nodes.
 *
 * The runs are read from the async stores (storage/state-stores.ts). Choices made for that:
 * - Ticks run one at a time, in the order asked (a chain); a tick first awaits its reads (the nodes,
 *   and the runs on a full tick), then computes and sends the update in one synchronous step, so
 *   pages always get diffs against what they were last sent. The timer skips a poll while a tick
 *   is still in flight.
 * - The reads of a tick (nodes, queue, held runs, their records, recent runs) are separate queries,
 *   not one snapshot: a run that moves between them can show in its old place until the next tick.
 * - A page that subscribes before the first read gets its snapshot once that read is done; a
 *   failed read is logged (`log`) and pages keep the last view; a page waiting for its first
 *   snapshot is ended instead (its browser reconnects).
 */
import type { RunReleaseRow } from '../storage/release-store.js';
import type { RunRow } from '../storage/run-store.js';
import type { RunState } from '../storage/run-states.js';
import { errorText } from '../scheduler/common/errors.js';
import type { Log } from '../scheduler/common/log.js';
import { GpuHistory, type GpuSample } from './gpu-history.js';
import { toStatusRun, type ApiNode, type StatusRun } from './api-schema.js';
import { hideIdentity } from './read-access.js';

/** Everything a page needs to draw itself from nothing. */
export interface StatusSnapshot {
  at: string;
  nodes: ApiNode[];
  /** Waiting runs (received, verified, queued), oldest first, at most `maxQueue`. */
  queue: StatusRun[];
  queue_total: number;
  /** Runs whose outputs wait for review (state held), oldest first, at most `maxQueue`, each with its approvals. */
  held: StatusRun[];
  held_total: number;
  /** The newest runs in any state. */
  recent: StatusRun[];
  /** Per-GPU utilisation history: bucket width `step` s; each series' values start at its `start` (s). */
  history: { step: number; window: number; series: Record<string, { start: number; values: Array<number | null> }> };
}

/** What changed since the previous message; absent keys did not change. */
export interface StatusUpdate {
  at: string;
  /** Nodes that appeared or changed (whole node, GPUs included). */
  nodes?: ApiNode[];
  /** Ids of nodes that are gone. */
  removed?: string[];
  queue?: StatusRun[];
  queue_total?: number;
  held?: StatusRun[];
  held_total?: number;
  recent?: StatusRun[];
  /** New history values: [gpu uuid, bucket start (s), mean utilisation of that bucket so far]. */
  samples?: Array<[string, number, number]>;
}

/** One open page (or any other subscriber). */
export interface FeedListener {
  /** `data` is JSON of a StatusSnapshot (`snapshot`) or StatusUpdate (`update`). */
  send(event: 'snapshot' | 'update', data: string): void;
  /** The feed is closing (leader shutdown). */
  end(): void;
  /** Send this listener runs without who pushed what (web/read-access.ts): an anonymous reader of a private leader. */
  hidden?: boolean;
}

/** What the feed reads. */
export interface StatusFeedDeps {
  /** Every node as the API shows it (web/api-nodes.ts). */
  nodes(): Promise<ApiNode[]>;
  store: { inStates(states: readonly RunState[]): Promise<RunRow[]>; list(opts: { limit?: number }): Promise<RunRow[]> };
  /** Held runs' release records (storage/release-store.ts), for their approval counts; without it held runs show none. */
  releases?: { held(): Promise<RunReleaseRow[]> };
  now(): Date;
  /** Where a failed read of the runs on a timer is reported (nobody awaits those ticks); without it, nowhere. */
  log?: Log;
  history?: GpuHistory;
  /** How often nodes and runs are read without being told (ms). */
  pollMs?: number;
  /** Shortest gap between two updates triggered by status reports (ms). */
  minGapMs?: number;
  recentRuns?: number;
  maxQueue?: number;
}

const WAITING: readonly RunState[] = ['received', 'verified', 'queued'];
// A node whose reports were pushed within this long is not also sampled by polling.
const PUSH_FRESH_MS = 10_000;

const collator = new Intl.Collator('en', { numeric: true });

/** The live status of the cluster, shared by every open status page. */
export class StatusFeed {
  readonly history: GpuHistory;
  private readonly listeners = new Set<FeedListener>();
  private readonly pushedAt = new Map<string, number>();
  private readonly dirtyNodes = new Set<string>();
  private readonly touched = new Map<string, [number, number]>();
  private nodeJson = new Map<string, string>();
  private nodes: ApiNode[] = [];
  private queue: StatusRun[] = [];
  private queueTotal = 0;
  private held: StatusRun[] = [];
  private heldTotal = 0;
  private recent: StatusRun[] = [];
  private queueJson = '';
  private heldJson = '';
  private recentJson = '';
  private primed = false;
  private lastTickMs = 0;
  private lastPruneMs = 0;
  private pollTimer: NodeJS.Timeout | null = null;
  private soonTimer: NodeJS.Timeout | null = null;
  private closed = false;
  // Ticks queue here, one after another; `inFlight` counts those asked and not yet settled.
  private chain: Promise<void> = Promise.resolve();
  private inFlight = 0;
  private priming: Promise<void> | null = null;

  constructor(private readonly deps: StatusFeedDeps) {
    this.history = deps.history ?? new GpuHistory();
  }

  /** Start sampling and broadcasting on a timer (main calls this; tests may tick by hand). */
  start(): void {
    if (this.pollTimer || this.closed) return;
    this.pollTimer = setInterval(() => {
      if (this.inFlight === 0) this.background(true);
    }, this.deps.pollMs ?? 1000);
    this.pollTimer.unref();
  }

  /**
   * A node's status report arrived: record its GPUs' utilisation at `at` and send pages the change
   * soon. Call it after the registry's `nodes()` reflects the report.
   */
  onNodeStatus(nodeId: string, samples: readonly GpuSample[], at: Date | string | number): void {
    const atMs = at instanceof Date ? at.getTime() : typeof at === 'string' ? Date.parse(at) : at;
    const when = Number.isFinite(atMs) ? atMs : this.deps.now().getTime();
    this.pushedAt.set(nodeId, this.deps.now().getTime());
    for (const s of samples) this.recordSample(s.uuid, s.utilization_pct, when);
    this.dirtyNodes.add(nodeId);
    this.soon();
  }

  /** Something changed that pages should see now (a run moved, a node joined): broadcast soon. */
  poke(): void {
    this.soon(true);
  }

  /**
   * Add a page: it gets a snapshot, then updates. The snapshot is sent at once when the feed has read
   * its sources before, else when that first read is done (`ready()`). Returns the unsubscribe function.
   */
  subscribe(listener: FeedListener): () => void {
    let gone = false;
    const join = () => {
      if (gone) return;
      if (this.closed) {
        listener.end();
        return;
      }
      this.listeners.add(listener);
      const snapshot = this.view();
      listener.send('snapshot', JSON.stringify(listener.hidden ? hideRuns(snapshot) : snapshot));
    };
    if (this.primed) join();
    else {
      this.ready().then(join, (err: unknown) => {
        this.deps.log?.warn({ err: errorText(err) }, 'status feed: the first read of the runs failed; the page is ended and reconnects');
        if (!gone) listener.end();
      });
    }
    return () => {
      gone = true;
      this.listeners.delete(listener);
    };
  }

  /** Settles once the feed has read its sources at least once (at once if it has). */
  ready(): Promise<void> {
    if (this.primed || this.closed) return Promise.resolve();
    return (this.priming ??= this.tick(true).finally(() => {
      this.priming = null;
    }));
  }

  /** Pages connected now. */
  get subscribers(): number {
    return this.listeners.size;
  }

  /** The whole view as of the last tick (what a new page starts from); the first read is awaited. */
  async snapshot(): Promise<StatusSnapshot> {
    await this.ready();
    return this.view();
  }

  private view(): StatusSnapshot {
    const nowMs = this.deps.now().getTime();
    const series: StatusSnapshot['history']['series'] = {};
    for (const n of this.nodes) {
      for (const g of n.gpus) {
        const s = this.history.series(g.uuid, nowMs);
        if (s) series[g.uuid] = { start: s.start, values: s.values };
      }
    }
    return {
      at: new Date(nowMs).toISOString(),
      nodes: this.nodes,
      queue: this.queue,
      queue_total: this.queueTotal,
      held: this.held,
      held_total: this.heldTotal,
      recent: this.recent,
      history: { step: this.history.stepMs / 1000, window: this.history.windowMs / 1000, series },
    };
  }

  /**
   * Read the sources, record polled history and send pages what changed. `full` also re-reads every
   * node and the runs; otherwise only the nodes that pushed a report since the last tick. Ticks run
   * one at a time in the order asked; the promise settles when this one has (rejected: a read of
   * the runs failed, and nothing was sent).
   */
  tick(full = true): Promise<void> {
    this.inFlight++;
    const run = this.chain.then(() => this.runTick(full)).finally(() => this.inFlight--);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** A tick nobody awaits (timers): a failure is logged, never left unhandled. */
  private background(full: boolean): void {
    this.tick(full).catch((err: unknown) => {
      this.deps.log?.warn({ err: errorText(err) }, 'status feed: reading the runs failed; pages keep the last view');
    });
  }

  /** The runs a full tick shows, read before anything is computed or sent. */
  private async readRuns(): Promise<{ waiting: RunRow[]; heldRuns: RunRow[]; recent: RunRow[]; reviews: Map<string, RunReleaseRow> }> {
    // One read of the held runs' records per tick serves both tables (no query per run).
    const [waiting, heldRuns, recent, records] = await Promise.all([
      this.deps.store.inStates(WAITING),
      this.deps.store.inStates(['held']),
      this.deps.store.list({ limit: this.deps.recentRuns ?? 50 }),
      this.deps.releases ? this.deps.releases.held() : Promise.resolve([]),
    ]);
    return { waiting, heldRuns, recent, reviews: new Map(records.map((r) => [r.runId, r])) };
  }

  private async runTick(full: boolean): Promise<void> {
    if (this.closed) return;
    const [all, runs] = await Promise.all([this.deps.nodes(), full ? this.readRuns() : null]);
    // From here on nothing awaits: the update is computed and sent in one step.
    if (this.closed) return;
    const nowMs = this.deps.now().getTime();
    this.lastTickMs = nowMs;
    const update: StatusUpdate = { at: new Date(nowMs).toISOString() };

    if (full) {
      for (const n of all) {
        if (n.state === 'down') continue;
        const pushed = this.pushedAt.get(n.id);
        if (pushed !== undefined && nowMs - pushed < PUSH_FRESH_MS) continue;
        for (const g of n.gpus) this.recordSample(g.uuid, g.utilization_pct, nowMs);
      }
    }
    const consider = full ? all : all.filter((n) => this.dirtyNodes.has(n.id));
    this.dirtyNodes.clear();
    const changed: ApiNode[] = [];
    for (const n of consider) {
      const json = JSON.stringify(n);
      if (this.nodeJson.get(n.id) !== json) {
        this.nodeJson.set(n.id, json);
        changed.push(n);
      }
    }
    if (changed.length) update.nodes = changed;
    if (full) {
      const ids = new Set(all.map((n) => n.id));
      const removed = [...this.nodeJson.keys()].filter((id) => !ids.has(id));
      for (const id of removed) {
        this.nodeJson.delete(id);
        this.pushedAt.delete(id);
      }
      if (removed.length) update.removed = removed;
    }
    if (changed.length || update.removed) this.nodes = [...all].sort((a, b) => collator.compare(a.id, b.id));

    if (runs) {
      const { waiting, heldRuns, reviews } = runs;
      const queue = waiting.slice(0, this.deps.maxQueue ?? 500).map((r) => toStatusRun(r));
      const queueJson = JSON.stringify(queue);
      if (queueJson !== this.queueJson || waiting.length !== this.queueTotal) {
        this.queueJson = queueJson;
        this.queue = queue;
        this.queueTotal = waiting.length;
        update.queue = queue;
        update.queue_total = waiting.length;
      }
      const held = heldRuns.slice(0, this.deps.maxQueue ?? 500).map((r) => toStatusRun(r, reviews.get(r.id) ?? null));
      const heldJson = JSON.stringify(held);
      if (heldJson !== this.heldJson || heldRuns.length !== this.heldTotal) {
        this.heldJson = heldJson;
        this.held = held;
        this.heldTotal = heldRuns.length;
        update.held = held;
        update.held_total = heldRuns.length;
      }
      const recent = runs.recent.map((r) => toStatusRun(r, reviews.get(r.id) ?? null));
      const recentJson = JSON.stringify(recent);
      if (recentJson !== this.recentJson) {
        this.recentJson = recentJson;
        this.recent = recent;
        update.recent = recent;
      }
    }
    if (this.touched.size) {
      update.samples = [...this.touched].map(([uuid, [t, v]]) => [uuid, t, v]);
      this.touched.clear();
    }
    if (nowMs - this.lastPruneMs > 60_000) {
      this.history.prune(nowMs);
      this.lastPruneMs = nowMs;
    }
    const first = !this.primed;
    this.primed = true;
    if (first || this.listeners.size === 0 || Object.keys(update).length === 1) return;
    const data = JSON.stringify(update);
    let hiddenData: string | null = null;
    for (const l of this.listeners) {
      try {
        l.send('update', l.hidden ? (hiddenData ??= JSON.stringify(hideRuns(update))) : data);
      } catch {
        this.listeners.delete(l);
      }
    }
  }

  /** Stop the timers and end every page's stream (leader shutdown). */
  close(): void {
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.soonTimer) clearTimeout(this.soonTimer);
    this.pollTimer = this.soonTimer = null;
    for (const l of this.listeners) {
      try {
        l.end();
      } catch {
        // the page went away already
      }
    }
    this.listeners.clear();
  }

  private recordSample(uuid: string, pct: number | null, atMs: number): void {
    const r = this.history.record(uuid, pct, atMs);
    if (r) this.touched.set(uuid, [r.t, r.value]);
  }

  private pendingFull = false;

  private soon(full = false): void {
    this.pendingFull ||= full;
    if (this.soonTimer || this.closed) return;
    const gap = this.deps.minGapMs ?? 100;
    const wait = Math.max(0, Math.min(gap, this.lastTickMs + gap - this.deps.now().getTime()));
    this.soonTimer = setTimeout(() => {
      this.soonTimer = null;
      const full = this.pendingFull;
      this.pendingFull = false;
      this.background(full);
    }, wait);
    this.soonTimer.unref();
  }
}

/** The message with every run's project, user, commit and reason hidden (once per message, not per page). */
function hideRuns<T extends { queue?: StatusRun[]; held?: StatusRun[]; recent?: StatusRun[] }>(message: T): T {
  return {
    ...message,
    ...(message.queue ? { queue: message.queue.map(hideIdentity) } : {}),
    ...(message.held ? { held: message.held.map(hideIdentity) } : {}),
    ...(message.recent ? { recent: message.recent.map(hideIdentity) } : {}),
  };
}
