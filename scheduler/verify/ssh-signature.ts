/**
 * Verification of SSH commit signatures (`git config gpg.format ssh`, DESIGN §13): the commit's
 * `gpgsig` header holds an SSHSIG signature (namespace "git") over the same payload an OpenPGP
 * signature covers, and the key that made it must be one of a member's GitLab SSH keys whose usage
 * includes signing.
 *
 * The verifier is OpenSSH's own `ssh-keygen -Y verify`, given an allowed-signers file written per
 * check in a private temp dir (0700, removed afterwards) that holds only the matched GitLab key. It is
 * the reference implementation of SSHSIG and the very program `git verify-commit` runs, so secd and
 * git agree byte for byte on what verifies, for every key type OpenSSH knows (ed25519, ECDSA, RSA with
 * rsa-sha2-256/512, FIDO "-sk" keys) with no crypto of our own. The npm candidates were weaker:
 * `sshpk` (Joyent) parses keys but knows no SSHSIG and sees little upkeep; `ssh2` (here only because
 * dockerode needs it) has no SSHSIG either; `sshsig` is a young one-person package. The price is one
 * process per commit: about 5 ms (the figure ssh-signature.test.ts prints), small beside the push.
 *
 * What ssh-keygen does not decide is decided here, before it runs, from the signature's envelope
 * (framing only, no crypto): which key signed (matched to candidates by its public key blob, never by
 * comment), the namespace (a wrong one gets a reason that names it instead of a bare "bad
 * signature"), SHA-1 RSA signatures and keys too weak for medical data, GitLab's usage type and
 * expiry, and finally the committer email against the key owner's own GitLab emails.
 *
 * Expiry is judged at `now`, not at the committer time: the committer time is written by whoever
 * signs, so a holder of an expired (perhaps leaked) key could simply backdate a commit; and a run
 * acts with the key's authority today. GitLab's `expires_at` is a day boundary; a key is expired
 * from that instant on.
 *
 * Needs OpenSSH's `ssh-keygen` (Debian: openssh-client, 8.2 or newer) on the leader's PATH; its
 * absence is an operator's error and throws, never a refusal a researcher would chase.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommit } from './commit-signature.js';
import type { SignatureFailureCode } from './signature-codes.js';

/** One SSH key GitLab holds for a user (`GET /users/:id/keys`), with the owner's own emails. */
export interface SshKeyCandidate {
  /** GitLab's key id */
  id: number;
  /** the public key line, e.g. "ssh-ed25519 AAAA… comment" */
  key: string;
  usageType: 'auth' | 'signing' | 'auth_and_signing';
  /** GitLab's `expires_at` (ISO 8601), null when the key never expires */
  expiresAt: string | null;
  user: { id: number; username: string };
  /** the owner's GitLab emails secd may match the committer against */
  emails: string[];
}

/** Who signed a commit with SSH, or why the commit is refused. */
export type SshVerdict =
  | { ok: true; fingerprint: string /* SHA256:… as ssh-keygen -l prints */; user: { id: number; username: string }; committerEmail: string }
  | { ok: false; code: SignatureFailureCode; reason: string /* clause that reads after "commit <sha8> " */ };

/** A public key read from an OpenSSH key line or an SSHSIG envelope. */
export interface SshPublicKey {
  /** The key's wire-format blob: what identifies it (the comment never does). */
  blob: Buffer;
  /** The algorithm name inside the blob, e.g. "ssh-ed25519". */
  type: string;
  /** "SHA256:" and the unpadded base64 of the blob's SHA-256, as `ssh-keygen -l` prints it. */
  fingerprint: string;
  /** ssh-keygen's label: ED25519, ECDSA, RSA, DSA, ED25519-SK, ECDSA-SK. */
  label: string;
  /** RSA modulus size in bits; null for other types. */
  rsaBits: number | null;
}

const SIGNING_USAGES = new Set<SshKeyCandidate['usageType']>(['signing', 'auth_and_signing']);
const MIN_RSA_BITS = 2048;
const VERIFY_TIMEOUT_MS = 10_000;
const SIGNERS_PRINCIPAL = 'secd-signer';
const ADD_KEY_HINT = 'in GitLab > Preferences > SSH Keys';

