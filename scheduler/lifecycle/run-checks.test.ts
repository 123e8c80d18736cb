/**
 * The checks step and verification (DESIGN §13): verification is asked about the run's pusher by
 * GitLab user id, a refusal becomes the run's reason and its commit status, and the commits a push
 * vouched for are recorded in the run's events, who vouched for which.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { PushEvent } from '../intake/push-event.js';
import type { PushVerification } from './lifecycle-deps.js';
import { withSecdYmlWarnings, type VerifyPushRequest } from './run-checks.js';
import { aPushEvent, fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const U = 'c'.repeat(40);

const aPush = (): PushEvent => aPushEvent(B, A);

let t: LifecycleFixture | undefined;
afterEach(async () => t?.close());

async function setup(verdict: PushVerification) {
  const asked: VerifyPushRequest[] = [];
  t = await lifecycleFixture([fakeNode('n1')], () => ({
    newRunId: () => 'run-1',
    verifyPush: (input: VerifyPushRequest) => {
      asked.push(input);
      return Promise.resolve(verdict);
    },
    readFileAt: (_p, _sha, path) => Promise.resolve(path === 'Dockerfile' ? Buffer.from('FROM busybox\n') : null),
  }));
  return { f: t, asked };
}

describe('verifying a run', () => {
  it('asks about the pusher by GitLab user id, and records who vouched for which commit', async () => {
    const { f, asked } = await setup({
      ok: true,
      commits: [U, B],
      head: { sha: B, fingerprint: 'F'.repeat(40), username: 'jsmith' },
      vouched: [{ commit: U, by: 'jsmith' }],
    });
    await f.lifecycle.acceptPush(aPush(), 'key-1', 'Push Hook');
    await f.settle();
    expect(asked).toEqual([{ projectId: 15, project: expect.any(String), before: A, after: B, pusher: { id: 4, username: 'jsmith' } }]);
    const reasons = (await f.store.events('run-1')).map((e) => e.reason);
    expect(reasons).toContain('commit cccccccc vouched for by jsmith (Secd-Vouches-For)');
    expect((await f.store.events('run-1')).map((e) => e.to)).toContain('queued');
  });

  it('a refusal is the run\'s reason and its failed commit status', async () => {
    const reason = 'the push was made by jsmith (GitLab user 4), who is not a member of this project; secd runs pushes only of members with Developer access or more';
    const { f } = await setup({ ok: false, code: 'pusher_not_member', reason });
    await f.lifecycle.acceptPush(aPush(), 'key-1', 'Push Hook');
    await f.settle();
    expect(await f.store.get('run-1')).toMatchObject({ state: 'rejected', reason });
    expect(f.statuses.at(-1)).toMatchObject({ sha: B, state: 'failed', description: reason.slice(0, 255) });
  });
});

describe('secd.yml warnings in the commit status', () => {
  it('an unknown key is kept on the queued run with its near miss, as the status text says it', async () => {
    t = await lifecycleFixture([], () => ({
      newRunId: () => 'run-1',
      verifyPush: () => Promise.resolve({ ok: true, commits: [B], head: { sha: B, fingerprint: 'F'.repeat(40), username: 'jsmith' }, vouched: [] }),
      readFileAt: (_p, _sha, path) =>
        Promise.resolve(path === 'Dockerfile' ? Buffer.from('FROM busybox\n') : path === 'secd.yml' ? Buffer.from('run_for: 1\n') : null),
    }));
    await t.lifecycle.acceptPush(aPush(), 'key-1', 'Push Hook');
    await t.settle();
    const run = (await t.store.get('run-1'))!;
    expect(run.state).toBe('queued');
    expect(withSecdYmlWarnings('queued: waiting for a node', run.warnings)).toBe(
      'queued: waiting for a node; secd.yml: unknown key "run_for" ignored (did you mean "runfor"?)',
    );
    // GitLab takes one pending: the next status that reaches it carries the warning.
    t.lifecycle.postStatus('run-1', 'running', 'building the image');
    await t.settle();
    expect(t.statuses.at(-1)).toMatchObject({ state: 'running', description: expect.stringContaining('building the image; secd.yml: unknown key "run_for" ignored') });
  });

  it('warnings that do not fit in 255 characters are counted, not cut mid-word', () => {
    const many = Array.from({ length: 12 }, (_, i) => `secd.yml: unknown key "extra_key_number_${i}" ignored`);
    const text = withSecdYmlWarnings('queued: waiting for a node', many);
    expect(text.length).toBeLessThanOrEqual(255);
    expect(text).toMatch(/^queued: waiting for a node; secd\.yml: unknown key "extra_key_number_0" ignored; /);
    const shown = (text.match(/extra_key_number_/g) ?? []).length;
    expect(shown).toBeGreaterThan(1);
    expect(text.endsWith(`; ${12 - shown} more on the run page`)).toBe(true);
    expect(withSecdYmlWarnings('queued: waiting for a node', [])).toBe('queued: waiting for a node');
  });
});
