/**
 * Merge Request Hooks at intake: GitLab's documented sample, as a project hook or a system hook,
 * becomes "something happened to merge request iid of project id" and nothing more; a body that
 * does not say which merge request is a 400 naming the field; the token still comes first.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { classifyDelivery, type Decision, type IntakeConfig } from './intake.js';
import { parseMergeRequestEvent } from './merge-request-event.js';

const SECRET = 'hook-secret-0123';
const cfg: IntakeConfig = { webhookSecret: SECRET, runBranch: 'default' };

/** GitLab's documented Merge Request Hook body (test/fixtures/gitlab/SOURCES.md). */
function sample(): Record<string, Record<string, unknown>> {
  return JSON.parse(readFileSync(new URL('../../test/fixtures/gitlab/merge_request_event_webhook.json', import.meta.url), 'utf8')) as Record<
    string,
    Record<string, unknown>
  >;
}

function deliver(body: unknown, headers: Record<string, string | undefined> = {}): Decision {
  const rawBody = typeof body === 'string' ? body : JSON.stringify(body);
  return classifyDelivery({ headers: { 'X-Gitlab-Event': 'Merge Request Hook', 'X-Gitlab-Token': SECRET, ...headers }, rawBody }, cfg);
}

describe('merge-request events that reach the leader', () => {
  it('the documented project hook names the project and the merge request, nothing more', () => {
    expect(deliver(sample(), { 'Idempotency-Key': 'mr-key-1' })).toEqual({
      kind: 'merge_request',
      status: 200,
      projectId: 1,
      iid: 1,
      action: 'open',
      deliveryKey: 'mr-key-1',
    });
  });

  it('a system hook with object_kind merge_request is the same event', () => {
    const body = sample();
    body.object_attributes!.action = 'approval';
    body.object_attributes!.iid = 12;
    expect(deliver(body, { 'X-Gitlab-Event': 'System Hook', 'X-Gitlab-Event-UUID': 'uuid-mr' })).toEqual({
      kind: 'merge_request',
      status: 200,
      projectId: 1,
      iid: 12,
      action: 'approval',
      deliveryKey: 'uuid-mr',
    });
  });

  it('an event that names no action still says which merge request', () => {
    const body = sample();
    delete body.object_attributes!.action;
    expect(deliver(body)).toMatchObject({ kind: 'merge_request', iid: 1, action: null });
  });

  it('what the hook claims about the user is not read: a forged approver changes nothing in the decision', () => {
    const honest = sample();
    const forged = sample();
    forged.user = { id: 666, username: 'mallory' };
    forged.object_attributes!.action = 'approved';
    const strip = (d: Decision) => (d.kind === 'merge_request' ? { projectId: d.projectId, iid: d.iid } : d);
    expect(strip(deliver(forged))).toEqual(strip(deliver(honest)));
  });
});

describe('merge-request bodies that do not say which merge request are 400 and name the field', () => {
  it.each([
    ['project.id missing', (b: Record<string, Record<string, unknown>>) => delete b.project!.id, 'body.project.id: required'],
    ['project.id as text', (b: Record<string, Record<string, unknown>>) => (b.project!.id = '1'), 'body.project.id: expected a number, got string'],
    ['iid missing', (b: Record<string, Record<string, unknown>>) => delete b.object_attributes!.iid, 'body.object_attributes.iid: required'],
    ['iid zero', (b: Record<string, Record<string, unknown>>) => (b.object_attributes!.iid = 0), 'body.object_attributes.iid: must be greater than 0'],
    ['iid fractional', (b: Record<string, Record<string, unknown>>) => (b.object_attributes!.iid = 1.5), 'body.object_attributes.iid: expected an integer, got number'],
    ['object_attributes null', (b: Record<string, unknown>) => (b.object_attributes = null), 'body.object_attributes: expected an object, got null'],
    ['another object_kind', (b: Record<string, unknown>) => (b.object_kind = 'note'), 'body.object_kind: expected one of "merge_request"'],
    ['action a number', (b: Record<string, Record<string, unknown>>) => (b.object_attributes!.action = 3), 'body.object_attributes.action: expected a string, got number'],
  ])('%s', (_name, spoil, message) => {
    const body = sample();
    spoil(body as never);
    expect(deliver(body)).toEqual({ kind: 'malformed', status: 400, code: 'invalid_payload', message });
  });

  it('a body that is not JSON, or not an object', () => {
    expect(deliver('{"object_kind": "merge_request",')).toMatchObject({ kind: 'malformed', code: 'invalid_json' });
    expect(deliver('[]')).toMatchObject({ kind: 'malformed', message: 'body: expected a JSON object' });
  });

  it('the token is checked before the body: a wrong token is 401 even for a good merge-request body', () => {
    expect(deliver(sample(), { 'X-Gitlab-Token': 'wrong' })).toMatchObject({ kind: 'unauthorized', code: 'wrong_token' });
    expect(deliver('not json', { 'X-Gitlab-Token': undefined })).toMatchObject({ kind: 'unauthorized', code: 'missing_token' });
  });

  it('a system hook that is neither a push nor a merge request is still ignored', () => {
    expect(deliver({ event_name: 'user_create', object_kind: 'user' }, { 'X-Gitlab-Event': 'System Hook' })).toMatchObject({
      kind: 'ignored',
      code: 'not_push',
    });
  });
});

describe('parseMergeRequestEvent', () => {
  it('reads the documented sample as project 1, merge request 1, action open', () => {
    expect(parseMergeRequestEvent(sample())).toEqual({ ok: true, event: { projectId: 1, iid: 1, action: 'open' } });
  });
});