/**
 * Read an OpenSSH public key line ("type base64 [comment]", as GitLab returns it); null when it is
 * not one (or its blob names another type than the line). Callers may use it to report unreadable
 * keys when they parse GitLab's answer; verification simply never matches such a key.
 */
export function readSshPublicKey(line: string): SshPublicKey | null {
  const [type, base64] = line.trim().split(/\s+/);
  if (!type || !base64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return null;
  const key = describeBlob(Buffer.from(base64, 'base64'));
  return key && key.type === type ? key : null;
}

/**
 * Check that `raw` carries an SSH signature in namespace "git" over its exact payload, made by one of
 * `candidates` whose GitLab usage includes signing, not expired at `now`, whose owner has the
 * committer's email among `emails`.
 */
export async function verifySshCommitSignature(
  raw: Buffer,
  candidates: readonly SshKeyCandidate[],
  now: Date,
  objectFormat: 'sha1' | 'sha256',
): Promise<SshVerdict> {
  const commit = parseCommit(raw, objectFormat);
  if (commit.signature === null) return fail('unsigned', 'is not signed');
  if (!commit.signature.startsWith('-----BEGIN SSH SIGNATURE-----')) {
    return fail('unsupported_signature', 'carries a signature that is not an SSH signature');
  }
  const envelope = readEnvelope(commit.signature);
  if (typeof envelope === 'string') return fail('bad_signature', `carries an SSH signature that cannot be read (${envelope})`);

  if (envelope.namespace !== 'git') {
    return fail(
      'bad_signature',
      `carries an SSH signature made for namespace "${printable(envelope.namespace)}", not "git", so it does not sign a commit; ` +
        'sign commits with git itself (git config gpg.format ssh, then git commit -S), not with ssh-keygen -Y sign',
    );
  }
  if (envelope.hashAlgorithm !== 'sha256' && envelope.hashAlgorithm !== 'sha512') {
    return fail('unsupported_signature', `carries an SSH signature over a "${printable(envelope.hashAlgorithm)}" hash, which SSH signatures do not use (only sha256 and sha512)`);
  }

  const signer = envelope.key;
  const keyName = `SSH key ${signer.fingerprint} (${signer.label})`;
  const matches = candidates.filter((c) => readSshPublicKey(c.key)?.blob.equals(signer.blob));
  if (matches.length === 0) {
    return fail(
      'unknown_key',
      `is signed with ${keyName}, which is not an SSH key of any member of this project in GitLab; ` +
        `add its public key ${ADD_KEY_HINT} with usage "Authentication & Signing" or "Signing"`,
    );
  }
  const committerEmail = commit.committer?.email ?? '';
  const candidate = bestCandidate(matches, committerEmail, now);
  const owned = `${keyName} of ${candidate.user.username}`;

  if (!SIGNING_USAGES.has(candidate.usageType)) {
    return fail(
      'unknown_key',
      `is signed with ${owned}, which is in GitLab for authentication only, not for signing; ` +
        `delete it ${ADD_KEY_HINT} and add it again with usage "Authentication & Signing" or "Signing"`,
    );
  }
  if (signer.type === 'ssh-dss' || (signer.rsaBits !== null && signer.rsaBits < MIN_RSA_BITS)) {
    const size = signer.rsaBits !== null ? `an RSA key of ${signer.rsaBits} bits` : 'a DSA key';
    return fail(
      'weak_key',
      `is signed with ${owned}, ${size}, too weak for secd (RSA needs at least ${MIN_RSA_BITS} bits); ` +
        `make a new key (ssh-keygen -t ed25519), add it ${ADD_KEY_HINT} with usage "Signing" and set git config user.signingkey to it`,
    );
  }
  const expiry = expiryOf(candidate);
  if (expiry !== null && expiry.getTime() <= now.getTime()) {
    return fail(
      'expired_key',
      `is signed with ${owned}, which expired in GitLab on ${expiry.toISOString().slice(0, 10)}; ` +
        `add it again (or a new key) ${ADD_KEY_HINT} with a later expiry date and sign again`,
    );
  }
  // OpenSSH refuses these too, but only with "unsupported RSA signature algorithm": say why and the fix.
  if (envelope.signatureAlgorithm === 'ssh-rsa') {
    return fail(
      'weak_digest',
      `carries an RSA signature made with SHA-1 (ssh-rsa) by ${owned}; SSH signatures must use rsa-sha2-512 or rsa-sha2-256: ` +
        'sign with OpenSSH 8.2 or newer (its ssh-agent or the key file itself), or use an ed25519 key',
    );
  }

  const math = await runSshKeygenVerify(envelope.blob, signer, commit.payload);
  if (math !== 'good') {
    return fail(
      'bad_signature',
      math === 'incorrect'
        ? `carries a signature by ${owned} that does not verify over the commit's bytes: the commit was changed after it was signed, or the signature is damaged`
        : `carries a signature by ${owned} that OpenSSH cannot check (${math})`,
    );
  }

  const emails = new Set(candidate.emails.map((e) => e.toLowerCase()));
  if (!committerEmail || !emails.has(committerEmail.toLowerCase())) {
    return fail(
      'email_mismatch',
      `has committer email ${committerEmail || '(none)'}, which is not one of the verified GitLab emails of ${candidate.user.username}, owner of ${keyName}; ` +
        'commit with an email of that GitLab account (git config user.email) or add and verify this one in GitLab > Preferences > Emails',
    );
  }

  return { ok: true, fingerprint: signer.fingerprint, user: candidate.user, committerEmail };
}

function fail(code: SignatureFailureCode, reason: string): SshVerdict {
  return { ok: false, code, reason };
}

// GitLab keeps a key's fingerprint unique, so two matches are rare (the same key under two GitLab
// instances' exports, a test double); prefer the candidate that passes the most checks.
function bestCandidate(matches: readonly SshKeyCandidate[], committerEmail: string, now: Date): SshKeyCandidate {
  const score = (c: SshKeyCandidate): number => {
    const expiry = expiryOf(c);
    return (
      (SIGNING_USAGES.has(c.usageType) ? 4 : 0) +
      (expiry === null || expiry.getTime() > now.getTime() ? 2 : 0) +
      (c.emails.some((e) => e.toLowerCase() === committerEmail.toLowerCase()) ? 1 : 0)
    );
  };
  return [...matches].sort((a, b) => score(b) - score(a))[0]!;
}

function expiryOf(candidate: SshKeyCandidate): Date | null {
  if (candidate.expiresAt === null) return null;
  const time = Date.parse(candidate.expiresAt);
  // The caller parsed GitLab's answer with a schema; a non-date here is a bug, not a refusal.
  if (Number.isNaN(time)) throw new Error(`SSH key ${candidate.id} of ${candidate.user.username} has expiresAt "${candidate.expiresAt}", which is not a date`);
  return new Date(time);
}

/** The fields of an SSHSIG blob (PROTOCOL.sshsig in OpenSSH). */
interface SshSigEnvelope {
  blob: Buffer;
  key: SshPublicKey;
  namespace: string;
  hashAlgorithm: string;
  /** The algorithm named inside the signature, e.g. "rsa-sha2-512". */
  signatureAlgorithm: string;
}

// Armor and framing only; what it returns is re-armored for ssh-keygen, so both read the same bytes.
function readEnvelope(armored: string): SshSigEnvelope | string {
  const lines = armored.trim().split('\n').map((l) => l.trim());
  if (lines[lines.length - 1] !== '-----END SSH SIGNATURE-----') return 'no END SSH SIGNATURE line';
  const body = lines.slice(1, -1).join('');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return 'the armor is not base64';
  const blob = Buffer.from(body, 'base64');
  const reader = new WireReader(blob);
  try {
    if (!reader.bytes(6).equals(Buffer.from('SSHSIG'))) return 'no SSHSIG magic';
    const version = reader.uint32();
    if (version !== 1) return `SSHSIG version ${version}`;
    const keyBlob = reader.string();
    const namespace = reader.string().toString('utf8');
    reader.string(); // reserved
    const hashAlgorithm = reader.string().toString('utf8');
    const signatureAlgorithm = new WireReader(reader.string()).string().toString('utf8');
    if (!reader.done()) return 'bytes after the signature';
    const key = describeBlob(keyBlob);
    if (!key) return 'its public key cannot be read';
    return { blob, key, namespace, hashAlgorithm, signatureAlgorithm };
  } catch {
    return 'it ends too early';
  }
}

function describeBlob(blob: Buffer): SshPublicKey | null {
  const reader = new WireReader(blob);
  let type: string;
  let rsaBits: number | null = null;
  try {
    type = reader.string().toString('latin1');
    if (type === 'ssh-rsa') {
      reader.string(); // e
      const n = reader.string();
      const first = n.findIndex((b) => b !== 0);
      rsaBits = first === -1 ? 0 : (n.length - first - 1) * 8 + (32 - Math.clz32(n[first]!));
    }
  } catch {
    return null;
  }
  if (!/^[a-z0-9@.-]+$/.test(type)) return null;
  const fingerprint = `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
  return { blob, type, fingerprint, label: labelOf(type), rsaBits };
}

function labelOf(type: string): string {
  if (type === 'ssh-ed25519') return 'ED25519';
  if (type === 'sk-ssh-ed25519@openssh.com') return 'ED25519-SK';
  if (type.startsWith('ecdsa-sha2-')) return 'ECDSA';
  if (type.startsWith('sk-ecdsa-sha2-')) return 'ECDSA-SK';
  if (type === 'ssh-rsa') return 'RSA';
  if (type === 'ssh-dss') return 'DSA';
  return type;
}

// Namespaces and hash names come from the signer: keep a reason one printable line.
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
}

/** SSH wire format (RFC 4251): uint32 and length-prefixed strings; throws past the end. */
class WireReader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}
  bytes(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw new RangeError('past the end');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  uint32(): number {
    return this.bytes(4).readUInt32BE(0);
  }
  string(): Buffer {
    return this.bytes(this.uint32());
  }
  done(): boolean {
    return this.pos === this.buf.length;
  }
}

/**
 * The math, by OpenSSH: 'good', 'incorrect' (the signature does not match the bytes), or what else
 * ssh-keygen said about the signature itself. Anything that is not about the signature throws.
 */
async function runSshKeygenVerify(sigBlob: Buffer, key: SshPublicKey, payload: Buffer): Promise<'good' | 'incorrect' | string> {
  const dir = await mkdtemp(join(tmpdir(), 'secd-sshsig-'));
  try {
    const signers = join(dir, 'allowed_signers');
    const sigFile = join(dir, 'commit.sig');
    await writeFile(signers, `${SIGNERS_PRINCIPAL} namespaces="git" ${key.type} ${key.blob.toString('base64')}\n`, { mode: 0o600 });
    await writeFile(sigFile, armor(sigBlob), { mode: 0o600 });
    const { code, stdout, stderr } = await runWithInput(
      'ssh-keygen',
      ['-Y', 'verify', '-f', signers, '-I', SIGNERS_PRINCIPAL, '-n', 'git', '-s', sigFile],
      payload,
    );
    if (code === 0 && stdout.startsWith('Good "git" signature')) return 'good';
    // sshsig.c reports every failure of the key's own verify as "Signature verification failed: <why>".
    const why = /Signature verification failed: (.*)/.exec(stderr)?.[1]?.trim();
    if (why === 'incorrect signature') return 'incorrect';
    if (why) return why;
    throw new Error(`ssh-keygen -Y verify exited ${code}: ${stderr.trim() || stdout.trim() || 'no output'}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function armor(blob: Buffer): string {
  const lines = blob.toString('base64').match(/.{1,70}/g) ?? [];
  return `-----BEGIN SSH SIGNATURE-----\n${lines.join('\n')}\n-----END SSH SIGNATURE-----\n`;
}

function runWithInput(cmd: string, args: string[], input: Buffer): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' }, timeout: VERIFY_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024 },
      (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean };
        if (e.code === 'ENOENT') return reject(new Error(`${cmd} not found on PATH: install OpenSSH's client (Debian: openssh-client) to verify SSH signatures`));
        if (e.killed) return reject(new Error(`${cmd} ${args.slice(0, 2).join(' ')} did not finish within ${VERIFY_TIMEOUT_MS / 1000} s`));
        if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr });
        reject(new Error(`${cmd} ${args.slice(0, 2).join(' ')} failed: ${stderr || e.message}`));
      },
    );
    // ssh-keygen may exit before reading all of stdin; the write error that follows is harmless.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });
}
