/**
 * Why a commit's signature is refused (DESIGN §13): stable codes that verification, the commit
 * status, the run page and the researcher guide share. Each code names one true cause; the sentence
 * a researcher reads, with the fix, lives in signature-reasons.ts.
 */

/** Every reason a commit (or a push) is refused for its signature or its signer. */
export const SIGNATURE_FAILURE_CODES = [
  /** no signature at all */
  'unsigned',
  /** signed, but by no key GitLab holds for a member who may vouch for it */
  'unknown_key',
  /** the signature's math fails over the commit's bytes: the commit really changed, or the signature is damaged */
  'bad_signature',
  /** the key (or the subkey that signed) had expired when the commit was signed */
  'expired_key',
  /** the key (or its signing subkey) is revoked */
  'revoked_key',
  /** the only user id of the key with the committer's email is revoked */
  'revoked_user_id',
  /** the committer email is not a user id of the key, or not one of the key owner's own GitLab emails */
  'email_mismatch',
  /** the signature uses SHA-1 (or a weaker digest): refused, with the gpg settings that fix it */
  'weak_digest',
  /** the key is RSA/DSA under 2048 bits (or otherwise too weak): refused, make a new key */
  'weak_key',
  /** the newest commit is signed, but not by the pusher's own key */
  'not_pushers_key',
  /** an X.509 (gpgsm) signature, or another kind secd does not verify */
  'unsupported_signature',
] as const;

/** Why a commit is not accepted. */
export type SignatureFailureCode = (typeof SIGNATURE_FAILURE_CODES)[number];

/** Which kind of signature a commit carries (git's gpg.format: openpgp, ssh or x509). */
export type SignatureKind = 'openpgp' | 'ssh' | 'x509';
