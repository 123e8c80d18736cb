/**
 * Parsing of raw git commit objects and OpenPGP verification of their signatures. secd verifies
 * every commit itself, with openpgp over the exact bytes git signed, instead of trusting GitLab's
 * "Verified" badge: the only thing trusted from GitLab is which public keys belong to which member.
 * The only file that imports openpgp: keys enter as armored text and leave as verdicts.
 */
import * as openpgp from 'openpgp';
import type { PublicKey, Signature, Subkey } from 'openpgp';

/** One `Name <email> <unix time> <tz>` line of a commit (author or committer). */
export interface CommitIdentity {
  name: string;
  email: string;
  /** Seconds since the epoch, as recorded in the commit. */
  time: number;
  /** The recorded offset, e.g. "+0200". */
  timezone: string;
}

/** A commit object split the way git splits it when it checks a signature. */
export interface ParsedCommit {
  tree: string;
  parents: string[];
  author: CommitIdentity | null;
  committer: CommitIdentity | null;
  message: string;
  /** The armored signature (continuation-line prefixes removed), or null when unsigned. */
  signature: string | null;
  /** The bytes that were signed: the object without its gpgsig / gpgsig-sha256 header lines. */
  payload: Buffer;
}

/** The GitLab user a candidate key was uploaded by. */
export interface KeyOwner {
  id: number;
  username: string;
}

/** A public key GitLab holds for a project member, parsed, with the member it belongs to. */
export interface CandidateKey {
  key: PublicKey;
  user: KeyOwner;
}

/**
 * The keys of one armored block a member uploaded to GitLab, each a candidate of `owner`; null when
 * openpgp cannot read the block (the caller names it, since the push may fail for want of it).
 */
export async function readCandidateKeys(armoredKeys: string, owner: KeyOwner): Promise<CandidateKey[] | null> {
  let keys: PublicKey[];
  try {
    keys = await openpgp.readKeys({ armoredKeys });
  } catch {
    return null;
  }
  return keys.map((key) => ({ key: key.isPrivate() ? key.toPublic() : key, user: owner }));
}

/** Why a commit is not accepted; stable codes that other modules and tests switch on. */
export type SignatureFailureCode = 'unsigned' | 'unknown_key' | 'bad_signature' | 'expired_key' | 'revoked_key' | 'email_mismatch';

/** The outcome of checking one commit: who signed it, or why it is refused. */
export type SignatureVerdict =
  | { ok: true; fingerprint: string; signingKeyId: string; user: KeyOwner; committerEmail: string }
  | {
      ok: false;
      code: SignatureFailureCode;
      /** A clause that reads after "commit <sha> ", e.g. "is not signed". One line, no secrets. */
      reason: string;
    };

// The signer's clock may run a little ahead of the leader's; openpgp refuses signatures "from the future".
const CLOCK_SKEW_MS = 15 * 60 * 1000;

/** Which hash a repository names objects with; it decides which signature header is "the" signature. */
export type ObjectFormat = 'sha1' | 'sha256';

