/**
 * The reconciler's decisions: which branch is read, which heads are missed pushes, who pushed them
 * (from GitLab's documented push event), and that the push it builds is one intake accepts exactly
 * as it would GitLab's webhook of the same push.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gitlabProjectSchema, gitlabPushEventList, parseGitLabAnswer, type GitLabPushEvent } from '../gitlab/gitlab-answers.js';
import { classifyDelivery } from '../intake/intake.js';
import { parsePushEvent } from '../intake/push-event.js';
import {
  BLANK_COMMIT,
  missedPushBody,
  projectsOfRound,
  pushOfHead,
  reconcileDeliveryKey,
  runBranchOf,
  uncoveredHeads,
} from './missed-pushes.js';

const fixture = (name: string) => readFileSync(join(import.meta.dirname, '../../test/fixtures/gitlab', name), 'utf8');

function documentedEvents(): GitLabPushEvent[] {
  const read = parseGitLabAnswer(gitlabPushEventList, fixture('api_project_events_pushed.json'));
  if (!read.ok) throw new Error(`${read.field}: ${read.problem}`);
  return read.value;
}

function documentedProject() {
  const read = parseGitLabAnswer(gitlabProjectSchema, fixture('api_project.json'));
  if (!read.ok) throw new Error(`${read.field}: ${read.problem}`);
  return read.value;
}

/** A push event as GitLab lists one, built from the documented one. */
function anEvent(over: { id: number; ref?: string; from?: string | null; to?: string | null; action?: string; refType?: string; user?: number }): GitLabPushEvent {
  const base = documentedEvents()[0]!;
  return {
    ...base,
    id: over.id,
    author_id: over.user ?? base.author_id,
    author: over.user ? { id: over.user, username: `user${over.user}`, name: `User ${over.user}` } : base.author,
    push_data: {
      ...base.push_data,
      ref: over.ref ?? 'master',
      commit_from: over.from === undefined ? 'a'.repeat(40) : over.from,
      commit_to: over.to === undefined ? 'b'.repeat(40) : over.to,
      action: over.action ?? 'pushed',
      ref_type: over.refType ?? 'branch',
    },
  };
}

describe('which branch a project is read on', () => {
  const settings = { runBranch: 'default', reviewProject: 'secd/output-review' };

  it('is the default branch, or the configured run branch', () => {
    expect(runBranchOf({ path_with_namespace: 'lab/x', default_branch: 'main' }, settings)).toEqual({ ok: true, branch: 'main' });
    expect(runBranchOf({ path_with_namespace: 'lab/x', default_branch: 'main' }, { runBranch: 'experiments' })).toEqual({ ok: true, branch: 'experiments' });
  });

  it('is none for the output review project, whatever its case', () => {
    expect(runBranchOf({ path_with_namespace: 'Secd/Output-Review', default_branch: 'main' }, settings)).toMatchObject({ ok: false, code: 'review_project' });
  });

  it('is none for a project with an empty repository', () => {
    expect(runBranchOf({ path_with_namespace: 'lab/x', default_branch: null }, settings)).toMatchObject({ ok: false, code: 'no_default_branch' });
  });

  it('is never a secd results branch, even when it is the default branch', () => {
    expect(runBranchOf({ path_with_namespace: 'lab/x', default_branch: 'secd-2026-run' }, settings)).toMatchObject({ ok: false, code: 'results_branch' });
  });
});

describe('which heads are missed pushes', () => {
  it('a head with any run for that commit on that ref is covered; another ref or commit is not', async () => {
    const ran = new Set(['1 refs/heads/main ' + 'c'.repeat(40)]);
    // The runs table answers asynchronously, as the stores do.
    const hasRunAt = async (p: number, ref: string, commit: string) => ran.has(`${p} ${ref} ${commit}`);
    const heads = [
      { projectId: 1, ref: 'refs/heads/main', commit: 'c'.repeat(40) },
      { projectId: 1, ref: 'refs/heads/other', commit: 'c'.repeat(40) },
      { projectId: 2, ref: 'refs/heads/main', commit: 'c'.repeat(40) },
      { projectId: 1, ref: 'refs/heads/main', commit: 'd'.repeat(40) },
    ];
    expect(await uncoveredHeads(heads, hasRunAt)).toEqual(heads.slice(1));
  });
});

