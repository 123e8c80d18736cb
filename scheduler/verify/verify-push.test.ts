import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGpgHome, type GpgHome, type GpgKey } from '../../test/support/gpg.js';
import { createBareRemote, createResearcherRepo, type ResearcherRepo } from '../../test/support/git-repo.js';
import { GitMirror } from './git-mirror.js';
import type { GitLabApi, GitLabGpgKey, GitLabMember } from '../gitlab/gitlab-port.js';
import { verifyPush, ZERO_SHA, type PushVerdict, type VerifyPushInput } from './verify-push.js';

const PROJECT = 42;
const HOUR = 3600_000;
const DAY = 24 * HOUR;

/** A GitLab that knows members and their uploaded keys, nothing else. */
class FakeGitLab implements Pick<GitLabApi, 'listProjectMembers' | 'listUserGpgKeys'> {
  members: GitLabMember[] = [];
  keys = new Map<number, GitLabGpgKey[]>();
  private nextKeyId = 1;

  addMember(id: number, username: string, armoredKeys: string[], state = 'active'): void {
    this.members.push({ id, username, name: username, state, access_level: 30 });
    this.keys.set(
      id,
      armoredKeys.map((key) => ({ id: this.nextKeyId++, key, created_at: '2025-01-01T00:00:00Z' })),
    );
  }

  async listProjectMembers(projectId: number): Promise<GitLabMember[]> {
    expect(projectId).toBe(PROJECT);
    return this.members;
  }

  async listUserGpgKeys(userId: number): Promise<GitLabGpgKey[]> {
    return this.keys.get(userId) ?? [];
  }
}

let gpg: GpgHome;
let ada: GpgKey; // member, the usual signer
let mallory: GpgKey; // not a member
let eve: GpgKey; // member, but blocked
let olga: GpgKey; // member, key expired after she signed
let subby: GpgKey; // member, signs with a subkey
let olgaSignedAt: Date;
let gitlab: FakeGitLab;
const armored = new Map<GpgKey, string>();

beforeAll(async () => {
  gpg = await createGpgHome();
  const made = new Date(Date.now() - 365 * DAY);
  olgaSignedAt = new Date(made.getTime() + HOUR);
  // One at a time: parallel gpg runs contend for the keyring lock.
  ada = await gpg.generateKey({ name: 'Ada Researcher', email: 'ada@example.org' });
  mallory = await gpg.generateKey({ name: 'Mallory', email: 'mallory@example.org' });
  eve = await gpg.generateKey({ name: 'Eve Blocked', email: 'eve@example.org' });
  olga = await gpg.generateKey({ name: 'Olga Old', email: 'olga@example.org', expire: '1d', createdAt: made });
  subby = await gpg.generateKey({ name: 'Sub Key', email: 'sub@example.org', signingSubkey: true });
  for (const key of [ada, eve, olga, subby]) armored.set(key, await gpg.exportPublicKey(key.fingerprint));
});

afterAll(async () => {
  await gpg?.close();
});

// One researcher repository, GitLab's copy of it, and secd's mirror, fresh for every test.
let repo: ResearcherRepo;
let remote: Awaited<ReturnType<typeof createBareRemote>>;
let mirrorDir: string;
let mirror: GitMirror;
let verified: Set<string>;

beforeEach(async () => {
  repo = await createResearcherRepo();
  remote = await createBareRemote();
  mirrorDir = await mkdtemp(join(tmpdir(), 'secd-mirror-'));
  mirror = new GitMirror(join(mirrorDir, `${PROJECT}.git`));
  verified = new Set();
  gitlab = new FakeGitLab();
  gitlab.addMember(1, 'ada', [armored.get(ada)!]);
  gitlab.addMember(2, 'eve', [armored.get(eve)!], 'blocked');
  gitlab.addMember(3, 'olga', [armored.get(olga)!]);
  gitlab.addMember(4, 'subby', [armored.get(subby)!]);
});

afterEach(async () => {
  await repo.close();
  await remote.close();
  await rm(mirrorDir, { recursive: true, force: true });
});

