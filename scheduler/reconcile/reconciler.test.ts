/**
 * The reconciler over a real lifecycle and run store (in memory) and a fake GitLab holding projects,
 * branch heads and push events: a head no run covers becomes a run of its pusher, once, whichever of
 * the reconciler and a webhook of the same push comes first; GitLab failing costs one project one
 * round, never the leader.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runHeads } from '../../storage/run-heads.js';
import type { Log } from '../common/log.js';
import { silentLog } from '../common/log.js';
import type { GitLabProject, GitLabPushEvent } from '../gitlab/gitlab-port.js';
import { parsePushEvent, type PushEvent } from '../intake/push-event.js';
import type { VerifyPushRequest } from '../lifecycle/run-checks.js';
import { fakeNode, lifecycleFixture, type LifecycleFixture } from '../../test/support/lifecycle-fixtures.js';
import { MissedPushReconciler, startMissedPushReconciler } from './reconciler.js';

const SECRET = 'reconcile-test-secret';
const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);

/** GitLab as the reconciler reads it: projects, heads, push events; `failing` projects answer 500. */
class FakeGitLab {
  readonly projects = new Map<number, GitLabProject>();
  readonly heads = new Map<string, string>();
  readonly events = new Map<number, GitLabPushEvent[]>();
  readonly failing = new Set<number>();
  readonly calls: string[] = [];
  private nextEvent = 1;

  addProject(id: number, path: string, defaultBranch: string | null = 'main'): void {
    this.projects.set(id, { id, path_with_namespace: path, default_branch: defaultBranch, http_url_to_repo: `https://gitlab.example.org/${path}.git` });
  }

  /** `user` pushed `branch` of project `id` from `from` (null: created) to `to`. */
  push(id: number, branch: string, from: string | null, to: string, user: { id: number; username: string }): void {
    this.heads.set(`${id} ${branch}`, to);
    const list = this.events.get(id) ?? [];
    list.unshift({
      id: this.nextEvent++,
      author_id: user.id,
      author: { id: user.id, username: user.username, name: user.username.toUpperCase() },
      push_data: { action: from === null ? 'created' : 'pushed', ref_type: 'branch', commit_from: from, commit_to: to, ref: branch },
    });
    this.events.set(id, list);
  }

  api() {
    const fail = (id: number, what: string) => {
      this.calls.push(`${what} ${id}`);
      if (this.failing.has(id)) throw new Error(`GitLab answered 500 for ${what} of project ${id}`);
    };
    return {
      getProject: async (id: number) => {
        fail(id, 'project');
        const p = this.projects.get(id);
        if (!p) throw new Error(`GitLab answered 404 for /projects/${id}`);
        return p;
      },
      getBranchHead: async (id: number, branch: string) => {
        fail(id, 'branch');
        return this.heads.get(`${id} ${branch}`) ?? null;
      },
      listPushEvents: async (id: number) => {
        fail(id, 'events');
        return this.events.get(id) ?? [];
      },
      listProjectMembers: async () => [],
      listUserGpgKeys: async () => [],
      postCommitStatus: async () => undefined,
    };
  }
}

/** A log that keeps warnings, to see what an operator would read. */
function recordingLog(): Log & { warnings: string[] } {
  const warnings: string[] = [];
  const log: Log & { warnings: string[] } = { ...silentLog, warnings, warn: (obj, msg) => void warnings.push(`${msg ?? ''} ${JSON.stringify(obj)}`), child: () => log };
  return log;
}

/** The webhook GitLab would have sent for the same push (its own Idempotency-Key aside). */
function webhookPush(projectId: number, path: string, before: string, after: string, user: { id: number; username: string }): PushEvent {
  const body = JSON.parse(readFileSync(join(import.meta.dirname, '../../test/fixtures/gitlab/push_event_webhook.json'), 'utf8')) as Record<string, unknown>;
  const parsed = parsePushEvent({
    ...body,
    before,
    after,
    ref: 'refs/heads/main',
    checkout_sha: after,
    user_id: user.id,
    user_username: user.username,
    project_id: projectId,
    project: { ...(body.project as object), id: projectId, path_with_namespace: path, default_branch: 'main' },
    commits: [],
  });
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.push;
}

