/**
 * What the lifecycle's tests share: real stores over an in-memory SQLite state database
 * (test/support/scratch-state.ts's memoryStores) on a fake clock, a fake GitLab that records the
 * statuses posted, fake nodes that record what they were told, and a builder for a run
 * that got as far as a given state. Nothing in the leader imports this module.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parsePushEvent, type PushEvent } from '../../scheduler/intake/push-event.js';
import type { RunStore } from '../../storage/run-store.js';
import type { StateDatabase, StateEngine } from '../../storage/sql/state-database.js';
import type { StateStores } from '../../storage/state-stores.js';
import { memoryStores, scratchStores } from './scratch-state.js';
import type { RunState } from '../../storage/run-states.js';
import type { CommitStatus, GitLabApi } from '../../scheduler/gitlab/gitlab-port.js';
import { silentLog } from '../../scheduler/common/log.js';
import { resolveRunConfig } from '../../scheduler/policy/project-policy.js';
import type { RunSpec } from '../../scheduler/contract/run-spec.js';
import type { LifecycleDeps, NodeHandle } from '../../scheduler/lifecycle/lifecycle-deps.js';
import { RunLifecycle } from '../../scheduler/lifecycle/run-lifecycle.js';

/** Where the fake clock starts. */
export const START = Date.parse('2026-01-01T00:00:00Z');

/** What a fake node reports; a test changes it to make the node change. */
export interface FakeNodeSettings {
  state?: 'up' | 'down' | 'draining';
  /** Its GPUs' UUIDs; default `<id>-g0`... for `gpuCount` GPUs. */
  gpus?: string[];
  gpuCount?: number;
  foreignBusy?: string[];
  cpuSlots?: number;
  images?: string[];
}

/** A node handle that records the specs it was given and the cancels it was sent. */
export interface FakeNode extends NodeHandle {
  readonly set: FakeNodeSettings;
  assigned: RunSpec[];
  cancelled: Array<[string, string]>;
}

/** An up node with no GPU, two CPU slots and no image unless told otherwise. */
export function fakeNode(id: string, over: FakeNodeSettings = {}): FakeNode {
  const set = { ...over };
  const assigned: RunSpec[] = [];
  const cancelled: Array<[string, string]> = [];
  return {
    id,
    set,
    assigned,
    cancelled,
    state: () => set.state ?? 'up',
    gpus: () => set.gpus ?? Array.from({ length: set.gpuCount ?? 0 }, (_, i) => `${id}-g${i}`),
    foreignBusyGpus: () => set.foreignBusy ?? [],
    cpuSlots: () => set.cpuSlots ?? 2,
    images: () => set.images ?? [],
    assign: (spec) => assigned.push(spec),
    cancel: (runId, reason) => cancelled.push([runId, reason]),
  };
}

/** Commit statuses as the fake GitLab received them. */
export type PostedStatus = { sha: string } & CommitStatus;

/** A lifecycle over a fresh in-memory state database; `close()` it after the test. */
export interface LifecycleFixture {
  /** Every store over the fixture's database (on its fake clock). */
  stores: StateStores;
  /** The database under them (raw SQL for a test that sets up what no store writes). */
  state: StateDatabase;
  store: RunStore;
  lifecycle: RunLifecycle;
  statuses: PostedStatus[];
  /** The fake clock every part reads. */
  now(): Date;
  advance(ms: number): void;
  /** Let the lifecycle's next planning round and what it started finish. */
  settle(): Promise<void>;
  /** Plan now and settle. */
  plan(): Promise<void>;
  /**
   * A run that passed verification and policy with `yml` (default `gpu: 1`) and went as far as
   * `state`; from `assigned` on it holds `gpus` on `node`.
   */
  runIn(state: RunState, opts?: { project?: string; user?: string; yml?: string; node?: string; gpus?: string[] }): Promise<{ id: string; sha: string }>;
  /** Close the lifecycle (waiting for its work), then the database. */
  close(): Promise<void>;
}

/** The fixture's stores: in memory by default, else a scratch database on `engine`. */
async function fixtureStores(engine: StateEngine | undefined, now: () => Date): Promise<StateStores & { state: StateDatabase; close(): Promise<void> }> {
  if (engine === undefined) return memoryStores(now);
  const scratch = await scratchStores(engine, now);
  return { ...scratch, close: () => scratch.dispose() };
}

/** Deps a test sets itself; `settings` are merged into the defaults. */
export type FixtureDeps = Partial<Omit<LifecycleDeps, 'settings'>> & { settings?: Partial<LifecycleDeps['settings']> };

