/**
 * The GitLab double against real git: clones and pushes over smart HTTP, the webhooks that follow,
 * and the REST calls secd makes. No GnuPG needed.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hermeticGitEnv } from '../../scheduler/common/git-env.js';
import { ACCESS, BLANK_SHA, startGitLabDouble, type GitLabDouble, type DoubleProject, type DoubleUser, type PushEvent } from './gitlab-double.js';

const TOKEN = 'admin-token-for-tests';
const SECRET = 'hook-secret';

// ----- plain git, isolated from the host's configuration --------------------------------------

let scratch: string;
const gitEnv = (): NodeJS.ProcessEnv => ({
  ...hermeticGitEnv({ home: join(scratch, 'home') }),
  GIT_AUTHOR_NAME: 'Ada Researcher',
  GIT_AUTHOR_EMAIL: 'ada@example.org',
  GIT_COMMITTER_NAME: 'Ada Researcher',
  GIT_COMMITTER_EMAIL: 'ada@example.org',
});

function git(cwd: string, ...args: string[]): Promise<string> {
  return gitWithInput(cwd, null, ...args);
}

function gitWithInput(cwd: string, input: string | null, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('git', args, { cwd, env: gitEnv() }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(new Error(`git ${args.join(' ')}: ${stderr}`), { stderr }));
      else resolve(stdout.trim());
    });
    child.stdin?.on('error', () => {}); // git may exit before reading stdin; its exit code tells
    if (input === null) child.stdin?.end();
    else child.stdin?.end(input);
  });
}

/** Commit `n` files ("step-1.txt" ... with messages "step 1" ...) on top of HEAD's branch in one git process. */
async function commitMany(dir: string, n: number): Promise<string[]> {
  const branch = await git(dir, 'symbolic-ref', 'HEAD');
  const parent = await git(dir, 'rev-parse', 'HEAD');
  let stream = '';
  for (let i = 1; i <= n; i++) {
    const message = `step ${i}\n`;
    const content = `${i}\n`;
    stream += `commit ${branch}\ncommitter Ada Researcher <ada@example.org> ${1_700_000_000 + i} +0000\n`;
    stream += `data ${Buffer.byteLength(message)}\n${message}`;
    if (i === 1) stream += `from ${parent}\n`;
    stream += `M 100644 inline step-${i}.txt\ndata ${Buffer.byteLength(content)}\n${content}\n`;
  }
  await gitWithInput(dir, stream, 'fast-import', '--quiet');
  await git(dir, 'reset', '-q', '--hard');
  return (await git(dir, 'rev-list', '--reverse', `${parent}..HEAD`)).split('\n');
}

async function commitFile(dir: string, file: string, content: string, message = `add ${file}`): Promise<string> {
  writeFileSync(join(dir, file), content);
  await git(dir, 'add', file);
  await git(dir, 'commit', '-q', '-m', message);
  return git(dir, 'rev-parse', 'HEAD');
}

let cloneCount = 0;
async function clone(url: string): Promise<string> {
  const dir = join(scratch, `clone-${++cloneCount}`);
  await git(scratch, 'clone', '-q', url, dir);
  return dir;
}

// ----- a webhook receiver like secd's /v1/hook -------------------------------------------------

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

let receiver: Server;
let receiverUrl: string;
let received: Received[] = [];

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'gitlab-double-test-'));
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((r) => receiver.close(() => r()));
  rmSync(scratch, { recursive: true, force: true });
});

// ----- one fresh GitLab per test ------------------------------------------------------------------

let gl: GitLabDouble;
let ada: DoubleUser;
let project: DoubleProject;

beforeEach(async () => {
  received = [];
  gl = await startGitLabDouble({ token: TOKEN });
  ada = gl.addUser({ username: 'ada', name: 'Ada Researcher', email: 'ada@example.org', password: 'ada-password' });
  project = gl.addProject({ path: 'research/alpha', members: [ada.id] });
  gl.addWebhook({ url: `${receiverUrl}/v1/hook`, secret: SECRET, kind: 'project', projectId: project.id });
});

afterEach(async () => {
  await gl.close();
});

const hooks = () => received.filter((r) => r.path === '/v1/hook');
const payload = (r: Received) => JSON.parse(r.body) as PushEvent;

async function pushedClone(): Promise<{ dir: string; first: string }> {
  const dir = await clone(gl.gitUrl('research/alpha', ada));
  const first = await commitFile(dir, 'README.md', '# alpha\n', 'first commit');
  await git(dir, 'push', '-q', 'origin', 'HEAD:main');
  await gl.idle();
  return { dir, first };
}

