import { execFile } from 'node:child_process';
import { createHash, sign as rsaSign } from 'node:crypto';
import { copyFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createResearcherRepo, type ResearcherRepo } from '../../test/support/git-repo.js';
import { commitWithSignature, createSshKeyring, type SshKey, type SshKeyring } from '../../test/support/ssh-keys.js';
import { readSshPublicKey, verifySshCommitSignature, type SshKeyCandidate } from './ssh-signature.js';

const DAY = 24 * 3600_000;
const ADA = { id: 7, username: 'ada' };

let ring: SshKeyring;
let repo: ResearcherRepo;
let ed25519: SshKey;
let ecdsa: SshKey;
let rsa: SshKey;

/** How GitLab's `GET /users/7/keys` would list `key` for Ada, with her verified emails. */
function adaHolds(key: SshKey, extra: Partial<SshKeyCandidate> = {}): SshKeyCandidate {
  return { id: 100, key: key.publicKey, usageType: 'auth_and_signing', expiresAt: null, user: ADA, emails: ['ada@example.org', 'a.lovelace@uni.example'], ...extra };
}

async function signedCommit(key: SshKey, options: { committerEmail?: string; date?: string } = {}): Promise<Buffer> {
  const sha = await repo.commit('train the model', { signer: ring.gitSigner(key), files: { 'train.py': `print(${Math.random()})\n` }, ...options });
  return repo.readCommit(sha);
}

/** An unsigned commit's object: exactly the payload a signature of it would cover. */
async function unsignedPayload(): Promise<Buffer> {
  return repo.readCommit(await repo.commit('unsigned', { files: { 'x.txt': `${Math.random()}\n` } }));
}

async function writeCommit(object: Buffer): Promise<Buffer> {
  const sha = (await repo.git(['hash-object', '-t', 'commit', '-w', '--stdin'], { input: object })).trim();
  return repo.readCommit(sha);
}

beforeAll(async () => {
  ring = await createSshKeyring();
  repo = await createResearcherRepo();
  [ed25519, ecdsa, rsa] = await Promise.all([
    ring.generateKey('ed25519', { comment: 'ada@laptop' }),
    ring.generateKey('ecdsa'),
    ring.generateKey('rsa', { bits: 3072 }),
  ]);
});

afterAll(async () => {
  await repo?.close();
  await ring?.close();
});

describe('a commit signed by git with an SSH key GitLab holds for signing', () => {
  it.each([
    ['ed25519', () => ed25519, 'ED25519'],
    ['ECDSA', () => ecdsa, 'ECDSA'],
    ['RSA 3072', () => rsa, 'RSA'],
  ])('is accepted for its %s key, naming the owner and the fingerprint ssh-keygen prints', async (_name, key, label) => {
    const raw = await signedCommit(key());
    expect(raw.toString('utf8')).toContain('gpgsig -----BEGIN SSH SIGNATURE-----');

    const verdict = await verifySshCommitSignature(raw, [adaHolds(key())], new Date(), 'sha1');

    expect(verdict).toEqual({ ok: true, fingerprint: key().fingerprint, user: ADA, committerEmail: 'ada@example.org' });
    expect(readSshPublicKey(key().publicKey)?.label).toBe(label);
  });

  it('signs RSA with SHA-2 (rsa-sha2-512), which is what secd accepts', async () => {
    const raw = await signedCommit(rsa);
    const armor = raw.toString('utf8').split('-----BEGIN SSH SIGNATURE-----')[1]!.split('-----END')[0]!;
    expect(Buffer.from(armor.replace(/\s/g, ''), 'base64').includes(Buffer.from('rsa-sha2-512'))).toBe(true);
  });

  it('is accepted in a SHA-256 repository, whose signature header is gpgsig-sha256', async () => {
    const dir = join(repo.dir, '..', 'sha256');
    await repo.git(['init', '--quiet', '--object-format=sha256', dir]);
    const identity = ['-c', 'user.name=Ada Researcher', '-c', 'user.email=ada@example.org'];
    await repo.git(['-C', dir, ...ring.gitSigner(ed25519).args, ...identity, 'commit', '--quiet', '--allow-empty', '-S', '-m', 'sha256 world']);
    const raw = Buffer.from(await repo.git(['-C', dir, 'cat-file', 'commit', 'HEAD']));
    expect(raw.toString('utf8')).toContain('gpgsig-sha256 -----BEGIN SSH SIGNATURE-----');

    expect(await verifySshCommitSignature(raw, [adaHolds(ed25519)], new Date(), 'sha256')).toMatchObject({ ok: true, user: ADA });
    expect(await verifySshCommitSignature(raw, [adaHolds(ed25519)], new Date(), 'sha1')).toMatchObject({ ok: false, code: 'unsigned' });
  });

  it('matches the committer email to the owner\'s GitLab emails without regard to case', async () => {
    const raw = await signedCommit(ed25519, { committerEmail: 'A.Lovelace@Uni.Example' });
    expect(await verifySshCommitSignature(raw, [adaHolds(ed25519)], new Date(), 'sha1')).toMatchObject({ ok: true, committerEmail: 'A.Lovelace@Uni.Example' });
  });

  it('takes about one ssh-keygen run per commit (printed, not asserted)', async () => {
    const raw = await signedCommit(ed25519);
    const candidates = [adaHolds(ecdsa, { id: 1 }), adaHolds(rsa, { id: 2 }), adaHolds(ed25519, { id: 3 })];
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const start = process.hrtime.bigint();
      const verdict = await verifySshCommitSignature(raw, candidates, new Date(), 'sha1');
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
      expect(verdict.ok).toBe(true);
    }
    times.sort((a, b) => a - b);
    console.log(`SSH signature verification: median ${times[10]!.toFixed(1)} ms, max ${times[19]!.toFixed(1)} ms over 20 runs (ed25519, 3 candidate keys)`);
  });
});

