/**
 * Replays (issue 13): a push delivered again under a new Idempotency-Key is the same push, and a push
 * whose commit is no longer its branch's head cannot supersede the current run. The lifecycle over a
 * real in-memory store, with a fake GitLab that says where the branch is.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { PushEvent } from '../intake/push-event.js';
import type { GitLabApi } from '../gitlab/gitlab-port.js';
import type { StateEngine } from '../../storage/sql/state-database.js';
import { STATE_ENGINES } from '../../test/support/scratch-state.js';
import { aPushEvent, fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);

const aPush = (before: string, after: string): PushEvent => aPushEvent(after, before);

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

/** A lifecycle whose GitLab answers `head()` for the branch head (or throws what it throws). */
async function setup(head: () => Promise<string | null>, engine?: StateEngine) {
  let seq = 0;
  const gitlab: GitLabApi = {
    getProject: () => Promise.reject(new Error('unused')),
    listProjectMembers: () => Promise.resolve([]),
    listUserGpgKeys: () => Promise.resolve([]),
    postCommitStatus: () => Promise.resolve(),
    getBranchHead: () => head(),
  };
  t = await lifecycleFixture([fakeNode('n1')], () => ({
    gitlab,
    newRunId: () => `run-${++seq}`,
    verifyPush: ({ after }) => Promise.resolve({ ok: true, commits: [after], head: { sha: after, fingerprint: 'F'.repeat(40), username: 'ada' } }),
    readFileAt: (_p, _sha, path) => Promise.resolve(path === 'Dockerfile' ? Buffer.from('FROM busybox\n') : null),
  }), engine ? { engine } : {});
  return t;
}

// On either engine: the delivery and its run are one transaction (MariaDB: what several leaders share).
describe.each(STATE_ENGINES)('a push delivered again (%s)', (engine) => {
  it('under a new Idempotency-Key is answered as the first run, and nothing new runs', async () => {
    const f = await setup(() => Promise.resolve(B), engine);
    const first = await f.lifecycle.acceptPush(aPush(A, B), 'key-1', 'Push Hook');
    const again = await f.lifecycle.acceptPush(aPush(A, B), 'key-2', 'Push Hook');
    const thrice = await f.lifecycle.acceptPush(aPush(A, B), 'key-2', 'Push Hook');
    await f.settle();
    expect(first).toEqual({ run_id: 'run-1', duplicate: false });
    expect(again).toEqual({ run_id: 'run-1', duplicate: true });
    expect(thrice).toEqual({ run_id: 'run-1', duplicate: true });
    expect((await f.store.list()).map((r) => r.id)).toEqual(['run-1']);
  });

  it('whose commit is no longer the branch head is rejected, and the current run is not cancelled', async () => {
    const f = await setup(() => Promise.resolve(C), engine);
    await f.lifecycle.acceptPush(aPush(B, C), 'key-c', 'Push Hook');
    await f.settle();
    await f.lifecycle.acceptPush(aPush(A, B), 'key-b', 'Push Hook');
    await f.settle();
    expect(await f.store.get('run-2')).toMatchObject({
      state: 'rejected',
      reason: `a newer push exists: branch "master" is at ${C.slice(0, 8)}, not ${B.slice(0, 8)}; this push does not run`,
    });
    expect((await f.store.events('run-1')).map((e) => e.to)).toContain('queued');
    expect((await f.store.events('run-1')).map((e) => e.to)).not.toContain('cancelled');
  });

  it('goes on as before when GitLab cannot say where the branch is', async () => {
    const f = await setup(() => Promise.reject(new Error('GitLab answered 502')), engine);
    await f.lifecycle.acceptPush(aPush(A, B), 'key-1', 'Push Hook');
    await f.settle();
    expect((await f.store.get('run-1'))!.state).not.toBe('rejected');
    expect((await f.store.events('run-1')).map((e) => e.to)).toContain('queued');
  });
});
