/**
 * The whole path of one run, for real: a researcher signs and pushes to the GitLab double (git over
 * smart HTTP), the double sends the webhook, secd verifies with GnuPG-made keys, builds and runs in
 * Docker, and pushes a results branch back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster, type Researcher } from '../support/cluster-harness.js';
import { busyboxProject as project } from '../support/test-images.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';

describe('a signed push becomes a results branch', () => {
  let cluster: Cluster;
  let ada: Researcher;

  beforeAll(async () => {
    cluster = await startCluster({ extraConfig: 'limits:\n  max_output_file_bytes: 4096\n' });
    ada = await cluster.addResearcher({ username: 'ada', project: 'lab/hello' });
  });
  afterAll(async () => {
    await cluster?.close();
  });

  function statusesOf(sha: string): string[] {
    return cluster.gitlab.statuses.filter((s) => s.sha === sha && s.name === 'secd').map((s) => s.state);
  }

  it('runs the pushed commit and pushes outputs, run.json and both logs to a new branch', async () => {
    const sha = await ada.repo.commit('first experiment', {
      signer: ada.signer,
      committerEmail: ada.user.email,
      files: project(
        'echo "hello from run $SECD_RUN_ID in $SECD"\necho oops >&2\nmkdir -p $OUTPUT_PATH/sub\necho 42 > $OUTPUT_PATH/answer.txt\necho nested > $OUTPUT_PATH/sub/deep.txt\n',
      ),
    });
    const { id: runId } = await ada.pushRun();
    const run = await cluster.waitForRun(runId);
    expect(run.state, run.reason).toBe('succeeded');
    expect(run.branch).toMatch(new RegExp(`^secd-\\d{4}-\\d{2}-\\d{2}_\\d{2}\\.\\d{2}\\.\\d{2}-${runId}$`));

    const repo = cluster.gitlab.repoDir('lab/hello');
    const folder = outputsFolder(run.branch!);
    const files = git(repo, ['ls-tree', '-r', '--name-only', run.branch!]).trim().split('\n');
    expect(files).toEqual(
      expect.arrayContaining([
        `${folder}/answer.txt`,
        `${folder}/sub/deep.txt`,
        `${folder}/_secd/run.json`,
        `${folder}/_secd/build.log`,
        `${folder}/_secd/run.log`,
      ]),
    );
    expect(git(repo, ['show', `${run.branch}:${folder}/answer.txt`])).toBe('42\n');
    const runLog = git(repo, ['show', `${run.branch}:${folder}/_secd/run.log`]);
    expect(runLog).toContain(`hello from run ${runId} in PRODUCTION`);
    expect(runLog).toContain('oops');
    const report = JSON.parse(git(repo, ['show', `${run.branch}:${folder}/_secd/run.json`])) as Record<string, unknown>;
    expect(report).toMatchObject({ run_id: runId, commit: sha, state: 'succeeded', exit_code: 0, signer_fingerprint: ada.key.fingerprint });
    expect(git(repo, ['rev-parse', `${run.branch}^`]).trim()).toBe(sha);
    expect(statusesOf(sha)).toEqual(['pending', 'running', 'success']);

    // The results push came back as a webhook for a secd-* branch: answered 200 and started nothing.
    const own = cluster.gitlab.deliveries.find((d) => d.body.includes(`refs/heads/${run.branch}`));
    expect(own?.status).toBe(200);
    expect(JSON.parse(own!.responseBody)).toMatchObject({ action: 'ignored' });
    expect((await cluster.leader.store.list()).filter((r) => r.commit === sha)).toHaveLength(1);
  });

  it('an unsigned commit hidden among 25 pushed at once (outside the payload\'s 20) is rejected and named', async () => {
    const shas = await ada.repo.commitMany(25, (i) => ({
      committerEmail: ada.user.email,
      ...(i === 2 ? {} : { signer: ada.signer }),
    }));
    const { id: runId } = await ada.pushRun();
    const run = await cluster.waitForRun(runId);
    expect(run.state).toBe('rejected');
    const hidden = shas[2]!.slice(0, 8);
    expect(run.reason).toContain(hidden);
    expect(run.reason).toMatch(/not signed/);
    const delivery = cluster.gitlab.deliveries.find((d) => d.body.includes(shas[24]!))!;
    expect(JSON.parse(delivery.body).commits.map((c: { id: string }) => c.id)).not.toContain(shas[2]);
    const failed = cluster.gitlab.statuses.filter((s) => s.sha === shas[24] && s.state === 'failed');
    expect(failed[0]?.description).toContain(hidden);
    // The unsigned commit stays in history: vouch for it from a signed commit on top (DESIGN §13), so
    // the following tests start from a branch that runs.
    await ada.repo.commit(`re-signed tip\n\nSecd-Vouches-For: ${shas[2]}`, { signer: ada.signer, committerEmail: ada.user.email, files: project('echo fine\n') });
  });

  it('a commit signed with a key GitLab does not hold is rejected as unknown key', async () => {
    const stranger = await cluster.gpg.generateKey({ name: 'Ada', email: ada.user.email });
    const sha = await ada.repo.commit('signed with a stray key', {
      signer: await cluster.gpg.gitSigner(stranger),
      committerEmail: ada.user.email,
      files: { 'note.txt': 'x' },
    });
    const { id: runId } = await ada.pushRun();
    const run = await cluster.waitForRun(runId);
    expect(run.state).toBe('rejected');
    expect(run.reason).toContain(sha.slice(0, 8));
    expect(run.reason.toLowerCase()).toContain('key');
    // Take the refused commit back (the next test force-pushes): refused commits stay refused.
    await ada.repo.git(['reset', '-q', '--hard', 'HEAD~1']);
  });

  it('tampered, expired-key and email-mismatch commits are rejected with the commit named', async () => {
    const signed = await ada.repo.commit('to be tampered with', { signer: ada.signer, committerEmail: ada.user.email, files: { 't.txt': '1' } });
    const forged = await ada.repo.tamperCommit(signed, 'changed after signing');
    let run = await cluster.waitForRun((await ada.pushRun(undefined, { force: true })).id);
    expect(run.state).toBe('rejected');
    expect(run.reason).toContain(forged.slice(0, 8));
    expect(run.reason).toMatch(/signature/);
    await ada.repo.git(['reset', '-q', '--hard', 'HEAD~1']);

    const mismatch = await ada.repo.commit('committed as someone else', {
      signer: ada.signer,
      committerEmail: 'not-ada@example.org',
      files: { 't.txt': '2' },
    });
    run = await cluster.waitForRun((await ada.pushRun(undefined, { force: true })).id);
    expect(run.state).toBe('rejected');
    expect(run.reason).toContain(mismatch.slice(0, 8));
    expect(run.reason).toMatch(/email/);
    await ada.repo.git(['reset', '-q', '--hard', 'HEAD~1']);

    const day = 24 * 3600 * 1000;
    const oldKey = await cluster.gpg.generateKey({ name: 'Ada (old)', email: ada.user.email, expire: '1d', createdAt: new Date(Date.now() - 30 * day) });
    cluster.gitlab.addGpgKey(ada.user.id, await cluster.gpg.exportPublicKey(oldKey.fingerprint));
    const expired = await ada.repo.commit('signed with a key that has expired', {
      signer: await cluster.gpg.gitSigner(oldKey, { at: new Date(Date.now() - 30 * day + 3600_000) }),
      committerEmail: ada.user.email,
      files: { 't.txt': '3' },
    });
    run = await cluster.waitForRun((await ada.pushRun(undefined, { force: true })).id);
    expect(run.state).toBe('rejected');
    expect(run.reason).toContain(expired.slice(0, 8));
    expect(run.reason).toMatch(/expired/);
    // Back to the vouched, signed tip for the following tests: it runs.
    await ada.repo.git(['reset', '-q', '--hard', 'HEAD~1']);
    expect((await cluster.waitForRun((await ada.pushRun(undefined, { force: true })).id)).state).toBe('succeeded');
  });

  it('a newer push cancels the older running run, which still pushes what it had', async () => {
    await ada.repo.commit('long run', {
      signer: ada.signer,
      committerEmail: ada.user.email,
      files: project('echo first > $OUTPUT_PATH/first.txt\necho working\nsleep 120\n'),
    });
    const { id: older } = await ada.pushRun();
    for (let i = 0; i < 600 && (await cluster.leader.store.get(older))?.state !== 'running'; i++) await new Promise((r) => setTimeout(r, 50));
    expect((await cluster.leader.store.get(older))?.state).toBe('running');
    const newerSha = await ada.repo.commit('quick fix', { signer: ada.signer, committerEmail: ada.user.email, files: project('echo done\n') });
    const { id: newer } = await ada.pushRun();
    const cancelled = await cluster.waitForRun(older);
    expect(cancelled.state).toBe('cancelled');
    expect(cancelled.reason).toContain(newerSha.slice(0, 8));
    const repo = cluster.gitlab.repoDir('lab/hello');
    const folder = outputsFolder(cancelled.branch!);
    expect(git(repo, ['show', `${cancelled.branch}:${folder}/first.txt`])).toBe('first\n');
    expect(statusesOf(cancelled.commit).at(-1)).toBe('canceled');
    expect((await cluster.waitForRun(newer)).state).toBe('succeeded');
  });

  it('each secd.yml rule rejects the push naming the key', async () => {
    const cases: Array<[string, string]> = [
      ['runfor: -1\n', 'runfor'],
      ['runfor: 1000\n', 'runfor'],
      ['gpu: 3\n', 'gpu'],
      ['cache_dir: ../x\n', 'cache_dir'],
      ['cache_dir: /abs\n', 'cache_dir'],
      ['mount_path: /etc\n', 'mount_path'],
      ['mount_path: /outputs\n', 'mount_path'],
    ];
    for (const [yml, key] of cases) {
      await ada.repo.commit(`secd.yml ${yml.trim()}`, {
        signer: ada.signer,
        committerEmail: ada.user.email,
        files: project('echo never runs\n', yml),
      });
      const { id: runId } = await ada.pushRun();
      const run = await cluster.waitForRun(runId);
      expect(run.state, yml).toBe('rejected');
      expect(run.reason, yml).toContain(key);
    }
  });

  it('a signed 440 KB secd.yml of 45,000 keys is rejected naming its size, and /healthz answers all along', async () => {
    const yml = Array.from({ length: 45_000 }, (_, i) => `key_${i}: ${i}\n`).join('');
    const sha = await ada.repo.commit('a huge secd.yml', { signer: ada.signer, committerEmail: ada.user.email, files: project('echo never runs\n', yml) });
    // Ask /healthz over and over while the leader reads the push: every question gets its answer.
    let polling = true;
    const answers: Array<number | string> = [];
    const poll = (async () => {
      while (polling) {
        answers.push(await fetch(`${cluster.leader.url}/healthz`).then((r) => r.status, (err: unknown) => String(err)));
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const { id: runId } = await ada.pushRun();
    const run = await cluster.waitForRun(runId);
    polling = false;
    await poll;
    const reason = `secd.yml: the file is ${Buffer.byteLength(yml).toLocaleString('en-US')} bytes, more than the limit of 65,536 bytes (64 KiB)`;
    expect(run).toMatchObject({ state: 'rejected', reason });
    const last = cluster.gitlab.statuses.filter((s) => s.sha === sha && s.name === 'secd').at(-1);
    expect(last).toMatchObject({ state: 'failed', description: reason });
    expect(answers.length).toBeGreaterThan(0);
    expect(new Set(answers)).toEqual(new Set([200]));
    expect((await fetch(`${cluster.leader.url}/healthz`)).status).toBe(200);
  });

  it('a push without a Dockerfile is rejected and says so', async () => {
    await ada.repo.git(['rm', '-q', 'Dockerfile']);
    await ada.repo.commit('no dockerfile', { signer: ada.signer, committerEmail: ada.user.email, files: { 'secd.yml': 'runfor: 1\n' } });
    const { id: runId } = await ada.pushRun();
    const run = await cluster.waitForRun(runId);
    expect(run.state).toBe('rejected');
    expect(run.reason).toContain('Dockerfile');
  });

  it('a run stopped at its runfor limit keeps its partial outputs and its log', async () => {
    await ada.repo.commit('slow', {
      signer: ada.signer,
      committerEmail: ada.user.email,
      // 0.001 h = 3.6 s
      files: project('echo step1 > $OUTPUT_PATH/partial.txt\necho started\nsleep 60\necho never > $OUTPUT_PATH/never.txt\n', 'runfor: 0.001\n'),
    });
    const { id: runId } = await ada.pushRun();
    const run = await cluster.waitForRun(runId, 90_000);
    expect(run.state).toBe('timed_out');
    expect(run.reason).toContain('runfor');
    const repo = cluster.gitlab.repoDir('lab/hello');
    const folder = outputsFolder(run.branch!);
    expect(git(repo, ['show', `${run.branch}:${folder}/partial.txt`])).toBe('step1\n');
    expect(git(repo, ['show', `${run.branch}:${folder}/_secd/run.log`])).toContain('started');
    const files = git(repo, ['ls-tree', '-r', '--name-only', run.branch!]);
    expect(files).not.toContain('never.txt');
  });

  it('symlinks in outputs are not followed and an oversized file is left out and listed', async () => {
    await ada.repo.commit('links', {
      signer: ada.signer,
      committerEmail: ada.user.email,
      files: project(
        [
          'ln -s /etc/passwd $OUTPUT_PATH/passwd-link',
          'ln -s / $OUTPUT_PATH/root-link',
          'head -c 10000 /dev/zero > $OUTPUT_PATH/big.bin',
          'echo small > $OUTPUT_PATH/small.txt',
        ].join('\n') + '\n',
      ),
    });
    const { id: runId } = await ada.pushRun();
    const run = await cluster.waitForRun(runId);
    expect(run.state, run.reason).toBe('succeeded');
    const repo = cluster.gitlab.repoDir('lab/hello');
    const folder = outputsFolder(run.branch!);
    const files = git(repo, ['ls-tree', '-r', '--name-only', run.branch!]);
    expect(files).toContain(`${folder}/small.txt`);
    expect(files).not.toContain('passwd-link');
    expect(files).not.toContain('root-link');
    expect(files).not.toContain('big.bin');
    // git grep exits 1 when nothing matches: the host's passwd is nowhere in the results.
    expect(() => git(repo, ['grep', '-q', 'root:x:0', run.branch!, '--', folder])).toThrow();
    const report = JSON.parse(git(repo, ['show', `${run.branch}:${folder}/_secd/run.json`])) as {
      outputs: { left_out: Array<{ path: string; reason: string; size?: number }> };
    };
    expect(report.outputs.left_out).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: 'passwd-link', reason: 'symlink' }),
        expect.objectContaining({ path: 'root-link', reason: 'symlink' }),
        expect.objectContaining({ path: 'big.bin', reason: 'file_too_large', size: 10000 }),
      ]),
    );
  });
});
