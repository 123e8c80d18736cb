/**
 * What a researcher reads when secd refuses a commit for its signature (DESIGN §13): one sentence,
 * "commit <sha8> <clause>: <fix>", where the clause (from the verifier) says the true cause and the
 * fix (from here) says what to type. The same words go to the commit status and the run page, so a
 * fix names exact commands and settings, never "check your setup".
 *
 * Fixes that rewrite a commit (`git commit --amend`) need a force-push, which GitLab refuses on a
 * protected branch; the history paths (rewrite, or vouch for it from a later commit) are added by the
 * caller through refusalReason's `extra`, since only the push's verifier knows which commits they
 * concern.
 */
import type { SignatureFailureCode } from './signature-codes.js';

// Re-signing the refused commit: the tail of most fixes.
const RESIGN = 're-sign the commit (git commit --amend --no-edit -S) and push again';

const HELP: Record<SignatureFailureCode, string> = {
  unsigned:
    "sign your commits (git config commit.gpgsign true), re-sign this one (git commit --amend --no-edit -S, or git rebase --exec 'git commit --amend --no-edit -S' <base> for several) and push again",
  unknown_key:
    'add the public key to your GitLab profile (Preferences > GPG Keys; print it with gpg --armor --export <key id>) or sign with a key that is there (git config user.signingkey <key id>), then push again',
  bad_signature: `the commit's bytes do not match its signature: it was changed after it was signed, or the signature is damaged; check that the commit is yours (git log --show-signature -1 <commit>), then ${RESIGN}`,
  expired_key: `extend the key (gpg --quick-set-expire <fingerprint> 2y, and for a signing subkey gpg --quick-set-expire <fingerprint> 2y '*'), upload the public key to GitLab again (gpg --armor --export <fingerprint>), then ${RESIGN}`,
  revoked_key: `sign with a key that is not revoked (make one: gpg --quick-gen-key 'Your Name <you@example.org>' ed25519 sign 2y), add its public part to your GitLab profile, set it (git config user.signingkey <fingerprint>), then ${RESIGN}`,
  revoked_user_id: `add a new user id with that email to your key (gpg --quick-add-uid <fingerprint> 'Your Name <email>'), upload the public key to GitLab again (gpg --armor --export <fingerprint>), then ${RESIGN}; or commit with an email of a user id that is not revoked (git config user.email <email>)`,
  email_mismatch: `commit with an email that is a user id of your key and one of your GitLab emails (git config user.email <email>), or add that email to the key (gpg --quick-add-uid <fingerprint> 'Your Name <email>') and upload it to GitLab again, then ${RESIGN}`,
  weak_digest: `tell gpg to sign with SHA-512: add the line "personal-digest-preferences SHA512" to ~/.gnupg/gpg.conf and remove any "digest-algo SHA1" line there (or sign through a wrapper: mkdir -p ~/bin; printf '#!/bin/sh\\nexec gpg --digest-algo SHA512 "$@"\\n' > ~/bin/gpg-sha512; chmod +x ~/bin/gpg-sha512; git config --global gpg.program ~/bin/gpg-sha512); if your key is DSA-1024 (gpg --list-keys shows dsa1024), it is refused as too weak anyway: make a new key instead (gpg --quick-gen-key 'Your Name <you@example.org>' ed25519 sign 2y); then ${RESIGN}`,
  weak_key: `make a new key (gpg --quick-gen-key 'Your Name <you@example.org>' ed25519 sign 2y, or rsa4096 in place of ed25519), add its public part to your GitLab profile (gpg --armor --export <fingerprint>), set it (git config user.signingkey <fingerprint>), then ${RESIGN}`,
  not_pushers_key: `the newest commit of a push must be signed by the person who pushes it: sign it with your own key (git commit --amend --no-edit -S, or add a signed commit on top: git commit --allow-empty -S -m 'Run') and push again, or let the signer push it`,
  unsupported_signature: `sign with GPG (git config gpg.format openpgp) or with an SSH key whose usage in GitLab includes signing (git config gpg.format ssh; git config user.signingkey ~/.ssh/id_ed25519.pub), then ${RESIGN}`,
};

/** The fix for `code`: exact commands a researcher can run; reads after "…: ". */
export function signatureHelp(code: SignatureFailureCode): string {
  const help = HELP[code];
  if (help === undefined) throw new Error(`no help text for signature failure code "${String(code)}"`);
  return help;
}

/**
 * The whole refusal a researcher reads: "commit <sha8> <clause>: <fix>" on one line; `extra` (for
 * instance the history paths, rewrite or vouch) follows the fix after "; ".
 */
export function refusalReason(code: SignatureFailureCode, sha: string, clause: string, extra?: string): string {
  if (!/^[0-9a-f]{4,64}$/.test(sha)) throw new Error(`refusalReason: "${sha}" is not a commit id`);
  if (clause.trim() === '') throw new Error(`refusalReason: the clause for ${code} is empty`);
  const tail = extra && extra.trim() !== '' ? `; ${extra.trim()}` : '';
  return oneLine(`commit ${sha.slice(0, 8)} ${clause.trim()}: ${signatureHelp(code)}${tail}`);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
