/**
 * What GitLab sees when it calls secd: every delivery answered (401 / 400 / 200 with what was done),
 * re-sent deliveries run once, a push replayed under a new Idempotency-Key neither runs again nor
 * supersedes the current run, and only pushes to the run branch start runs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster, type Researcher } from '../support/cluster-harness.js';
import { BUSYBOX_IMAGE } from '../support/test-images.js';

const FILES = { Dockerfile: `FROM ${BUSYBOX_IMAGE}\nCMD ["/bin/sh", "-c", "echo hi > $OUTPUT_PATH/hi.txt"]\n` };

describe('webhook intake', () => {
  let cluster: Cluster;
  let bob: Researcher;

  beforeAll(async () => {
    cluster = await startCluster({ webhookKind: 'project' });
    bob = await cluster.addResearcher({ username: 'bob', project: 'lab/intake' });
  });
  afterAll(async () => {
    await cluster?.close();
  });

  const validBody = () => cluster.gitlab.deliveries.find((d) => d.event === 'Push Hook')!.body;

  it('a wrong or missing X-Gitlab-Token is answered 401 and starts nothing', async () => {
    await bob.repo.commit('c1', { signer: bob.signer, committerEmail: bob.user.email, files: FILES });
    await bob.push();
    await cluster.settle();
    const runs = (await cluster.leader.store.list()).length;
    const wrong = await cluster.gitlab.sendRaw({ body: validBody(), headers: { 'X-Gitlab-Token': 'not-the-secret', 'Idempotency-Key': 'k-wrong' } });
    const missing = await cluster.gitlab.sendRaw({ body: validBody(), headers: { 'X-Gitlab-Token': null, 'Idempotency-Key': 'k-missing' } });
    expect(wrong.status).toBe(401);
    expect(missing.status).toBe(401);
    expect(await cluster.leader.store.list()).toHaveLength(runs);
  });

  it('malformed JSON and a body missing a field are answered 400 naming the problem', async () => {
    const notJson = await cluster.gitlab.sendRaw({ body: '{"object_kind": "push", ', headers: { 'Idempotency-Key': 'k-json' } });
    expect(notJson.status).toBe(400);
    expect(notJson.responseBody).toMatch(/JSON/);
    const body = JSON.parse(validBody()) as Record<string, unknown>;
    delete body.after;
    const noAfter = await cluster.gitlab.sendRaw({ body: JSON.stringify(body), headers: { 'Idempotency-Key': 'k-after' } });
    expect(noAfter.status).toBe(400);
    expect(noAfter.responseBody).toContain('after');
  });

  it('a re-sent delivery (same Idempotency-Key) runs once', async () => {
    const sha = await bob.repo.commit('c2', { signer: bob.signer, committerEmail: bob.user.email, files: { 'x.txt': '2' } });
    await bob.push();
    await cluster.gitlab.idle();
    const first = cluster.gitlab.deliveries.find((d) => d.body.includes(`"after":"${sha}"`) || d.body.includes(`"after": "${sha}"`))!;
    const again = await cluster.gitlab.redeliver(first.index);
    expect(again.status).toBe(200);
    const a = JSON.parse(first.responseBody) as { run_id: string };
    const b = JSON.parse(again.responseBody) as { run_id: string; action: string };
    expect(b).toMatchObject({ action: 'duplicate', run_id: a.run_id });
    await cluster.waitForRun(a.run_id);
    expect((await cluster.leader.store.list()).filter((r) => r.commit === sha)).toHaveLength(1);
  });

  it('pushes to other branches, tags, branch deletions and secd-* branches answer 200 and start nothing', async () => {
    await cluster.settle();
    const runsBefore = (await cluster.leader.store.list()).length;
    const from = cluster.gitlab.deliveries.length;
    await bob.repo.git(['checkout', '-q', '-b', 'feature']);
    await bob.repo.commit('feature work', { signer: bob.signer, committerEmail: bob.user.email, files: { 'f.txt': 'f' } });
    await bob.push({ ref: 'refs/heads/feature' });
    await bob.repo.git(['tag', 'v1']);
    await bob.push({ ref: 'refs/tags/v1', remoteRef: 'refs/tags/v1' });
    await bob.push({ ref: 'HEAD', remoteRef: 'refs/heads/secd-2026-01-01_00.00.00-fake000000' });
    await bob.push({ ref: '', remoteRef: 'refs/heads/feature' });
    await cluster.settle();
    const answers = cluster.gitlab.deliveries.slice(from);
    expect(answers.map((d) => d.event)).toEqual(['Push Hook', 'Tag Push Hook', 'Push Hook', 'Push Hook']);
    for (const d of answers) {
      expect(d.status).toBe(200);
      expect(JSON.parse(d.responseBody)).toMatchObject({ action: 'ignored' });
    }
    expect(await cluster.leader.store.list()).toHaveLength(runsBefore);
  });
  /** The push delivery whose body moved the branch to `sha`. */
  const deliveryOf = (sha: string) => cluster.gitlab.deliveries.find((d) => !d.raw && (JSON.parse(d.body) as { after?: string }).after === sha)!;

  it('the same push delivered again under a new Idempotency-Key answers duplicate and runs nothing', async () => {
    await bob.repo.git(['checkout', '-q', 'main']);
    const sha = await bob.repo.commit('c3', { signer: bob.signer, committerEmail: bob.user.email, files: { 'x.txt': '3' } });
    const first = await bob.pushRun();
    await cluster.waitForRun(first.id);
    const runs = (await cluster.leader.store.list()).length;
    const replay = await cluster.gitlab.sendRaw({ body: deliveryOf(sha).body, headers: { 'Idempotency-Key': 'a-brand-new-key' } });
    expect(replay.status).toBe(200);
    expect(JSON.parse(replay.responseBody)).toMatchObject({ action: 'duplicate', run_id: first.id });
    await cluster.settle();
    expect(await cluster.leader.store.list()).toHaveLength(runs);
  });

  it('an old push replayed after a newer one is deduplicated, and one never seen is rejected: a newer push exists', async () => {
    await bob.repo.git(['checkout', '-q', 'main']);
    const old = await bob.repo.commit('c4', { signer: bob.signer, committerEmail: bob.user.email, files: { 'x.txt': '4' } });
    const oldRun = await bob.pushRun();
    await cluster.waitForRun(oldRun.id);
    // B and C pushed together: GitLab never sent a hook for "main moved to B" on its own.
    const b = await bob.repo.commit('c5', { signer: bob.signer, committerEmail: bob.user.email, files: { 'x.txt': '5' } });
    await bob.repo.commit('c6', { signer: bob.signer, committerEmail: bob.user.email, files: { 'x.txt': '6' } });
    const newest = await bob.pushRun();

    // The old push, replayed with a new key: the first run's answer, nothing new.
    const again = await cluster.gitlab.sendRaw({ body: deliveryOf(old).body, headers: { 'Idempotency-Key': 'replay-of-c4' } });
    expect(JSON.parse(again.responseBody)).toMatchObject({ action: 'duplicate', run_id: oldRun.id });

    // A push of B (a real, signed, older commit) that secd never saw: accepted, then refused because
    // B is no longer the head of main, so it cannot cancel the newest run.
    const body = JSON.parse(deliveryOf(newest.commit).body) as Record<string, unknown> & { commits: Array<{ id: string }> };
    const stale = { ...body, before: old, after: b, checkout_sha: b, commits: body.commits.filter((c) => c.id === b), total_commits_count: 1 };
    const answer = await cluster.gitlab.sendRaw({ body: JSON.stringify(stale), headers: { 'Idempotency-Key': 'stale-push-of-b' } });
    const { run_id: staleId } = JSON.parse(answer.responseBody) as { run_id: string; action: string };
    expect(JSON.parse(answer.responseBody)).toMatchObject({ action: 'accepted' });
    const staleRun = await cluster.waitForRun(staleId);
    expect(staleRun.state).toBe('rejected');
    expect(staleRun.reason).toBe(`a newer push exists: branch "main" is at ${newest.commit.slice(0, 8)}, not ${b.slice(0, 8)}; this push does not run`);
    const newestRun = await cluster.waitForRun(newest.id);
    expect(newestRun.state).toBe('succeeded');
    expect((await cluster.leader.store.events(newest.id)).map((e) => e.to)).not.toContain('cancelled');
  });
});
