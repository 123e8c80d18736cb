import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type SqliteDatabase } from '../../storage/database.js';
import { RunStore } from '../../storage/run-store.js';
import type { CommitStatus, GitLabApi } from '../gitlab/gitlab-port.js';
import { silentLog } from '../common/log.js';
import { resolveRunConfig } from '../policy/project-policy.js';
import { RunLifecycle, type NodeHandle } from './run-lifecycle.js';
import type { RunSpec } from '../contract/run-spec.js';

// The lifecycle's scheduling step against a real (in-memory) run store and fake nodes: what the
// planner decides is what happens to the runs.

interface FakeNode extends NodeHandle {
  assigned: RunSpec[];
}

function fakeNode(id: string, gpuCount: number, images: string[] = []): FakeNode {
  const assigned: RunSpec[] = [];
  return {
    id,
    assigned,
    state: () => 'up',
    gpus: () => Array.from({ length: gpuCount }, (_, i) => `${id}-g${i}`),
    foreignBusyGpus: () => [],
    cpuSlots: () => 2,
    images: () => images,
    assign: (spec) => assigned.push(spec),
    cancel: () => {},
  };
}

let db: SqliteDatabase | undefined;
afterEach(() => db?.close());

function setup(nodes: NodeHandle[]) {
  db = openDatabase(':memory:');
  const store = new RunStore(db);
  const statuses: Array<{ sha: string } & CommitStatus> = [];
  const gitlab: GitLabApi = {
    getProject: () => Promise.reject(new Error('unused')),
    listProjectMembers: () => Promise.resolve([]),
    listUserGpgKeys: () => Promise.resolve([]),
    postCommitStatus: (_project, sha, status) => {
      statuses.push({ sha, ...status });
      return Promise.resolve();
    },
  };
  const lifecycle = new RunLifecycle({
    store,
    gitlab,
    log: silentLog,
    now: () => new Date(),
    newRunId: () => 'unused',
    verifyPush: () => Promise.reject(new Error('unused')),
    readFileAt: () => Promise.resolve(null),
    sourceFor: () => 'file:///source.git',
    resultsRemoteFor: () => 'file:///results.git',
    nodes: () => nodes,
    settings: { publicUrl: 'http://127.0.0.1:8080', maxRunforHours: 24, maxGpusPerRun: 8 },
  });
  let seq = 0;
  /** A run that passed verification and policy with this secd.yml, as if its node was there then. */
  const queue = (project: string, yml: string, user = 'alice') => {
    const id = `run-${++seq}`;
    const sha = `${String(seq).padStart(2, '0')}`.repeat(20);
    store.createRun({ id, projectId: seq, project, ref: 'refs/heads/main', beforeSha: '0'.repeat(40), commit: sha, user, userId: 1, deliveryKey: id, fetchUrl: 'x' });
    store.transition(id, 'verified', 'verified');
    const policy = resolveRunConfig(yml, { maxRunforHours: 24, maxGpusPerRun: 8, largestNodeGpus: 8 });
    if (!policy.ok) throw new Error(policy.reason);
    store.transition(id, 'queued', 'waiting for a node', { config: policy.config, warnings: policy.warnings });
    return { id, sha };
  };
  const plan = async () => {
    lifecycle.scheduleSoon();
    await new Promise((resolve) => setImmediate(resolve));
    await lifecycle.idle();
  };
  return { store, statuses, queue, plan };
}

describe('scheduling queued runs', () => {
  it('a run no node can ever take is rejected with the planner’s reason, and the researcher sees it', async () => {
    const { store, statuses, queue, plan } = setup([fakeNode('gpu-01', 2), fakeNode('gpu-02', 1)]);
    const run = queue('lab/big', 'gpu: 4\n');
    await plan();
    expect(store.get(run.id)).toMatchObject({ state: 'rejected', reason: 'no node can run it: asks for 4 GPUs but the largest node has 2' });
    expect(statuses).toEqual([expect.objectContaining({ sha: run.sha, state: 'failed', description: 'no node can run it: asks for 4 GPUs but the largest node has 2' })]);
  });

  it('a GPU run goes to the node holding its project image, and GPUs held by assigned runs are not given again', async () => {
    const plain = fakeNode('gpu-01', 2);
    const warm = fakeNode('gpu-02', 2, ['lab/model']);
    const { store, queue, plan } = setup([plain, warm]);
    const first = queue('lab/model', 'gpu: 1\n');
    await plan();
    expect(store.get(first.id)).toMatchObject({ state: 'assigned', node: 'gpu-02', gpus: ['gpu-02-g0'] });
    const second = queue('lab/other', 'gpu: 1\n', 'bob');
    await plan();
    // gpu-02 now has one free GPU: the tighter fit.
    expect(store.get(second.id)).toMatchObject({ state: 'assigned', node: 'gpu-02', gpus: ['gpu-02-g1'] });
    const third = queue('lab/other', 'gpu: 2\n', 'bob');
    await plan();
    expect(store.get(third.id)).toMatchObject({ state: 'assigned', node: 'gpu-01', gpus: ['gpu-01-g0', 'gpu-01-g1'] });
    const fourth = queue('lab/model', 'gpu: 1\n');
    await plan();
    expect(store.get(fourth.id)?.state).toBe('queued');
    expect(warm.assigned.map((s) => s.runId)).toEqual([first.id, second.id]);
  });
});
