/**
 * Parsing of raw git commit objects and OpenPGP verification of their signatures. secd verifies
 * every commit itself, with openpgp over the exact bytes git signed, instead of trusting GitLab's
 * "Verified" badge: the only thing trusted from GitLab is which public keys belong to which member.
 * The only file that imports openpgp: keys enter as armored text and leave as verdicts.
 *
 * Every refusal names its true cause (DESIGN §13, codes in signature-codes.ts). openpgp's defaults
 * refuse SHA-1 message signatures, RSA under 2047 bits and DSA/ElGamal keys by throwing, which once
 * reached researchers as "does not verify" (read: tampered). So openpgp is asked only the questions it
 * answers truthfully: the math, with every digest allowed (COMMIT_SIGNATURE_CONFIG), and the key's
 * own validity, with every key size and algorithm allowed (KEY_CONFIG). secd then refuses, itself and
 * with its own code, what is too weak for medical data: a commit signature made with SHA-1, MD5 or
 * RIPEMD-160 (weak_digest: a collision lets a signed commit stand for another one someone else
 * prepared), and an RSA, DSA or ElGamal primary or signing key under 2048 bits (weak_key). The key's
 * self-signatures keep openpgp's default digest rules (MD5 and RIPEMD-160 refused, SHA-1 allowed as gpg
 * allows it): the key's owner makes them over their own key and user ids, so nobody else can choose
 * the colliding prefix that an attack on SHA-1 needs. openpgp will not even do Ed25519 math over a
 * SHA-1 digest (RFC 9580 forbids the pair; gpg makes and checks it): there secd does the Ed25519 check
 * itself, only to choose between weak_digest and bad_signature (see ed25519Holds).
 *
 * The order of the checks is the order of the truth: an unknown issuer first, then the math (if the
 * bytes do not match, nothing else about the commit matters and the researcher must hear that it
 * changed), then the key's state at `now`, then weakness, then the committer's user id.
 *
 * The quick-check field: a v4 signature carries the first two bytes of its digest ("signed hash
 * value prefix") outside the signed data. openpgp refuses a signature whose two bytes are off before
 * it does the math; gpg ignores them and judges the math alone (commit-signature.test.ts shows gpg
 * saying GOODSIG for such a commit). secd sides with gpg and accepts such signatures: the bytes are
 * covered by no signature, so anyone who handles the object can change them, and they prove nothing
 * either way. Refusing them would only make secd refuse a commit gpg calls good; the math still
 * decides. So before openpgp looks at a signature (the commit's, and every self-signature, binding and
 * revocation of a candidate key, so that a revocation gpg honours is honoured here too), secd
 * recomputes the digest with openpgp's own hashing and puts its true first two bytes in the field.
 *
 * Key state is judged at `now` only (revocation, expiry, a valid self-signature for signing), which
 * also covers keys whose self-signatures were remade after the commit was signed (a new expiry, a
 * reformatted key): openpgp's allowInsecureVerificationWithReformattedKeys exists for that case, and
 * is not needed because openpgp.verify's judgement at signing time is not used.
 */
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import * as openpgp from 'openpgp';
import type { Config, Key, PublicKey, Signature, SignaturePacket, Subkey, User } from 'openpgp';
import { parseCommit, type ObjectFormat } from './commit-object.js';
import type { SignatureFailureCode, SignatureKind } from './signature-codes.js';

export type { SignatureFailureCode, SignatureKind } from './signature-codes.js';
export { parseCommit, type CommitIdentity, type ObjectFormat, type ParsedCommit } from './commit-object.js';

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
  const publicKeys = keys.map((key) => (key.isPrivate() ? key.toPublic() : key));
  for (const key of publicKeys) await repairKeyQuickChecks(key);
  return publicKeys.map((key) => ({ key, user: owner }));
}

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


/**
 * Which kind of signature `raw` carries, by its armor as git itself tells them apart: SSH
 * (`-----BEGIN SSH SIGNATURE-----`), X.509 from gpgsm (`-----BEGIN SIGNED MESSAGE-----`), anything
 * else OpenPGP (a block that is not OpenPGP either is refused by verifyCommitSignature); null when
 * the commit is unsigned.
 */
export function signatureKind(raw: Buffer, objectFormat: ObjectFormat = 'sha1'): SignatureKind | null {
  const signature = parseCommit(raw, objectFormat).signature;
  if (signature === null) return null;
  return armorKind(signature);
}

