/**
 * Runs met again after they ended (issue 16): a result the node re-sends until acknowledged, a
 * result that disagrees with the recorded end, a held run's result sent twice, and what a restarted
 * leader does for a run whose final status never reached GitLab or whose newer push never superseded
 * it. A real in-memory run store, fake nodes and GitLab, and a log that keeps every line.
 */
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import type { Log } from '../common/log.js';
import type { RunOutcome } from '../contract/run-spec.js';
import type { RunReleaseRow, ReleaseStore } from '../../storage/release-store.js';
import type { ReleaseDesk } from '../release/release-desk.js';
import type { GitLabApi } from '../gitlab/gitlab-port.js';
import { fakeNode, lifecycleFixture, type LifecycleFixture, type PostedStatus } from '../../test/support/lifecycle-fixtures.js';

interface Line {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  obj: object;
}

function recordingLog(lines: Line[]): Log {
  const at = (level: Line['level']) => (obj: object, msg = '') => void lines.push({ level, msg, obj });
  const log: Log = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return log;
}

const outcome: RunOutcome = {
  end: 'succeeded',
  reason: 'succeeded; results on branch secd-x',
  exitCode: 0,
  imageId: 'sha256:1',
  branch: 'secd-x',
  outputsPath: 'outputs/x',
  startedAt: '2026-01-01T00:00:01.000Z',
  finishedAt: '2026-01-01T00:00:09.000Z',
};

let fixture: LifecycleFixture | undefined;
afterEach(async () => fixture?.close());

async function setup(release?: { store: Pick<ReleaseStore, 'get'> & Partial<Pick<ReleaseStore, 'update'>> }, gitlab?: (posted: PostedStatus[]) => GitLabApi) {
  const lines: Line[] = [];
  const node = fakeNode('gpu-01', { gpus: ['GPU-A'] });
  const posted: PostedStatus[] = [];
  fixture = await lifecycleFixture([node], () => ({
    log: recordingLog(lines),
    ...(gitlab ? { gitlab: gitlab(posted) } : {}),
    ...(release ? { release: { desk: unusedDesk, store: release.store as ReleaseStore } } : {}),
  }));
  return { ...fixture, node, lines, posted, loud: () => lines.filter((l) => l.level === 'warn' || l.level === 'error') };
}

/** A release desk no test here reaches, but for a restart's look at held runs (none held): every other method throws. */
const unusedDesk = new Proxy({} as ReleaseDesk, {
  get: (_t, name) =>
    name === 'pollHeld' || name === 'closeReleasedReviews'
      ? () => Promise.resolve()
      : () => {
          throw new Error(`the release desk was asked to ${String(name)}`);
        },
});