/** Split a raw commit object into its fields, its signature and the exact payload that was signed. */
export function parseCommit(raw: Buffer, objectFormat: ObjectFormat = 'sha1'): ParsedCommit {
  // Mirrors git's parse_buffer_signed_by_header(): in the header, the `gpgsig ` line of this object
  // format (`gpgsig-sha256 ` in a SHA-256 repository) and its continuation lines (one leading space)
  // are the signature; any other `gpgsig*` header with its continuations is dropped from the payload
  // too (it signs the other format's form of the commit); the first empty line ends the header and
  // everything from there on is payload, byte for byte.
  const sigHeader = objectFormat === 'sha1' ? 'gpgsig ' : 'gpgsig-sha256 ';
  const payloadParts: Buffer[] = [];
  const sigParts: string[] = [];
  const headerLines: string[] = [];
  let inSignature = false;
  let otherSignature = false;
  let sawSignature = false;
  let pos = 0;
  let bodyStart = raw.length;
  while (pos < raw.length) {
    const nl = raw.indexOf(0x0a, pos);
    const next = nl === -1 ? raw.length : nl + 1;
    const line = raw.subarray(pos, next);
    if (line[0] === 0x0a) {
      bodyStart = next;
      payloadParts.push(raw.subarray(pos));
      break;
    }
    const text = line.toString('utf8');
    let sig: string | null = null;
    if (inSignature && text.startsWith(' ')) {
      sig = text.slice(1);
    } else if (text.startsWith(sigHeader)) {
      sig = text.slice(sigHeader.length);
      otherSignature = false;
    } else if (text.startsWith('gpgsig')) {
      otherSignature = true;
    } else if (otherSignature && !text.startsWith(' ')) {
      otherSignature = false;
    }
    if (sig !== null) {
      sigParts.push(sig);
      sawSignature = true;
      inSignature = true;
    } else {
      if (!otherSignature) {
        payloadParts.push(line);
        headerLines.push(text.replace(/\n$/, ''));
      }
      inSignature = false;
    }
    pos = next;
  }

  let tree = '';
  const parents: string[] = [];
  let author: CommitIdentity | null = null;
  let committer: CommitIdentity | null = null;
  for (const line of headerLines) {
    if (line.startsWith(' ')) continue; // continuation of a header we do not read (mergetag)
    const space = line.indexOf(' ');
    const key = space === -1 ? line : line.slice(0, space);
    const value = space === -1 ? '' : line.slice(space + 1);
    if (key === 'tree') tree = value;
    else if (key === 'parent') parents.push(value);
    else if (key === 'author' && !author) author = parseIdentity(value);
    else if (key === 'committer' && !committer) committer = parseIdentity(value);
  }

  return {
    tree,
    parents,
    author,
    committer,
    message: raw.subarray(bodyStart).toString('utf8'),
    signature: sawSignature ? sigParts.join('') : null,
    payload: Buffer.concat(payloadParts),
  };
}

function parseIdentity(value: string): CommitIdentity | null {
  const m = /^(.*?) ?<([^<>]*)> (\d+) ([+-]\d{4})$/.exec(value);
  if (!m) return null;
  return { name: m[1]!, email: m[2]!, time: Number(m[3]), timezone: m[4]! };
}

/**
 * Check that `raw` carries an OpenPGP signature over its exact payload, made by one of `candidates`
 * whose key is neither revoked nor expired at `now` and has a user id with the committer's email.
 */
