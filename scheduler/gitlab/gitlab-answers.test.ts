/**
 * GitLab's answers read against their schemas: the samples from GitLab's documentation come out as
 * the fields secd uses, and an answer of the wrong shape is a value that names the wrong field.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  gitlabApprovalsSchema,
  gitlabEmailList,
  gitlabGpgKeyList,
  gitlabMemberList,
  gitlabMergeRequestSchema,
  gitlabProjectSchema,
  gitlabPushEventList,
  gitlabSshKeyList,
  gitlabUserDetailSchema,
  gitlabUserList,
  parseGitLabAnswer,
} from './gitlab-answers.js';

const FIXTURES = join(import.meta.dirname, '../../test/fixtures/gitlab');
const fixture = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');

describe('GitLab answers as GitLab documents them', () => {
  it('a project reads as its id, path, default branch and clone URL', () => {
    expect(parseGitLabAnswer(gitlabProjectSchema, fixture('api_project.json'))).toEqual({
      ok: true,
      value: {
        id: 3,
        path_with_namespace: 'diaspora/diaspora-project-site',
        default_branch: 'master',
        http_url_to_repo: 'http://example.com/diaspora/diaspora-project-site.git',
      },
    });
  });

  it('members/all reads as each member with state and access level, and nothing else', () => {
    const read = parseGitLabAnswer(gitlabMemberList, fixture('api_project_members_all.json'));
    expect(read).toEqual({
      ok: true,
      value: [
        { id: 1, username: 'raymond_smith', name: 'Raymond Smith', state: 'active', access_level: 30 },
        { id: 2, username: 'john_doe', name: 'John Doe', state: 'active', access_level: 30 },
        { id: 3, username: 'foo_bar', name: 'Foo bar', state: 'active', access_level: 30 },
      ],
    });
  });

  it('a user\'s GPG keys read as id, armored key and date', () => {
    expect(parseGitLabAnswer(gitlabGpgKeyList, fixture('api_user_gpg_keys.json'))).toEqual({
      ok: true,
      value: [{ id: 1, key: '<PGP_PUBLIC_KEY_BLOCK>', created_at: '2017-09-05T09:17:46.264Z' }],
    });
  });

  it("a user's SSH keys read with their usage, and GitLab's defaults where the sample leaves fields out", () => {
    const read = parseGitLabAnswer(gitlabSshKeyList, fixture('api_user_keys.json'));
    expect(read.ok && read.value.map((k) => [k.id, k.usage_type, k.expires_at, k.key.slice(0, 8)])).toEqual([
      [1, 'auth', null, 'ssh-rsa '],
      [3, 'signing', null, 'ssh-rsa '],
    ]);
    // A key from before GitLab 15.7 has no usage_type: GitLab's documented default is auth_and_signing.
    const old = parseGitLabAnswer(gitlabSshKeyList, '[{"id": 9, "key": "ssh-ed25519 AAAA", "expires_at": "2030-01-01T00:00:00.000Z"}]');
    expect(old).toEqual({ ok: true, value: [{ id: 9, key: 'ssh-ed25519 AAAA', usage_type: 'auth_and_signing', expires_at: '2030-01-01T00:00:00.000Z' }] });
  });

  it("a user's emails read with when each was confirmed, and an administrator's view of a user with the primary email", () => {
    expect(parseGitLabAnswer(gitlabEmailList, fixture('api_user_emails.json'))).toEqual({
      ok: true,
      value: [
        { email: 'email@example.com', confirmed_at: '2021-03-26T19:07:56.248Z' },
        { email: 'email2@example.com', confirmed_at: null },
      ],
    });
    expect(parseGitLabAnswer(gitlabUserDetailSchema, fixture('api_user_admin.json'))).toEqual({
      ok: true,
      value: { id: 1, username: 'john_smith', state: 'active', email: 'john@example.com', confirmed_at: '2012-05-23T09:05:22Z' },
    });
  });

  it('users read with their state, a blocked one included', () => {
    const read = parseGitLabAnswer(gitlabUserList, fixture('api_users.json'));
    expect(read.ok && read.value.map((u) => [u.username, u.state])).toEqual([
      ['john_smith', 'active'],
      ['jack_smith', 'blocked'],
    ]);
  });

  it('a merge request\'s approvals read as the users in approved_by, nothing of GitLab\'s own rule', () => {
    expect(parseGitLabAnswer(gitlabApprovalsSchema, fixture('merge_request_approvals_api.json'))).toEqual({
      ok: true,
      value: { approved_by: [{ user: { id: 1, username: 'root' } }] },
    });
  });

  it('a push event reads as its pusher and push_data; a created branch has no commit_from, a bulk push no ref', () => {
    const read = parseGitLabAnswer(gitlabPushEventList, fixture('api_project_events_pushed.json'));
    expect(read).toMatchObject({ ok: true, value: [{ id: 4, author: { id: 1, username: 'root' }, push_data: { ref: 'master', commit_to: 'c5feabde2d8cd023215af4d2ceeb7a64839fc428' } }] });
    const sample = (JSON.parse(fixture('api_project_events_pushed.json')) as Array<{ push_data: Record<string, unknown> }>)[0]!;
    const created = { ...sample, push_data: { ...sample.push_data, action: 'created', commit_from: null } };
    const bulk = { ...sample, push_data: { ...sample.push_data, ref: null, commit_from: null, commit_to: null, ref_count: 5 } };
    const both = parseGitLabAnswer(gitlabPushEventList, JSON.stringify([created, bulk]));
    expect(both.ok && both.value.map((e) => [e.push_data.commit_from, e.push_data.ref])).toEqual([[null, 'master'], [null, null]]);
    const noAuthor = { ...sample, author: undefined };
    expect(parseGitLabAnswer(gitlabPushEventList, JSON.stringify([noAuthor]))).toMatchObject({ ok: false, field: 'answer[0].author' });
  });

  it('a project whose repository is empty has no default branch', () => {
    const empty = { ...(JSON.parse(fixture('api_project.json')) as object), default_branch: null };
    const read = parseGitLabAnswer(gitlabProjectSchema, JSON.stringify(empty));
    expect(read.ok && read.value.default_branch).toBeNull();
  });
});

describe('a malformed answer names the field that is wrong', () => {
  const members = (): Array<Record<string, unknown>> => JSON.parse(fixture('api_project_members_all.json')) as Array<Record<string, unknown>>;

  it('an access level given as text', () => {
    const list = members();
    list[1]!.access_level = '30';
    const read = parseGitLabAnswer(gitlabMemberList, JSON.stringify(list));
    expect(read).toMatchObject({ ok: false, field: 'answer[1].access_level' });
    expect(!read.ok && read.problem).toMatch(/expected number/);
  });

  it('a member without a state', () => {
    const list = members();
    delete list[2]!.state;
    expect(parseGitLabAnswer(gitlabMemberList, JSON.stringify(list))).toMatchObject({ ok: false, field: 'answer[2].state' });
  });

  it('a key that is not text, and an object where a list belongs', () => {
    expect(parseGitLabAnswer(gitlabGpgKeyList, '[{"id": 4, "key": null, "created_at": "2024-01-01T00:00:00Z"}]')).toMatchObject({
      ok: false,
      field: 'answer[0].key',
    });
    expect(parseGitLabAnswer(gitlabMemberList, '{"message": "401 Unauthorized"}')).toMatchObject({ ok: false, field: 'answer' });
  });

  it('an approval without its user, and a merge request with a short sha or a closer without a name', () => {
    const approvals = JSON.parse(fixture('merge_request_approvals_api.json')) as { approved_by: Array<Record<string, unknown>> };
    approvals.approved_by.push({ approver: { id: 2 } });
    expect(parseGitLabAnswer(gitlabApprovalsSchema, JSON.stringify(approvals))).toMatchObject({ ok: false, field: 'answer.approved_by[1].user' });
    const mr = {
      id: 99, iid: 1, project_id: 14, web_url: 'http://example.com/diaspora/merge_requests/1', title: 'MS-Viewport', state: 'closed',
      sha: 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7', source_branch: 'ms-viewport', target_branch: 'master', closed_by: { id: 1, username: 'root' },
    };
    expect(parseGitLabAnswer(gitlabMergeRequestSchema, JSON.stringify(mr))).toEqual({ ok: true, value: mr });
    expect(parseGitLabAnswer(gitlabMergeRequestSchema, JSON.stringify({ ...mr, sha: 'da15608' }))).toMatchObject({ ok: false, field: 'answer.sha' });
    expect(parseGitLabAnswer(gitlabMergeRequestSchema, JSON.stringify({ ...mr, closed_by: { id: 1 } }))).toMatchObject({ ok: false, field: 'answer.closed_by.username' });
  });

  it('an SSH key with a usage GitLab does not have, and an email without its address', () => {
    expect(parseGitLabAnswer(gitlabSshKeyList, '[{"id": 1, "key": "ssh-ed25519 AAAA", "usage_type": "everything", "expires_at": null}]')).toMatchObject({
      ok: false,
      field: 'answer[0].usage_type',
    });
    expect(parseGitLabAnswer(gitlabEmailList, '[{"id": 1, "confirmed_at": null}]')).toMatchObject({ ok: false, field: 'answer[0].email' });
  });

  it('a body that is not JSON at all (a proxy\'s HTML page)', () => {
    const read = parseGitLabAnswer(gitlabProjectSchema, '<html><body>502 Bad Gateway</body></html>');
    expect(read).toMatchObject({ ok: false, field: 'answer' });
    expect(!read.ok && read.problem).toMatch(/^not JSON/);
  });
});
