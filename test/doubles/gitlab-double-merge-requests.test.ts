/**
 * The GitLab double's merge requests, as output review meets them: secd opens one from a pushed
 * results branch, checkers approve or close it in "GitLab's web page" (the test side), every change
 * sends a Merge Request Hook shaped like GitLab's documented sample, and the approvals answer is the
 * documented one. A forged hook changes nothing the API shows.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { classifyDelivery } from '../../scheduler/intake/intake.js';
import { ACCESS, BOT_USER_ID, type MergeRequestEvent } from './gitlab-double.js';
import { prepareGitLabDouble, SECRET, TOKEN, type Received } from './gitlab-double-fixture.js';

const lab = prepareGitLabDouble({ beforeAll, afterAll, beforeEach, afterEach });
const { git, commitFile, pushedClone } = lab;
const fixture = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/gitlab', name), 'utf8')) as Record<string, unknown>;

const api = (path: string, init: RequestInit & { json?: unknown } = {}) => {
  const headers = new Headers(init.headers);
  headers.set('PRIVATE-TOKEN', TOKEN);
  if (init.json !== undefined) headers.set('Content-Type', 'application/json');
  return fetch(`${lab.gl.url}/api/v4${path}`, { ...init, headers, ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}) });
};
const mrPath = (iid?: number, sub?: string) => `/projects/${lab.project.id}/merge_requests${iid === undefined ? '' : `/${iid}`}${sub ? `/${sub}` : ''}`;
const open = (source = 'secd-results', extra: Record<string, string> = {}) =>
  api(mrPath(), { method: 'POST', json: { source_branch: source, target_branch: 'main', title: 'Release run r1', description: 'files', ...extra } });
const mrHooks = (path = '/v1/hook'): Received[] =>
  lab.received.filter((r) => r.path === path && r.headers['x-gitlab-event'] !== 'Push Hook' && JSON.parse(r.body).object_kind === 'merge_request');
const event = (r: Received) => JSON.parse(r.body) as MergeRequestEvent;

/** Ada's clone with main pushed and a results branch `secd-results` (one more commit) pushed too. */
async function resultsBranch(): Promise<{ dir: string; head: string }> {
  const { dir } = await pushedClone();
  await git(dir, 'checkout', '-q', '-b', 'secd-results');
  const head = await commitFile(dir, 'out.csv', 'a,b\n1,2\n', 'results of r1');
  await git(dir, 'push', '-q', 'origin', 'secd-results');
  await lab.gl.idle();
  return { dir, head };
}

/** A checker: a member of research/alpha with the given level. */
function checker(username: string, level: number = ACCESS.developer) {
  const u = lab.gl.addUser({ username, email: `${username}@example.org` });
  lab.gl.addMember(lab.project.id, u.id, level);
  return u;
}

