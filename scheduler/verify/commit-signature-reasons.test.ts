/**
 * Every refusal of an OpenPGP-verified commit names its true cause, each produced by a real commit:
 * keys made by gpg, commits signed by git (through gpg, ssh-keygen), and the odd cases made by editing
 * real packets or assembling a commit object with git hash-object. Each asserts the code, and the
 * sentence a researcher reads (refusalReason) with the fix.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGpgHome, flipQuickCheck, withSignature, type GpgHome, type GpgKey } from '../../test/support/gpg.js';
import { createResearcherRepo, type ResearcherRepo } from '../../test/support/git-repo.js';
import { parseCommit, readCandidateKeys, signatureKind, verifyCommitSignature, type CandidateKey, type SignatureVerdict } from './commit-signature.js';
import type { SignatureFailureCode } from './signature-codes.js';
import { refusalReason } from './signature-reasons.js';

let gpg: GpgHome;
let repo: ResearcherRepo;
let ada: GpgKey;
let adaCandidate: CandidateKey;
let nextId = 100;

async function candidate(key: GpgKey, armored?: string): Promise<CandidateKey> {
  const keys = await readCandidateKeys(armored ?? (await gpg.exportPublicKey(key.fingerprint)), { id: nextId++, username: key.name.split(' ')[0]!.toLowerCase() });
  if (keys?.length !== 1) throw new Error(`expected one key for ${key.fingerprint}`);
  return keys[0]!;
}

// Store an assembled commit object in the repository, as a pushed one would be, and read it back.
async function storeCommit(raw: Buffer): Promise<{ sha: string; raw: Buffer }> {
  const sha = (await repo.git(['hash-object', '-t', 'commit', '-w', '--stdin'], { input: raw })).trim();
  return { sha, raw: await repo.readCommit(sha) };
}

// The refusal as a researcher reads it: the code, the clause, and the fix with its command.
function expectRefusal(verdict: SignatureVerdict, sha: string, code: SignatureFailureCode, clause: RegExp, fix: string): string {
  expect(verdict).toMatchObject({ ok: false, code });
  if (verdict.ok) throw new Error('unreachable');
  expect(verdict.reason).toMatch(clause);
  const sentence = refusalReason(code, sha, verdict.reason);
  expect(sentence).toMatch(new RegExp(`^commit ${sha.slice(0, 8)} \\S.*: .+`));
  expect(sentence).toContain(fix);
  expect(sentence).not.toContain('\n');
  return sentence;
}

beforeAll(async () => {
  gpg = await createGpgHome();
  repo = await createResearcherRepo();
  ada = await gpg.generateKey({ name: 'Ada Researcher', email: 'ada@example.org' });
  adaCandidate = await candidate(ada);
});

afterAll(async () => {
  await repo?.close();
  await gpg?.close();
});

describe('weak digests and keys are refused as too weak, never as tampering', () => {
  it('a commit signed with a SHA-1 digest is refused as weak_digest, with the gpg.conf setting that fixes it', async () => {
    const sha = await repo.commit('sha-1', { signer: await gpg.gitSigner(ada, { digestAlgo: 'SHA1' }) });
    const raw = await repo.readCommit(sha);
    // The fixture really is SHA-1 (OpenPGP hash id 2), as gpg reads it.
    expect(await gpgPackets(parseCommit(raw).signature!)).toMatch(/digest algo 2,/);
    const verdict = await verifyCommitSignature(raw, [adaCandidate], new Date());
    expectRefusal(verdict, sha, 'weak_digest', /SHA-1 digest/, 'personal-digest-preferences SHA512');
  });

  it('a SHA-1 signed commit whose bytes were changed is bad_signature: the math is checked first', async () => {
    const sha = await repo.commit('sha-1 honest', { signer: await gpg.gitSigner(ada, { digestAlgo: 'SHA1' }) });
    const forged = await repo.tamperCommit(sha, 'sha-1 dishonest');
    const verdict = await verifyCommitSignature(await repo.readCommit(forged), [adaCandidate], new Date());
    expectRefusal(verdict, forged, 'bad_signature', /does not match the commit's bytes/, 'changed after it was signed');
  });

  it('a commit signed by an RSA-1024 key is refused as weak_key, with the command for a new key', async () => {
    const rex = await gpg.generateKey({ name: 'Rex Rsa', email: 'rex@example.org', algo: 'rsa1024' });
    const sha = await repo.commit('rsa-1024', { signer: await gpg.gitSigner(rex), committerEmail: 'rex@example.org' });
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [await candidate(rex)], new Date());
    expectRefusal(verdict, sha, 'weak_key', /an RSA key of 1024 bits/, "gpg --quick-gen-key 'Your Name <you@example.org>' ed25519 sign");
  });

  it('a commit signed by a DSA-1024 key is refused as weak_key, and as weak_digest when gpg picked SHA-1 for it', async () => {
    const dora = await gpg.generateKey({ name: 'Dora Dsa', email: 'dora@example.org', algo: 'dsa1024' });
    const doraCandidate = await candidate(dora);
    const sha256 = await repo.commit('dsa sha-256', { signer: await gpg.gitSigner(dora, { digestAlgo: 'SHA256' }), committerEmail: 'dora@example.org' });
    const weakKey = await verifyCommitSignature(await repo.readCommit(sha256), [doraCandidate], new Date());
    expectRefusal(weakKey, sha256, 'weak_key', /a DSA key of 1024 bits/, 'or rsa4096');
    const sha1 = await repo.commit('dsa sha-1', { signer: await gpg.gitSigner(dora, { digestAlgo: 'SHA1' }), committerEmail: 'dora@example.org' });
    const weakDigest = await verifyCommitSignature(await repo.readCommit(sha1), [doraCandidate], new Date());
    expectRefusal(weakDigest, sha1, 'weak_digest', /SHA-1 digest/, 'if your key is DSA-1024');
  });

  it('an RSA-3072 key is accepted with SHA-256, and its SHA-1 signatures are weak_digest, its forged ones bad_signature', async () => {
    const rose = await gpg.generateKey({ name: 'Rose Rsa', email: 'rose@example.org', algo: 'rsa3072' });
    const roseCandidate = await candidate(rose);
    const good = await repo.commit('rsa-3072', { signer: await gpg.gitSigner(rose), committerEmail: 'rose@example.org' });
    expect(await verifyCommitSignature(await repo.readCommit(good), [roseCandidate], new Date())).toMatchObject({ ok: true, fingerprint: rose.fingerprint });

    const sha1 = await repo.commit('rsa sha-1', { signer: await gpg.gitSigner(rose, { digestAlgo: 'SHA1' }), committerEmail: 'rose@example.org' });
    const weak = await verifyCommitSignature(await repo.readCommit(sha1), [roseCandidate], new Date());
    expectRefusal(weak, sha1, 'weak_digest', /SHA-1 digest/, 'personal-digest-preferences SHA512');

    const forged = await repo.tamperCommit(sha1, 'rsa sha-1 forged');
    const bad = await verifyCommitSignature(await repo.readCommit(forged), [roseCandidate], new Date());
    expectRefusal(bad, forged, 'bad_signature', /does not match the commit's bytes/, 'changed after it was signed');
  });
});

describe('the key and its user ids', () => {
  it('a commit whose only user id with the committer email is revoked is refused as revoked_user_id', async () => {
    const uma = await gpg.generateKey({ name: 'Uma Uid', email: 'uma@example.org', extraUserIds: ['Uma Old <uma@old.example>'] });
    const sha = await repo.commit('old email', { signer: await gpg.gitSigner(uma), committerEmail: 'uma@old.example' });
    await gpg.revokeUserId(uma.fingerprint, 'Uma Old <uma@old.example>');
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [await candidate(uma)], new Date());
    expectRefusal(verdict, sha, 'revoked_user_id', /uma@old\.example.*is revoked/, 'gpg --quick-add-uid');
  });

  it('a commit whose committer email is on no user id of the key is refused as email_mismatch', async () => {
    const sha = await repo.commit('other email', { signer: await gpg.gitSigner(ada), committerEmail: 'ada@elsewhere.example' });
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [adaCandidate], new Date());
    expectRefusal(verdict, sha, 'email_mismatch', /ada@elsewhere\.example.*only for ada@example\.org/, 'git config user.email');
  });

  it('a commit signed by a key that has expired since is refused as expired_key', async () => {
    const made = new Date(Date.now() - 30 * 24 * 3600_000);
    const eve = await gpg.generateKey({ name: 'Eve Expired', email: 'eve@example.org', expire: '1d', createdAt: made });
    const at = new Date(made.getTime() + 3600_000);
    const sha = await repo.commit('while valid', { signer: await gpg.gitSigner(eve, { at }), committerEmail: 'eve@example.org', date: at.toISOString() });
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [await candidate(eve)], new Date());
    expectRefusal(verdict, sha, 'expired_key', /which expired on \d{4}-\d\d-\d\d/, 'gpg --quick-set-expire');
  });

  it('a key whose only self-signature is newer than the commit (its expiry changed since) still verifies it', async () => {
    const made = new Date(Date.now() - 10 * 24 * 3600_000);
    const at = new Date(made.getTime() + 24 * 3600_000);
    const kim = await gpg.generateKey({ name: 'Kim Renewed', email: 'kim@example.org', expire: '1y', createdAt: made });
    const sha = await repo.commit('before the renewal', { signer: await gpg.gitSigner(kim, { at }), committerEmail: 'kim@example.org', date: at.toISOString() });
    await gpg.gpg(['--quick-set-expire', kim.fingerprint, '2y'], { at: new Date(at.getTime() + 24 * 3600_000) });
    // export-minimal keeps only the newest self-signature, as many uploaded keys have it.
    const armored = await gpg.gpg(['--armor', '--export-options', 'export-minimal', '--export', kim.fingerprint]);
    const raw = await repo.readCommit(sha);
    // openpgp.verify alone judges the key at signing time, when it had no self-signature yet.
    const plain = await openpgp.verify({
      message: await openpgp.createMessage({ binary: new Uint8Array(parseCommit(raw).payload) }),
      signature: await openpgp.readSignature({ armoredSignature: parseCommit(raw).signature! }),
      verificationKeys: [await openpgp.readKey({ armoredKey: armored })],
    });
    await expect(plain.signatures[0]!.verified).rejects.toThrow();
    const verdict = await verifyCommitSignature(raw, [await candidate(kim, armored)], new Date());
    expect(verdict).toMatchObject({ ok: true, fingerprint: kim.fingerprint });
  });

  it('a commit signed by a key that has been revoked since is refused as revoked_key', async () => {
    const rita = await gpg.generateKey({ name: 'Rita Revoked', email: 'rita@example.org' });
    const sha = await repo.commit('before revocation', { signer: await gpg.gitSigner(rita), committerEmail: 'rita@example.org' });
    await gpg.revokeKey(rita.fingerprint);
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [await candidate(rita)], new Date());
    expectRefusal(verdict, sha, 'revoked_key', /which is revoked/, 'sign with a key that is not revoked');
  });
});

describe('what the signature is made of', () => {
  it('a commit changed after signing is the true bad_signature, and the reason says so', async () => {
    const sha = await repo.commit('what I signed', { signer: await gpg.gitSigner(ada) });
    const forged = await repo.tamperCommit(sha, 'what I did not sign');
    const verdict = await verifyCommitSignature(await repo.readCommit(forged), [adaCandidate], new Date());
    expectRefusal(verdict, forged, 'bad_signature', /does not match the commit's bytes/, 'git log --show-signature -1');
  });

  it('an X.509 (gpgsm) signed commit object is refused as unsupported_signature', async () => {
    const payload = parseCommit(await repo.readCommit(await repo.commit('x509 base'))).payload;
    const block = '-----BEGIN SIGNED MESSAGE-----\nMIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0B\n-----END SIGNED MESSAGE-----\n';
    const { sha, raw } = await storeCommit(withSignature(payload, block));
    expect(signatureKind(raw, 'sha1')).toBe('x509');
    const verdict = await verifyCommitSignature(raw, [adaCandidate], new Date());
    expectRefusal(verdict, sha, 'unsupported_signature', /X\.509/, 'git config gpg.format openpgp');
  });

  it('an SSH-signed commit given to the OpenPGP check is unsupported_signature there, not tampering', async () => {
    const sha = await repo.commit('ssh signed', { signer: await gpg.sshSigner() });
    const raw = await repo.readCommit(sha);
    expect(signatureKind(raw, 'sha1')).toBe('ssh');
    const verdict = await verifyCommitSignature(raw, [adaCandidate], new Date());
    expectRefusal(verdict, sha, 'unsupported_signature', /SSH key/, 'git config gpg.format ssh');
  });

  it('tells the kinds apart by their armor, in either object format, and null for an unsigned commit', async () => {
    const unsigned = await repo.readCommit(await repo.commit('plain'));
    expect(signatureKind(unsigned, 'sha1')).toBeNull();
    const signed = await repo.readCommit(await repo.commit('gpg', { signer: await gpg.gitSigner(ada) }));
    expect(signatureKind(signed, 'sha1')).toBe('openpgp');
    const payload = parseCommit(unsigned).payload;
    const ssh = '-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n';
    expect(signatureKind(withSignature(payload, ssh, 'gpgsig-sha256'), 'sha256')).toBe('ssh');
    // The other format's header is not this repository's signature.
    expect(signatureKind(withSignature(payload, ssh, 'gpgsig-sha256'), 'sha1')).toBeNull();
  });
});

describe('the quick-check field: gpg ignores it, and so does secd (the math decides)', () => {
  it('a commit signature whose two quick-check bytes are off but whose math holds is accepted, as gpg accepts it', async () => {
    const sha = await repo.commit('quick check', { signer: await gpg.gitSigner(ada) });
    const commit = parseCommit(await repo.readCommit(sha));
    const flipped = flipQuickCheck(commit.signature!);
    const { sha: edited, raw } = await storeCommit(withSignature(commit.payload, flipped));

    // The fixture is what it claims: gpg says GOODSIG, openpgp's default verify refuses it.
    expect(await gpgVerify(flipped, commit.payload)).toContain(`VALIDSIG ${ada.fingerprint}`);
    const plain = await openpgp.verify({
      message: await openpgp.createMessage({ binary: new Uint8Array(commit.payload) }),
      signature: await openpgp.readSignature({ armoredSignature: flipped }),
      verificationKeys: [(await readCandidateKeys(await gpg.exportPublicKey(ada.fingerprint), { id: 1, username: 'x' }))![0]!.key],
    });
    await expect(plain.signatures[0]!.verified).rejects.toThrow(/Signed digest did not match/);

    expect(edited).not.toBe(sha);
    const verdict = await verifyCommitSignature(raw, [adaCandidate], new Date());
    expect(verdict).toMatchObject({ ok: true, fingerprint: ada.fingerprint });
  });

  it('with the quick-check bytes off, a commit whose bytes were changed is still bad_signature', async () => {
    const sha = await repo.commit('quick check honest', { signer: await gpg.gitSigner(ada) });
    const commit = parseCommit(await repo.readCommit(sha));
    const forgedPayload = Buffer.from(commit.payload.toString('utf8').replace('quick check honest', 'quick check forged'));
    const { sha: forged, raw } = await storeCommit(withSignature(forgedPayload, flipQuickCheck(commit.signature!)));
    const verdict = await verifyCommitSignature(raw, [adaCandidate], new Date());
    expectRefusal(verdict, forged, 'bad_signature', /does not match/, 'changed after it was signed');
  });

  it("a key whose user id self-signature has its quick-check bytes off is accepted, as gpg accepts it", async () => {
    const quinn = await gpg.generateKey({ name: 'Quinn Quick', email: 'quinn@example.org' });
    const armored = flipQuickCheck(await gpg.exportPublicKey(quinn.fingerprint), 0);
    // openpgp alone finds no valid user id on this key.
    await expect((await openpgp.readKey({ armoredKey: armored })).getPrimaryUser()).rejects.toThrow();
    const sha = await repo.commit('by quinn', { signer: await gpg.gitSigner(quinn), committerEmail: 'quinn@example.org' });
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [await candidate(quinn, armored)], new Date());
    expect(verdict).toMatchObject({ ok: true, fingerprint: quinn.fingerprint });
  });

  it('a revocation whose quick-check bytes are off still revokes the key', async () => {
    const ron = await gpg.generateKey({ name: 'Ron Revoked', email: 'ron@example.org' });
    const sha = await repo.commit('by ron', { signer: await gpg.gitSigner(ron), committerEmail: 'ron@example.org' });
    await gpg.revokeKey(ron.fingerprint);
    // gpg exports the key revocation first, right after the primary key.
    const armored = flipQuickCheck(await gpg.exportPublicKey(ron.fingerprint), 0);
    expect(await (await openpgp.readKey({ armoredKey: armored })).isRevoked()).toBe(false);
    const verdict = await verifyCommitSignature(await repo.readCommit(sha), [await candidate(ron, armored)], new Date());
    expect(verdict).toMatchObject({ ok: false, code: 'revoked_key' });
  });
});

function gpgRun(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('gpg', ['--batch', ...args], { env: { ...process.env, ...gpg.env, LC_ALL: 'C' } }, (err, stdout, stderr) =>
      err ? reject(new Error(`gpg ${args.join(' ')}: ${stderr}`)) : resolve(stdout + stderr),
    );
    child.stdin?.end(input ?? '');
  });
}

function gpgPackets(armored: string): Promise<string> {
  return gpgRun(['--list-packets'], armored);
}

async function gpgVerify(signature: string, payload: Buffer): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'secd-qc-'));
  try {
    await writeFile(join(dir, 'sig.asc'), signature);
    await writeFile(join(dir, 'payload'), payload);
    return await gpgRun(['--status-fd', '1', '--verify', join(dir, 'sig.asc'), join(dir, 'payload')]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
