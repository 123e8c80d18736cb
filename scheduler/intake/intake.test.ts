import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { classifyDelivery, type Decision, type IntakeConfig } from './intake.js';
import { parsePushEvent } from './push-event.js';

/** GitLab's documented payloads, copied from shared/fixtures with their SOURCES.md. */
function fixture(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`../../test/fixtures/gitlab/${name}`, import.meta.url), 'utf8')) as Record<
    string,
    unknown
  >;
}

const SECRET = 'hook-secret-0123';
const cfg: IntakeConfig = { webhookSecret: SECRET, runBranch: 'default' };
const ZERO = '0'.repeat(40);

/** The documented project-hook push to master (the default branch). */
const webhook = () => fixture('push_event_webhook.json');

function deliver(
  body: unknown,
  headers: Record<string, string | string[] | undefined> = {},
  config: IntakeConfig = cfg,
): Decision {
  const rawBody = typeof body === 'string' ? body : Buffer.from(JSON.stringify(body));
  return classifyDelivery(
    { headers: { 'X-Gitlab-Event': 'Push Hook', 'X-Gitlab-Token': SECRET, ...headers }, rawBody },
    config,
  );
}

function expectIgnored(d: Decision, code: string, reason: string) {
  expect(d).toMatchObject({ kind: 'ignored', status: 200, code, reason });
}

