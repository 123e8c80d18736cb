/**
 * The GitLab double's webhooks after real pushes: commit lists capped at 20 with the true count, new
 * and deleted branches, tag pushes, system hooks, redeliveries and raw sends, as GitLab sends them,
 * and the push GitLab's "Test" button sends in the name of whoever pressed it.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BLANK_SHA, BOT_USER_ID } from './gitlab-double.js';
import { prepareGitLabDouble } from './gitlab-double-fixture.js';

const lab = prepareGitLabDouble({ beforeAll, afterAll, beforeEach, afterEach });
const { git, commitMany, commitFile, hooks, payload, pushedClone } = lab;

describe('push webhooks', () => {
  it('a push of 25 commits sends one Push Hook with the 20 newest commits and the true count', async () => {
    const { dir, first } = await pushedClone();
    const shas = await commitMany(dir, 25);
    expect(shas).toHaveLength(25);
    await git(dir, 'push', '-q', 'origin', 'HEAD:main');
    await lab.gl.idle();

    expect(hooks()).toHaveLength(2);
    const event = payload(hooks()[1]!);
    expect(event.before).toBe(first);
    expect(event.after).toBe(shas[24]);
    expect(event.total_commits_count).toBe(25);
    expect(event.commits).toHaveLength(20);
    // oldest first, as GitLab sends them: the last one is the pushed head
    expect(event.commits.map((c) => c.id)).toEqual(shas.slice(5));
    expect(event.commits[19]).toMatchObject({ title: 'step 25', added: ['step-25.txt'] });
  });

  it('"Test push events" names the default branch\'s newest three commits as a push by whoever pressed it', async () => {
    const { dir } = await pushedClone();
    const shas = await commitMany(dir, 4);
    await git(dir, 'push', '-q', 'origin', 'HEAD:main');
    await lab.gl.idle();
    await lab.gl.sendTestPushEvent(lab.project.id, BOT_USER_ID);
    await lab.gl.idle();

    const event = payload(hooks().at(-1)!);
    expect(event).toMatchObject({
      object_kind: 'push',
      ref: 'refs/heads/main',
      before: shas[1],
      after: shas[3],
      checkout_sha: shas[3],
      user_id: BOT_USER_ID,
      user_username: 'secd-bot',
      total_commits_count: 3,
    });
    expect(event.commits.map((c) => c.id)).toEqual(shas.slice(1));
    await expect(lab.gl.sendTestPushEvent(lab.project.id, 4242)).rejects.toThrow('no user 4242');
  });

  it('a new branch has before = zeros; deleting it has after = zeros and no commits', async () => {
    const { dir, first } = await pushedClone();
    await git(dir, 'checkout', '-q', '-b', 'feature');
    await commitFile(dir, 'a.txt', 'a\n');
    const head = await commitFile(dir, 'README.md', '# alpha, changed\n', 'edit readme');
    await git(dir, 'push', '-q', 'origin', 'feature');
    await lab.gl.idle();

    const created = payload(hooks()[1]!);
    expect(created).toMatchObject({
      ref: 'refs/heads/feature',
      before: BLANK_SHA,
      after: head,
      checkout_sha: head,
      ref_protected: false,
      total_commits_count: 2, // the commits not on the default branch
    });
    expect(created.commits.map((c) => c.title)).toEqual(['add a.txt', 'edit readme']);
    expect(created.commits[1]).toMatchObject({ added: [], modified: ['README.md'], removed: [] });

    await git(dir, 'push', '-q', 'origin', '--delete', 'feature');
    await lab.gl.idle();
    const deleted = payload(hooks()[2]!);
    expect(deleted).toMatchObject({
      object_kind: 'push',
      ref: 'refs/heads/feature',
      before: head,
      after: BLANK_SHA,
      checkout_sha: null,
      commits: [],
      total_commits_count: 0,
    });
    expect(await git(lab.scratch, '--git-dir', lab.gl.repoDir('research/alpha'), 'branch', '--list')).not.toContain('feature');
    expect(first).toMatch(/^[0-9a-f]{40}$/);
  });

  it('a tag push is a Tag Push Hook naming the tag and its commit', async () => {
    const { dir, first } = await pushedClone();
    await git(dir, 'tag', '-a', 'v1.0', '-m', 'release one');
    const tagObject = await git(dir, 'rev-parse', 'v1.0');
    await git(dir, 'push', '-q', 'origin', 'v1.0');
    await lab.gl.idle();

    const hook = hooks()[1]!;
    expect(hook.headers['x-gitlab-event']).toBe('Tag Push Hook');
    expect(payload(hook)).toMatchObject({
      object_kind: 'tag_push',
      event_name: 'tag_push',
      ref: 'refs/tags/v1.0',
      before: BLANK_SHA,
      after: tagObject,
      checkout_sha: first,
      message: 'release one',
      total_commits_count: 1,
    });
  });

  it('a system hook gets the same payload as "System Hook", and a redelivery repeats the Idempotency-Key', async () => {
    lab.gl.addWebhook({ url: `${lab.receiverUrl}/system`, secret: 'sys-secret', kind: 'system' });
    await pushedClone();
    const system = lab.received.filter((r) => r.path === '/system');
    expect(system).toHaveLength(1);
    expect(system[0]!.headers['x-gitlab-event']).toBe('System Hook');
    expect(system[0]!.headers['x-gitlab-token']).toBe('sys-secret');
    expect(system[0]!.body).toBe(hooks()[0]!.body);
    // one event, two hooks: same event UUID, different idempotency keys
    expect(system[0]!.headers['x-gitlab-event-uuid']).toBe(hooks()[0]!.headers['x-gitlab-event-uuid']);
    expect(system[0]!.headers['idempotency-key']).not.toBe(hooks()[0]!.headers['idempotency-key']);

    const original = lab.gl.deliveries.findIndex((d) => d.url.endsWith('/v1/hook'));
    const again = await lab.gl.redeliver(original);
    expect(again.redeliveryOf).toBe(original);
    expect(hooks()).toHaveLength(2);
    expect(hooks()[1]!.body).toBe(hooks()[0]!.body);
    expect(hooks()[1]!.headers['idempotency-key']).toBe(hooks()[0]!.headers['idempotency-key']);

    const raw = await lab.gl.sendRaw({ body: '{"object_kind": ', headers: { 'X-Gitlab-Token': null } });
    expect(raw).toMatchObject({ raw: true, status: 200, url: `${lab.receiverUrl}/v1/hook` });
    expect(hooks()[2]!.body).toBe('{"object_kind": ');
    expect(hooks()[2]!.headers['x-gitlab-token']).toBeUndefined();
    expect(hooks()[2]!.headers['x-gitlab-event']).toBe('Push Hook');
  });
});