export async function verifyCommitSignature(
  raw: Buffer,
  candidates: readonly CandidateKey[],
  now: Date,
  objectFormat: ObjectFormat = 'sha1',
): Promise<SignatureVerdict> {
  const commit = parseCommit(raw, objectFormat);
  if (commit.signature === null) return fail('unsigned', 'is not signed');
  const armored = commit.signature;
  if (armored.startsWith('-----BEGIN SSH SIGNATURE-----')) {
    return fail('unknown_key', 'is signed with an SSH key; secd accepts only OpenPGP (GPG) signatures');
  }
  if (armored.startsWith('-----BEGIN SIGNED MESSAGE-----')) {
    return fail('unknown_key', 'is signed with an X.509 certificate; secd accepts only OpenPGP (GPG) signatures');
  }
  if (!armored.startsWith('-----BEGIN PGP SIGNATURE-----')) {
    return fail('bad_signature', 'carries a signature that is not an OpenPGP signature');
  }

  let signature: Signature;
  try {
    signature = await openpgp.readSignature({ armoredSignature: armored });
  } catch {
    return fail('bad_signature', 'carries an OpenPGP signature that cannot be read');
  }
  if (signature.packets.length !== 1) {
    return fail('bad_signature', `carries ${signature.packets.length} signatures in one block; secd accepts exactly one`);
  }
  const packet = signature.packets[0]!;
  const issuer = packet.issuerKeyID;
  const issuerHex = issuer.toHex().toUpperCase();

  // The same key may be uploaded by more than one member: prefer one whose user ids fit the committer.
  const committerEmail = commit.committer?.email ?? '';
  const matches = candidates
    .map((candidate) => ({ candidate, signingKey: candidate.key.getKeys(issuer)[0] }))
    .filter((m): m is { candidate: CandidateKey; signingKey: PublicKey | Subkey } => m.signingKey !== undefined);
  if (matches.length === 0) {
    return fail('unknown_key', `is signed with key ${issuerHex}, which is not the GPG key of any member of this project in GitLab`);
  }
  let chosen = matches[0]!;
  for (const m of matches) {
    if ((await validEmails(m.candidate.key, now)).has(committerEmail.toLowerCase())) {
      chosen = m;
      break;
    }
  }
  const { candidate, signingKey } = chosen;
  const key = candidate.key;
  const fingerprint = key.getFingerprint().toUpperCase();
  const owner = `${fingerprint} of ${candidate.user.username}`;

  // Key status is judged at `now`, not at signing time: a commit signed before a key was revoked
  // (perhaps because it leaked) must not start a run today.
  if (await key.isRevoked(undefined, undefined, now)) {
    return fail('revoked_key', `is signed with key ${owner}, which is revoked`);
  }
  const subkey = signingKey === key ? null : (signingKey as Subkey);
  if (subkey && (await isSubkeyRevoked(subkey, now))) {
    return fail('revoked_key', `is signed with subkey ${subkey.getKeyID().toHex().toUpperCase()} of key ${owner}, which is revoked`);
  }
  const keyExpiry = await key.getExpirationTime();
  if (keyExpiry instanceof Date && keyExpiry <= now) {
    return fail('expired_key', `is signed with key ${owner}, which expired on ${isoDay(keyExpiry)}`);
  }
  if (subkey) {
    const subExpiry = await subkey.getExpirationTime(now);
    if (subExpiry instanceof Date && subExpiry <= now) {
      return fail('expired_key', `is signed with subkey ${subkey.getKeyID().toHex().toUpperCase()} of key ${owner}, which expired on ${isoDay(subExpiry)}`);
    }
  }

  try {
    const message = await openpgp.createMessage({ binary: new Uint8Array(commit.payload) });
    const { signatures } = await openpgp.verify({
      message,
      signature,
      verificationKeys: [key],
      date: new Date(now.getTime() + CLOCK_SKEW_MS),
      expectSigned: false,
    });
    const verification = signatures[0];
    if (!verification) return fail('bad_signature', 'carries a signature of a kind git does not make');
    await verification.verified;
  } catch {
    return fail('bad_signature', `carries a signature by key ${owner} that does not verify`);
  }

  const emails = await validEmails(key, now);
  if (!emails.has(committerEmail.toLowerCase())) {
    const listed = [...emails].join(', ') || 'none';
    return fail(
      'email_mismatch',
      `has committer email ${committerEmail || '(none)'}, but key ${owner} has user ids only for ${listed}`,
    );
  }

  return {
    ok: true,
    fingerprint,
    signingKeyId: signingKey.getKeyID().toHex().toUpperCase(),
    user: candidate.user,
    committerEmail,
  };
}

function fail(code: SignatureFailureCode, reason: string): SignatureVerdict {
  return { ok: false, code, reason };
}

// Emails of user ids whose self-signature is valid at `now`; a revoked user id no longer vouches.
async function validEmails(key: PublicKey, now: Date): Promise<Set<string>> {
  const emails = new Set<string>();
  for (const user of key.users) {
    const email = user.userID?.email;
    if (!email) continue;
    try {
      await user.verify(now);
      emails.add(email.toLowerCase());
    } catch {
      // revoked or without a valid self-signature: skip it
    }
  }
  return emails;
}

// openpgp checks a subkey revocation against one of its binding signatures; any of them revoked
// means the primary key's owner withdrew the subkey.
async function isSubkeyRevoked(subkey: Subkey, now: Date): Promise<boolean> {
  for (const binding of subkey.bindingSignatures) {
    if (await subkey.isRevoked(binding, subkey.mainKey.keyPacket, now)) return true;
  }
  return false;
}

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}