function armorKind(armored: string): SignatureKind {
  if (armored.startsWith('-----BEGIN SSH SIGNATURE-----')) return 'ssh';
  if (armored.startsWith('-----BEGIN SIGNED MESSAGE-----')) return 'x509';
  return 'openpgp';
}

// The math of the commit's signature, with every digest allowed: a weak digest is refused by secd
// afterwards, with its own code, and only once the math holds.
const COMMIT_SIGNATURE_CONFIG: Config = {
  ...openpgp.config,
  rejectHashAlgorithms: new Set(),
  rejectMessageHashAlgorithms: new Set(),
};
// The key's validity, with every key size and algorithm allowed: a weak key is refused by secd, by name.
const KEY_CONFIG: Config = { ...openpgp.config, minRSABits: 0, rejectPublicKeyAlgorithms: new Set() };

// Digests a commit signature may not use (OpenPGP hash ids): MD5, SHA-1, RIPEMD-160.
const WEAK_DIGESTS: ReadonlyMap<number, string> = new Map([
  [openpgp.enums.hash.md5, 'MD5'],
  [openpgp.enums.hash.sha1, 'SHA-1'],
  [openpgp.enums.hash.ripemd, 'RIPEMD-160'],
]);
// Key algorithms whose strength is their size; under MIN_KEY_BITS they are refused.
const SIZED_ALGORITHMS: ReadonlyMap<string, string> = new Map([
  ['rsaEncryptSign', 'an RSA'],
  ['rsaSign', 'an RSA'],
  ['rsaEncrypt', 'an RSA'],
  ['dsa', 'a DSA'],
  ['elgamal', 'an ElGamal'],
]);
const MIN_KEY_BITS = 2048;