/** Push the branch like a researcher would, then verify it as the leader would on the push hook. */
async function pushAndVerify(overrides: Partial<VerifyPushInput> = {}): Promise<PushVerdict> {
  const before = (await remote.tip('refs/heads/main')) ?? ZERO_SHA;
  await repo.push(remote.url);
  const after = await repo.head();
  const verdict = await verifyPush(
    { projectId: PROJECT, before, after, fetchUrl: remote.url, alreadyVerified: (sha) => verified.has(sha), ...overrides },
    { mirror, gitlab, now: () => new Date() },
  );
  if (verdict.ok) for (const sha of verdict.commits) verified.add(sha);
  return verdict;
}

const short = (sha: string): string => sha.slice(0, 8);

describe('verifying a push', () => {
  it('a good push of signed commits verifies every new commit and reports the signer fingerprint', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    await repo.commitMany(1, adaSigns);
    expect((await pushAndVerify()).ok).toBe(true);

    const pushed = await repo.commitMany(3, adaSigns);
    const verdict = await pushAndVerify();
    expect(verdict).toEqual({
      ok: true,
      commits: pushed,
      head: { sha: pushed[2], fingerprint: ada.fingerprint, username: 'ada', userId: 1, committerEmail: 'ada@example.org' },
    });
  });

  it('a push with one unsigned commit is rejected and names it', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    const [, unsigned] = await repo.commitMany(3, (i) => (i === 1 ? {} : adaSigns));
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unsigned', commit: short(unsigned!) });
    expect(!verdict.ok && verdict.reason).toMatch(new RegExp(`^commit ${short(unsigned!)} is not signed: .*git commit --amend --no-edit -S`));
    expect(!verdict.ok && verdict.reason).not.toContain('\n');
  });

  it('an unsigned commit hidden at position 3 of 25 pushed at once is found, outside the newest 20', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    await repo.commitMany(1, adaSigns);
    await pushAndVerify();

    const pushed = await repo.commitMany(25, (i) => (i === 2 ? {} : adaSigns));
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unsigned', commit: short(pushed[2]!) });
  });

  it('a first push verifies all commits not yet verified for the project, and the head', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    // Three commits secd verified on an earlier push to another branch, then two new ones.
    const old = await repo.commitMany(3, adaSigns);
    for (const sha of old) verified.add(sha);
    const fresh = await repo.commitMany(2, adaSigns);
    const verdict = await pushAndVerify({ before: ZERO_SHA });
    expect(verdict).toMatchObject({ ok: true, commits: fresh, head: { sha: fresh[1] } });
  });

  it('a first push with an unsigned commit deep in its history is rejected', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    const [unsigned] = await repo.commitMany(1);
    await repo.commitMany(30, adaSigns);
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unsigned', commit: short(unsigned!) });
  });

  it('a commit signed by a key no project member holds is rejected as an unknown key', async () => {
    await repo.commitMany(1, { signer: await gpg.gitSigner(mallory), committerEmail: 'mallory@example.org' });
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unknown_key' });
    expect(!verdict.ok && verdict.reason).toContain(mallory.fingerprint.slice(-16));
    expect(!verdict.ok && verdict.reason).toContain('GPG Keys');
  });

  it("a blocked member's key is not accepted", async () => {
    await repo.commitMany(1, { signer: await gpg.gitSigner(eve), committerEmail: 'eve@example.org' });
    expect(await pushAndVerify()).toMatchObject({ ok: false, code: 'unknown_key' });
  });

  it('a key GitLab holds but secd cannot read is skipped and mentioned', async () => {
    gitlab.addMember(5, 'mallory', ['-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n-----END PGP PUBLIC KEY BLOCK-----\n']);
    await repo.commitMany(1, { signer: await gpg.gitSigner(mallory), committerEmail: 'mallory@example.org' });
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'unknown_key' });
    expect(!verdict.ok && verdict.reason).toContain('could not read: mallory key');
  });

  it('a commit changed after it was signed is rejected as a bad signature', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    const [signed] = await repo.commitMany(1, adaSigns);
    const forged = await repo.tamperCommit(signed!, 'a different message');
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'bad_signature', commit: short(forged) });
  });

  it('a commit signed by a key that has expired since is rejected', async () => {
    await repo.commitMany(1, {
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
    await repo.commitMany(1, { signer: await gpg.gitSigner(rita), committerEmail: 'rita@example.org' });
    await gpg.revokeKey(rita.fingerprint);
    gitlab.addMember(6, 'rita', [await gpg.exportPublicKey(rita.fingerprint)]);
    expect(await pushAndVerify()).toMatchObject({ ok: false, code: 'revoked_key' });
  });

  it('a committer email that matches no user id of the signing key is rejected', async () => {
    const [sha] = await repo.commitMany(1, { signer: await gpg.gitSigner(ada), committerEmail: 'ada@home.example' });
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: false, code: 'email_mismatch', commit: short(sha!) });
    expect(!verdict.ok && verdict.reason).toContain('ada@home.example');
  });

  it('a commit signed with a signing subkey is accepted and credited to the primary key', async () => {
    await repo.commitMany(2, { signer: await gpg.gitSigner(subby), committerEmail: 'sub@example.org' });
    const verdict = await pushAndVerify();
    expect(verdict).toMatchObject({ ok: true, head: { fingerprint: subby.fingerprint, username: 'subby', userId: 4 } });
  });

  it('a force push verifies the commits that are new, even when the mirror never saw the old tip', async () => {
    const adaSigns = { signer: await gpg.gitSigner(ada) };
    const [base] = await repo.commitMany(1, adaSigns);
    await pushAndVerify();
    await repo.commitMany(1, adaSigns);
    await repo.push(remote.url);
    const lost = await repo.head(); // pushed, but secd never heard of it
    await repo.git(['reset', '--hard', base!]);
    const rewritten = await repo.commitMany(2, adaSigns);
    await repo.push(remote.url, { force: true });
    const verdict = await verifyPush(
      { projectId: PROJECT, before: lost, after: rewritten[1]!, fetchUrl: remote.url, alreadyVerified: (sha) => verified.has(sha) },
      { mirror, gitlab, now: () => new Date() },
    );
    expect(verdict).toMatchObject({ ok: true, commits: rewritten });
  });

  it('a fetch that fails is reported without the token in the URL', async () => {
    await repo.commitMany(1, { signer: await gpg.gitSigner(ada) });
    const verdict = await verifyPush(
      {
        projectId: PROJECT,
        before: ZERO_SHA,
        after: await repo.head(),
        fetchUrl: 'http://oauth2:glpat-s3cretTOKEN@127.0.0.1:1/group/project.git',
        alreadyVerified: () => false,
      },
      { mirror, gitlab, now: () => new Date() },
    );
    expect(verdict).toMatchObject({ ok: false, code: 'fetch_failed' });
    expect(!verdict.ok && verdict.reason).toMatch(/^could not fetch commit [0-9a-f]{8} from GitLab: .*127\.0\.0\.1/);
    expect(JSON.stringify(verdict)).not.toContain('s3cretTOKEN');
  });
});

describe('the mirror', () => {
  it('holds the exact commit bytes and the files of a pushed commit', async () => {
    const sha = await repo.commit('with config', { signer: await gpg.gitSigner(ada), files: { 'secd.yml': 'gpu: true\n', 'src/x.py': 'print(1)\n' } });
    await repo.push(remote.url);
    await mirror.fetch(remote.url, ['refs/heads/*']);
    expect(await mirror.hasCommit(sha)).toBe(true);
    expect((await mirror.readCommit(sha)).equals(await repo.readCommit(sha))).toBe(true);
    expect((await mirror.readFile(sha, 'secd.yml'))?.toString()).toBe('gpu: true\n');
    expect(await mirror.readFile(sha, 'missing.yml')).toBeNull();
    expect(await mirror.readFile(sha, 'src')).toBeNull();
    expect(await mirror.hasCommit('0123456789abcdef0123456789abcdef01234567')).toBe(false);
  });
});
