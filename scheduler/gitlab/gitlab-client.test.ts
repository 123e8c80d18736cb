/**
 * The GitLab adapter over real HTTP: against the GitLab double for what secd asks (every page of
 * members, keys, users by name, commit statuses, and output review's merge requests, approvals and
 * notes), and against a server that answers GitLab's documented samples, or a broken version of
 * them, for what a malformed answer becomes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCESS, BOT_USER_ID, startGitLabDouble, type GitLabDouble } from '../../test/doubles/gitlab-double.js';
import { hermeticGitEnv } from '../common/git-env.js';
import { createGitLabClient } from './gitlab-client.js';
import { GitLabAnswerError, GitLabError } from './gitlab-port.js';

const TOKEN = 'glpat-client-test';
const fixture = (name: string): string => readFileSync(join(import.meta.dirname, '../../test/fixtures/gitlab', name), 'utf8');

describe('the GitLab client against the GitLab double', () => {
  let gitlab: GitLabDouble;
  let projectId: number;

  beforeAll(async () => {
    gitlab = await startGitLabDouble({ token: TOKEN });
    const users = Array.from({ length: 105 }, (_, i) => gitlab.addUser({ username: `member${i}`, email: `m${i}@example.org` }));
    projectId = gitlab.addProject({ path: 'lab/big', members: users.map((u) => u.id) }).id;
    gitlab.addMember(projectId, users[0]!.id, ACCESS.maintainer);
    gitlab.addGpgKey(users[0]!.id, '-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n');
  });
  afterAll(async () => {
    await gitlab?.close();
  });

  it('reads every page of members, with their state and access level', async () => {
    const client = createGitLabClient({ url: gitlab.url, token: TOKEN });
    const members = await client.listProjectMembers(projectId);
    expect(members).toHaveLength(105);
    expect(members[0]).toEqual({ id: 1, username: 'member0', name: 'member0', state: 'active', access_level: ACCESS.maintainer });
    expect(gitlab.apiRequests.filter((r) => r.path.endsWith('/members/all')).map((r) => r.status)).toEqual([200, 200]);
  });

  it('reads a user\'s keys, the project, a user by name in any case, and posts a status', async () => {
    const client = createGitLabClient({ url: gitlab.url, token: TOKEN });
    expect(await client.listUserGpgKeys(1)).toEqual([{ id: 1, key: '-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n', created_at: expect.any(String) }]);
    expect(await client.getProject(projectId)).toEqual({
      id: projectId,
      path_with_namespace: 'lab/big',
      default_branch: 'main',
      http_url_to_repo: `${gitlab.url}/lab/big.git`,
    });
    expect(await client.findUserByUsername('MEMBER7')).toMatchObject({ id: 8, username: 'member7' });
    expect(await client.findUserByUsername('nobody')).toBeNull();
    await expect(client.postCommitStatus(projectId, 'f'.repeat(40), { state: 'pending', name: 'secd' })).rejects.toMatchObject({ status: 404 });
  });

  it("reads a user's SSH keys with usage and expiry, and their own verified emails, primary first", async () => {
    const client = createGitLabClient({ url: gitlab.url, token: TOKEN });
    const user = gitlab.addUser({ username: 'keyed', email: 'Keyed@Example.org' });
    gitlab.addSshKey(user.id, { key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhhaGVsbG8 keyed@laptop', usageType: 'signing', expiresAt: '2030-01-01T00:00:00.000Z' });
    gitlab.addSshKey(user.id, { key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdvb2RieWU keyed@server' });
    expect(await client.listUserSshKeys(user.id)).toEqual([
      { id: 1, key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhhaGVsbG8 keyed@laptop', usage_type: 'signing', expires_at: '2030-01-01T00:00:00.000Z' },
      { id: 2, key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdvb2RieWU keyed@server', usage_type: 'auth_and_signing', expires_at: null },
    ]);
    gitlab.addEmail(user.id, 'keyed@home.example');
    gitlab.addEmail(user.id, 'not-yet@example.org', { confirmed: false });
    gitlab.addEmail(user.id, 'KEYED@example.org');
    expect(await client.listUserEmails(user.id)).toEqual(['keyed@example.org', 'keyed@home.example']);
    expect(gitlab.apiRequests.slice(-2).map((r) => r.path.replace(/\?.*/, '')).sort()).toEqual([`/api/v4/users/${user.id}`, `/api/v4/users/${user.id}/emails`]);
    await expect(client.listUserEmails(4242)).rejects.toMatchObject({ status: 404 });
  });

  it('a branch the project does not have has no head (null), not an error', async () => {
    const client = createGitLabClient({ url: gitlab.url, token: TOKEN });
    expect(await client.getBranchHead(projectId, 'main')).toBeNull();
    expect(gitlab.apiRequests.at(-1)).toMatchObject({ path: `/api/v4/projects/${projectId}/repository/branches/main`, status: 404 });
  });

  it('a wrong token is a GitLabError with the status GitLab answered', async () => {
    const client = createGitLabClient({ url: gitlab.url, token: 'wrong' });
    const err = await client.listProjectMembers(projectId).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GitLabError);
    expect(err).not.toBeInstanceOf(GitLabAnswerError);
    expect(err).toMatchObject({ status: 401 });
  });
});

