/**
 * Helpers for the status page's tests and benchmark: the real leader HTTP server over real stores
 * (a SQLite file, opened and migrated as the leader opens it), with the nodes' view injected (what
 * the node registry would provide), headless Chromium (Debian's, never a downloaded build), and
 * builders for nodes, GPUs, runs and their release records (async: the stores are).
 */
import { chromium, type Browser } from 'playwright-core';
import { countRunsByState } from '../../storage/run-counts.js';
import type { ReleaseStore, RunReleaseRow, StoredFinding } from '../../storage/release-store.js';
import type { RunRow, RunStore } from '../../storage/run-store.js';
import type { RunState } from '../../storage/run-states.js';
import { isStateWritable } from '../../storage/state-health.js';
import type { StateStores } from '../../storage/state-stores.js';
import { silentLog } from '../../scheduler/common/log.js';
import type { RunLifecycle } from '../../scheduler/lifecycle/run-lifecycle.js';
import type { ApiGpu, ApiNode } from '../../web/api-schema.js';
import { buildLeaderServer, type LeaderServerDeps } from '../../web/leader-server.js';
import { createLeaderMetrics, type LeaderMetrics } from '../../web/metrics.js';
import { StatusFeed } from '../../web/status-feed.js';
import { scratchStores } from './scratch-state.js';

/** Chromium flags for tests: headless, no sandbox (root in CI), and no traffic of its own. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/** Launch Debian's Chromium (/usr/bin/chromium, or $SECD_CHROMIUM). */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.SECD_CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

/** A GPU with plausible values; override what the test cares about. */
export function aGpu(nodeId: string, index: number, over: Partial<ApiGpu> = {}): ApiGpu {
  return {
    uuid: `GPU-${nodeId}-${String(index).padStart(2, '0')}-0000-4000-8000-000000000000`,
    index,
    name: 'NVIDIA H100 80GB HBM3',
    memory_total_bytes: 81559 * 2 ** 20,
    memory_used_bytes: 1024 * 2 ** 20,
    utilization_pct: 0,
    temperature_c: 35,
    power_w: 70,
    run_id: null,
    ...over,
  };
}

/** A node with `gpus` GPUs (built by aGpu) that reported just now. */
export function aNode(id: string, gpus: number | ApiGpu[], over: Partial<ApiNode> = {}): ApiNode {
  const list = typeof gpus === 'number' ? Array.from({ length: gpus }, (_, i) => aGpu(id, i)) : gpus;
  return {
    id,
    hostname: `${id}.cluster.example`,
    state: 'up',
    last_seen: new Date().toISOString(),
    cpus: 64,
    memory_bytes: 512 * 2 ** 30,
    load: 1.5,
    runs: [...new Set(list.map((g) => g.run_id).filter((r): r is string => r !== null))],
    gpus: list,
    ...over,
  };
}

/** A leader HTTP server whose nodes come from `nodes()`, over real stores. */
export interface StatusServer {
  url: string;
  store: RunStore;
  releases: ReleaseStore;
  /** Every store over the server's state (the file is `stores.scratch.where`). */
  stores: StateStores;
  feed: StatusFeed;
  metrics: LeaderMetrics;
  close(): Promise<void>;
}

