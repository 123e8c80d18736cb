/**
 * The checks step and verification (DESIGN §13): verification is asked about the run's pusher by
 * GitLab user id, a refusal becomes the run's reason and its commit status, and the commits a push
 * vouched for are recorded in the run's events, who vouched for which.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePushEvent, type PushEvent } from '../intake/push-event.js';
import type { PushVerification } from './lifecycle-deps.js';
import type { VerifyPushRequest } from './run-checks.js';
import { fakeNode, lifecycleFixture, type LifecycleFixture } from './lifecycle-fixtures.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const U = 'c'.repeat(40);

function aPush(): PushEvent {
  const body = JSON.parse(readFileSync(join(import.meta.dirname, '../../test/fixtures/gitlab/push_event_webhook.json'), 'utf8')) as Record<string, unknown>;
  const parsed = parsePushEvent({ ...body, before: A, after: B, checkout_sha: B, commits: [], total_commits_count: 1 });
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.push;
}

let t: LifecycleFixture | undefined;
afterEach(() => t?.close());

function setup(verdict: PushVerification) {
  const asked: VerifyPushRequest[] = [];
  t = lifecycleFixture([fakeNode('n1')], () => ({
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
    const { f, asked } = setup({
      ok: true,
      commits: [U, B],
      head: { sha: B, fingerprint: 'F'.repeat(40), username: 'jsmith' },
      vouched: [{ commit: U, by: 'jsmith' }],
    });
    f.lifecycle.acceptPush(aPush(), 'key-1', 'Push Hook');
    await f.settle();
    expect(asked).toEqual([{ projectId: 15, project: expect.any(String), before: A, after: B, pusher: { id: 4, username: 'jsmith' } }]);
    const reasons = f.store.events('run-1').map((e) => e.reason);
    expect(reasons).toContain('commit cccccccc vouched for by jsmith (Secd-Vouches-For)');
    expect(f.store.events('run-1').map((e) => e.to)).toContain('queued');
  });

  it('a refusal is the run\'s reason and its failed commit status', async () => {
    const reason = 'the push was made by jsmith (GitLab user 4), who is not a member of this project; secd runs pushes only of members with Developer access or more';
    const { f } = setup({ ok: false, code: 'pusher_not_member', reason });
    f.lifecycle.acceptPush(aPush(), 'key-1', 'Push Hook');
    await f.settle();
    expect(f.store.get('run-1')).toMatchObject({ state: 'rejected', reason });
    expect(f.statuses.at(-1)).toMatchObject({ sha: B, state: 'failed', description: reason.slice(0, 255) });
  });
});
