/**
 * `secd check`'s look at the commits a push would send (`@{upstream}..HEAD`; with no upstream, the
 * commits of HEAD that no remote-tracking branch has, which is all of them in a repository that was
 * never pushed, as the leader checks every unverified ancestor of a new branch): each signed, none bad, expired or revoked, the newest signed by the researcher's own key,
 * their own commits with an email of that key (DESIGN §13). A refused commit that a later commit of
 * the researcher's vouches for (`Secd-Vouches-For`) passes, as at the leader.
 *
 * git verifies the signatures (`%G?`): gpg with the researcher's keyring for OpenPGP; for SSH, git
 * is handed an empty allowed-signers file, so a good signature reads `U` and its key's fingerprint
 * (`%GK`) is compared with the researcher's own. What only GitLab knows — which keys and emails belong
 * to whom — the leader checks; a signature this keyring cannot check is a note, not an error.
 */
import type { SignatureFailureCode } from '../../scheduler/verify/signature-codes.js';
import { refusalReason } from '../../scheduler/verify/signature-reasons.js';
import { LISTED_COMMITS, VOUCH_TRAILER, vouchCommand, vouchedCommits, whichCommits } from '../../scheduler/verify/vouch-trailers.js';
import { error, note, ok, type Finding } from './check-findings.js';
import type { OwnKey } from './check-signing.js';

/** `git log --format` giving what checkCommits reads, one record per commit (RS-separated, US between fields). */
export const COMMIT_LOG_FORMAT = '%x1e%H%x1f%P%x1f%G?%x1f%GK%x1f%GF%x1f%GP%x1f%ce%x1f%s%x1f%B';

/** The settings for that `git log`: SSH signatures checked against no one, so good ones read `U`. */
export const COMMIT_LOG_SETTINGS = [{ key: 'gpg.ssh.allowedSignersFile', value: '/dev/null' }];

/** One commit as the log gives it. */
export interface LoggedCommit {
  sha: string;
  parent: string | null;
  /** git's %G?: G good, U good (validity unknown), X expired signature, Y expired key, R revoked key, B bad, E cannot check, N none. */
  status: string;
  /** %GK: the long key id (OpenPGP) or `SHA256:…` (SSH). */
  key: string;
  /** %GF and %GP: signing and primary key fingerprints (OpenPGP hex, when the key is here; SSH: as %GK). */
  fingerprint: string;
  primary: string;
  committerEmail: string;
  subject: string;
  message: string;
}

/** Parses the output of `git log --format=COMMIT_LOG_FORMAT`, newest first as git lists them. */
export function parseCommitLog(out: string): LoggedCommit[] {
  return out
    .split('\x1e')
    .filter((r) => r.trim() !== '')
    .map((r) => {
      const [sha, parents, status, key, fingerprint, primary, committerEmail, subject, ...rest] = r.split('\x1f');
      return {
        sha: sha!.trim(),
        parent: parents?.trim().split(' ')[0] || null,
        status: status ?? 'N',
        key: key ?? '',
        fingerprint: fingerprint ?? '',
        primary: primary ?? '',
        committerEmail: committerEmail ?? '',
        subject: subject ?? '',
        message: rest.join('\x1f'),
      };
    });
}

interface Verdict {
  ok: boolean;
  code?: SignatureFailureCode;
  clause?: string;
  /** Signed validly by the researcher's own key. */
  own: boolean;
}