describe('merge requests over the API', () => {
  it('opening one from a pushed branch answers 201 with its head as sha and sends an "open" hook', async () => {
    const { head } = await resultsBranch();
    const res = await open();
    expect(res.status).toBe(201);
    const mr = (await res.json()) as Record<string, unknown>;
    expect(mr).toMatchObject({
      id: 1,
      iid: 1,
      project_id: lab.project.id,
      state: 'opened',
      sha: head,
      source_branch: 'secd-results',
      target_branch: 'main',
      title: 'Release run r1',
      description: 'files',
      closed_by: null,
      web_url: `${lab.gl.url}/research/alpha/-/merge_requests/1`,
      author: { id: BOT_USER_ID, username: 'secd-bot' },
    });
    await lab.gl.idle();
    expect(mrHooks().map((r) => [r.headers['x-gitlab-event'], event(r).object_attributes.action, event(r).user.username])).toEqual([
      ['Merge Request Hook', 'open', 'secd-bot'],
    ]);
    expect(lab.gl.mergeRequests(lab.project.id)).toMatchObject([{ iid: 1, sha: head, state: 'opened', notes: [], approvals: [] }]);
  });

  it('refuses what GitLab refuses: a second open one is 409, missing branches 422, missing fields 400', async () => {
    await resultsBranch();
    expect((await open()).status).toBe(201);
    const again = await open();
    expect(again.status).toBe(409);
    expect(await again.json()).toEqual({ message: ['Another open merge request already exists for this source branch: !1'] });
    const noSource = await open('secd-missing');
    expect(noSource.status).toBe(422);
    expect(await noSource.json()).toEqual({ message: ['Source branch "secd-missing" does not exist'] });
    const noTarget = await api(mrPath(), { method: 'POST', json: { source_branch: 'secd-results', target_branch: 'review', title: 't' } });
    expect(await noTarget.json()).toEqual({ message: ['Target branch "review" does not exist'] });
    const same = await api(mrPath(), { method: 'POST', json: { source_branch: 'main', target_branch: 'main', title: 't' } });
    expect([same.status, await same.json()]).toEqual([422, { message: ['You must select different branches'] }]);
    const bare = await api(mrPath(), { method: 'POST', json: { source_branch: 'secd-results' } });
    expect([bare.status, await bare.json()]).toEqual([400, { error: 'title is missing, target_branch is missing' }]);
    expect(lab.gl.mergeRequests(lab.project.id)).toHaveLength(1);
  });

  it('reads one, lists by source branch and state, and answers 404 like GitLab', async () => {
    await resultsBranch();
    await open();
    expect(await (await api(mrPath(1))).json()).toMatchObject({ iid: 1, state: 'opened' });
    const listed = (await (await api(`${mrPath()}?source_branch=secd-results&state=all`)).json()) as Array<{ iid: number }>;
    expect(listed.map((m) => m.iid)).toEqual([1]);
    expect(await (await api(`${mrPath()}?source_branch=other`)).json()).toEqual([]);
    expect(await (await api(`${mrPath()}?state=closed`)).json()).toEqual([]);
    expect((await api(`${mrPath()}?state=bogus`)).status).toBe(400);
    const missing = await api(mrPath(7));
    expect([missing.status, await missing.json()]).toEqual([404, { message: '404 Not found' }]);
    expect((await api(mrPath(7, 'approvals'))).status).toBe(404);
    expect((await api('/projects/99/merge_requests/1')).status).toBe(404);
    expect((await api(`/projects/${lab.project.id}/merge_requests/abc`)).status).toBe(400);
  });

  it('closing by state_event sets closed_by to the token\'s user, sends "close", and a second close changes nothing', async () => {
    await resultsBranch();
    await open();
    const closed = await api(mrPath(1), { method: 'PUT', json: { state_event: 'close' } });
    expect(closed.status).toBe(200);
    const body = (await closed.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ state: 'closed', closed_by: { id: BOT_USER_ID, username: 'secd-bot' }, closed_at: expect.any(String) });
    const again = (await (await api(mrPath(1), { method: 'PUT', json: { state_event: 'close' } })).json()) as Record<string, unknown>;
    expect(again.closed_at).toBe(body.closed_at);
    expect((await api(mrPath(1), { method: 'PUT', json: { state_event: 'merge' } })).status).toBe(400);
    expect((await api(mrPath(1), { method: 'PUT', json: {} })).status).toBe(400);
    const reopened = (await (await api(mrPath(1), { method: 'PUT', json: { state_event: 'reopen' } })).json()) as Record<string, unknown>;
    expect(reopened).toMatchObject({ state: 'opened', closed_by: null, closed_at: null });
    await lab.gl.idle();
    expect(mrHooks().map((r) => event(r).object_attributes.action)).toEqual(['open', 'close', 'reopen']);
    expect(event(mrHooks()[1]!).changes).toMatchObject({ state_id: { previous: 1, current: 2 } });
  });

  it('a note is recorded with its author and answered 201; a note without body is 400', async () => {
    await resultsBranch();
    await open();
    const res = await api(mrPath(1, 'notes'), { method: 'POST', json: { body: 'released after review by alice, bob' } });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ body: 'released after review by alice, bob', noteable_iid: 1, author: { username: 'secd-bot' } });
    expect((await api(mrPath(1, 'notes'), { method: 'POST', json: {} })).status).toBe(400);
    expect(lab.gl.mergeRequests(lab.project.id)[0]!.notes).toMatchObject([{ body: 'released after review by alice, bob', authorId: BOT_USER_ID }]);
    expect(await (await api('/user')).json()).toMatchObject({ id: BOT_USER_ID, username: 'secd-bot' });
  });

  it('a push to the source branch moves sha and sends "update" with the old head', async () => {
    const { dir, head } = await resultsBranch();
    await open();
    const moved = await commitFile(dir, 'extra.csv', 'x\n', 'someone else');
    await git(dir, 'push', '-q', 'origin', 'secd-results');
    await lab.gl.idle();
    expect(await (await api(mrPath(1))).json()).toMatchObject({ sha: moved });
    const update = event(mrHooks().at(-1)!);
    expect(update.object_attributes).toMatchObject({ action: 'update', oldrev: head, last_commit: { id: moved, title: 'someone else' } });
    expect(update.user.username).toBe('ada');
  });
});