describe('an SSH-signed commit secd refuses, and the reason it gives', () => {
  it('refuses a key GitLab holds for authentication only, and says how to make it a signing key', async () => {
    const raw = await signedCommit(ed25519);
    const verdict = await verifySshCommitSignature(raw, [adaHolds(ed25519, { usageType: 'auth' })], new Date(), 'sha1');
    expect(verdict).toMatchObject({ ok: false, code: 'unknown_key' });
    if (verdict.ok) return;
    expect(verdict.reason).toContain(`SSH key ${ed25519.fingerprint} (ED25519) of ada`);
    expect(verdict.reason).toContain('for authentication only');
    expect(verdict.reason).toContain('GitLab > Preferences > SSH Keys');
    expect(verdict.reason).toMatch(/"Authentication & Signing" or "Signing"/);
  });

  it('refuses a key GitLab does not hold, even when a held key carries the same comment', async () => {
    const stranger = await ring.generateKey('ed25519', { comment: 'ada@laptop' });
    const raw = await signedCommit(stranger);
    // GitLab holds Ada's real key, whose comment is also "ada@laptop": comments identify nothing.
    const verdict = await verifySshCommitSignature(raw, [adaHolds(ed25519), adaHolds(ecdsa)], new Date(), 'sha1');
    expect(verdict).toMatchObject({ ok: false, code: 'unknown_key' });
    if (verdict.ok) return;
    expect(verdict.reason).toContain(`is signed with SSH key ${stranger.fingerprint} (ED25519), which is not an SSH key of any member`);
  });

  it('refuses a commit changed after it was signed', async () => {
    const sha = await repo.commit('honest message', { signer: ring.gitSigner(ecdsa), files: { 'y.txt': `${Math.random()}\n` } });
    const forged = await repo.readCommit(await repo.tamperCommit(sha, 'exfiltrate the cohort'));
    const verdict = await verifySshCommitSignature(forged, [adaHolds(ecdsa)], new Date(), 'sha1');
    expect(verdict).toMatchObject({ ok: false, code: 'bad_signature' });
    if (verdict.ok) return;
    expect(verdict.reason).toContain(`by SSH key ${ecdsa.fingerprint} (ECDSA) of ada that does not verify over the commit's bytes`);
  });

  it('refuses a key whose GitLab expiry date has passed, judged now and not at the commit\'s own date', async () => {
    const candidate = adaHolds(rsa, { expiresAt: new Date(Date.now() - DAY).toISOString() });
    const verdict = await verifySshCommitSignature(await signedCommit(rsa), [candidate], new Date(), 'sha1');
    expect(verdict).toMatchObject({ ok: false, code: 'expired_key' });
    if (verdict.ok) return;
    expect(verdict.reason).toContain(`which expired in GitLab on ${candidate.expiresAt!.slice(0, 10)}`);

    // A commit dated before the expiry (a date the signer writes) does not bring the key back.
    const backdated = await signedCommit(rsa, { date: '2020-01-01T12:00:00Z' });
    const old = adaHolds(rsa, { expiresAt: '2021-01-01T00:00:00.000Z' });
    expect(await verifySshCommitSignature(backdated, [old], new Date(), 'sha1')).toMatchObject({ ok: false, code: 'expired_key' });
    // Before its expiry the same key signs.
    expect(await verifySshCommitSignature(backdated, [old], new Date('2020-06-01T00:00:00Z'), 'sha1')).toMatchObject({ ok: true });
  });

  it('refuses a committer email that is not one of the key owner\'s GitLab emails', async () => {
    const raw = await signedCommit(ed25519, { committerEmail: 'grace@example.org' });
    const verdict = await verifySshCommitSignature(raw, [adaHolds(ed25519)], new Date(), 'sha1');
    expect(verdict).toMatchObject({ ok: false, code: 'email_mismatch' });
    if (verdict.ok) return;
    expect(verdict.reason).toContain('has committer email grace@example.org, which is not one of the verified GitLab emails of ada');
    // The owner's emails are GitLab's and may be private: the reason does not list them.
    expect(verdict.reason).not.toContain('ada@example.org');
  });

  it('refuses a signature made for another namespace, naming it', async () => {
    const payload = await unsignedPayload();
    const other = await writeCommit(commitWithSignature(payload, await ring.sign(ed25519, payload, 'file')));
    const verdict = await verifySshCommitSignature(other, [adaHolds(ed25519)], new Date(), 'sha1');
    expect(verdict).toMatchObject({ ok: false, code: 'bad_signature' });
    if (verdict.ok) return;
    expect(verdict.reason).toContain('made for namespace "file", not "git"');

    // The same object assembled with namespace "git" verifies: only the namespace was wrong.
    const good = await writeCommit(commitWithSignature(payload, await ring.sign(ed25519, payload, 'git')));
    expect(await verifySshCommitSignature(good, [adaHolds(ed25519)], new Date(), 'sha1')).toMatchObject({ ok: true });
  });

  it('refuses an RSA key under 2048 bits as too weak', async () => {
    const small = await ring.generateKey('rsa', { bits: 1024 });
    const verdict = await verifySshCommitSignature(await signedCommit(small), [adaHolds(small)], new Date(), 'sha1');
    expect(verdict).toMatchObject({ ok: false, code: 'weak_key' });
    if (verdict.ok) return;
    expect(verdict.reason).toContain('an RSA key of 1024 bits');
    expect(verdict.reason).toContain('ssh-keygen -t ed25519');
  });

  it('refuses an RSA signature made with SHA-1 (ssh-rsa), which a valid SHA-2 twin shows is the only fault', async () => {
    const payload = await unsignedPayload();
    const pem = await pemOf(rsa);
    const sha1 = await writeCommit(commitWithSignature(payload, sshsig(rsa, payload, pem, 'ssh-rsa', 'sha1')));
    const verdict = await verifySshCommitSignature(sha1, [adaHolds(rsa)], new Date(), 'sha1');
    expect(verdict).toMatchObject({ ok: false, code: 'weak_digest' });
    if (verdict.ok) return;
    expect(verdict.reason).toContain('made with SHA-1 (ssh-rsa)');

    const sha2 = await writeCommit(commitWithSignature(payload, sshsig(rsa, payload, pem, 'rsa-sha2-256', 'sha256')));
    expect(await verifySshCommitSignature(sha2, [adaHolds(rsa)], new Date(), 'sha1')).toMatchObject({ ok: true });
  });

  it('says an unsigned commit is not signed, and an OpenPGP one is not SSH', async () => {
    expect(await verifySshCommitSignature(await unsignedPayload(), [adaHolds(ed25519)], new Date(), 'sha1')).toEqual({ ok: false, code: 'unsigned', reason: 'is not signed' });
    const pgp = commitWithSignature(await unsignedPayload(), '-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----');
    expect(await verifySshCommitSignature(pgp, [adaHolds(ed25519)], new Date(), 'sha1')).toMatchObject({ ok: false, code: 'unsupported_signature' });
  });

  it('says a damaged signature cannot be read', async () => {
    const raw = (await signedCommit(ed25519)).toString('utf8');
    const damaged = Buffer.from(raw.replace(/^ U1NIU0lH/m, ' U1NIU0lI'));
    const verdict = await verifySshCommitSignature(damaged, [adaHolds(ed25519)], new Date(), 'sha1');
    expect(verdict).toMatchObject({ ok: false, code: 'bad_signature', reason: 'carries an SSH signature that cannot be read (no SSHSIG magic)' });
  });
});