/** Start the leader's HTTP server (listening on loopback) with an injected nodes view. */
export async function startStatusServer(opts: {
  nodes: () => ApiNode[];
  pollMs?: number;
  intake?: LeaderServerDeps['intake'];
  readToken?: string | null;
}): Promise<StatusServer> {
  const stores = await scratchStores('sqlite');
  const store = stores.runs;
  const releases = stores.releases;
  // As web/api-nodes.ts gives them (async: the leader's list reads the runs in flight).
  const nodes = async () => opts.nodes();
  const feed = new StatusFeed({ nodes, store, releases, now: () => new Date(), pollMs: opts.pollMs ?? 1000 });
  const metrics = createLeaderMetrics({ nodes, runCounts: () => countRunsByState(stores.scope) });
  // Only the webhook uses the lifecycle; these tests send it nothing it would accept.
  const lifecycle = {
    acceptPush() {
      throw new Error('no lifecycle in status page tests');
    },
  } as unknown as RunLifecycle;
  const app = buildLeaderServer({
    store,
    lifecycle,
    log: silentLog,
    intake: opts.intake ?? null,
    healthy: () => isStateWritable(stores.scope),
    nodes,
    status: feed,
    metrics,
    releases,
    readToken: opts.readToken ?? null,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  feed.start();
  return {
    url: `http://127.0.0.1:${port}`,
    store,
    releases,
    stores,
    feed,
    metrics,
    async close() {
      feed.close();
      await app.close();
      await stores.dispose();
    },
  };
}

let runSeq = 0;

/** Store a run and walk it through the state table to `state` (assigning `node`/`gpus` on the way). */
export async function aRun(
  store: RunStore,
  opts: { state: RunState; project?: string; user?: string; node?: string; gpus?: string[]; reason?: string; id?: string },
): Promise<RunRow> {
  runSeq++;
  const id = opts.id ?? `run${String(runSeq).padStart(7, '0')}`;
  await store.createRun({
    id,
    projectId: 1,
    project: opts.project ?? 'lab/model',
    ref: 'refs/heads/main',
    beforeSha: '0'.repeat(40),
    commit: `${String(runSeq).padStart(4, '0')}${'ab'.repeat(18)}`,
    user: opts.user ?? 'alice',
    userId: 1,
    deliveryKey: null,
    fetchUrl: 'http://gitlab.example/lab/model.git',
  });
  const path: Record<string, RunState[]> = {
    received: [],
    verified: ['verified'],
    queued: ['verified', 'queued'],
    rejected: ['rejected'],
    assigned: ['verified', 'queued', 'assigned'],
    building: ['verified', 'queued', 'assigned', 'building'],
    running: ['verified', 'queued', 'assigned', 'building', 'running'],
    uploading: ['verified', 'queued', 'assigned', 'building', 'running', 'uploading'],
    succeeded: ['verified', 'queued', 'assigned', 'building', 'running', 'uploading', 'succeeded'],
    failed: ['verified', 'queued', 'assigned', 'building', 'running', 'failed'],
    timed_out: ['verified', 'queued', 'assigned', 'building', 'running', 'timed_out'],
    cancelled: ['verified', 'queued', 'cancelled'],
    lost: ['verified', 'queued', 'assigned', 'lost'],
    held: ['verified', 'queued', 'assigned', 'building', 'running', 'uploading', 'held'],
    withheld: ['verified', 'queued', 'assigned', 'building', 'running', 'uploading', 'held', 'withheld'],
  };
  const reasons: Partial<Record<RunState, string>> = {
    verified: '1 commit verified',
    queued: 'waiting for a node',
    assigned: `assigned to ${opts.node ?? 'gpu-01'}`,
    building: 'building the image',
    running: 'container running',
    uploading: 'pushing results',
    succeeded: 'exit code 0; results in secd-2026-01-01_00.00.00',
    held: 'outputs held for review (0/2 approvals)',
    withheld: 'outputs withheld at review by olga',
  };
  for (const to of path[opts.state]!) {
    const last = to === opts.state;
    const reason = last && opts.reason ? opts.reason : (reasons[to] ?? to);
    const patch =
      to === 'assigned' ? { node: opts.node ?? 'gpu-01', gpus: opts.gpus ?? [] } : to === 'running' ? { startedAt: new Date().toISOString() } : {};
    const r = await store.transition(id, to, reason, patch);
    if (!r.ok) throw new Error(`aRun: cannot move ${id} to ${to}: ${r.code}`);
  }
  return (await store.get(id))!;
}

/** A run's release record as the leader keeps it: decided at assignment, then patched as the review goes. */
export async function aRelease(
  releases: ReleaseStore,
  runId: string,
  opts: {
    policy?: 'direct' | 'review';
    approvalsRequired?: number;
    datasets?: string[];
    findings?: StoredFinding[];
    /** Usernames of the approvals counted so far. */
    approvedBy?: string[];
    mrUrl?: string | null;
    outcome?: 'released' | 'withheld';
    decidedBy?: string;
  } = {},
): Promise<RunReleaseRow> {
  await releases.decide(runId, { policy: opts.policy ?? 'review', approvalsRequired: opts.approvalsRequired ?? 2, datasets: opts.datasets ?? ['cohort'] });
  const at = new Date().toISOString();
  await releases.update(runId, {
    findings: opts.findings ?? [],
    approvals: (opts.approvedBy ?? []).map((user, i) => ({ user, userId: 100 + i, at })),
    ...(opts.mrUrl !== undefined ? { mrUrl: opts.mrUrl, mrIid: opts.mrUrl ? 1 : null, reviewProjectId: 7 } : {}),
    ...(opts.outcome ? { outcome: opts.outcome, decidedBy: opts.decidedBy ?? (opts.approvedBy ?? []).join(', '), decidedAt: at } : {}),
  });
  return (await releases.get(runId))!;
}