/**
 * Check that `raw` carries an OpenPGP signature over its exact payload, made by one of `candidates`
 * whose key is neither revoked nor expired at `now`, strong enough, with a strong enough digest, and
 * with a valid (unrevoked) user id for the committer's email. Each refusal has its true code.
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
  const kind = armorKind(armored);
  if (kind === 'ssh') {
    return fail('unsupported_signature', 'is signed with an SSH key, which the OpenPGP (GPG) check cannot verify');
  }
  if (kind === 'x509') {
    return fail('unsupported_signature', 'is signed with an X.509 certificate (gpgsm), which secd does not accept');
  }
  if (!armored.startsWith('-----BEGIN PGP SIGNATURE-----')) {
    return fail('unsupported_signature', 'carries a signature block that is neither OpenPGP, SSH nor X.509');
  }

  let signature: Signature;
  try {
    signature = await openpgp.readSignature({ armoredSignature: armored });
  } catch {
    return fail('bad_signature', 'carries an OpenPGP signature that cannot be read (it is damaged)');
  }
  if (signature.packets.length !== 1) {
    return fail('bad_signature', `carries ${signature.packets.length} signatures in one block; secd accepts exactly one`);
  }
  const packet = signature.packets[0]!;
  const { binary, text } = openpgp.enums.signature;
  if (packet.signatureType !== binary && packet.signatureType !== text) {
    return fail('bad_signature', 'carries an OpenPGP signature of a kind git does not make (not a signature over data)');
  }
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
    if ((await userIdState(m.candidate.key, committerEmail, now)).state === 'valid') {
      chosen = m;
      break;
    }
  }
  const { candidate, signingKey } = chosen;
  const key = candidate.key;
  const fingerprint = key.getFingerprint().toUpperCase();
  const owner = `${fingerprint} of ${candidate.user.username}`;

  // The math alone: judged at the signature's own time, so that openpgp's clock checks cannot fail
  // it; secd's clock rules follow below.
  const literal = (await openpgp.createMessage({ binary: new Uint8Array(commit.payload) })).packets.findPacket(
    openpgp.enums.packet.literalData,
  );
  try {
    await repairQuickCheck(packet, literal);
    await packet.verify(signingKey.keyPacket, packet.signatureType, literal as object, packet.created ?? undefined, true, COMMIT_SIGNATURE_CONFIG);
  } catch (err) {
    const held = WEAK_DIGESTS.has(packet.hashAlgorithm ?? -1) ? await ed25519Holds(packet, signingKey.keyPacket, literal) : false;
    if (!held) {
      return fail('bad_signature', `carries a signature by key ${owner} that does not match the commit's bytes (${errorMessage(err)})`);
    }
  }
  const created = packet.created ?? now;
  if (created.getTime() > now.getTime() + CLOCK_SKEW_MS) {
    return fail('bad_signature', `carries a signature dated ${created.toISOString()}, later than now; the signing computer's clock is wrong`);
  }
  if (packet.isExpired(now)) {
    return fail('bad_signature', `carries a signature by key ${owner} that expired on ${isoDay(packet.getExpirationTime() as Date)}`);
  }
  if (signingKey.getCreationTime() > created) {
    return fail('bad_signature', `carries a signature dated before key ${owner} was made`);
  }

  // Key status is judged at `now`, not at signing time: a commit signed before a key was revoked
  // (perhaps because it leaked) must not start a run today.
  if (await key.isRevoked(undefined, undefined, now, KEY_CONFIG)) {
    return fail('revoked_key', `is signed with key ${owner}, which is revoked`);
  }
  const subkey = signingKey === key ? null : (signingKey as Subkey);
  if (subkey && (await isSubkeyRevoked(subkey, now))) {
    return fail('revoked_key', `is signed with subkey ${subkey.getKeyID().toHex().toUpperCase()} of key ${owner}, which is revoked`);
  }
  const keyExpiry = await key.getExpirationTime(undefined, KEY_CONFIG);
  if (keyExpiry instanceof Date && keyExpiry <= now) {
    return fail('expired_key', `is signed with key ${owner}, which expired on ${isoDay(keyExpiry)}`);
  }
  if (subkey) {
    const subExpiry = await subkey.getExpirationTime(now, KEY_CONFIG);
    if (subExpiry instanceof Date && subExpiry <= now) {
      return fail('expired_key', `is signed with subkey ${subkey.getKeyID().toHex().toUpperCase()} of key ${owner}, which expired on ${isoDay(subExpiry)}`);
    }
  }
  try {
    await key.getSigningKey(signingKey.getKeyID(), now, undefined, KEY_CONFIG);
  } catch (err) {
    return fail('unknown_key', `is signed with key ${owner}, which GitLab holds but which is not valid for signing (${errorMessage(err)})`);
  }

  const digest = WEAK_DIGESTS.get(packet.hashAlgorithm ?? -1);
  if (digest) {
    return fail('weak_digest', `is signed with a ${digest} digest (key ${owner}), which secd refuses as too weak; SHA-256 or stronger is needed`);
  }
  for (const k of subkey ? [key, subkey] : [key]) {
    const info = k.getAlgorithmInfo();
    const family = SIZED_ALGORITHMS.get(info.algorithm);
    if (family && (info.bits ?? 0) < MIN_KEY_BITS) {
      const which = k === key ? `key ${owner}` : `subkey ${k.getKeyID().toHex().toUpperCase()} of key ${owner}`;
      return fail('weak_key', `is signed with ${which}, ${family} key of ${info.bits ?? 0} bits, which secd refuses as too weak (at least ${MIN_KEY_BITS} bits)`);
    }
  }

  const uid = await userIdState(key, committerEmail, now);
  if (uid.state === 'revoked') {
    return fail('revoked_user_id', `has committer email ${committerEmail}, but the user id of key ${owner} with that email is revoked`);
  }
  if (uid.state === 'absent') {
    const listed = [...uid.valid].join(', ') || 'none';
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

// Whether `email` is vouched for by a user id of `key` at `now`: valid (a user id with that email has
// a valid self-signature), revoked (every user id with it is revoked), or absent; `valid` lists the
// emails that do vouch, for the reason.
async function userIdState(key: PublicKey, email: string, now: Date): Promise<{ state: 'valid' | 'revoked' | 'absent'; valid: Set<string> }> {
  const wanted = email.toLowerCase();
  const valid = new Set<string>();
  let revoked = false;
  for (const user of key.users) {
    const userEmail = user.userID?.email?.toLowerCase();
    if (!userEmail) continue;
    try {
      await user.verify(now, KEY_CONFIG);
      valid.add(userEmail);
    } catch {
      if (userEmail === wanted && (await isUserIdRevoked(user, now))) revoked = true;
    }
  }
  if (wanted && valid.has(wanted)) return { state: 'valid', valid };
  return { state: revoked ? 'revoked' : 'absent', valid };
}

async function isUserIdRevoked(user: User, now: Date): Promise<boolean> {
  for (const certification of user.selfCertifications) {
    if (await user.isRevoked(certification, undefined, now, KEY_CONFIG)) return true;
  }
  return false;
}

// openpgp checks a subkey revocation against one of its binding signatures; any of them revoked
// means the primary key's owner withdrew the subkey.
async function isSubkeyRevoked(subkey: Subkey, now: Date): Promise<boolean> {
  for (const binding of subkey.bindingSignatures) {
    if (await subkey.isRevoked(binding, subkey.mainKey.keyPacket, now, KEY_CONFIG)) return true;
  }
  return false;
}

// openpgp will not run Ed25519 math over a digest shorter than 256 bits (RFC 9580 §5.2.3.3), though
// gpg does, and SHA-1 Ed25519 commits exist. For those alone secd checks the Ed25519 math itself
// (node:crypto, over openpgp's digest), only to tell which refusal is true: weak_digest when the math
// holds, bad_signature when it does not. Its answer never lets a commit through.
async function ed25519Holds(sig: SignaturePacket, keyPacket: Key['keyPacket'] | Subkey['keyPacket'], data: unknown): Promise<boolean> {
  const { eddsaLegacy, ed25519 } = openpgp.enums.publicKey;
  if (sig.publicKeyAlgorithm !== eddsaLegacy && sig.publicKeyAlgorithm !== ed25519) return false;
  const digest = await digestOf(sig, data);
  const params = (await (sig as unknown as { params: unknown }).params) as { r?: Uint8Array; s?: Uint8Array; RS?: Uint8Array };
  const signature = params.RS ?? (params.r && params.s ? Buffer.concat([leftPad(params.r, 32), leftPad(params.s, 32)]) : null);
  const point = keyPacket.publicParams as { Q?: Uint8Array; A?: Uint8Array };
  const raw = point.A ?? point.Q?.subarray(1);
  if (!digest || !signature || signature.length !== 64 || !raw || raw.length !== 32) return false;
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' });
  return cryptoVerify(null, digest, key, signature);
}

function leftPad(bytes: Uint8Array, length: number): Buffer {
  return Buffer.concat([Buffer.alloc(Math.max(0, length - bytes.length)), bytes]);
}

// openpgp's own digest of what a signature packet covers; not in its type declarations, but the
// method its verify() calls, so the digest is the one the math will use.
interface DigestingSignature {
  hash(signatureType: number, data: unknown): Promise<Uint8Array>;
}

// Put the true first two digest bytes into a signature's quick-check field (see the header: gpg
// ignores the field, and it is covered by no signature). The math is untouched and still decides.
async function repairQuickCheck(sig: SignaturePacket, data: unknown): Promise<void> {
  if (!sig.signedHashValue || sig.version !== 4) return;
  const digest = await digestOf(sig, data);
  if (!digest) return; // a digest openpgp cannot compute: its verify() refuses the signature, with its reason
  if (digest[0] !== sig.signedHashValue[0] || digest[1] !== sig.signedHashValue[1]) {
    sig.signedHashValue = digest.slice(0, 2);
  }
}

async function digestOf(sig: SignaturePacket, data: unknown): Promise<Uint8Array | null> {
  if (sig.signatureType === null) return null;
  try {
    const digest = await (sig as unknown as DigestingSignature).hash(sig.signatureType, data);
    return digest instanceof Uint8Array && digest.length >= 2 ? digest : null;
  } catch {
    return null;
  }
}

// Every self-signature, binding (with its embedded back-signature) and revocation of a key, with the
// data each one covers, as openpgp passes it to verify().
async function repairKeyQuickChecks(key: PublicKey): Promise<void> {
  const primary = key.keyPacket;
  const direct = (key as unknown as { directSignatures?: SignaturePacket[] }).directSignatures ?? [];
  for (const sig of [...direct, ...key.revocationSignatures]) await repairQuickCheck(sig, { key: primary });
  for (const user of key.users) {
    const data = { key: primary, userID: user.userID, userAttribute: user.userAttribute };
    for (const sig of [...user.selfCertifications, ...user.revocationSignatures]) await repairQuickCheck(sig, data);
  }
  for (const subkey of key.subkeys) {
    const data = { key: primary, bind: subkey.keyPacket };
    for (const sig of [...subkey.bindingSignatures, ...subkey.revocationSignatures]) {
      await repairQuickCheck(sig, data);
      if (sig.embeddedSignature) await repairQuickCheck(sig.embeddedSignature, data);
    }
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}