describe('what checkers do, and the hooks it sends', () => {
  it('an approval is recorded, read back in the documented shape, and hooked to project and system hooks', async () => {
    lab.gl.addWebhook({ url: `${lab.receiverUrl}/system`, secret: 'sys', kind: 'system' });
    const { head } = await resultsBranch();
    await open();
    const alice = checker('alice');
    lab.gl.approveMergeRequest(lab.project.id, 1, alice.id);
    await lab.gl.idle();

    const approvals = (await (await api(mrPath(1, 'approvals'))).json()) as Record<string, unknown>;
    const sample = fixture('merge_request_approvals_api.json');
    expect(Object.keys(approvals)).toEqual(expect.arrayContaining(Object.keys(sample)));
    const sampleUser = (sample.approved_by as Array<{ user: object }>)[0]!.user;
    const approvedBy = approvals.approved_by as Array<{ user: Record<string, unknown> }>;
    expect(approvedBy).toHaveLength(1);
    expect(Object.keys(approvedBy[0]!.user).sort()).toEqual(Object.keys(sampleUser).sort());
    expect(approvedBy[0]!.user).toMatchObject({ id: alice.id, username: 'alice' });

    const [project, system] = [mrHooks().at(-1)!, mrHooks('/system').at(-1)!];
    expect(project.headers['x-gitlab-event']).toBe('Merge Request Hook');
    expect(system.headers['x-gitlab-event']).toBe('System Hook');
    expect(system.body).toBe(project.body);
    const body = event(project);
    expect(body).toMatchObject({
      object_kind: 'merge_request',
      event_type: 'merge_request',
      user: { id: alice.id, username: 'alice' },
      project: { id: lab.project.id, path_with_namespace: 'research/alpha' },
      object_attributes: {
        id: 1, iid: 1, action: 'approval', state: 'opened', source_branch: 'secd-results', target_branch: 'main',
        last_commit: { id: head, title: 'results of r1' }, url: `${lab.gl.url}/research/alpha/-/merge_requests/1`,
      },
    });
    // every field of GitLab's documented sample is there, at the top and in the nested objects
    const doc = fixture('merge_request_event_webhook.json') as Record<string, Record<string, unknown>>;
    const keys = (o: object) => Object.keys(o);
    expect(keys(body)).toEqual(expect.arrayContaining(keys(doc)));
    expect(keys(body.object_attributes)).toEqual(expect.arrayContaining(keys(doc.object_attributes!)));
    expect(keys(body.project)).toEqual(expect.arrayContaining(keys(doc.project!)));
    expect(keys(body.user)).toEqual(expect.arrayContaining(keys(doc.user!)));
    expect(keys(body.object_attributes.last_commit)).toEqual(expect.arrayContaining(keys(doc.object_attributes!.last_commit as object)));
    expect(lab.gl.mergeRequests(lab.project.id)[0]!.approvals).toMatchObject([{ userId: alice.id }]);
    // and secd's intake reads both deliveries as "something happened to !1 of research/alpha"
    const intake = { webhookSecret: SECRET, runBranch: 'default' };
    expect(classifyDelivery({ headers: project.headers, rawBody: project.body }, intake)).toMatchObject({
      kind: 'merge_request', projectId: lab.project.id, iid: 1, action: 'approval', deliveryKey: project.headers['idempotency-key'],
    });
    expect(classifyDelivery({ headers: system.headers, rawBody: system.body }, { ...intake, webhookSecret: 'sys' })).toMatchObject({
      kind: 'merge_request', projectId: lab.project.id, iid: 1,
    });
  });

  it('unapproving removes the approval and sends "unapproval"; GitLab\'s refusals throw', async () => {
    await resultsBranch();
    await open();
    const alice = checker('alice');
    const rita = checker('rita', ACCESS.reporter);
    lab.gl.approveMergeRequest(lab.project.id, 1, alice.id);
    expect(() => lab.gl.approveMergeRequest(lab.project.id, 1, alice.id)).toThrow(/alice already approved !1/);
    expect(() => lab.gl.approveMergeRequest(lab.project.id, 1, rita.id)).toThrow(/rita is not a member of research\/alpha with Developer or above/);
    expect(() => lab.gl.approveMergeRequest(lab.project.id, 2, alice.id)).toThrow(/no merge request !2/);
    lab.gl.unapproveMergeRequest(lab.project.id, 1, alice.id);
    expect(() => lab.gl.unapproveMergeRequest(lab.project.id, 1, alice.id)).toThrow(/alice has not approved !1/);
    await lab.gl.idle();
    expect((await (await api(mrPath(1, 'approvals'))).json()) as object).toMatchObject({ approved_by: [] });
    expect(mrHooks().map((r) => [event(r).object_attributes.action, event(r).user.username])).toEqual([
      ['open', 'secd-bot'],
      ['approval', 'alice'],
      ['unapproval', 'alice'],
    ]);
  });

  it('a checker closing it is closed_by them and sends "close"; a closed one cannot be approved', async () => {
    await resultsBranch();
    await open();
    const bob = checker('bob', ACCESS.maintainer);
    lab.gl.closeMergeRequestAs(lab.project.id, 1, bob.id);
    expect(() => lab.gl.closeMergeRequestAs(lab.project.id, 1, bob.id)).toThrow(/!1 is closed/);
    expect(() => lab.gl.approveMergeRequest(lab.project.id, 1, bob.id)).toThrow(/!1 is closed/);
    await lab.gl.idle();
    expect(await (await api(mrPath(1))).json()).toMatchObject({ state: 'closed', closed_by: { id: bob.id, username: 'bob' } });
    expect(event(mrHooks().at(-1)!)).toMatchObject({ user: { username: 'bob' }, object_attributes: { action: 'close', state: 'closed' } });
  });

  it('a forged hook claims an approval that the API does not show', async () => {
    await resultsBranch();
    await open();
    const mallory = lab.gl.addUser({ username: 'mallory', email: 'm@example.org' });
    lab.gl.sendMergeRequestHook(lab.project.id, 1, { action: 'approval', userId: mallory.id });
    await lab.gl.idle();
    expect(event(mrHooks().at(-1)!)).toMatchObject({ user: { username: 'mallory' }, object_attributes: { action: 'approval', iid: 1 } });
    expect((await (await api(mrPath(1, 'approvals'))).json()) as object).toMatchObject({ approved_by: [] });
    expect(lab.gl.mergeRequests(lab.project.id)[0]!.approvals).toEqual([]);
  });
});