describe('git over smart HTTP', () => {
  it('a member clones with credentials in the URL, pushes, and the commit lands in the bare repository', async () => {
    const { dir, first } = await pushedClone();
    expect(await git(scratch, '--git-dir', gl.repoDir('research/alpha'), 'rev-parse', 'refs/heads/main')).toBe(first);

    // secd's own credentials (oauth2 + admin token) see the same history
    const botClone = await clone(gl.gitUrl('research/alpha'));
    expect(await git(botClone, 'rev-parse', 'HEAD')).toBe(first);
    expect(await git(dir, 'ls-remote', 'origin', 'refs/heads/main')).toBe(`${first}\trefs/heads/main`);

    // the first push created the default branch: one Push Hook, before = zeros
    expect(hooks()).toHaveLength(1);
    const hook = hooks()[0]!;
    expect(hook.headers['x-gitlab-event']).toBe('Push Hook');
    expect(hook.headers['x-gitlab-token']).toBe(SECRET);
    expect(hook.headers['content-type']).toBe('application/json');
    expect(hook.headers['user-agent']).toMatch(/^GitLab\//);
    expect(hook.headers['idempotency-key']).toMatch(/^[0-9a-f-]{36}$/);
    expect(hook.headers['x-gitlab-event-uuid']).toMatch(/^[0-9a-f-]{36}$/);
    expect(hook.headers['x-gitlab-webhook-uuid']).toMatch(/^[0-9a-f-]{36}$/);
    expect(hook.headers['x-gitlab-instance']).toBe(gl.url);
    const event = payload(hook);
    expect(event).toMatchObject({
      object_kind: 'push',
      event_name: 'push',
      before: BLANK_SHA,
      after: first,
      ref: 'refs/heads/main',
      ref_protected: true,
      checkout_sha: first,
      user_id: ada.id,
      user_username: 'ada',
      user_name: 'Ada Researcher',
      user_email: 'ada@example.org',
      project_id: project.id,
      total_commits_count: 1,
      project: {
        id: project.id,
        path_with_namespace: 'research/alpha',
        default_branch: 'main',
        git_http_url: `${gl.url}/research/alpha.git`,
      },
      repository: { name: 'alpha', git_http_url: `${gl.url}/research/alpha.git` },
    });
    expect(event.commits).toEqual([
      expect.objectContaining({
        id: first,
        message: 'first commit\n',
        title: 'first commit',
        author: { name: 'Ada Researcher', email: 'ada@example.org' },
        added: ['README.md'],
        modified: [],
        removed: [],
        url: `${gl.url}/research/alpha/-/commit/${first}`,
      }),
    ]);
    expect(event.commits[0]!.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/);
    // every field of GitLab's documented project object is there
    const fixtureProjectKeys = [
      'id', 'name', 'description', 'web_url', 'avatar_url', 'git_ssh_url', 'git_http_url', 'namespace',
      'visibility_level', 'path_with_namespace', 'default_branch', 'homepage', 'url', 'ssh_url', 'http_url',
    ];
    expect(Object.keys(event.project)).toEqual(expect.arrayContaining(fixtureProjectKeys));

    // the double kept the same delivery, with the receiver's answer
    expect(gl.deliveries).toHaveLength(1);
    expect(gl.deliveries[0]).toMatchObject({ status: 200, responseBody: '{"ok":true}', event: 'Push Hook', body: hook.body });
  });

  it('a wrong password is refused and nothing is pushed', async () => {
    const { dir, first } = await pushedClone();
    await commitFile(dir, 'train.py', 'print(1)\n');
    const badUrl = gl.gitUrl('research/alpha', { username: 'ada', password: 'not-her-password' });
    const err = await git(dir, 'push', badUrl, 'HEAD:main').catch((e: { stderr: string }) => e);
    expect(typeof err).toBe('object');
    expect((err as { stderr: string }).stderr).toMatch(/Authentication failed/);
    expect(await git(scratch, '--git-dir', gl.repoDir('research/alpha'), 'rev-parse', 'refs/heads/main')).toBe(first);

    // no credentials at all: GitLab's 401 with a Basic challenge
    const res = await fetch(`${gl.url}/research/alpha.git/info/refs?service=git-upload-pack`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Basic realm="GitLab"');

    // a Reporter may read but not push
    const bob = gl.addUser({ username: 'bob', email: 'bob@example.org', password: 'bob-pw' });
    gl.addMember(project.id, bob.id, ACCESS.reporter);
    const bobUrl = gl.gitUrl('research/alpha', bob);
    expect(await git(dir, 'ls-remote', bobUrl, 'refs/heads/main')).toContain(first);
    const denied = await git(dir, 'push', bobUrl, 'HEAD:main').catch((e: { stderr: string }) => e);
    expect((denied as { stderr: string }).stderr).toMatch(/403|not allowed/);

    await gl.idle();
    expect(hooks()).toHaveLength(1); // only the first, successful push
  });

  it('a large push (chunked) and a large fetch request (gzip) both go through http-backend', async () => {
    const { dir } = await pushedClone();
    const shas = await commitMany(dir, 30);
    await gitWithInput(dir, shas.map((sha, i) => `create refs/tags/t${i + 1} ${sha}\n`).join(''), 'update-ref', '--stdin');
    writeFileSync(join(dir, 'weights.bin'), randomBytes(2 * 1024 * 1024)); // over http.postBuffer: chunked
    await git(dir, 'add', 'weights.bin');
    await git(dir, 'commit', '-q', '-m', 'add weights');
    const head = await git(dir, 'rev-parse', 'HEAD');
    await git(dir, 'push', '-q', '--tags', 'origin', 'HEAD:main');
    await gl.idle();
    expect(hooks()).toHaveLength(1 + 31); // one event per changed ref

    const copy = await clone(gl.gitUrl('research/alpha'));
    expect(await git(copy, 'rev-parse', 'HEAD')).toBe(head);
    expect((await git(copy, 'tag', '--list')).split('\n')).toHaveLength(30);
    expect(gl.gitRequests).toContainEqual(
      expect.objectContaining({ method: 'POST', service: 'git-upload-pack', contentEncoding: 'gzip', status: 200 }),
    );
  });
});

describe('push webhooks', () => {
  it('a push of 25 commits sends one Push Hook with the 20 newest commits and the true count', async () => {
    const { dir, first } = await pushedClone();
    const shas = await commitMany(dir, 25);
    expect(shas).toHaveLength(25);
    await git(dir, 'push', '-q', 'origin', 'HEAD:main');
    await gl.idle();

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

  it('a new branch has before = zeros; deleting it has after = zeros and no commits', async () => {
    const { dir, first } = await pushedClone();
    await git(dir, 'checkout', '-q', '-b', 'feature');
    await commitFile(dir, 'a.txt', 'a\n');
    const head = await commitFile(dir, 'README.md', '# alpha, changed\n', 'edit readme');
    await git(dir, 'push', '-q', 'origin', 'feature');
    await gl.idle();

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
    await gl.idle();
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
    expect(await git(scratch, '--git-dir', gl.repoDir('research/alpha'), 'branch', '--list')).not.toContain('feature');
    expect(first).toMatch(/^[0-9a-f]{40}$/);
  });

  it('a tag push is a Tag Push Hook naming the tag and its commit', async () => {
    const { dir, first } = await pushedClone();
    await git(dir, 'tag', '-a', 'v1.0', '-m', 'release one');
    const tagObject = await git(dir, 'rev-parse', 'v1.0');
    await git(dir, 'push', '-q', 'origin', 'v1.0');
    await gl.idle();

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
    gl.addWebhook({ url: `${receiverUrl}/system`, secret: 'sys-secret', kind: 'system' });
    await pushedClone();
    const system = received.filter((r) => r.path === '/system');
    expect(system).toHaveLength(1);
    expect(system[0]!.headers['x-gitlab-event']).toBe('System Hook');
    expect(system[0]!.headers['x-gitlab-token']).toBe('sys-secret');
    expect(system[0]!.body).toBe(hooks()[0]!.body);
    // one event, two hooks: same event UUID, different idempotency keys
    expect(system[0]!.headers['x-gitlab-event-uuid']).toBe(hooks()[0]!.headers['x-gitlab-event-uuid']);
    expect(system[0]!.headers['idempotency-key']).not.toBe(hooks()[0]!.headers['idempotency-key']);

    const original = gl.deliveries.findIndex((d) => d.url.endsWith('/v1/hook'));
    const again = await gl.redeliver(original);
    expect(again.redeliveryOf).toBe(original);
    expect(hooks()).toHaveLength(2);
    expect(hooks()[1]!.body).toBe(hooks()[0]!.body);
    expect(hooks()[1]!.headers['idempotency-key']).toBe(hooks()[0]!.headers['idempotency-key']);

    const raw = await gl.sendRaw({ body: '{"object_kind": ', headers: { 'X-Gitlab-Token': null } });
    expect(raw).toMatchObject({ raw: true, status: 200, url: `${receiverUrl}/v1/hook` });
    expect(hooks()[2]!.body).toBe('{"object_kind": ');
    expect(hooks()[2]!.headers['x-gitlab-token']).toBeUndefined();
    expect(hooks()[2]!.headers['x-gitlab-event']).toBe('Push Hook');
  });
});

describe('REST API', () => {
  const api = (path: string, init: RequestInit & { token?: string | null } = {}) => {
    const headers = new Headers(init.headers);
    if (init.token !== null) headers.set('PRIVATE-TOKEN', init.token ?? TOKEN);
    return fetch(`${gl.url}/api/v4${path}`, { ...init, headers });
  };

  it('answers 401 without the token, and serves projects by id or by path', async () => {
    const none = await api('/projects/1', { token: null });
    expect(none.status).toBe(401);
    expect(await none.json()).toEqual({ message: '401 Unauthorized' });
    expect((await api('/projects/1', { token: 'wrong' })).status).toBe(401);

    const bearer = await fetch(`${gl.url}/api/v4/projects/1`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(bearer.status).toBe(200);
    expect(await bearer.json()).toMatchObject({
      id: project.id,
      path_with_namespace: 'research/alpha',
      default_branch: 'main',
      http_url_to_repo: `${gl.url}/research/alpha.git`,
      name: 'alpha',
      web_url: `${gl.url}/research/alpha`,
    });
    expect(await (await api('/projects/research%2Falpha')).json()).toMatchObject({ id: project.id });
    const missing = await api('/projects/42');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ message: '404 Project Not Found' });
  });

  it('pages members/all like GitLab, and lists a user\'s GPG keys', async () => {
    for (let i = 0; i < 44; i++) {
      const u = gl.addUser({ username: `member${i}`, email: `m${i}@example.org` });
      gl.addMember(project.id, u.id, ACCESS.developer);
    }
    const seen: number[] = [];
    let page = '1';
    const pages: Array<Record<string, string | null>> = [];
    while (page !== '') {
      const res = await api(`/projects/${project.id}/members/all?per_page=20&page=${page}`);
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
    expect(seen).toContain(ada.id);

    const defaults = await api(`/projects/${project.id}/members/all`);
    expect(defaults.headers.get('x-per-page')).toBe('20');
    const capped = await api(`/projects/${project.id}/members/all?per_page=500`);
    expect(capped.headers.get('x-per-page')).toBe('100');
    expect(((await capped.json()) as unknown[]).length).toBe(45);

    const armored = '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n';
    gl.addGpgKey(ada.id, armored);
    const keys = (await (await api(`/users/${ada.id}/gpg_keys`)).json()) as Array<Record<string, unknown>>;
    expect(keys).toEqual([{ id: 1, key: armored, created_at: expect.any(String) }]);
    expect((await api('/users/999/gpg_keys')).status).toBe(404);
  });

  it('commit statuses follow GitLab: the same pending or running state twice is a 400', async () => {
    const { first } = await pushedClone();
    const post = (state: string, extra: Record<string, string> = {}) =>
      api(`/projects/${project.id}/statuses/${first}`, {
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
    const form = await api(`/projects/${project.id}/statuses/${first}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'state=failed&description=bad+signature',
    });
    expect(form.status).toBe(201);
    expect((await api(`/projects/${project.id}/statuses/${'f'.repeat(40)}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"state":"pending"}',
    })).status).toBe(404);
    const unauthorized = await fetch(`${gl.url}/api/v4/projects/${project.id}/statuses/${first}?state=pending`, { method: 'POST' });
    expect(unauthorized.status).toBe(401);

    expect(gl.statuses.map((s) => [s.name, s.state])).toEqual([
      ['secd', 'pending'],
      ['secd', 'running'],
      ['secd', 'success'],
      ['default', 'failed'],
    ]);
    expect(gl.statuses[0]).toMatchObject({
      projectId: project.id,
      sha: first,
      target_url: 'http://127.0.0.1:8080/runs/1',
      description: 'queued',
    });
    expect(gl.statuses[3]!.description).toBe('bad signature');
    expect(gl.rejectedStatuses.map((r) => r.httpStatus)).toEqual([400, 400, 400, 404, 401]);
  });
});
