/**
 * The GitLab double's project activity after real pushes: every pushed ref becomes a push event
 * (GET /projects/:id/events) naming the pusher, with `commit_from` null for a created branch and
 * `commit_to` null for a deleted one, recorded even when no webhook got through, and read by secd's
 * own GitLab client as GitLab's documented sample is.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGitLabClient } from '../../scheduler/gitlab/gitlab-client.js';
import { prepareGitLabDouble, TOKEN } from './gitlab-double-fixture.js';

const lab = prepareGitLabDouble({ beforeAll, afterAll, beforeEach, afterEach });
const { git, commitFile, pushedClone } = lab;

describe('push events (project activity)', () => {
  const api = (path: string, token: string | null = TOKEN) => fetch(`${lab.gl.url}/api/v4${path}`, { headers: token === null ? {} : { 'PRIVATE-TOKEN': token } });

  it('every push is an event by its pusher, newest first: created, pushed to, deleted', async () => {
    const { dir, first } = await pushedClone();
    const second = await commitFile(dir, 'a.txt', 'a\n', 'second commit');
    await git(dir, 'push', '-q', 'origin', 'HEAD:main', 'HEAD:refs/heads/side');
    await git(dir, 'push', '-q', 'origin', ':side');
    await lab.gl.idle();

    const res = await api(`/projects/${lab.project.id}/events?action=pushed`);
    expect(res.status).toBe(200);
    const events = (await res.json()) as Array<Record<string, any>>;
    expect(events.map((e) => [e.action_name, e.push_data.ref, e.push_data.commit_from, e.push_data.commit_to])).toEqual([
      ['deleted', 'side', second, null],
      ['pushed new', 'side', null, second],
      ['pushed to', 'main', first, second],
      ['pushed new', 'main', null, first],
    ]);
    expect(events[2]).toMatchObject({
      project_id: lab.project.id,
      target_type: null,
      author_id: lab.ada.id,
      author: { id: lab.ada.id, username: 'ada', name: 'Ada Researcher' },
      author_username: 'ada',
      push_data: { action: 'pushed', ref_type: 'branch', commit_count: 1, commit_title: 'second commit' },
    });
    // Newest first by default, oldest first on request; ids rise.
    const asc = (await (await api(`/projects/${lab.project.id}/events?action=pushed&sort=asc`)).json()) as Array<{ id: number }>;
    expect(asc.map((e) => e.id)).toEqual(events.map((e) => e.id as number).reverse());
  });

  it('is recorded when the webhook fails, as GitLab records activity whatever its hooks answer', async () => {
    lab.gl.addWebhook({ url: 'http://127.0.0.1:1/v1/hook', secret: 's', kind: 'system' });
    const { dir } = await pushedClone();
    const head = await commitFile(dir, 'b.txt', 'b\n');
    await git(dir, 'push', '-q', 'origin', 'HEAD:main');
    await lab.gl.idle();
    const failed = lab.gl.deliveries.filter((d) => d.url.startsWith('http://127.0.0.1:1/'));
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((d) => d.error !== undefined && d.error !== null)).toBe(true);
    const events = (await (await api(`/projects/${lab.project.id}/events?action=pushed`)).json()) as Array<{ push_data: { commit_to: string } }>;
    expect(events[0]!.push_data.commit_to).toBe(head);
  });

  it('answers 401 without the token, 404 for an unknown project, nothing for other actions, and pages like GitLab', async () => {
    await pushedClone();
    expect((await api(`/projects/${lab.project.id}/events`, null)).status).toBe(401);
    expect((await api('/projects/4242/events')).status).toBe(404);
    expect(await (await api(`/projects/${lab.project.id}/events?action=created`)).json()).toEqual([]);
    const page = await api(`/projects/${lab.project.id}/events?action=pushed&per_page=1&page=1`);
    expect(page.headers.get('x-total')).toBe('1');
    expect(page.headers.get('x-next-page')).toBe('');
  });

  it('reads through secd\'s GitLab client as who pushed which head', async () => {
    const { dir, first } = await pushedClone();
    const head = await commitFile(dir, 'c.txt', 'c\n');
    await git(dir, 'push', '-q', 'origin', 'HEAD:main');
    await lab.gl.idle();
    const client = createGitLabClient({ url: lab.gl.url, token: TOKEN });
    const events = await client.listPushEvents(lab.project.id);
    expect(events[0]).toMatchObject({ author: { id: lab.ada.id, username: 'ada' }, push_data: { ref: 'main', commit_from: first, commit_to: head } });
    expect(await client.getBranchHead(lab.project.id, 'main')).toBe(head);
    expect(lab.gl.apiRequests.map((r) => [r.method, r.path, r.status])).toContainEqual(['GET', `/api/v4/projects/${lab.project.id}/events`, 200]);
  });
});
