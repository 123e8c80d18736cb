/**
 * The GitLab double's git over smart HTTP, against real git: a member clones and pushes with
 * credentials in the URL, wrong or too weak credentials are refused, and large pushes and fetches
 * (chunked, gzip) go through `git http-backend`. No GnuPG needed.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ACCESS, BLANK_SHA } from './gitlab-double.js';
import { prepareGitLabDouble, SECRET } from './gitlab-double-fixture.js';

const lab = prepareGitLabDouble({ beforeAll, afterAll, beforeEach, afterEach });
const { git, gitWithInput, commitMany, commitFile, clone, hooks, payload, pushedClone } = lab;

describe('git over smart HTTP', () => {
  it('a member clones with credentials in the URL, pushes, and the commit lands in the bare repository', async () => {
    const { dir, first } = await pushedClone();
    expect(await git(lab.scratch, '--git-dir', lab.gl.repoDir('research/alpha'), 'rev-parse', 'refs/heads/main')).toBe(first);

    // secd's own credentials (oauth2 + admin token) see the same history
    const botClone = await clone(lab.gl.gitUrl('research/alpha'));
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
    expect(hook.headers['x-gitlab-instance']).toBe(lab.gl.url);
    const event = payload(hook);
    expect(event).toMatchObject({
      object_kind: 'push',
      event_name: 'push',
      before: BLANK_SHA,
      after: first,
      ref: 'refs/heads/main',
      ref_protected: true,
      checkout_sha: first,
      user_id: lab.ada.id,
      user_username: 'ada',
      user_name: 'Ada Researcher',
      user_email: 'ada@example.org',
      project_id: lab.project.id,
      total_commits_count: 1,
      project: {
        id: lab.project.id,
        path_with_namespace: 'research/alpha',
        default_branch: 'main',
        git_http_url: `${lab.gl.url}/research/alpha.git`,
      },
      repository: { name: 'alpha', git_http_url: `${lab.gl.url}/research/alpha.git` },
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
        url: `${lab.gl.url}/research/alpha/-/commit/${first}`,
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
    expect(lab.gl.deliveries).toHaveLength(1);
    expect(lab.gl.deliveries[0]).toMatchObject({ status: 200, responseBody: '{"ok":true}', event: 'Push Hook', body: hook.body });
  });

  it('a wrong password is refused and nothing is pushed', async () => {
    const { dir, first } = await pushedClone();
    await commitFile(dir, 'train.py', 'print(1)\n');
    const badUrl = lab.gl.gitUrl('research/alpha', { username: 'ada', password: 'not-her-password' });
    const err = await git(dir, 'push', badUrl, 'HEAD:main').catch((e: { stderr: string }) => e);
    expect(typeof err).toBe('object');
    expect((err as { stderr: string }).stderr).toMatch(/Authentication failed/);
    expect(await git(lab.scratch, '--git-dir', lab.gl.repoDir('research/alpha'), 'rev-parse', 'refs/heads/main')).toBe(first);

    // no credentials at all: GitLab's 401 with a Basic challenge
    const res = await fetch(`${lab.gl.url}/research/alpha.git/info/refs?service=git-upload-pack`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Basic realm="GitLab"');

    // a Reporter may read but not push
    const bob = lab.gl.addUser({ username: 'bob', email: 'bob@example.org', password: 'bob-pw' });
    lab.gl.addMember(lab.project.id, bob.id, ACCESS.reporter);
    const bobUrl = lab.gl.gitUrl('research/alpha', bob);
    expect(await git(dir, 'ls-remote', bobUrl, 'refs/heads/main')).toContain(first);
    const denied = await git(dir, 'push', bobUrl, 'HEAD:main').catch((e: { stderr: string }) => e);
    expect((denied as { stderr: string }).stderr).toMatch(/403|not allowed/);

    await lab.gl.idle();
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
    await lab.gl.idle();
    expect(hooks()).toHaveLength(1 + 31); // one event per changed ref

    const copy = await clone(lab.gl.gitUrl('research/alpha'));
    expect(await git(copy, 'rev-parse', 'HEAD')).toBe(head);
    expect((await git(copy, 'tag', '--list')).split('\n')).toHaveLength(30);
    expect(lab.gl.gitRequests).toContainEqual(
      expect.objectContaining({ method: 'POST', service: 'git-upload-pack', contentEncoding: 'gzip', status: 200 }),
    );
  });
});