describe('running ssh-keygen', () => {
  it('leaves no temp files behind', async () => {
    const raw = await signedCommit(ed25519);
    const forged = await repo.readCommit(await repo.tamperCommit(await repo.head(), 'changed'));
    const saved = process.env.TMPDIR;
    const tmp = await mkdtemp(join(tmpdir(), 'secd-ssh-tmp-'));
    process.env.TMPDIR = tmp;
    try {
      expect((await verifySshCommitSignature(raw, [adaHolds(ed25519)], new Date(), 'sha1')).ok).toBe(true);
      expect((await verifySshCommitSignature(forged, [adaHolds(ed25519)], new Date(), 'sha1')).ok).toBe(false);
      expect(await readdir(tmp)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      await rm(tmp, { recursive: true, force: true });
    }
  });

  it('throws, naming the package to install, when ssh-keygen is missing (an operator\'s error, not a refusal)', async () => {
    const raw = await signedCommit(ed25519);
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await expect(verifySshCommitSignature(raw, [adaHolds(ed25519)], new Date(), 'sha1')).rejects.toThrow(/openssh-client/);
    } finally {
      process.env.PATH = saved;
    }
  });
});

// node:crypto reads PEM, not OpenSSH's own private key format: convert a copy.
async function pemOf(key: SshKey): Promise<string> {
  const copy = `${key.privateKeyPath}.pem`;
  await copyFile(key.privateKeyPath, copy);
  await new Promise<void>((resolve, reject) =>
    execFile('ssh-keygen', ['-q', '-p', '-m', 'PEM', '-N', '', '-P', '', '-f', copy], (err, _o, stderr) => (err ? reject(new Error(stderr)) : resolve())),
  );
  return readFile(copy, 'utf8');
}