describe('who pushed a head', () => {
  it('reads the pusher and the range from GitLab\'s documented push event', () => {
    const push = pushOfHead(documentedEvents(), 'master', 'c5feabde2d8cd023215af4d2ceeb7a64839fc428');
    expect(push).toEqual({
      before: '50d4420237a9de7be1304607147aec22e4a14af7',
      after: 'c5feabde2d8cd023215af4d2ceeb7a64839fc428',
      // The nested author (whose id is author_id), not the sample's disagreeing author_username.
      pusher: { id: 1, username: 'root', name: 'Dmitriy Zaporozhets' },
      eventId: 4,
    });
  });

  it('takes the newest push that made the head, so a force-push back to an old commit names its own pusher', () => {
    const head = 'b'.repeat(40);
    const events = [anEvent({ id: 9, to: head, user: 7 }), anEvent({ id: 3, to: head, user: 5 })];
    expect(pushOfHead(events, 'master', head)?.pusher.id).toBe(7);
  });

  it('a created branch pushes from forty zeros, as its webhook says', () => {
    const head = 'b'.repeat(40);
    expect(pushOfHead([anEvent({ id: 1, from: null, to: head, action: 'created' })], 'master', head)?.before).toBe(BLANK_COMMIT);
  });

  it('ignores pushes of other branches, of tags, of deletions, and bulk pushes without refs; none left is null', () => {
    const head = 'b'.repeat(40);
    const events = [
      anEvent({ id: 5, ref: 'other', to: head }),
      anEvent({ id: 4, ref: 'master', to: head, refType: 'tag' }),
      anEvent({ id: 3, ref: 'master', to: null, action: 'removed' }),
      { ...anEvent({ id: 2, to: null, from: null }), push_data: { ...anEvent({ id: 2 }).push_data, ref: null, commit_from: null, commit_to: null } },
      anEvent({ id: 1, ref: 'master', to: 'e'.repeat(40) }),
    ];
    expect(pushOfHead(events, 'master', head)).toBeNull();
  });
});

describe('the push built for a missed head', () => {
  const secret = 'a-webhook-secret';
  const intake = { webhookSecret: secret, runBranch: 'default', reviewProject: 'secd/output-review' };
  const project = documentedProject();
  const push = { before: 'a'.repeat(40), after: 'b'.repeat(40), pusher: { id: 4, username: 'jsmith', name: 'John Smith' }, eventId: 1 };

  it('is accepted by intake as a push by the pusher, with the same (project, ref, before, after) GitLab\'s webhook carries', () => {
    const key = reconcileDeliveryKey(project.id, 'refs/heads/master', push);
    const decision = classifyDelivery(
      { headers: { 'X-Gitlab-Token': secret, 'X-Gitlab-Event': 'Push Hook', 'Idempotency-Key': key }, rawBody: JSON.stringify(missedPushBody(project, 'master', push)) },
      intake,
    );
    expect(decision.kind).toBe('accepted');
    if (decision.kind !== 'accepted') return;
    expect(decision.deliveryKey).toBe(key);
    expect(decision.branch).toBe('master');
    const webhook = JSON.parse(fixture('push_event_webhook.json')) as Record<string, unknown>;
    const sent = parsePushEvent({ ...webhook, project_id: project.id, project: { ...(webhook.project as object), id: project.id }, before: push.before, after: push.after });
    if (!sent.ok) throw new Error(sent.message);
    const identity = (p: typeof sent.push) => [p.project.id, p.ref, p.before, p.after, p.user_id, p.user_username];
    expect(identity(decision.push)).toEqual(identity(sent.push));
    expect(decision.push.project.git_http_url).toBe(project.http_url_to_repo);
  });

  it('is ignored by intake on a branch that is not the run branch', () => {
    const decision = classifyDelivery(
      { headers: { 'X-Gitlab-Token': secret, 'X-Gitlab-Event': 'Push Hook' }, rawBody: JSON.stringify(missedPushBody(project, 'feature', push)) },
      intake,
    );
    expect(decision).toMatchObject({ kind: 'ignored', code: 'not_run_branch' });
  });

  it('has one delivery key per push, another for another push', () => {
    const k = reconcileDeliveryKey(1, 'refs/heads/main', push);
    expect(reconcileDeliveryKey(1, 'refs/heads/main', { ...push })).toBe(k);
    expect(reconcileDeliveryKey(1, 'refs/heads/main', { ...push, after: 'c'.repeat(40) })).not.toBe(k);
    expect(reconcileDeliveryKey(2, 'refs/heads/main', push)).not.toBe(k);
  });
});

describe('the projects of a round', () => {
  it('are all of them while they fit, none when secd has seen none', () => {
    expect(projectsOfRound([3, 1, 2], null, 5)).toEqual({ ids: [1, 2, 3], cursor: null });
    expect(projectsOfRound([], 7, 5)).toEqual({ ids: [], cursor: null });
  });

  it('are at most the cap, taken in turn after the last one read', () => {
    const first = projectsOfRound([1, 2, 3, 4, 5], null, 2);
    expect(first.ids).toEqual([1, 2]);
    const second = projectsOfRound([1, 2, 3, 4, 5], first.cursor, 2);
    expect(second.ids).toEqual([3, 4]);
    expect(projectsOfRound([1, 2, 3, 4, 5], second.cursor, 2).ids).toEqual([5, 1]);
  });

  it('promise: every known project is read within ceil(n / cap) rounds, and no round reads more than the cap or one twice', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 10_000 }), { maxLength: 60 }), fc.integer({ min: 1, max: 20 }), (known, cap) => {
        let cursor: number | null = null;
        const seen = new Set<number>();
        for (let r = 0; r < Math.ceil(known.length / cap); r++) {
          const round = projectsOfRound(known, cursor, cap);
          expect(round.ids.length).toBeLessThanOrEqual(cap);
          expect(new Set(round.ids).size).toBe(round.ids.length);
          round.ids.forEach((id) => seen.add(id));
          cursor = round.cursor;
        }
        expect([...seen].sort((a, b) => a - b)).toEqual([...known].sort((a, b) => a - b));
      }),
    );
  });
});