let t: LifecycleFixture | undefined;
let reconciler: MissedPushReconciler | null = null;
afterEach(async () => {
  await reconciler?.close();
  reconciler = null;
  await t?.close();
});

const ada = { id: 41, username: 'ada' };
const bob = { id: 42, username: 'bob' };

/** A lifecycle whose verification records who it was asked about and rejects (nothing runs further). */
async function setUp(gitlab: FakeGitLab, log: Log = silentLog, projectsPerRound?: number) {
  const asked: VerifyPushRequest[] = [];
  let seq = 0;
  const f = await lifecycleFixture([fakeNode('n1')], () => ({
    newRunId: () => `run-${++seq}`,
    verifyPush: (req) => {
      asked.push(req);
      return Promise.resolve({ ok: false as const, code: 'unsigned', reason: 'test: stop after verification' });
    },
  }));
  t = f;
  reconciler = new MissedPushReconciler({
    gitlab: gitlab.api(),
    runs: runHeads(f.stores.scope),
    intake: { webhookSecret: SECRET, runBranch: 'default', reviewProject: 'secd/output-review' },
    acceptPush: (push, key, event) => f.lifecycle.acceptPush(push, key, event),
    log,
    intervalMs: 60_000,
    ...(projectsPerRound ? { projectsPerRound } : {}),
  });
  /** A run secd already had for `commit` of project `id` (what makes the project known). */
  const ranBefore = (id: number, path: string, commit: string) =>
    f.store.createRun({ id: `old-${id}-${commit.slice(0, 4)}`, projectId: id, project: path, ref: 'refs/heads/main', beforeSha: '0'.repeat(40), commit, user: 'ada', userId: ada.id, deliveryKey: `old-${id}-${commit}`, fetchUrl: 'x' });
  return { f, asked, ranBefore, r: reconciler };
}