describe('pushes that start a run', () => {
  it('the documented push hook to the default branch is accepted', () => {
    const d = deliver(webhook(), { 'Idempotency-Key': 'key-1' });
    expect(d.kind).toBe('accepted');
    if (d.kind !== 'accepted') return;
    expect(d.status).toBe(200);
    expect(d.deliveryKey).toBe('key-1');
    expect(d.branch).toBe('master');
    expect(d.push.after).toBe('da1560886d4f094c3e6c9ef40349f7d38b5d27d7');
    expect(d.push.project).toMatchObject({
      id: 15,
      path_with_namespace: 'mike/diaspora',
      git_http_url: 'http://example.com/mike/diaspora.git',
    });
    expect(d.push.user_username).toBe('jsmith');
    expect(d.push.total_commits_count).toBe(4);
    expect(d.push.commits.map((c) => c.id)).toEqual([
      'b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327',
      'da1560886d4f094c3e6c9ef40349f7d38b5d27d7',
    ]);
  });

  it('a logged real delivery, with its own headers, is accepted and deduplicated on Idempotency-Key', () => {
    const logged = fixture('push_event_logged_with_headers.json');
    const headers = { ...(logged.request_headers as Record<string, string>), 'X-Gitlab-Token': SECRET };
    const d = classifyDelivery({ headers, rawBody: JSON.stringify(logged.request_data) }, cfg);
    expect(d).toMatchObject({ kind: 'accepted', status: 200, branch: 'master', deliveryKey: '1f0a54f0-0529-408d-a5b8-a2a98ff5f94a' });
    if (d.kind !== 'accepted') return;
    expect(d.push.user_email).toBeNull();
    expect(d.push.project.path_with_namespace).toBe('flightjs/Flight');
    // Fields secd does not read are kept, not stripped.
    expect((d.push as Record<string, unknown>).ref_protected).toBe(true);
  });

  it('without Idempotency-Key the delivery is keyed on X-Gitlab-Event-UUID, then on the body', () => {
    const d1 = deliver(webhook(), { 'X-Gitlab-Event-UUID': 'uuid-9' });
    expect(d1).toMatchObject({ kind: 'accepted', deliveryKey: 'uuid-9' });
    const raw = JSON.stringify(webhook());
    const d2 = deliver(raw);
    expect(d2).toMatchObject({
      kind: 'accepted',
      deliveryKey: `sha256:${createHash('sha256').update(raw).digest('hex')}`,
    });
  });

  it('header names match in any case, as Node lower-cases them', () => {
    const d = classifyDelivery(
      {
        headers: { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': SECRET, 'idempotency-key': 'k' },
        rawBody: JSON.stringify(webhook()),
      },
      cfg,
    );
    expect(d).toMatchObject({ kind: 'accepted', deliveryKey: 'k' });
  });

  it('a configured run branch replaces the default branch', () => {
    const body = { ...webhook(), ref: 'refs/heads/train' };
    expect(deliver(body, {}, { ...cfg, runBranch: 'train' })).toMatchObject({ kind: 'accepted', branch: 'train' });
    expectIgnored(deliver(webhook(), {}, { ...cfg, runBranch: 'train' }), 'not_run_branch', 'not the run branch ("refs/heads/master"; runs start from "train")');
  });

  it('pushes to the output review project never start a run, whatever the branch', () => {
    const path = (webhook() as { project: { path_with_namespace: string } }).project.path_with_namespace;
    expectIgnored(deliver(webhook(), {}, { ...cfg, reviewProject: path.toUpperCase() }), 'review_project', `the output review project (${path.toUpperCase()}) never starts runs`);
    expect(deliver(webhook(), {}, { ...cfg, reviewProject: 'secd/output-review' })).toMatchObject({ kind: 'accepted' });
  });

  it('a new branch (before is all zeros) that is the run branch is accepted', () => {
    expect(deliver({ ...webhook(), before: ZERO }, {}, cfg).kind).toBe('accepted');
  });

  it('a system hook push in the current, full shape is accepted', () => {
    expect(deliver(webhook(), { 'X-Gitlab-Event': 'System Hook' }).kind).toBe('accepted');
  });

  it('a SHA-256 repository’s 64-hex ids are accepted', () => {
    const sha256 = 'a'.repeat(64);
    const d = deliver({ ...webhook(), after: sha256, checkout_sha: sha256, commits: [] });
    expect(d).toMatchObject({ kind: 'accepted' });
  });
});

describe('deliveries refused before anything is read', () => {
  it('a missing token is 401', () => {
    const d = deliver(webhook(), { 'X-Gitlab-Token': undefined });
    expect(d).toEqual({ kind: 'unauthorized', status: 401, code: 'missing_token', message: 'missing X-Gitlab-Token header' });
  });

  it.each([
    ['a wrong token', 'hook-secret-0124'],
    ['a prefix of the token', 'hook'],
    ['an empty token', ''],
    ['the token with a newline', `${SECRET}\n`],
  ])('%s is 401', (_name, token) => {
    expect(deliver(webhook(), { 'X-Gitlab-Token': token })).toMatchObject({ kind: 'unauthorized', status: 401, code: 'wrong_token' });
  });

  it('the token is checked even for events secd ignores, and before the body', () => {
    expect(deliver('not json', { 'X-Gitlab-Event': 'Merge Request Hook', 'X-Gitlab-Token': 'x' }).kind).toBe('unauthorized');
    expect(deliver('not json', { 'X-Gitlab-Token': 'x' }).kind).toBe('unauthorized');
  });

  it('an empty configured secret is a bug, not an open door', () => {
    expect(() => deliver(webhook(), { 'X-Gitlab-Token': '' }, { ...cfg, webhookSecret: '' })).toThrow(/webhookSecret is empty/);
  });
});

describe('malformed bodies are 400 and name the field', () => {
  it('invalid JSON', () => {
    const d = deliver('{"object_kind": "push",');
    expect(d).toMatchObject({ kind: 'malformed', status: 400, code: 'invalid_json' });
    if (d.kind === 'malformed') expect(d.message).toMatch(/^body is not valid JSON: /);
  });

  it('a JSON value that is not an object', () => {
    expect(deliver('[1,2]')).toMatchObject({ kind: 'malformed', message: 'body: expected a JSON object' });
  });

  it('a missing after', () => {
    const { after: _after, ...body } = webhook();
    expect(deliver(body)).toEqual({ kind: 'malformed', status: 400, code: 'invalid_payload', message: 'body.after: required' });
  });

  it.each([
    ['after', 'main', 'body.after: expected a 40-character hex sha (64 for SHA-256 repositories)'],
    ['after', 'DA1560886D4F094C3E6C9EF40349F7D38B5D27D7', 'body.after: expected a 40-character hex sha (64 for SHA-256 repositories)'],
    ['before', 42, 'body.before: expected a 40-character hex sha'],
    ['user_id', '4', 'body.user_id: expected a number, got string'],
    ['project', null, 'body.project: expected an object, got null'],
    ['commits', {}, 'body.commits: expected an array, got object'],
  ])('a bad %s (%j)', (field, value, message) => {
    expect(deliver({ ...webhook(), [field]: value })).toMatchObject({ kind: 'malformed', status: 400, message });
  });

  it('a bad nested field is named with its path', () => {
    const body = webhook();
    const commits = body.commits as Array<Record<string, unknown>>;
    commits[1] = { ...commits[1], id: 'nope' };
    expect(deliver(body)).toMatchObject({ kind: 'malformed', message: expect.stringMatching(/^body\.commits\[1\]\.id: expected a 40-character hex sha/) });
    const noPath = { ...webhook(), project: { ...(webhook().project as object), path_with_namespace: undefined } };
    expect(deliver(noPath)).toMatchObject({ kind: 'malformed', message: 'body.project.path_with_namespace: required' });
  });

  it('GitLab’s older system-hook sample lacks user_username and is refused naming it', () => {
    const d = deliver(fixture('push_event_system_hook.json'), { 'X-Gitlab-Event': 'System Hook' });
    expect(d).toEqual({ kind: 'malformed', status: 400, code: 'invalid_payload', message: 'body.user_username: required' });
  });

  it('the older sample is otherwise understood: object_kind and project.id are filled in', () => {
    const sample = { ...fixture('push_event_system_hook.json'), user_username: 'jsmith' };
    const d = deliver(sample, { 'X-Gitlab-Event': 'System Hook' });
    expect(d).toMatchObject({ kind: 'accepted', branch: 'master' });
    if (d.kind !== 'accepted') return;
    expect(d.push.object_kind).toBe('push');
    expect(d.push.project.id).toBe(15);
  });
});

describe('deliveries acknowledged without a run', () => {
  it('a tag push', () => {
    const tag = { ...webhook(), object_kind: 'tag_push', event_name: 'tag_push', ref: 'refs/tags/v1.0' };
    expectIgnored(deliver(tag, { 'X-Gitlab-Event': 'Tag Push Hook', 'Idempotency-Key': 'k-tag' }), 'tag_push', 'tag push');
    expect(deliver(tag, { 'X-Gitlab-Event': 'Tag Push Hook', 'Idempotency-Key': 'k-tag' })).toMatchObject({ deliveryKey: 'k-tag' });
    expectIgnored(deliver(tag, { 'X-Gitlab-Event': 'System Hook' }), 'tag_push', 'tag push');
  });

  it('a tag push is ignored even when its body would not pass the push schema', () => {
    expectIgnored(deliver({ event_name: 'tag_push' }, { 'X-Gitlab-Event': 'Tag Push Hook' }), 'tag_push', 'tag push');
  });

  it('a deleted branch', () => {
    const deletion = { ...webhook(), after: ZERO, checkout_sha: null, commits: [], total_commits_count: 0 };
    expectIgnored(deliver(deletion), 'branch_deleted', 'branch deleted');
  });

  it('a push to another branch says which branch runs start from', () => {
    expectIgnored(
      deliver({ ...webhook(), ref: 'refs/heads/experiment' }),
      'not_run_branch',
      'not the run branch ("refs/heads/experiment"; runs start from "master")',
    );
  });

  it('secd’s own results branches, whatever the run branch', () => {
    const results = { ...webhook(), ref: 'refs/heads/secd-2024-05-26_03.03.19-r42' };
    expectIgnored(deliver(results), 'results_branch', 'secd results branch');
    expectIgnored(deliver(results, {}, { ...cfg, runBranch: 'secd-2024-05-26_03.03.19-r42' }), 'results_branch', 'secd results branch');
    const project = { ...(webhook().project as object), default_branch: 'secd-main' };
    expectIgnored(deliver({ ...results, ref: 'refs/heads/secd-main', project }), 'results_branch', 'secd results branch');
  });

  it('a project without a default branch yet', () => {
    const project = { ...(webhook().project as object), default_branch: null };
    expect(deliver({ ...webhook(), project })).toMatchObject({ kind: 'ignored', code: 'no_default_branch' });
  });

  it('a ref that is not a branch', () => {
    expectIgnored(deliver({ ...webhook(), ref: 'refs/merge-requests/1/head' }), 'not_a_branch', 'not a branch ("refs/merge-requests/1/head")');
  });

  it.each(['Pipeline Hook', 'Note Hook', undefined])('a %s event', (event) => {
    const d = deliver({ object_kind: 'merge_request' }, { 'X-Gitlab-Event': event, 'Idempotency-Key': 'k-mr' });
    expect(d).toEqual({ kind: 'ignored', status: 200, code: 'not_push', reason: 'not a push event', deliveryKey: 'k-mr' });
  });

  it('a system hook for another instance event', () => {
    expectIgnored(
      deliver({ event_name: 'project_create', name: 'x', path_with_namespace: 'a/x' }, { 'X-Gitlab-Event': 'System Hook' }),
      'not_push',
      'not a push event',
    );
  });
});

describe('parsePushEvent', () => {
  it('keeps the documented payload’s fields', () => {
    const r = parsePushEvent(webhook());
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.push.checkout_sha).toBe('da1560886d4f094c3e6c9ef40349f7d38b5d27d7');
  });
});