describe('the GitLab client\'s review calls against the GitLab double', () => {
  let gitlab: GitLabDouble;
  let home: string;
  let reviewId: number;
  let head: string;

  /** A commit (empty tree) on `branch` of the double's bare repository, made with plain git. */
  const commitOnBranch = (projectPath: string, branch: string, message: string, parent?: string): string => {
    const env = { ...hermeticGitEnv({ home }), GIT_AUTHOR_NAME: 'secd', GIT_AUTHOR_EMAIL: 'secd@example.org', GIT_COMMITTER_NAME: 'secd', GIT_COMMITTER_EMAIL: 'secd@example.org' };
    const repo = gitlab.repoDir(projectPath);
    const git = (args: string[], input?: string) => execFileSync('git', ['--git-dir', repo, ...args], { env, input }).toString().trim();
    const tree = git(['mktree'], '');
    const sha = git(['commit-tree', tree, '-m', message, ...(parent ? ['-p', parent] : [])]);
    git(['update-ref', `refs/heads/${branch}`, sha]);
    return sha;
  };

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), 'gitlab-client-test-'));
    gitlab = await startGitLabDouble({ token: TOKEN });
    reviewId = gitlab.addProject({ path: 'secd/output-review' }).id;
    const base = commitOnBranch('secd/output-review', 'main', 'review project');
    head = commitOnBranch('secd/output-review', 'secd-2026-12-01_10.00.00-r7', 'results of r7', base);
  });
  afterAll(async () => {
    await gitlab?.close();
    rmSync(home, { recursive: true, force: true });
  });

  it('finds the review project by path and knows its own user', async () => {
    const client = createGitLabClient({ url: gitlab.url, token: TOKEN });
    expect(await client.getProjectByPath('secd/output-review')).toMatchObject({ id: reviewId, default_branch: 'main' });
    expect(gitlab.apiRequests.at(-1)).toMatchObject({ path: '/api/v4/projects/secd%2Foutput-review', status: 200 });
    await expect(client.getProjectByPath('secd/none')).rejects.toMatchObject({ name: 'GitLabError', status: 404 });
    expect(await client.getCurrentUser()).toEqual({ id: BOT_USER_ID, username: 'secd-bot', name: 'secd bot', state: 'active' });
  });

  it('opens a merge request, finds it by source branch, reads approvals, comments and closes it', async () => {
    const client = createGitLabClient({ url: gitlab.url, token: TOKEN });
    const branch = 'secd-2026-12-01_10.00.00-r7';
    const mr = await client.createMergeRequest(reviewId, { sourceBranch: branch, targetBranch: 'main', title: 'Release run r7', description: 'out.csv' });
    expect(mr).toEqual({
      id: 1, iid: 1, project_id: reviewId, web_url: `${gitlab.url}/secd/output-review/-/merge_requests/1`, title: 'Release run r7',
      state: 'opened', sha: head, source_branch: branch, target_branch: 'main', closed_by: null,
    });
    const again = await client.createMergeRequest(reviewId, { sourceBranch: branch, targetBranch: 'main', title: 'x', description: '' }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(GitLabError);
    expect(again).not.toBeInstanceOf(GitLabAnswerError);
    expect(again).toMatchObject({ status: 409 });
    expect(await client.findMergeRequests(reviewId, branch)).toEqual([mr]);
    expect(await client.findMergeRequests(reviewId, 'secd-other')).toEqual([]);
    expect(await client.getMergeRequest(reviewId, 1)).toEqual(mr);
    await expect(client.getMergeRequest(reviewId, 2)).rejects.toMatchObject({ status: 404 });

    const alice = gitlab.addUser({ username: 'alice', email: 'alice@example.org' });
    gitlab.addMember(reviewId, alice.id, ACCESS.developer);
    expect(await client.getMergeRequestApprovals(reviewId, 1)).toEqual([]);
    gitlab.approveMergeRequest(reviewId, 1, alice.id);
    expect(await client.getMergeRequestApprovals(reviewId, 1)).toEqual([{ id: alice.id, username: 'alice' }]);

    await client.addMergeRequestNote(reviewId, 1, 'released after review by alice');
    expect(gitlab.mergeRequests(reviewId)[0]!.notes.map((n) => n.body)).toEqual(['released after review by alice']);
    const closed = await client.closeMergeRequest(reviewId, 1);
    expect(closed).toMatchObject({ state: 'closed', closed_by: { id: BOT_USER_ID, username: 'secd-bot' } });
    expect(gitlab.apiRequests.filter((r) => r.method === 'PUT').map((r) => [r.path, r.status])).toEqual([[`/api/v4/projects/${reviewId}/merge_requests/1`, 200]]);
    await expect(client.addMergeRequestNote(reviewId, 9, 'x')).rejects.toMatchObject({ name: 'GitLabError', status: 404 });
  });
});

