/**
 * The GitLab double's REST API, the calls secd makes: the token, projects by id or path, paged
 * members, a user's GPG keys, SSH keys and emails, a user as an administrator sees one, and commit
 * statuses with GitLab's transition rules.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ACCESS } from './gitlab-double.js';
import { prepareGitLabDouble, TOKEN } from './gitlab-double-fixture.js';

const lab = prepareGitLabDouble({ beforeAll, afterAll, beforeEach, afterEach });
const { pushedClone } = lab;

describe('REST API', () => {
  const api = (path: string, init: RequestInit & { token?: string | null } = {}) => {
    const headers = new Headers(init.headers);
    if (init.token !== null) headers.set('PRIVATE-TOKEN', init.token ?? TOKEN);
    return fetch(`${lab.gl.url}/api/v4${path}`, { ...init, headers });
  };

  it('answers 401 without the token, and serves projects by id or by path', async () => {
    const none = await api('/projects/1', { token: null });
    expect(none.status).toBe(401);
    expect(await none.json()).toEqual({ message: '401 Unauthorized' });
    expect((await api('/projects/1', { token: 'wrong' })).status).toBe(401);

    const bearer = await fetch(`${lab.gl.url}/api/v4/projects/1`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(bearer.status).toBe(200);
    expect(await bearer.json()).toMatchObject({
      id: lab.project.id,
      path_with_namespace: 'research/alpha',
      default_branch: 'main',
      http_url_to_repo: `${lab.gl.url}/research/alpha.git`,
      name: 'alpha',
      web_url: `${lab.gl.url}/research/alpha`,
    });
    expect(await (await api('/projects/research%2Falpha')).json()).toMatchObject({ id: lab.project.id });
    const missing = await api('/projects/42');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ message: '404 Project Not Found' });
  });

  it("lists a user's SSH keys with usage and expiry, their secondary emails, and shows an administrator their primary email", async () => {
    const line = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhhaGVsbG8 ada@laptop';
    lab.gl.addSshKey(lab.ada.id, { key: line, usageType: 'signing', expiresAt: '2031-02-03T00:00:00.000Z' });
    lab.gl.addSshKey(lab.ada.id, { key: `${line}2` });
    const keys = (await (await api(`/users/${lab.ada.id}/keys`)).json()) as Array<Record<string, unknown>>;
    expect(keys).toEqual([
      { id: 1, title: 'key 1', key: line, created_at: expect.any(String), expires_at: '2031-02-03T00:00:00.000Z', usage_type: 'signing' },
      { id: 2, title: 'key 2', key: `${line}2`, created_at: expect.any(String), expires_at: null, usage_type: 'auth_and_signing' },
    ]);
    lab.gl.removeSshKey(lab.ada.id, 1);
    expect(((await (await api(`/users/${lab.ada.id}/keys`)).json()) as unknown[]).length).toBe(1);
    expect(() => lab.gl.addSshKey(lab.ada.id, { key: 'not a key' })).toThrow('not an OpenSSH public key line');

    lab.gl.addEmail(lab.ada.id, 'ada@home.example');
    lab.gl.addEmail(lab.ada.id, 'ada@new.example', { confirmed: false });
    expect(await (await api(`/users/${lab.ada.id}/emails`)).json()).toEqual([
      { id: 1, email: 'ada@home.example', confirmed_at: expect.any(String) },
      { id: 2, email: 'ada@new.example', confirmed_at: null },
    ]);
    expect(await (await api(`/users/${lab.ada.id}`)).json()).toMatchObject({ id: lab.ada.id, username: 'ada', email: 'ada@example.org', confirmed_at: expect.any(String) });
    for (const path of ['/users/999', '/users/999/keys', '/users/999/emails']) expect((await api(path)).status).toBe(404);
  });

  it('pages members/all like GitLab, and lists a user\'s GPG keys', async () => {
    for (let i = 0; i < 44; i++) {
      const u = lab.gl.addUser({ username: `member${i}`, email: `m${i}@example.org` });
      lab.gl.addMember(lab.project.id, u.id, ACCESS.developer);
    }
    const seen: number[] = [];
    let page = '1';
    const pages: Array<Record<string, string | null>> = [];
    while (page !== '') {
      const res = await api(`/projects/${lab.project.id}/members/all?per_page=20&page=${page}`);
      const body = (await res.json()) as Array<{ id: number; username: string; state: string; access_level: number }>;
      seen.push(...body.map((m) => m.id));
      pages.push({
        page: res.headers.get('x-page'),
        perPage: res.headers.get('x-per-page'),
        total: res.headers.get('x-total'),
        next: res.headers.get('x-next-page'),
      });
      expect(body.every((m) => m.state === 'active' && m.access_level === ACCESS.developer)).toBe(true);
      page = res.headers.get('x-next-page') ?? '';
    }
    expect(pages).toEqual([
      { page: '1', perPage: '20', total: '45', next: '2' },
      { page: '2', perPage: '20', total: '45', next: '3' },
      { page: '3', perPage: '20', total: '45', next: '' },
    ]);
    expect(new Set(seen).size).toBe(45);
    expect(seen).toContain(lab.ada.id);

    const defaults = await api(`/projects/${lab.project.id}/members/all`);
    expect(defaults.headers.get('x-per-page')).toBe('20');
    const capped = await api(`/projects/${lab.project.id}/members/all?per_page=500`);
    expect(capped.headers.get('x-per-page')).toBe('100');
    expect(((await capped.json()) as unknown[]).length).toBe(45);

    const armored = '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n';
    lab.gl.addGpgKey(lab.ada.id, armored);
    const keys = (await (await api(`/users/${lab.ada.id}/gpg_keys`)).json()) as Array<Record<string, unknown>>;
    expect(keys).toEqual([{ id: 1, key: armored, created_at: expect.any(String) }]);
    expect((await api('/users/999/gpg_keys')).status).toBe(404);
  });

  it('commit statuses follow GitLab: the same pending or running state twice is a 400', async () => {
    const { first } = await pushedClone();
    const post = (state: string, extra: Record<string, string> = {}) =>
      api(`/projects/${lab.project.id}/statuses/${first}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ state, name: 'secd', ...extra }),
      });

    const pending = await post('pending', { description: 'queued', target_url: 'http://127.0.0.1:8080/runs/1' });
    expect(pending.status).toBe(201);
    expect(await pending.json()).toMatchObject({ sha: first, status: 'pending', name: 'secd', description: 'queued' });
    const again = await post('pending');
    expect(again.status).toBe(400);
    expect(await again.json()).toEqual({ message: 'Cannot transition status via :enqueue from :pending' });
    expect((await post('running')).status).toBe(201);
    const running = await post('running');
    expect(running.status).toBe(400);
    expect(await running.json()).toEqual({ message: 'Cannot transition status via :run from :running' });
    expect((await post('success')).status).toBe(201);

    const invalid = await post('done');
    expect(invalid.status).toBe(400);
    expect(await invalid.json()).toEqual({ error: 'state does not have a valid value' });

    // form bodies work too, and `name` defaults to "default"
    const form = await api(`/projects/${lab.project.id}/statuses/${first}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'state=failed&description=bad+signature',
    });
    expect(form.status).toBe(201);
    expect((await api(`/projects/${lab.project.id}/statuses/${'f'.repeat(40)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"state":"pending"}',
    })).status).toBe(404);
    const unauthorized = await fetch(`${lab.gl.url}/api/v4/projects/${lab.project.id}/statuses/${first}?state=pending`, { method: 'POST' });
    expect(unauthorized.status).toBe(401);

    expect(lab.gl.statuses.map((s) => [s.name, s.state])).toEqual([
      ['secd', 'pending'],
      ['secd', 'running'],
      ['secd', 'success'],
      ['default', 'failed'],
    ]);
    expect(lab.gl.statuses[0]).toMatchObject({
      projectId: lab.project.id,
      sha: first,
      target_url: 'http://127.0.0.1:8080/runs/1',
      description: 'queued',
    });
    expect(lab.gl.statuses[3]!.description).toBe('bad signature');
    expect(lab.gl.rejectedStatuses.map((r) => r.httpStatus)).toEqual([400, 400, 400, 404, 401]);
  });
});
