/**
 * verifyPush with real keys made by gpg and ssh-keygen, real git commits and a real mirror: the
 * signature rules, and who a run belongs to (DESIGN §13): the pusher must be a member with Developer
 * access, the newest commit signed by the pusher's own key, the committer email one of the key
 * owner's own GitLab emails. History and vouching are in verify-push-history.test.ts.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGpgHome, type GpgHome, type GpgKey } from '../../test/support/gpg.js';
import { commitWithSignature, createSshKeyring, type SshKey, type SshKeyring } from '../../test/support/ssh-keys.js';
import { ADA, createPushScene, FakeGitLab, type PushScene } from '../../test/support/verify-push-fixture.js';
import { verifyPush, ZERO_SHA } from './verify-push.js';

const PROJECT = 42;
const HOUR = 3600_000;
const DAY = 24 * HOUR;

let gpg: GpgHome;
let ssh: SshKeyring;
let ada: GpgKey; // member, the usual signer and pusher
let mallory: GpgKey; // not a member
let eve: GpgKey; // member, but blocked
let olga: GpgKey; // member, key expired after she signed
let subby: GpgKey; // member, signs with a subkey
let bobKey: GpgKey; // member bob's own key
let forger: GpgKey; // member "trent"'s key, with a user id claiming bob's email
let adaSsh: SshKey;
let olgaSignedAt: Date;
const armored = new Map<GpgKey, string>();

beforeAll(async () => {
  gpg = await createGpgHome();
  ssh = await createSshKeyring();
  const made = new Date(Date.now() - 365 * DAY);
  olgaSignedAt = new Date(made.getTime() + HOUR);
  // One at a time: parallel gpg runs contend for the keyring lock.
  ada = await gpg.generateKey({ name: 'Ada Researcher', email: 'ada@example.org' });
  mallory = await gpg.generateKey({ name: 'Mallory', email: 'mallory@example.org' });
  eve = await gpg.generateKey({ name: 'Eve Blocked', email: 'eve@example.org' });
  olga = await gpg.generateKey({ name: 'Olga Old', email: 'olga@example.org', expire: '1d', createdAt: made });
  subby = await gpg.generateKey({ name: 'Sub Key', email: 'sub@example.org', signingSubkey: true });
  bobKey = await gpg.generateKey({ name: 'Bob Colleague', email: 'bob@example.org' });
  forger = await gpg.generateKey({ name: 'Trent', email: 'trent@example.org', extraUserIds: ['Bob Colleague <bob@example.org>'] });
  for (const key of [ada, mallory, eve, olga, subby, bobKey, forger]) armored.set(key, await gpg.exportPublicKey(key.fingerprint));
  adaSsh = await ssh.generateKey('ed25519');
});

afterAll(async () => {
  await gpg?.close();
  await ssh?.close();
});

let gitlab: FakeGitLab;
let scene: PushScene;

beforeEach(async () => {
  gitlab = new FakeGitLab();
  gitlab.addMember({ id: 1, username: 'ada', gpgKeys: [armored.get(ada)!] });
  gitlab.addMember({ id: 2, username: 'eve', gpgKeys: [armored.get(eve)!], state: 'blocked' });
  gitlab.addMember({ id: 3, username: 'olga', gpgKeys: [armored.get(olga)!] });
  gitlab.addMember({ id: 4, username: 'subby', gpgKeys: [armored.get(subby)!], emails: ['sub@example.org'] });
  gitlab.addMember({ id: 5, username: 'bob', gpgKeys: [armored.get(bobKey)!] });
  gitlab.addMember({ id: 6, username: 'trent', gpgKeys: [armored.get(forger)!] });
  scene = await createPushScene(gitlab);
});

afterEach(async () => {
  await scene.close();
});

const pushAndVerify: PushScene['pushAndVerify'] = (overrides, options) => scene.pushAndVerify(overrides, options);
const repo = () => scene.repo;
const as = (id: number, username: string) => ({ pusher: { id, username } });
const short = (sha: string): string => sha.slice(0, 8);

describe('verifying a push', () => {
  it('a good push of signed commits verifies every new commit and reports the signer fingerprint', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    await repo().commitMany(1, adaSigns);
    expect((await pushAndVerify()).ok).toBe(true);

    const pushed = await repo().commitMany(3, adaSigns);
    const verdict = await pushAndVerify();
    expect(verdict).toEqual({
      ok: true,
      commits: pushed,
      head: { sha: pushed[2], fingerprint: ada.fingerprint, username: 'ada', userId: 1, committerEmail: 'ada@example.org' },
      vouched: [],
    });
  });

  it('a push with one unsigned commit is rejected and names it', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    const [, unsigned] = await repo().commitMany(3, (i) => (i === 1 ? {} : adaSigns));
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unsigned', commit: short(unsigned!) });
    expect(!verdict.ok && verdict.reason).toMatch(new RegExp(`^commit ${short(unsigned!)} is not signed: .*git commit --amend --no-edit -S`));
    expect(!verdict.ok && verdict.reason).not.toContain('\n');
  });

  it('an unsigned commit hidden at position 3 of 25 pushed at once is found, outside the newest 20', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    await repo().commitMany(1, adaSigns);
    await pushAndVerify();

    const pushed = await repo().commitMany(25, (i) => (i === 2 ? {} : adaSigns));
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unsigned', commit: short(pushed[2]!) });
  });

  it('a first push verifies all commits not yet verified for the project, and the head', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    // Three commits secd verified on an earlier push to another branch, then two new ones.
    const old = await repo().commitMany(3, adaSigns);
    for (const sha of old) scene.verified.add(sha);
    const fresh = await repo().commitMany(2, adaSigns);
    const verdict = await pushAndVerify({ before: ZERO_SHA });
    expect(verdict).toMatchObject({ ok: true, commits: fresh, head: { sha: fresh[1] } });
  });

  it('a first push with an unsigned commit deep in its history is rejected', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    const [unsigned] = await repo().commitMany(1);
    await repo().commitMany(30, adaSigns);
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unsigned', commit: short(unsigned!) });
  });

  it('a commit signed by a key no project member holds is rejected as an unknown key', async () => {
    await repo().commitMany(1, { signer: await gpg.gitSigner(mallory), committerEmail: 'mallory@example.org' });
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unknown_key' });
    expect(!verdict.ok && verdict.reason).toContain(mallory.fingerprint.slice(-16));
    expect(!verdict.ok && verdict.reason).toContain('GPG Keys');
  });

  it("a blocked member's key is not accepted", async () => {
    await repo().commitMany(1, { signer: await gpg.gitSigner(eve), committerEmail: 'eve@example.org' });
    expect(await pushAndVerify()).toMatchObject({ ok: false, code: 'unknown_key' });
  });

  it('a key GitLab holds but secd cannot read is skipped and mentioned', async () => {
    gitlab.addMember({ id: 7, username: 'mallory', gpgKeys: ['-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n-----END PGP PUBLIC KEY BLOCK-----\n'] });
    await repo().commitMany(1, { signer: await gpg.gitSigner(mallory), committerEmail: 'mallory@example.org' });
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unknown_key' });
    expect(!verdict.ok && verdict.reason).toContain('could not read: mallory key');
  });

  it('a commit changed after it was signed is rejected as a bad signature', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    const [signed] = await repo().commitMany(1, adaSigns);
    const forged = await repo().tamperCommit(signed!, 'a different message');
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'bad_signature', commit: short(forged) });
  });

  it('a commit signed by a key that has expired since is rejected', async () => {
    await repo().commitMany(1, {
      signer: await gpg.gitSigner(olga, { at: olgaSignedAt }),
      committerEmail: 'olga@example.org',
      date: olgaSignedAt.toISOString(),
    });
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'expired_key' });
    expect(!verdict.ok && verdict.reason).toContain(olga.fingerprint);
  });

  it('a commit signed by a key that has been revoked since is rejected', async () => {
    const rita = await gpg.generateKey({ name: 'Rita Revoked', email: 'rita@example.org' });
    await repo().commitMany(1, { signer: await gpg.gitSigner(rita), committerEmail: 'rita@example.org' });
    await gpg.revokeKey(rita.fingerprint);
    gitlab.addMember({ id: 8, username: 'rita', gpgKeys: [await gpg.exportPublicKey(rita.fingerprint)] });
    expect(await pushAndVerify()).toMatchObject({ ok: false, code: 'revoked_key' });
  });

  it('a committer email that matches no user id of the signing key is rejected', async () => {
    const [sha] = await repo().commitMany(1, { signer: await gpg.gitSigner(ada), committerEmail: 'ada@home.example' });
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'email_mismatch', commit: short(sha!) });
    expect(!verdict.ok && verdict.reason).toContain('ada@home.example');
  });

  it('a commit signed with a signing subkey is accepted and credited to the primary key', async () => {
    await repo().commitMany(2, { signer: await gpg.gitSigner(subby), committerEmail: 'sub@example.org' });
    const verdict = await pushAndVerify(as(4, 'subby'));
    expect(verdict).toMatchObject({ ok: true, head: { fingerprint: subby.fingerprint, username: 'subby', userId: 4 } });
  });

  it('a force push verifies the commits that are new, even when the mirror never saw the old tip', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    const [base] = await repo().commitMany(1, adaSigns);
    await pushAndVerify();
    await repo().commitMany(1, adaSigns);
    await repo().push(scene.remote.url);
    const lost = await repo().head(); // pushed, but secd never heard of it
    await repo().git(['reset', '--hard', base!]);
    const rewritten = await repo().commitMany(2, adaSigns);
    await repo().push(scene.remote.url, { force: true });
    const verdict = await verifyPush(
      { projectId: PROJECT, before: lost, after: rewritten[1]!, fetchUrl: scene.remote.url, alreadyVerified: async (sha) => scene.verified.has(sha), pusher: ADA },
      { mirror: scene.mirror, gitlab, now: () => new Date() },
    );
    expect(verdict).toMatchObject({ ok: true, commits: rewritten });
  });

  it('a fetch that fails is reported without the token in the URL', async () => {
    await repo().commitMany(1, { signer: await gpg.gitSigner(ada) });
    const verdict = await verifyPush(
      {
        projectId: PROJECT,
        before: ZERO_SHA,
        after: await repo().head(),
        fetchUrl: 'http://oauth2:glpat-s3cretTOKEN@127.0.0.1:1/group/project.git',
        alreadyVerified: async () => false,
        pusher: ADA,
      },
      { mirror: scene.mirror, gitlab, now: () => new Date() },
    );
    expect(verdict).toMatchObject({ ok: false, code: 'fetch_failed' });
    expect(!verdict.ok && verdict.reason).toMatch(/^could not fetch commit [0-9a-f]{8} from GitLab: .*127\.0\.0\.1/);
    expect(JSON.stringify(verdict)).not.toContain('s3cretTOKEN');
  });
});

describe('who a run belongs to', () => {
  it('a push by someone who is not a member of the project is refused, naming the rule', async () => {
    await repo().commitMany(1, { signer: await gpg.gitSigner(ada) });
    const verdict = await pushAndVerify(as(77, 'stranger'));
    expect(verdict).toMatchObject({ ok: false, code: 'pusher_not_member' });
    expect(!verdict.ok && verdict.reason).toMatch(/^the push was made by stranger \(GitLab user 77\), who is not a member of this project; .*Developer access or more/);
  });

  it('a Reporter, a blocked member and a hook without a user id do not run code either', async () => {
    gitlab.addMember({ id: 9, username: 'rita', accessLevel: 20 });
    await repo().commitMany(1, { signer: await gpg.gitSigner(ada) });
    const reporter = await pushAndVerify(as(9, 'rita'));
    expect(reporter).toMatchObject({ ok: false, code: 'pusher_not_member' });
    expect(!reporter.ok && reporter.reason).toContain('who has Reporter access to this project');
    const blocked = await scene.verify({ before: ZERO_SHA, after: await repo().head(), ...as(2, 'eve') });
    expect(!blocked.ok && blocked.reason).toContain('whose GitLab account is blocked');
    const nobody = await scene.verify({ before: ZERO_SHA, after: await repo().head(), pusher: { id: null, username: 'ada' } });
    expect(nobody).toMatchObject({ ok: false, code: 'pusher_not_member' });
  });

  it('a push whose newest commit another member signed is refused as not the pusher\'s key', async () => {
    await repo().commitMany(1, { signer: await gpg.gitSigner(ada) });
    const [head] = await repo().commitMany(1, { signer: await gpg.gitSigner(bobKey), committerEmail: 'bob@example.org' });
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'not_pushers_key', commit: short(head!) });
    expect(!verdict.ok && verdict.reason).toContain('is the newest commit of a push by ada, but it is signed by bob');
    // Bob pushing his own commit is fine, and ada's older commit under it counts: any member's key.
    expect(await scene.verify({ before: ZERO_SHA, after: head!, ...as(5, 'bob') })).toMatchObject({ ok: true, head: { userId: 5 } });
  });

  it('GitLab\'s "Test push events" by an administrator does not run as the administrator', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    const shas = await repo().commitMany(3, adaSigns);
    expect(await pushAndVerify()).toMatchObject({ ok: true });
    // The button names the default branch's last three commits as a push by whoever clicked.
    const test = { before: shas[0]!, after: shas[2]! };
    const stranger = await scene.verify({ ...test, ...as(99, 'root') });
    expect(stranger).toMatchObject({ ok: false, code: 'pusher_not_member' });
    gitlab.addMember({ id: 99, username: 'root', accessLevel: 50 });
    const admin = await scene.verify({ ...test, ...as(99, 'root') });
    expect(admin).toMatchObject({ ok: false, code: 'not_pushers_key', commit: short(shas[2]!) });
    expect(!admin.ok && admin.reason).toContain('a push by root, but it is signed by ada');
    // Only when the administrator signed the newest commit does it run, and then as theirs.
    const rootKey = await gpg.generateKey({ name: 'Root Admin', email: 'root@example.org' });
    gitlab.addGpgKey(99, await gpg.exportPublicKey(rootKey.fingerprint));
    const [signedByRoot] = await repo().commitMany(1, { signer: await gpg.gitSigner(rootKey), committerEmail: 'root@example.org' });
    await repo().push(scene.remote.url);
    expect(await scene.verify({ before: shas[1]!, after: signedByRoot!, ...as(99, 'root') })).toMatchObject({ ok: true, head: { username: 'root', userId: 99 } });
  });

  it("a key whose user id claims a colleague's email counts for nobody", async () => {
    // trent's key is good for trent's own email...
    await repo().commitMany(1, { signer: await gpg.gitSigner(forger), committerEmail: 'trent@example.org' });
    expect(await pushAndVerify(as(6, 'trent'))).toMatchObject({ ok: true, head: { username: 'trent' } });
    // ...but it also carries a user id "Bob Colleague <bob@example.org>": the key says bob, GitLab does not.
    const [sha] = await repo().commitMany(1, { signer: await gpg.gitSigner(forger), committerName: 'Bob Colleague', committerEmail: 'bob@example.org' });
    const verdict = await pushAndVerify(as(6, 'trent'));
    expect(verdict).toMatchObject({ ok: false, code: 'email_mismatch', commit: short(sha!) });
    expect(!verdict.ok && verdict.reason).toContain('has committer email bob@example.org, a user id of key');
    expect(!verdict.ok && verdict.reason).toContain("not one of the verified emails of trent's GitLab account");
  });

  it('an SSH-signed push runs like a GPG-signed one, and an auth-only SSH key signs nothing', async () => {
    gitlab.addSshKey(1, { key: adaSsh.publicKey, usageType: 'signing' });
    const [first] = await repo().commitMany(1, { signer: ssh.gitSigner(adaSsh) });
    expect(await pushAndVerify()).toMatchObject({ ok: true, commits: [first], head: { fingerprint: adaSsh.fingerprint, userId: 1 }, vouched: [] });

    gitlab.ssh.get(1)![0]!.usage_type = 'auth';
    const [second] = await repo().commitMany(1, { signer: ssh.gitSigner(adaSsh) });
    const authOnly = await pushAndVerify();
    expect(authOnly).toMatchObject({ ok: false, code: 'unknown_key', commit: short(second!) });
    expect(!authOnly.ok && authOnly.reason).toContain('for authentication only');
  });

  it('an X.509 (gpgsm) signature is refused as not supported', async () => {
    const payload = await repo().readCommit(await repo().commit('x509', {}));
    const x509 = commitWithSignature(payload, '-----BEGIN SIGNED MESSAGE-----\nMIAGCSqGSIb3DQEHAqCAMIACAQExDTALBglghkgBZQMEAgEwgAYJKoZIhvcNAQcB\n-----END SIGNED MESSAGE-----');
    const sha = (await repo().git(['hash-object', '-t', 'commit', '-w', '--stdin'], { input: x509 })).trim();
    await repo().git(['update-ref', 'HEAD', sha]);
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unsupported_signature', commit: short(sha) });
    expect(!verdict.ok && verdict.reason).toContain('X.509');
  });
});

describe('the mirror', () => {
  it('holds the exact commit bytes and the files of a pushed commit', async () => {
    const sha = await repo().commit('with config', { signer: await gpg.gitSigner(ada), files: { 'secd.yml': 'gpu: true\n', 'src/x.py': 'print(1)\n' } });
    await repo().push(scene.remote.url);
    await scene.mirror.fetch(scene.remote.url, ['refs/heads/*']);
    expect(await scene.mirror.hasCommit(sha)).toBe(true);
    expect((await scene.mirror.readCommit(sha)).equals(await repo().readCommit(sha))).toBe(true);
    expect((await scene.mirror.readFile(sha, 'secd.yml'))?.toString()).toBe('gpu: true\n');
    expect(await scene.mirror.readFile(sha, 'missing.yml')).toBeNull();
    expect(await scene.mirror.readFile(sha, 'src')).toBeNull();
    expect(await scene.mirror.hasCommit('0123456789abcdef0123456789abcdef01234567')).toBe(false);
  });
});