// An SSHSIG (OpenSSH PROTOCOL.sshsig) made by hand, so that a signature algorithm ssh-keygen no
// longer makes can be tested: ssh-rsa signs with SHA-1, rsa-sha2-256 with SHA-256.
function sshsig(key: SshKey, message: Buffer, pem: string, algorithm: 'ssh-rsa' | 'rsa-sha2-256', digest: 'sha1' | 'sha256'): string {
  const str = (b: Buffer | string): Buffer => {
    const bytes = Buffer.from(b);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(bytes.length);
    return Buffer.concat([len, bytes]);
  };
  const head = [str('git'), str(''), str('sha512')];
  const signed = Buffer.concat([Buffer.from('SSHSIG'), ...head, str(createHash('sha512').update(message).digest())]);
  const signature = str(Buffer.concat([str(algorithm), str(rsaSign(digest, signed, pem))]));
  const version = Buffer.from([0, 0, 0, 1]);
  const blob = Buffer.concat([Buffer.from('SSHSIG'), version, str(readSshPublicKey(key.publicKey)!.blob), ...head, signature]);
  const lines = blob.toString('base64').match(/.{1,70}/g)!;
  return `-----BEGIN SSH SIGNATURE-----\n${lines.join('\n')}\n-----END SSH SIGNATURE-----\n`;
}