describe('the reconciler', () => {
  it('runs a head no webhook announced as a push by whoever GitLab says pushed it, from GitLab\'s own before', async () => {
    const gitlab = new FakeGitLab();
    gitlab.addProject(7, 'lab/seven');
    const { f, asked, ranBefore, r } = await setUp(gitlab);
    await ranBefore(7, 'lab/seven', A);
    gitlab.push(7, 'main', A, B, ada);
    gitlab.push(7, 'main', B, C, bob); // the newest head: pushed by bob, from B (never run either)

    const outcomes = await r.round();
    expect(outcomes.get(7)).toMatchObject({ kind: 'started', commit: C, duplicate: false });
    await f.settle();
    const run = (await f.store.findPush(7, 'refs/heads/main', B, C))!;
    expect(run).toMatchObject({ project: 'lab/seven', user: 'bob', userId: bob.id, commit: C, beforeSha: B, fetchUrl: 'https://gitlab.example.org/lab/seven.git' });
    // The same verification a webhook's push gets, about the pusher by id.
    expect(asked).toEqual([{ projectId: 7, project: 'lab/seven', before: B, after: C, pusher: { id: bob.id, username: 'bob' } }]);
    expect((await f.store.get(run.id))?.state).toBe('rejected');
  });

  it('leaves a covered head alone, a rejected run covering it too, so the next round starts nothing', async () => {
    const gitlab = new FakeGitLab();
    gitlab.addProject(7, 'lab/seven');
    const { f, ranBefore, r } = await setUp(gitlab);
    await ranBefore(7, 'lab/seven', A);
    gitlab.push(7, 'main', A, B, ada);
    await r.round();
    await f.settle();
    expect((await f.store.list()).map((x) => x.state)).toContain('rejected');
    const again = await r.round();
    expect(again.get(7)).toEqual({ kind: 'covered', commit: B });
    expect(await f.store.list()).toHaveLength(2);
    // Only the head's project and branch were read the second time: no events, no push.
    expect(gitlab.calls.slice(-2)).toEqual(['project 7', 'branch 7']);
  });

  it('a webhook of the same push arriving after the reconciler is answered as a duplicate of its run', async () => {
    const gitlab = new FakeGitLab();
    gitlab.addProject(7, 'lab/seven');
    const { f, ranBefore, r } = await setUp(gitlab);
    await ranBefore(7, 'lab/seven', A);
    gitlab.push(7, 'main', A, B, ada);
    const started = (await r.round()).get(7);
    expect(started?.kind).toBe('started');
    const late = await f.lifecycle.acceptPush(webhookPush(7, 'lab/seven', A, B, ada), 'gitlab-idempotency-key-1', 'Push Hook');
    expect(late).toEqual({ run_id: started?.kind === 'started' ? started.runId : '?', duplicate: true });
    await f.settle();
    expect((await f.store.list()).filter((x) => x.commit === B)).toHaveLength(1);
  });

  it('a push the webhook delivered is covered: the reconciler starts nothing for it', async () => {
    const gitlab = new FakeGitLab();
    gitlab.addProject(7, 'lab/seven');
    const { f, ranBefore, r } = await setUp(gitlab);
    await ranBefore(7, 'lab/seven', A);
    gitlab.push(7, 'main', A, B, ada);
    await f.lifecycle.acceptPush(webhookPush(7, 'lab/seven', A, B, ada), 'gitlab-idempotency-key-2', 'Push Hook');
    expect((await r.round()).get(7)).toEqual({ kind: 'covered', commit: B });
    await f.settle();
    expect((await f.store.list()).filter((x) => x.commit === B)).toHaveLength(1);
  });

  it('does not run a head whose pusher GitLab\'s push events do not name, and says why', async () => {
    const gitlab = new FakeGitLab();
    gitlab.addProject(7, 'lab/seven');
    const log = recordingLog();
    const { f, ranBefore, r } = await setUp(gitlab, log);
    await ranBefore(7, 'lab/seven', A);
    gitlab.heads.set('7 main', B); // moved, but no event says by whom (a bulk push, say)
    expect((await r.round()).get(7)).toEqual({ kind: 'unknown_pusher', commit: B });
    expect(await f.store.list()).toHaveLength(1);
    expect(log.warnings.join('\n')).toMatch(/do not say who pushed it.*"commit":"b{40}"/);
    // Said once per head, not every round.
    expect((await r.round()).get(7)).toEqual({ kind: 'unknown_pusher', commit: B });
    expect(log.warnings.filter((w) => w.includes('do not say who pushed it'))).toHaveLength(1);
  });

  it('never reads the review project\'s or an empty project\'s branches', async () => {
    const gitlab = new FakeGitLab();
    gitlab.addProject(1, 'secd/output-review');
    gitlab.addProject(2, 'lab/empty', null);
    const { ranBefore, r } = await setUp(gitlab);
    await ranBefore(1, 'secd/output-review', A);
    await ranBefore(2, 'lab/empty', A);
    const outcomes = await r.round();
    expect(outcomes.get(1)?.kind).toBe('skipped');
    expect(outcomes.get(2)?.kind).toBe('skipped');
    expect(gitlab.calls).toEqual(['project 1', 'project 2']);
  });

  it('a project GitLab fails on is logged and read again next round; the others are read meanwhile', async () => {
    const gitlab = new FakeGitLab();
    gitlab.addProject(7, 'lab/seven');
    gitlab.addProject(8, 'lab/eight');
    const log = recordingLog();
    const { f, ranBefore, r } = await setUp(gitlab, log);
    await ranBefore(7, 'lab/seven', A);
    await ranBefore(8, 'lab/eight', A);
    gitlab.push(7, 'main', A, B, ada);
    gitlab.push(8, 'main', A, C, bob);
    gitlab.failing.add(7);
    const first = await r.round();
    expect(first.get(7)).toMatchObject({ kind: 'failed', error: expect.stringMatching(/500/) });
    expect(first.get(8)?.kind).toBe('started');
    expect(log.warnings.join('\n')).toMatch(/will retry next round.*"project_id":7/);
    // Failing the same way again is not said again.
    expect((await r.round()).get(7)?.kind).toBe('failed');
    expect(log.warnings.filter((w) => w.includes('will retry next round'))).toHaveLength(1);
    gitlab.failing.delete(7);
    expect((await r.round()).get(7)?.kind).toBe('started');
    await f.settle();
    expect((await f.store.findPush(7, 'refs/heads/main', A, B))?.user).toBe('ada');
  });

  it('reads at most projectsPerRound projects a round, the rest in the rounds after', async () => {
    const gitlab = new FakeGitLab();
    const { ranBefore, r } = await setUp(gitlab, silentLog, 2);
    for (const id of [1, 2, 3]) {
      gitlab.addProject(id, `lab/p${id}`);
      await ranBefore(id, `lab/p${id}`, A);
    }
    expect([...(await r.round()).keys()]).toEqual([1, 2]);
    expect([...(await r.round()).keys()]).toEqual([3, 1]);
  });

  it('starts with a round at once, repeats every interval, and stops on close', async () => {
    const gitlab = new FakeGitLab();
    gitlab.addProject(7, 'lab/seven');
    let seq = 0;
    const f = await lifecycleFixture([fakeNode('n1')], () => ({
      newRunId: () => `run-${++seq}`,
      verifyPush: () => Promise.resolve({ ok: false as const, code: 'unsigned', reason: 'test' }),
    }));
    t = f;
    await f.store.createRun({ id: 'old', projectId: 7, project: 'lab/seven', ref: 'refs/heads/main', beforeSha: A, commit: A, user: 'ada', userId: ada.id, deliveryKey: 'old', fetchUrl: 'x' });
    gitlab.push(7, 'main', A, B, ada);
    const started = startMissedPushReconciler({
      gitlab: gitlab.api(),
      runs: runHeads(f.stores.scope),
      intake: { webhookSecret: SECRET, runBranch: 'default' },
      acceptPush: (push, key, event) => f.lifecycle.acceptPush(push, key, event),
      log: silentLog,
      intervalMs: 30,
    });
    reconciler = started;
    const waitFor = async (check: () => boolean | Promise<boolean>) => {
      for (let i = 0; i < 200 && !(await check()); i++) await new Promise((res) => setTimeout(res, 10));
      return check();
    };
    expect(await waitFor(async () => (await f.store.findPush(7, 'refs/heads/main', A, B)) !== undefined)).toBe(true);
    const reads = () => gitlab.calls.filter((c) => c === 'project 7').length;
    expect(await waitFor(() => reads() >= 3)).toBe(true);
    await started!.close();
    const after = reads();
    await new Promise((res) => setTimeout(res, 100));
    expect(reads()).toBe(after);
    await f.settle();
    expect((await f.store.list()).filter((x) => x.commit === B)).toHaveLength(1);
  });

  it('is not started for a GitLab client that cannot list heads and push events', () => {
    const gitlab = new FakeGitLab().api();
    const { listPushEvents: _omitted, ...partial } = gitlab;
    const log = recordingLog();
    const started = startMissedPushReconciler({
      gitlab: partial,
      runs: { knownProjects: async () => [], hasRunAt: async () => false },
      intake: { webhookSecret: SECRET, runBranch: 'default' },
      acceptPush: async () => ({ run_id: 'x', duplicate: false }),
      log,
      intervalMs: 1000,
    });
    expect(started).toBeNull();
  });
});