/** The findings for the commits a push would send; `range` names them for the report. */
export function checkCommits(newestFirst: readonly LoggedCommit[], own: OwnKey | null, range: string): Finding[] {
  if (newestFirst.length === 0) return [ok('commits', `nothing to push: ${range} is empty`)];
  const commits = [...newestFirst].reverse();
  const out: Finding[] = [];
  const verdicts = commits.map((c) => judge(c, own));
  const head = commits[commits.length - 1]!;
  const headVerdict = verdicts[verdicts.length - 1]!;
  if (headVerdict.ok && !headVerdict.own && own !== null && own.fingerprints.length > 0) {
    verdicts[verdicts.length - 1] = {
      ok: false,
      own: false,
      code: 'not_pushers_key',
      clause: `is the newest commit, the one that runs, but it is signed by key ${head.fingerprint || head.key}, not by your signing key ${own.label}`,
    };
  }
  // A later commit signed by the researcher's own key may vouch for a refused one.
  const vouchedBy = new Map<string, string>();
  commits.forEach((c, i) => {
    if (verdicts[i]!.ok && verdicts[i]!.own) for (const sha of vouchedCommits(c.message)) if (!vouchedBy.has(sha)) vouchedBy.set(sha, c.sha);
  });
  const refused: Array<{ c: LoggedCommit; v: Verdict }> = [];
  commits.forEach((c, i) => {
    const v = verdicts[i]!;
    if (v.ok) return;
    const by = vouchedBy.get(c.sha);
    if (by !== undefined && commits.findIndex((x) => x.sha === by) > i && v.code !== 'not_pushers_key') {
      out.push(note('commits', `commit ${c.sha.slice(0, 8)} (${c.subject}) ${v.clause}, but ${by.slice(0, 8)} vouches for it (${VOUCH_TRAILER})`));
    } else {
      refused.push({ c, v });
    }
  });
  const uncheckable = commits.filter((c, i) => verdicts[i]!.ok && c.status === 'E');
  if (uncheckable.length > 0) {
    out.push(note('commits', `${uncheckable.length} commit${uncheckable.length === 1 ? ' is' : 's are'} signed by keys this keyring does not hold (${uncheckable.map((c) => c.sha.slice(0, 8)).join(', ')}); the leader checks them against their signers' GitLab keys`));
  }
  for (const [i, c] of commits.entries()) {
    const v = verdicts[i]!;
    if (v.ok && v.own && own?.emails === null && c.committerEmail !== '' && i === commits.length - 1) {
      out.push(note('commits', `the newest commit's committer email is ${c.committerEmail}: it must be one of your verified GitLab emails`));
    }
  }
  if (refused.length === 0) {
    out.push(ok('commits', `${commits.length} commit${commits.length === 1 ? '' : 's'} to push (${range}), all signed${own ? `; the newest by your key ${own.label}` : ''}`));
    return out;
  }
  const first = refused[0]!;
  let extra: string | undefined;
  if (first.v.code !== 'not_pushers_key') {
    const list = refused.filter((r) => r.v.code !== 'not_pushers_key');
    const base = first.c.parent ?? '--root';
    const shas = list.map((r) => r.c.sha);
    extra =
      `to fix ${whichCommits(shas)} either rewrite the history signed: git rebase --exec 'git commit --amend --no-edit -S' ${base}` +
      ` (before pushing nothing else is needed; once pushed, git push --force-with-lease where the branch allows it); ` +
      `or vouch for ${list.length === 1 ? 'it' : 'them'} without rewriting: ${vouchCommand(shas, first.c.parent ?? null)}, then git push (no force needed)`;
  }
  const line = refusalReason(first.v.code!, first.c.sha, `(${first.c.subject}) ${first.v.clause!}`, extra);
  out.push(error('commits', line));
  if (refused.length > 1) {
    const rest = refused.slice(1);
    const named = rest.slice(0, LISTED_COMMITS).map((r) => `${r.c.sha.slice(0, 8)} (${r.v.code})`).join(', ');
    const more = rest.length > LISTED_COMMITS ? ` and ${rest.length - LISTED_COMMITS} more` : '';
    out.push(error('commits', `${rest.length} more commit${rest.length === 1 ? '' : 's'} would be refused: ${named}${more}`));
  }
  return out;
}

/** One commit's signature, judged as the leader would where it can be judged here. */
function judge(c: LoggedCommit, own: OwnKey | null): Verdict {
  const isSsh = c.key.startsWith('SHA256:');
  const mine =
    own !== null &&
    (isSsh
      ? own.format === 'ssh' && own.fingerprints.includes(c.key)
      : own.format === 'openpgp' &&
        own.fingerprints.some((f) => f === c.fingerprint.toUpperCase() || f === c.primary.toUpperCase() || (c.key.length >= 16 && f.endsWith(c.key.toUpperCase()))));
  switch (c.status) {
    case 'G':
    case 'U':
    case 'E':
      if (mine && !isSsh && own!.emails !== null && !own!.emails.includes(c.committerEmail.toLowerCase())) {
        return { ok: false, own: true, code: 'email_mismatch', clause: `has committer email ${c.committerEmail}, which is not a user id of your key ${own!.label}` };
      }
      return { ok: true, own: mine };
    case 'X':
      return { ok: false, own: mine, code: 'expired_key', clause: `has a signature that has expired (key ${c.key})` };
    case 'Y':
      return { ok: false, own: mine, code: 'expired_key', clause: `is signed by key ${c.key}, which has expired` };
    case 'R':
      return { ok: false, own: mine, code: 'revoked_key', clause: `is signed by key ${c.key}, which is revoked` };
    case 'B':
      return { ok: false, own: mine, code: 'bad_signature', clause: `has a signature that does not match its content (key ${c.key || 'unknown'})` };
    case 'N':
    default:
      return { ok: false, own: false, code: 'unsigned', clause: 'is not signed' };
  }
}

/** A line for a repository without a commit, or without a repository. */
export function noCommits(why: 'no_repository' | 'no_commit'): Finding {
  return why === 'no_repository'
    ? error('commits', 'not a git repository: secd runs what is pushed to GitLab; clone the project (git clone <url>) and work in the clone')
    : error('commits', 'no commit yet: commit your work signed (git add -A; git commit -S -m "First run") before pushing');
}

/** The note for changes a push would not send. */
export const uncommittedNote = (n: number): Finding =>
  note('files', `${n} file${n === 1 ? ' has' : 's have'} changes that are not committed: a push sends only what is committed`);
