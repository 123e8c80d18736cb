import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGpgHome, type GpgHome, type GpgKey } from '../../test/support/gpg.js';
import { createResearcherRepo, type ResearcherRepo } from '../../test/support/git-repo.js';
import { parseCommit, readCandidateKeys, verifyCommitSignature, type CandidateKey } from './commit-signature.js';

const HOUR = 3600_000;
const DAY = 24 * HOUR;

let gpg: GpgHome;
let repo: ResearcherRepo;
let ada: GpgKey;
let adaCandidate: CandidateKey;
let mallory: GpgKey;
let subby: GpgKey;
let subbyCandidate: CandidateKey;

async function candidate(key: GpgKey, id: number, username: string): Promise<CandidateKey> {
  const keys = await readCandidateKeys(await gpg.exportPublicKey(key.fingerprint), { id, username });
  if (keys?.length !== 1) throw new Error(`expected one key for ${key.fingerprint}`);
  return keys[0]!;
}

beforeAll(async () => {
  gpg = await createGpgHome();
  repo = await createResearcherRepo();
  ada = await gpg.generateKey({ name: 'Ada Researcher', email: 'ada@example.org', extraUserIds: ['Ada <Ada.Lovelace@Uni.example>'] });
  mallory = await gpg.generateKey({ name: 'Mallory', email: 'mallory@example.org' });
  subby = await gpg.generateKey({ name: 'Sub Key', email: 'sub@example.org', signingSubkey: true });
  adaCandidate = await candidate(ada, 7, 'ada');
  subbyCandidate = await candidate(subby, 9, 'subby');
});

afterAll(async () => {
  await repo?.close();
  await gpg?.close();
});

