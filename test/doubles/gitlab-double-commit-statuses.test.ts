/**
 * The GitLab double's GET /projects/:id/repository/commits/:sha/statuses, as GitLab answers it: the
 * newest status of each name by default, every one with `all=true`, 404 for a commit it lacks. A
 * restarted leader reads it before posting a final status it may have posted just before it died.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { prepareGitLabDouble, TOKEN } from './gitlab-double-fixture.js';

const lab = prepareGitLabDouble({ beforeAll, afterAll, beforeEach, afterEach });

describe('commit statuses read back', () => {
  const api = (path: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    headers.set('PRIVATE-TOKEN', TOKEN);
    return fetch(`${lab.gl.url}/api/v4${path}`, { ...init, headers });
  };

  it('lists the newest status of each name on a commit, or all of them', async () => {
    const { first } = await lab.pushedClone();
    const post = (state: string, name: string) =>
      api(`/projects/${lab.project.id}/statuses/${first}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ state, name, target_url: 'http://127.0.0.1:8080/runs/r1' }),
      });
    // pending -> running -> success is one status record; the second success starts another.
    for (const [state, name] of [['pending', 'secd'], ['running', 'secd'], ['success', 'secd'], ['pending', 'secd/release'], ['success', 'secd']]) {
      expect((await post(state!, name!)).status).toBe(201);
    }
    const newest = (await (await api(`/projects/${lab.project.id}/repository/commits/${first}/statuses`)).json()) as Array<Record<string, unknown>>;
    expect(newest.map((s) => [s.name, s.status])).toEqual([['secd', 'success'], ['secd/release', 'pending']]);
    expect(newest[0]).toMatchObject({ sha: first, target_url: 'http://127.0.0.1:8080/runs/r1' });
    const all = (await (await api(`/projects/${lab.project.id}/repository/commits/${first}/statuses?all=true`)).json()) as Array<Record<string, unknown>>;
    expect(all.map((s) => [s.name, s.status])).toEqual([['secd', 'success'], ['secd/release', 'pending'], ['secd', 'success']]);
    expect((await api(`/projects/${lab.project.id}/repository/commits/${'f'.repeat(40)}/statuses`)).status).toBe(404);
  });
});
