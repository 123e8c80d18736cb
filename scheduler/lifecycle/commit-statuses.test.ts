import { afterEach, describe, expect, it } from 'vitest';
import { silentLog } from '../common/log.js';
import type { RunOutcome } from '../contract/run-spec.js';
import { GitLabError, type CommitStatus, type GitLabApi } from '../gitlab/gitlab-port.js';
import { CommitStatuses, TIME_LEFT_EVERY_MS, WORDS_EVERY_MS } from './commit-statuses.js';
import { fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';

// What a researcher reads beside their commit while the run waits, builds and runs: the words, and
// how often GitLab is asked to keep a new record of them.

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

const done = (reason = 'succeeded'): RunOutcome => ({
  end: 'succeeded',
  reason,
  exitCode: 0,
  imageId: 'sha256:1',
  branch: 'secd-x',
  outputsPath: 'outputs/x',
  startedAt: '2026-01-01T00:00:00.000Z',
  finishedAt: '2026-01-01T00:00:01.000Z',
});

/** gpu-03 with one H100, as its node reports it. */
function gpu03() {
  const node = fakeNode('gpu-03', { gpuCount: 1 });
  return Object.assign(node, { gpuDetails: () => [{ uuid: 'gpu-03-g0', name: 'NVIDIA H100 80GB HBM3', memoryBytes: 80 * 2 ** 30, mig: null }] });
}

describe('the commit status of a run that waits in line, builds and runs', () => {
  it('moves from "queued: 2nd in line" to "queued: 1st in line" to "building on gpu-03" to running with its time left', async () => {
    t = await lifecycleFixture([gpu03()]);
    const f = t;
    const bob = await f.runIn('running', { user: 'bob', yml: 'runfor: 1\ngpu: 1\n', node: 'gpu-03', gpus: ['gpu-03-g0'] });
    const alice = await f.runIn('queued', { user: 'alice', yml: 'runfor: 1\ngpu: 1\n' });
    const carol = await f.runIn('queued', { user: 'carol', yml: 'runfor: 3\ngpu: 1\n' });
    const carols = () => f.statuses.filter((s) => s.sha === carol.sha).map((s) => `${s.state}: ${s.description}`);
    await f.plan();
    expect(carols()).toEqual([expect.stringMatching(/^pending: queued: 2nd in line for 1 GPU/)]);

    // bob ends 10 s later: alice gets the GPU and carol is 1st, which waits for the minute to be up.
    f.advance(10_000);
    f.lifecycle.onResult('gpu-03', bob.id, done());
    await f.settle();
    expect((await f.store.get(alice.id))?.state).toBe('assigned');
    expect((await f.store.get(carol.id))?.reason).toMatch(/^queued: 1st in line for 1 GPU/);
    expect(carols()).toHaveLength(1);
    f.lifecycle.sweepLostRuns();
    await f.settle();
    expect(carols()).toHaveLength(1);

    f.advance(WORDS_EVERY_MS);
    f.lifecycle.sweepLostRuns();
    await f.settle();
    expect(carols()).toEqual([expect.stringMatching(/^pending: queued: 2nd in line/), expect.stringMatching(/^pending: queued: 1st in line for 1 GPU/)]);
    // Nothing new to say: nothing posted.
    f.lifecycle.sweepLostRuns();
    await f.plan();
    expect(carols()).toHaveLength(2);

    f.lifecycle.onResult('gpu-03', alice.id, done());
    await f.settle();
    expect(await f.store.get(carol.id)).toMatchObject({ state: 'assigned', node: 'gpu-03' });
    f.lifecycle.onPhase('gpu-03', carol.id, 'building', f.now().toISOString());
    await f.settle();
    expect(carols().at(-1)).toBe('running: building on gpu-03');

    f.advance(5 * 60_000);
    f.lifecycle.onPhase('gpu-03', carol.id, 'running', f.now().toISOString());
    await f.settle();
    // runfor counts from the build's start: 3 h less the 5 min it took.
    expect(carols().at(-1)).toBe('running: running on gpu-03 (1× H100), 2 h 55 min left');

    // The time left goes out again only after 30 minutes.
    f.advance(TIME_LEFT_EVERY_MS - 60_000);
    f.lifecycle.sweepLostRuns();
    await f.settle();
    expect(carols()).toHaveLength(4);
    f.advance(60_000);
    f.lifecycle.sweepLostRuns();
    await f.settle();
    expect(carols()).toEqual([
      expect.stringMatching(/^pending: queued: 2nd in line/),
      expect.stringMatching(/^pending: queued: 1st in line/),
      'running: building on gpu-03',
      'running: running on gpu-03 (1× H100), 2 h 55 min left',
      'running: running on gpu-03 (1× H100), 2 h 25 min left',
    ]);
    // The run page says the same: the reason keeps the lifecycle's own words.
    expect((await f.store.get(carol.id))?.statusPosted).toBe('running');
  });

  it('words held back a minute are dropped when the run moves on before the minute is up', async () => {
    t = await lifecycleFixture([]);
    const f = t;
    const run = await f.runIn('queued');
    const statuses = new CommitStatuses({ store: f.store, gitlab: gitlabRecording(f), log: silentLog, publicUrl: 'http://leader', now: f.now });
    await statuses.post(run.id, 'pending', 'queued: 2nd in line for 1 GPU');
    f.advance(10_000);
    await statuses.post(run.id, 'pending', 'queued: 1st in line for 1 GPU');
    await f.store.transition(run.id, 'assigned', 'assigned to gpu-03', { node: 'gpu-03', gpus: ['gpu-03-g0'] });
    f.advance(WORDS_EVERY_MS);
    await statuses.flush();
    expect(f.statuses.filter((s) => s.sha === run.sha).map((s) => s.description)).toEqual(['queued: 2nd in line for 1 GPU']);
  });
});

describe('a GitLab that refuses a repeated state', () => {
  it('gets one try: after its 400, new words go out only with a new state', async () => {
    t = await lifecycleFixture([]);
    const f = t;
    const posted: CommitStatus[] = [];
    const refused: CommitStatus[] = [];
    const last = new Map<string, string>();
    // GitLab before gitlab-org/gitlab MR 198626: pending -> pending is "Cannot transition status via :enqueue from :pending".
    const gitlab: GitLabApi = {
      getProject: () => Promise.reject(new Error('unused')),
      listProjectMembers: () => Promise.resolve([]),
      listUserGpgKeys: () => Promise.resolve([]),
      postCommitStatus: async (_p, sha, status) => {
        if (last.get(sha) === status.state) {
          refused.push(status);
          throw new GitLabError(400, `/projects/1/statuses/${sha}`, '{"message":"Cannot transition status via :enqueue from :pending"}');
        }
        last.set(sha, status.state);
        posted.push(status);
      },
    };
    const statuses = new CommitStatuses({ store: f.store, gitlab, log: silentLog, publicUrl: 'http://leader', now: f.now });
    const one = await f.runIn('queued');
    const two = await f.runIn('queued');
    await statuses.post(one.id, 'pending', 'queued: 2nd in line for 1 GPU');
    f.advance(WORDS_EVERY_MS);
    await statuses.post(one.id, 'pending', 'queued: 1st in line for 1 GPU');
    expect(refused.map((s) => s.description)).toEqual(['queued: 1st in line for 1 GPU']);
    await statuses.post(two.id, 'pending', 'queued: 3rd in line for 1 GPU');
    f.advance(WORDS_EVERY_MS);
    await statuses.post(two.id, 'pending', 'queued: 2nd in line for 1 GPU');
    await statuses.flush();
    expect(refused).toHaveLength(1);
    await statuses.post(one.id, 'success', 'succeeded');
    expect(posted.map((s) => `${s.state}: ${s.description}`)).toEqual([
      'pending: queued: 2nd in line for 1 GPU',
      'pending: queued: 3rd in line for 1 GPU',
      'success: succeeded',
    ]);
  });

  it('a final state is never posted twice, whatever its words', async () => {
    t = await lifecycleFixture([]);
    const f = t;
    const run = await f.runIn('queued');
    await f.settle();
    const statuses = new CommitStatuses({ store: f.store, gitlab: { ...gitlabRecording(f) }, log: silentLog, publicUrl: 'http://leader', now: f.now });
    await statuses.post(run.id, 'failed', 'the image build failed');
    await statuses.post(run.id, 'failed', 'the image build failed: again');
    expect(f.statuses.filter((s) => s.sha === run.sha).map((s) => s.description)).toEqual(['the image build failed']);
  });
});

/** The fixture's recording GitLab, reached through a post of the fixture's own lifecycle. */
function gitlabRecording(f: LifecycleFixture): GitLabApi {
  return {
    getProject: () => Promise.reject(new Error('unused')),
    listProjectMembers: () => Promise.resolve([]),
    listUserGpgKeys: () => Promise.resolve([]),
    postCommitStatus: async (_p, sha, status) => {
      f.statuses.push({ sha, ...status });
    },
  };
}