describe('the GitLab client reading what a server answers', () => {
  let server: Server;
  let url: string;
  /** path (without the query) -> body answered with 200 */
  const answers = new Map<string, string>();

  beforeAll(async () => {
    server = createServer((req, res) => {
      const body = answers.get((req.url ?? '').split('?')[0]!);
      res.writeHead(body === undefined ? 404 : 200, { 'Content-Type': 'application/json' });
      res.end(body ?? '{"message": "404 Not Found"}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('GitLab\'s documented samples read as the members, keys and project secd uses', async () => {
    answers.set('/api/v4/projects/3/members/all', fixture('api_project_members_all.json'));
    answers.set('/api/v4/users/1/gpg_keys', fixture('api_user_gpg_keys.json'));
    answers.set('/api/v4/projects/3', fixture('api_project.json'));
    const client = createGitLabClient({ url, token: TOKEN });
    expect((await client.listProjectMembers(3)).map((m) => [m.username, m.state, m.access_level])).toEqual([
      ['raymond_smith', 'active', 30],
      ['john_doe', 'active', 30],
      ['foo_bar', 'active', 30],
    ]);
    expect(await client.listUserGpgKeys(1)).toEqual([{ id: 1, key: '<PGP_PUBLIC_KEY_BLOCK>', created_at: '2017-09-05T09:17:46.264Z' }]);
    expect((await client.getProject(3)).path_with_namespace).toBe('diaspora/diaspora-project-site');
  });

  it('a member whose access level is text is refused with a GitLabAnswerError naming the field', async () => {
    const members = JSON.parse(fixture('api_project_members_all.json')) as Array<Record<string, unknown>>;
    members[1]!.access_level = 'developer';
    answers.set('/api/v4/projects/4/members/all', JSON.stringify(members));
    const err = await createGitLabClient({ url, token: TOKEN }).listProjectMembers(4).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GitLabAnswerError);
    expect(err).toMatchObject({ status: 200, field: 'answer[1].access_level' });
    expect((err as Error).message).toMatch(/^GitLab's answer to \/projects\/4\/members\/all\?per_page=100&page=1 is malformed at answer\[1\]\.access_level: /);
  });

  it('a branch reads as its head commit id; a branch name with a slash is sent %2F-encoded', async () => {
    const sha = '7b5c3cc8be40ee161ae89a06bba6229da1032a0c';
    answers.set('/api/v4/projects/3/repository/branches/team%2Fmain', JSON.stringify({ name: 'team/main', merged: false, commit: { id: sha, short_id: '7b5c3cc' } }));
    answers.set('/api/v4/projects/3/repository/branches/broken', JSON.stringify({ name: 'broken', commit: { id: 'not-a-sha' } }));
    const client = createGitLabClient({ url, token: TOKEN });
    expect(await client.getBranchHead(3, 'team/main')).toBe(sha);
    await expect(client.getBranchHead(3, 'broken')).rejects.toMatchObject({ name: 'GitLabAnswerError', field: 'answer.commit.id' });
  });

  it('the documented push events read as who pushed which commit where; one page of 100, newest first, is asked for', async () => {
    answers.set('/api/v4/projects/15/events', fixture('api_project_events_pushed.json'));
    const client = createGitLabClient({ url, token: TOKEN });
    const events = await client.listPushEvents(15);
    expect(events).toEqual([
      {
        id: 4,
        author_id: 1,
        author: { id: 1, username: 'root', name: 'Dmitriy Zaporozhets' },
        push_data: {
          action: 'pushed',
          ref_type: 'branch',
          commit_from: '50d4420237a9de7be1304607147aec22e4a14af7',
          commit_to: 'c5feabde2d8cd023215af4d2ceeb7a64839fc428',
          ref: 'master',
        },
      },
    ]);
    const broken = JSON.parse(fixture('api_project_events_pushed.json')) as Array<{ push_data: Record<string, unknown> }>;
    broken[0]!.push_data.commit_to = 'c5feabde';
    answers.set('/api/v4/projects/16/events', JSON.stringify(broken));
    await expect(client.listPushEvents(16)).rejects.toMatchObject({ name: 'GitLabAnswerError', field: 'answer[0].push_data.commit_to' });
  });

  it('the documented approvals answer reads as the users who approved; a malformed one names the field', async () => {
    answers.set('/api/v4/projects/1/merge_requests/5/approvals', fixture('merge_request_approvals_api.json'));
    const client = createGitLabClient({ url, token: TOKEN });
    expect(await client.getMergeRequestApprovals(1, 5)).toEqual([{ id: 1, username: 'root' }]);
    const broken = JSON.parse(fixture('merge_request_approvals_api.json')) as { approved_by: Array<{ user: Record<string, unknown> }> };
    broken.approved_by[0]!.user.id = '1';
    answers.set('/api/v4/projects/1/merge_requests/6/approvals', JSON.stringify(broken));
    await expect(client.getMergeRequestApprovals(1, 6)).rejects.toMatchObject({ name: 'GitLabAnswerError', field: 'answer.approved_by[0].user.id' });
  });

  it('a merge request in a state GitLab does not have is refused naming the field', async () => {
    const mr = { id: 9, iid: 1, project_id: 3, web_url: 'http://example.com/mr/1', title: 't', state: 'approved', sha: null, source_branch: 's', target_branch: 'main', closed_by: null };
    answers.set('/api/v4/projects/3/merge_requests/1', JSON.stringify(mr));
    await expect(createGitLabClient({ url, token: TOKEN }).getMergeRequest(3, 1)).rejects.toMatchObject({ name: 'GitLabAnswerError', field: 'answer.state' });
  });

  it('a key list that is not JSON is refused the same way', async () => {
    answers.set('/api/v4/users/9/gpg_keys', '<html>maintenance</html>');
    await expect(createGitLabClient({ url, token: TOKEN }).listUserGpgKeys(9)).rejects.toMatchObject({
      name: 'GitLabAnswerError',
      field: 'answer',
      problem: expect.stringMatching(/^not JSON/),
    });
  });
});