/**
 * Build the lifecycle with fake nodes; `deps` may use the stores to build more (datasets, releases).
 * The state is an in-memory SQLite database, or with `engine` a scratch database on that engine
 * (`mysql`: a fresh database on the test MariaDB, dropped at close).
 */
export async function lifecycleFixture(
  nodes: NodeHandle[] | (() => NodeHandle[]),
  deps: (base: { stores: StateStores; store: RunStore }) => FixtureDeps | Promise<FixtureDeps> = () => ({}),
  opts: { engine?: StateEngine } = {},
): Promise<LifecycleFixture> {
  let nowMs = START;
  const now = () => new Date(nowMs);
  const stores = await fixtureStores(opts.engine, now);
  const store = stores.runs;
  const statuses: PostedStatus[] = [];
  const gitlab: GitLabApi = {
    getProject: () => Promise.reject(new Error('unused')),
    listProjectMembers: () => Promise.resolve([]),
    listUserGpgKeys: () => Promise.resolve([]),
    postCommitStatus: (_project, sha, status) => {
      statuses.push({ sha, ...status });
      return Promise.resolve();
    },
  };
  const extra = await deps({ stores, store });
  const lifecycle = new RunLifecycle({
    store,
    gitlab,
    log: silentLog,
    now,
    newRunId: () => 'unused',
    verifyPush: () => Promise.reject(new Error('unused')),
    readFileAt: () => Promise.resolve(null),
    sourceFor: () => 'https://gitlab.example.org/lab/x.git',
    resultsRemoteFor: () => 'https://gitlab.example.org/lab/x.git',
    nodes: typeof nodes === 'function' ? nodes : () => nodes,
    ...extra,
    settings: { publicUrl: 'http://127.0.0.1:8080', maxRunforHours: 24, maxGpusPerRun: 8, ...extra.settings },
  });
  const settle = async () => {
    // Planning runs on the next tick (scheduleSoon): let it, and what it starts, finish.
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      await lifecycle.idle();
    }
  };
  let seq = 0;
  const runIn: LifecycleFixture['runIn'] = async (state, opts = {}) => {
    const id = `run-${++seq}`;
    const sha = `${String(seq).padStart(2, '0')}`.repeat(20);
    const project = opts.project ?? `lab/p${seq}`;
    await store.createRun({ id, projectId: seq, project, ref: 'refs/heads/main', beforeSha: '0'.repeat(40), commit: sha, user: opts.user ?? 'ada', userId: 1, deliveryKey: id, fetchUrl: 'x' });
    await store.transition(id, 'verified', 'verified');
    const policy = resolveRunConfig(opts.yml ?? 'gpu: 1\n', { maxRunforHours: 24, maxGpusPerRun: 8, largestNodeGpus: 8 });
    if (!policy.ok) throw new Error(policy.reason);
    await store.transition(id, 'queued', 'waiting for a node', { config: policy.config, warnings: policy.warnings });
    const path: RunState[] = ['assigned', 'building', 'running', 'uploading', 'succeeded'];
    for (const s of path.slice(0, path.indexOf(state) + 1)) {
      const moved = await store.transition(id, s, s, s === 'assigned' ? { node: opts.node ?? 'gpu-01', gpus: opts.gpus ?? ['GPU-A'] } : {});
      if (!moved.ok) throw new Error(`fixture: run ${id} could not move to ${s} (${moved.code})`);
    }
    return { id, sha };
  };
  let closed = false;
  return {
    stores,
    state: stores.state,
    store,
    lifecycle,
    statuses,
    now,
    advance: (ms) => {
      nowMs += ms;
    },
    settle,
    plan: async () => {
      lifecycle.scheduleSoon();
      await settle();
    },
    runIn,
    // The lifecycle first (its work ends before the database goes, as the leader shuts down), once.
    close: async () => {
      if (closed) return;
      closed = true;
      await lifecycle.close();
      await stores.close();
    },
  };
}

/** GitLab's documented push webhook (test/fixtures/gitlab), moved from `before` to `after`, parsed as intake parses it. */
export function aPushEvent(after: string, before = 'a'.repeat(40)): PushEvent {
  const body = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/gitlab/push_event_webhook.json'), 'utf8')) as Record<string, unknown>;
  const parsed = parsePushEvent({ ...body, before, after, checkout_sha: after, commits: [], total_commits_count: 1 });
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.push;
}