describe('parsing a commit object', () => {
  it('splits the signature from the payload exactly as git signed it', async () => {
    const sha = await repo.commit('first line\n\nbody', { signer: await gpg.gitSigner(ada), files: { 'a.txt': 'a\n' } });
    const raw = await repo.readCommit(sha);
    const commit = parseCommit(raw);

    expect(commit.signature).toMatch(/^-----BEGIN PGP SIGNATURE-----\n\n[\s\S]+-----END PGP SIGNATURE-----\n$/);
    expect(commit.payload.toString('utf8')).not.toContain('gpgsig');
    expect(commit.committer).toMatchObject({ name: 'Ada Researcher', email: 'ada@example.org' });
    expect(commit.author?.email).toBe('ada@example.org');
    expect(commit.tree).toMatch(/^[0-9a-f]{40}$/);
    expect(commit.message).toBe('first line\n\nbody\n');

    // gpg itself, given our payload and signature, agrees: the split is byte-exact.
    const dir = await mkdtemp(join(tmpdir(), 'secd-sig-'));
    try {
      await writeFile(join(dir, 'payload'), commit.payload);
      await writeFile(join(dir, 'sig.asc'), commit.signature!);
      const status = await gpgVerify(gpg, join(dir, 'sig.asc'), join(dir, 'payload'));
      expect(status).toContain(`VALIDSIG ${ada.fingerprint}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps other multi-line headers in the payload and drops a gpgsig-sha256 header too', () => {
    // The payload is the object without its two signature headers, every other line kept byte for byte.
    const headers = [
      'tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904',
      'parent 1111111111111111111111111111111111111111',
      'parent 2222222222222222222222222222222222222222',
      'author A <a@example.org> 1700000000 +0100',
      'committer C <c@example.org> 1700000001 -0500',
      'mergetag object 2222222222222222222222222222222222222222',
      ' type commit',
      ' ',
      ' tag message',
    ];
    const signatures = [
      'gpgsig -----BEGIN PGP SIGNATURE-----',
      ' ',
      ' AAAA',
      ' -----END PGP SIGNATURE-----',
      'gpgsig-sha256 -----BEGIN PGP SIGNATURE-----',
      ' BBBB',
      ' -----END PGP SIGNATURE-----',
    ];
    const body = ['', 'merge', ''];
    const commit = parseCommit(Buffer.from([...headers, ...signatures, ...body].join('\n')));
    expect(commit.parents).toHaveLength(2);
    expect(commit.committer).toEqual({ name: 'C', email: 'c@example.org', time: 1700000001, timezone: '-0500' });
    expect(commit.signature).toBe('-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n');
    expect(commit.payload.toString('utf8')).toBe([...headers, ...body].join('\n'));
  });
});

describe('verifying a commit signature', () => {
  it('accepts a commit signed by a member key whose user id is the committer email, naming the key', async () => {
    const sha = await repo.commit('good', { signer: await gpg.gitSigner(ada) });
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [adaCandidate], new Date());
    expect(verdict).toEqual({
      ok: true,
      fingerprint: ada.fingerprint,
      signingKeyId: ada.fingerprint.slice(-16),
      user: { id: 7, username: 'ada' },
      committerEmail: 'ada@example.org',
    });
  });

  it('matches the committer email against any user id of the key, ignoring case', async () => {
    const sha = await repo.commit('second identity', { signer: await gpg.gitSigner(ada), committerEmail: 'ada.lovelace@uni.EXAMPLE' });
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [adaCandidate], new Date());
    expect(verdict.ok).toBe(true);
  });

  it('rejects an unsigned commit', async () => {
    const sha = await repo.commit('unsigned');
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [adaCandidate], new Date());
    expect(verdict).toEqual({ ok: false, code: 'unsigned', reason: 'is not signed' });
  });

  it('rejects a commit signed by a key no member holds, naming the key id', async () => {
    const sha = await repo.commit('by a stranger', { signer: await gpg.gitSigner(mallory), committerEmail: 'mallory@example.org' });
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [adaCandidate], new Date());
    expect(verdict).toMatchObject({ ok: false, code: 'unknown_key' });
    expect(!verdict.ok && verdict.reason).toContain(mallory.fingerprint.slice(-16));
  });

  it('rejects a commit whose message was changed after signing', async () => {
    const sha = await repo.commit('honest message', { signer: await gpg.gitSigner(ada) });
    const forged = await repo.tamperCommit(sha, 'dishonest message');
    const verdict = await verifyCommitSignature(await repo.readCommit(forged), [adaCandidate], new Date());
    expect(verdict).toMatchObject({ ok: false, code: 'bad_signature' });
  });

  it('rejects a commit signed by a key that has expired since', async () => {
    const made = new Date(Date.now() - 365 * DAY);
    const old = await gpg.generateKey({ name: 'Olga Old', email: 'olga@example.org', expire: '1d', createdAt: made });
    const signedAt = new Date(made.getTime() + HOUR);
    const sha = await repo.commit('signed while the key was valid', {
      signer: await gpg.gitSigner(old, { at: signedAt }),
      committerEmail: 'olga@example.org',
      date: signedAt.toISOString(),
    });
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [await candidate(old, 3, 'olga')], new Date());
    expect(verdict).toMatchObject({ ok: false, code: 'expired_key' });
    expect(!verdict.ok && verdict.reason).toContain('expired on');
  });

  it('rejects a commit signed by a key that has been revoked since', async () => {
    const rita = await gpg.generateKey({ name: 'Rita Revoked', email: 'rita@example.org' });
    const sha = await repo.commit('signed before the revocation', { signer: await gpg.gitSigner(rita), committerEmail: 'rita@example.org' });
    await gpg.revokeKey(rita.fingerprint);
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [await candidate(rita, 4, 'rita')], new Date());
    expect(verdict).toMatchObject({ ok: false, code: 'revoked_key' });
  });

  it('rejects a commit whose committer email is no user id of the signing key', async () => {
    const sha = await repo.commit('wrong email', { signer: await gpg.gitSigner(ada), committerEmail: 'ada@gmail.example' });
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [adaCandidate], new Date());
    expect(verdict).toMatchObject({ ok: false, code: 'email_mismatch' });
    expect(!verdict.ok && verdict.reason).toContain('ada@gmail.example');
  });

  it('accepts a signature made by a signing subkey and reports the primary fingerprint', async () => {
    const sha = await repo.commit('by subkey', { signer: await gpg.gitSigner(subby), committerEmail: 'sub@example.org' });
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [adaCandidate, subbyCandidate], new Date());
    expect(verdict).toMatchObject({
      ok: true,
      fingerprint: subby.fingerprint,
      signingKeyId: subby.signingSubkeyFingerprint!.slice(-16),
      user: { id: 9, username: 'subby' },
    });
  });

  it('refuses SSH and X.509 signatures as a kind the OpenPGP check does not verify', async () => {
    for (const [armor, named] of [['SSH SIGNATURE', 'SSH key'], ['SIGNED MESSAGE', 'X.509 certificate']] as const) {
      const raw = Buffer.from(
        `tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <ada@example.org> 1 +0000\ncommitter A <ada@example.org> 1 +0000\ngpgsig -----BEGIN ${armor}-----\n AAAA\n -----END ${armor}-----\n\nmsg\n`,
      );
      const verdict = await verifyCommitSignature(raw, [adaCandidate], new Date());
      expect(verdict).toMatchObject({ ok: false, code: 'unsupported_signature' });
      expect(!verdict.ok && verdict.reason).toContain(named);
    }
  });
});

function gpgVerify(home: GpgHome, sig: string, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'gpg',
      ['--batch', '--status-fd', '1', '--verify', sig, data],
      { env: { ...process.env, ...home.env } },
      (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)),
    );
  });
}