describe('a result for a run that already ended', () => {
  it('the same result re-sent (the node sends it until acked) is acknowledged quietly and changes nothing', async () => {
    const t = await setup();
    const { id } = await t.runIn('uploading');
    t.lifecycle.onResult('gpu-01', id, outcome);
    await t.settle();
    const ended = (await t.store.get(id))!;
    expect(ended).toMatchObject({ state: 'succeeded', branch: 'secd-x', statusPosted: 'success' });
    const events = (await t.store.events(id)).length;

    t.lifecycle.onResult('gpu-01', id, { ...outcome, reason: 'sent again' });
    await t.settle();
    expect(await t.store.get(id)).toMatchObject({ state: 'succeeded', reason: outcome.reason, branch: 'secd-x' });
    expect(await t.store.events(id)).toHaveLength(events);
    expect(t.statuses.filter((s) => s.state === 'success')).toHaveLength(1);
    expect(t.loud()).toEqual([]);
    expect(t.lines.some((l) => l.level === 'debug' && /re-sent for a run that already ended/.test(l.msg))).toBe(true);
    expect(t.lines.some((l) => /state table does not allow/.test(l.msg))).toBe(false);
  });

  it('a re-sent result whose final status never reached GitLab (the leader died first) posts it, once', async () => {
    const t = await setup();
    const { id } = await t.runIn('uploading');
    // Ended in the database, as a leader killed before its status post leaves it.
    await t.store.transition(id, 'succeeded', outcome.reason, { branch: 'secd-x' });
    t.lifecycle.onResult('gpu-01', id, outcome);
    t.lifecycle.onResult('gpu-01', id, outcome);
    await t.settle();
    expect(t.statuses.map((s) => s.state)).toEqual(['success']);
    expect((await t.store.get(id))?.statusPosted).toBe('success');
    expect(t.loud()).toEqual([]);
  });

  it('a result that disagrees with the recorded end (another end, another branch) is logged as an error and the recorded end stands', async () => {
    const t = await setup();
    const { id } = await t.runIn('running');
    await t.store.transition(id, 'lost', 'node gpu-01 has been unreachable for 10 min');
    t.lifecycle.onResult('gpu-01', id, outcome);
    await t.settle();
    expect(await t.store.get(id)).toMatchObject({ state: 'lost', branch: null });
    const errors = t.lines.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toBe('a node reported a result that disagrees with the recorded end of the run; the recorded end stands');
    expect(errors[0]!.obj).toMatchObject({ runId: id, recorded: { end: 'lost', branch: null }, reported: { end: 'succeeded', branch: 'secd-x' } });

    const { id: other } = await t.runIn('uploading');
    t.lifecycle.onResult('gpu-01', other, outcome);
    t.lifecycle.onResult('gpu-01', other, { ...outcome, branch: 'secd-y' });
    await t.settle();
    expect(await t.store.get(other)).toMatchObject({ state: 'succeeded', branch: 'secd-x' });
    expect(t.lines.filter((l) => l.level === 'error').map((l) => l.obj)).toContainEqual(
      expect.objectContaining({ runId: other, recorded: { end: 'succeeded', branch: 'secd-x' }, reported: expect.objectContaining({ branch: 'secd-y' }) }),
    );
  });

  it("a held run's result sent again leaves it held for its review (it does not end past the review)", async () => {
    const rows = new Map<string, Pick<RunReleaseRow, 'policy' | 'nodeEnd' | 'reviewBranch'>>();
    const t = await setup({ store: { get: async (runId: string) => rows.get(runId) as RunReleaseRow | undefined } });
    const { id } = await t.runIn('uploading');
    rows.set(id, { policy: 'review', nodeEnd: 'succeeded', reviewBranch: 'secd-x' });
    await t.store.transition(id, 'held', 'outputs held for review (0/2 approvals)');
    t.lifecycle.onResult('gpu-01', id, outcome);
    await t.settle();
    expect((await t.store.get(id))?.state).toBe('held');
    expect(t.statuses).toEqual([]);
    expect(t.loud()).toEqual([]);
  });
});

