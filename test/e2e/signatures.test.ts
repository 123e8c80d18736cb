/**
 * Signatures and who a run belongs to (DESIGN §13), end to end through the real leader, the GitLab
 * double and Docker: an SSH-signed push runs like a GPG-signed one, and each attack that once got
 * through is refused, its rule named in the run's reason and in the commit status GitLab shows:
 * unsigned history under a signed head (until vouched for), a colleague's email on an attacker's
 * key, a hook naming a pusher who is not a member, a newest commit another member signed, and
 * GitLab's "Test push events" pressed by an administrator.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCESS } from '../doubles/gitlab-double.js';
import { startCluster, type Cluster, type Researcher } from '../support/cluster-harness.js';
import { createSshKeyring, type SshKeyring } from '../support/ssh-keys.js';
import { busyboxProject } from '../support/test-images.js';
import type { RunRow } from '../../storage/run-store.js';

const PROJECT_FILES = busyboxProject('echo signed run > $OUTPUT_PATH/out.txt\n');

describe('signatures and the pusher, end to end', () => {
  let cluster: Cluster;
  let ssh: SshKeyring;

  beforeAll(async () => {
    cluster = await startCluster();
    ssh = await createSshKeyring();
  });
  afterAll(async () => {
    await ssh?.close();
    await cluster?.close();
  });

  /** The latest secd commit status GitLab holds for `sha`. */
  function statusOf(sha: string) {
    return cluster.gitlab.statuses.filter((s) => s.sha === sha && s.name === 'secd').at(-1);
  }

  /** The run ended rejected, its reason matching `pattern`, and GitLab's status for it says the same. */
  async function expectRefused(runId: string, pattern: RegExp): Promise<RunRow> {
    const run = await cluster.waitForRun(runId);
    expect(run.state, run.reason).toBe('rejected');
    expect(run.reason).toMatch(pattern);
    const status = statusOf(run.commit);
    expect(status?.state).toBe('failed');
    // GitLab keeps 255 characters of a description: the cause comes first, so it is always in them.
    expect(run.reason.startsWith(status!.description!.replace(/\.\.\.$/, ''))).toBe(true);
    expect(status!.description).toMatch(pattern);
    return run;
  }

  it('an SSH-signed push runs end to end, credited to the SSH key', async () => {
    const sam = await cluster.addResearcher({ username: 'sam', project: 'sig/ssh' });
    const key = await ssh.generateKey('ed25519');
    cluster.gitlab.addSshKey(sam.user.id, { key: key.publicKey, usageType: 'signing' });
    const sha = await sam.repo.commit('ssh signed', { signer: ssh.gitSigner(key), committerEmail: sam.user.email, files: PROJECT_FILES });
    const run = await cluster.waitForRun((await sam.pushRun()).id);
    expect(run.state, run.reason).toBe('succeeded');
    expect(run.signer).toBe(key.fingerprint);
    expect(statusOf(sha)?.state).toBe('success');
  });

  it('unsigned history under a signed head is refused until the pusher vouches for it', async () => {
    const uma = await cluster.addResearcher({ username: 'uma', project: 'sig/history' });
    const unsigned = await uma.repo.commit('forgot to sign', { committerEmail: uma.user.email, files: PROJECT_FILES });
    await expectRefused((await uma.pushRun()).id, new RegExp(`^commit ${unsigned.slice(0, 8)} is not signed`));

    // A signed commit on top (before = the unsigned one) used to run the unsigned code.
    await uma.repo.commit('signed on top', { signer: uma.signer, committerEmail: uma.user.email, files: { 'notes.txt': 'x\n' } });
    const onTop = await expectRefused((await uma.pushRun()).id, new RegExp(`^commit ${unsigned.slice(0, 8)} is not signed`));
    expect(onTop.reason).toContain(`--trailer 'Secd-Vouches-For: ${unsigned}', then git push (no force needed)`);

    // The vouch, as the refusal says to make it: no rewrite, no force push.
    const vouch = await uma.repo.commit(`Vouch for unsigned commits\n\nSecd-Vouches-For: ${unsigned}`, { signer: uma.signer, committerEmail: uma.user.email });
    const run = await cluster.waitForRun((await uma.pushRun()).id);
    expect(run.state, run.reason).toBe('succeeded');
    expect(run.commit).toBe(vouch);
    expect((await cluster.leader.store.events(run.id)).map((e) => e.reason)).toContain(`commit ${unsigned.slice(0, 8)} vouched for by uma (Secd-Vouches-For)`);
  });

  it("a colleague's email on an attacker's key counts for nobody", async () => {
    const mal = await cluster.addResearcher({ username: 'mal', project: 'sig/email' });
    const vic = cluster.gitlab.addUser({ username: 'vic', email: 'vic@example.org' });
    cluster.gitlab.addMember(mal.project.id, vic.id);
    // Mal's own key, with a user id claiming Vic's email, uploaded to Mal's GitLab account.
    const forged = await cluster.gpg.generateKey({ name: 'Mal', email: 'mal-2@example.org', extraUserIds: ['Vic <vic@example.org>'] });
    cluster.gitlab.addGpgKey(mal.user.id, await cluster.gpg.exportPublicKey(forged.fingerprint));
    await mal.repo.commit('as vic', { signer: await cluster.gpg.gitSigner(forged), committerName: 'Vic', committerEmail: 'vic@example.org', files: PROJECT_FILES });
    await expectRefused((await mal.pushRun()).id, /has committer email vic@example\.org, a user id of key .* not one of the verified emails of mal's GitLab account/);
  });

  it('a hook naming a pusher who is not a member is refused by id, whatever the secret allows', async () => {
    const nia = await cluster.addResearcher({ username: 'nia', project: 'sig/member' });
    const outsider = cluster.gitlab.addUser({ username: 'outsider', email: 'outsider@example.org' });
    const sha = await nia.repo.commit('mine', { signer: nia.signer, committerEmail: nia.user.email, files: PROJECT_FILES });
    expect((await cluster.waitForRun((await nia.pushRun()).id)).state).toBe('succeeded');
    // The same commit, re-told by someone who holds the webhook secret as a push in the outsider's name
    // (another `before`, so it is not the same push answered again).
    const real = cluster.gitlab.deliveries.find((d) => d.body.includes(`"after":"${sha}"`))!;
    const body = { ...(JSON.parse(real.body) as Record<string, unknown>), before: '1'.repeat(40), user_id: outsider.id, user_username: 'outsider', user_name: 'outsider' };
    const forged = await cluster.gitlab.sendRaw({ body: JSON.stringify(body), headers: { 'Idempotency-Key': 'forged-outsider' } });
    const runId = (JSON.parse(forged.responseBody) as { run_id: string }).run_id;
    await expectRefused(runId, new RegExp(`^the push was made by outsider \\(GitLab user ${outsider.id}\\), who is not a member of this project`));
  });

  it("a push whose newest commit another member signed is refused; that member's own push runs", async () => {
    const ada = await cluster.addResearcher({ username: 'ada', project: 'sig/pusher' });
    const bob = await cluster.addResearcher({ username: 'bob', project: 'sig/bobs' });
    cluster.gitlab.addMember(ada.project.id, bob.user.id);
    const sha = await ada.repo.commit('by bob', { signer: bob.signer, committerEmail: bob.user.email, files: PROJECT_FILES });
    await expectRefused((await ada.pushRun()).id, new RegExp(`^commit ${sha.slice(0, 8)} is the newest commit of a push by ada, but it is signed by bob`));

    // Bob signs a commit on top and pushes it himself: it runs as his (bob's older commit counts too).
    await ada.repo.commit('bob again', { signer: bob.signer, committerEmail: bob.user.email, files: { 'more.txt': 'm\n' } });
    const run = await cluster.waitForRun((await ada.pushRun(undefined, { as: bob.user })).id);
    expect(run.state, run.reason).toBe('succeeded');
    expect(run).toMatchObject({ user: 'bob', userId: bob.user.id, signer: bob.key.fingerprint });
  });

  it('"Test push events" pressed by an administrator does not run under the administrator', async () => {
    const tia = await cluster.addResearcher({ username: 'tia', project: 'sig/test-button' });
    await tia.repo.commit('one', { signer: tia.signer, committerEmail: tia.user.email, files: PROJECT_FILES });
    await tia.repo.commit('two', { signer: tia.signer, committerEmail: tia.user.email, files: { 'a.txt': 'a\n' } });
    await tia.repo.commit('three', { signer: tia.signer, committerEmail: tia.user.email, files: { 'b.txt': 'b\n' } });
    expect((await cluster.waitForRun((await tia.pushRun()).id)).state).toBe('succeeded');

    const root = cluster.gitlab.addUser({ username: 'root', email: 'root@example.org' });
    const press = async () => {
      const from = cluster.gitlab.deliveries.length;
      await cluster.gitlab.sendTestPushEvent(tia.project.id, root.id);
      await cluster.settle();
      const answer = cluster.gitlab.deliveries.slice(from).find((d) => d.status === 200)!;
      return (JSON.parse(answer.responseBody) as { run_id: string }).run_id;
    };
    // Not a member: refused by the pusher rule. A Maintainer: refused because tia, not root, signed the head.
    await expectRefused(await press(), /^the push was made by root .* who is not a member of this project/);
    cluster.gitlab.addMember(tia.project.id, root.id, ACCESS.maintainer);
    // A new head, so the second press is a new push (the same one again would be answered as the first).
    const four = await tia.repo.commit('four', { signer: tia.signer, committerEmail: tia.user.email, files: { 'c.txt': 'c\n' } });
    await cluster.waitForRun((await tia.pushRun()).id);
    const run = await expectRefused(await press(), new RegExp(`^commit ${four.slice(0, 8)} is the newest commit of a push by root, but it is signed by tia`));
    expect(run.user).toBe('root');
  });
});
