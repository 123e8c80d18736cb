import { describe, expect, it } from 'vitest';
import { SIGNATURE_FAILURE_CODES, type SignatureFailureCode } from './signature-codes.js';
import { refusalReason, signatureHelp } from './signature-reasons.js';

const SHA = '1a2b3c4d5e6f708192a3b4c5d6e7f80912a3b4c5';

// The command each fix must give, so that a researcher can act without looking anything up.
const COMMAND: Record<SignatureFailureCode, string> = {
  unsigned: 'git config commit.gpgsign true',
  unknown_key: 'gpg --armor --export',
  bad_signature: 'git commit --amend --no-edit -S',
  expired_key: 'gpg --quick-set-expire',
  revoked_key: 'gpg --quick-gen-key',
  revoked_user_id: 'gpg --quick-add-uid',
  email_mismatch: 'git config user.email',
  weak_digest: 'personal-digest-preferences SHA512',
  weak_key: "gpg --quick-gen-key 'Your Name <you@example.org>' ed25519 sign",
  not_pushers_key: 'signed by the person who pushes it',
  unsupported_signature: 'git config gpg.format ssh',
};

describe('the fix for every signature failure code', () => {
  it.each(SIGNATURE_FAILURE_CODES)('%s has a fix with the exact command', (code) => {
    const help = signatureHelp(code);
    expect(help).toContain(COMMAND[code]);
    expect(help).not.toContain('\n');
    expect(help).not.toMatch(/[.;:]$/);
  });

  it('gives a weak digest the gpg.conf line and the gpg.program wrapper, and a weak key rsa4096 as the other choice', () => {
    expect(signatureHelp('weak_digest')).toContain('~/.gnupg/gpg.conf');
    expect(signatureHelp('weak_digest')).toContain('git config --global gpg.program');
    expect(signatureHelp('weak_key')).toContain('rsa4096');
  });

  it('says the newest commit must be signed by its pusher, and offers OpenPGP or SSH for an unsupported kind', () => {
    expect(signatureHelp('not_pushers_key')).toContain('newest commit');
    expect(signatureHelp('unsupported_signature')).toContain('git config gpg.format openpgp');
  });

  it('refuses a code it does not know, naming it', () => {
    expect(() => signatureHelp('tampered' as SignatureFailureCode)).toThrow(/"tampered"/);
  });
});

describe('the refusal a researcher reads', () => {
  it('reads "commit <sha8> <clause>: <fix>" on one line', () => {
    const reason = refusalReason('weak_digest', SHA, 'is signed with a SHA-1 digest (key ABC of ada), which secd refuses as too weak');
    expect(reason).toBe(`commit 1a2b3c4d is signed with a SHA-1 digest (key ABC of ada), which secd refuses as too weak: ${signatureHelp('weak_digest')}`);
  });

  it('appends extra text (such as the history paths) after the fix, and folds line breaks', () => {
    const reason = refusalReason('unsigned', SHA, 'is not signed', 'or vouch for it:\n  add a trailer');
    expect(reason).toBe(`commit 1a2b3c4d is not signed: ${signatureHelp('unsigned')}; or vouch for it: add a trailer`);
  });

  it('takes a short id as it is', () => {
    expect(refusalReason('unsigned', '1a2b3c4d', 'is not signed')).toMatch(/^commit 1a2b3c4d is not signed: /);
  });

  it('refuses a sha that is not a commit id and an empty clause, naming what is wrong', () => {
    expect(() => refusalReason('unsigned', 'HEAD', 'is not signed')).toThrow(/"HEAD" is not a commit id/);
    expect(() => refusalReason('unsigned', SHA, '  ')).toThrow(/clause for unsigned is empty/);
  });
});