describe('a leader that starts again after it was killed', () => {
  it('posts the final status of a run that ended while its post was on its way, and none GitLab already took', async () => {
    const t = await setup();
    const { id: unposted } = await t.runIn('uploading');
    await t.store.transition(unposted, 'failed', 'the build failed');
    const { id: posted } = await t.runIn('uploading');
    await t.store.transition(posted, 'succeeded', outcome.reason);
    await t.store.update(posted, { statusPosted: 'success' });
    const { id: stillRunning } = await t.runIn('running');
    t.lifecycle.resume();
    await t.settle();
    expect(t.statuses.map((s) => [s.sha, s.state, s.description])).toEqual([[(await t.store.get(unposted))!.commit, 'failed', 'the build failed']]);
    expect((await t.store.get(stillRunning))?.statusPosted).toBeNull();
    // Started once more, it posts nothing new.
    t.lifecycle.resume();
    await t.settle();
    expect(t.statuses).toHaveLength(1);
  });

  it('a final status GitLab took just before the kill (not yet written down) is not posted again; another run\'s is no proof', async () => {
    // GitLab as it stands after the kill: the newest secd status of each commit, with its run's URL.
    const shown = new Map<string, { name: string; status: string; target_url: string | null }>();
    const t = await setup(undefined, (posted) => ({
      getProject: () => Promise.reject(new Error('unused')),
      listProjectMembers: () => Promise.resolve([]),
      listUserGpgKeys: () => Promise.resolve([]),
      postCommitStatus: (_p, sha, status) => {
        posted.push({ sha, ...status });
        return Promise.resolve();
      },
      listCommitStatuses: (_p, sha) => Promise.resolve(shown.has(sha) ? [shown.get(sha)!] : []),
    }));
    const { id: taken, sha: takenSha } = await t.runIn('uploading');
    await t.store.transition(taken, 'succeeded', outcome.reason);
    shown.set(takenSha, { name: 'secd', status: 'success', target_url: `http://127.0.0.1:8080/runs/${taken}` });
    const { id: other, sha: otherSha } = await t.runIn('uploading');
    await t.store.transition(other, 'succeeded', outcome.reason);
    shown.set(otherSha, { name: 'secd', status: 'success', target_url: 'http://127.0.0.1:8080/runs/an-earlier-run' });
    t.lifecycle.resume();
    await t.settle();
    expect(t.posted.map((s) => [s.sha, s.state])).toEqual([[otherSha, 'success']]);
    expect((await t.store.get(taken))?.statusPosted).toBe('success');
    expect(t.lines.some((l) => /GitLab already shows the final status/.test(l.msg))).toBe(true);
  });

  it('a review released just before the kill gets its secd/release and secd statuses, once', async () => {
    const rows = new Map<string, Pick<RunReleaseRow, 'policy' | 'nodeEnd' | 'reviewBranch' | 'outcome' | 'decidedBy' | 'decidedAt' | 'statusPosted'>>();
    const t = await setup({
      store: {
        get: async (runId: string) => rows.get(runId) as RunReleaseRow | undefined,
        update: async (runId, patch) => void Object.assign(rows.get(runId)!, patch),
      },
    });
    const { id } = await t.runIn('uploading');
    await t.store.transition(id, 'held', 'outputs held for review (0/1 approvals)');
    await t.store.transition(id, 'succeeded', 'succeeded; released after review by alice; results on branch secd-x', { branch: 'secd-x' });
    const row = { policy: 'review' as const, nodeEnd: 'succeeded', reviewBranch: 'secd-x', outcome: 'released' as const, decidedBy: 'alice', decidedAt: t.now().toISOString(), statusPosted: 'pending' };
    rows.set(id, row);
    t.lifecycle.resume();
    await t.settle();
    expect(t.statuses.map((s) => [s.name, s.state, s.description])).toEqual([
      ['secd/release', 'success', 'released after review by alice'],
      ['secd', 'success', 'succeeded; released after review by alice; results on branch secd-x'],
    ]);
    expect(row.statusPosted).toBe('success');
    t.lifecycle.resume();
    await t.settle();
    expect(t.statuses).toHaveLength(2);
  });

  it('a run queued just before the kill supersedes the older runs of its branch when the leader starts again', async () => {
    const t = await setup();
    const older = await t.runIn('queued', { project: 'lab/same' });
    const newer = await t.runIn('queued', { project: 'lab/same' });
    // The fixture gives each run its own project id: make them one project, as two pushes are.
    await sql`UPDATE runs SET project_id = 7 WHERE id IN (${older.id}, ${newer.id})`.execute(t.state.db);
    t.lifecycle.resume();
    await t.settle();
    expect(await t.store.get(older.id)).toMatchObject({ state: 'cancelled', reason: expect.stringContaining(`superseded by a newer push`) });
    expect((await t.store.get(newer.id))?.state).not.toBe('cancelled');
  });
});
