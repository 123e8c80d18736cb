/**
 * Verification of a push before anything of it runs (DESIGN §13). secd checks the signatures itself,
 * over the bytes in its own mirror; from GitLab it trusts only who the members are and which keys and
 * emails are theirs. The rules, in the order a refusal names them:
 *
 * - The pusher (the hook's `user_id`, authenticated by the webhook secret) must be an active member
 *   of the project with Developer access (30) or more: the run acts with their grants.
 * - Every commit not yet verified for this project is checked: `before..after` when secd verified
 *   `before` itself, otherwise every unverified ancestor of `after` (a rejected push leaves its
 *   commits in the mirror; a signed commit on top must not carry them in).
 * - Each is signed (OpenPGP, or SSH with a key GitLab holds for signing; X.509 is refused) by an
 *   active member's key, and its committer email is a user id of that key (OpenPGP) and one of the
 *   key owner's own verified GitLab emails, so a key claiming a colleague's email counts for nobody.
 * - The newest commit (the one that runs) is signed by the pusher's own key. GitLab's "Test push
 *   events" button sends the default branch's last commits as a push by whoever clicked: it runs only
 *   when that person signed the newest commit.
 * - A commit refused above is accepted when a later commit of the same push, signed by the pusher,
 *   names it in a `Secd-Vouches-For: <full sha>` trailer (vouch-trailers.ts); the verdict lists who
 *   vouched for what, for the run's events.
 */
import { failpoint } from '../common/failpoints.js';
import { signatureKind, verifyCommitSignature, type KeyOwner, type ObjectFormat } from './commit-signature.js';
import { parseCommit } from './commit-object.js';
import type { GitMirror } from './git-mirror.js';
import type { KeyCache } from './key-cache.js';
import { loadMemberKeyring, type KeyringGitLab, type MemberKeyring } from './member-keyring.js';
import type { SignatureFailureCode } from './signature-codes.js';
import { refusalReason } from './signature-reasons.js';
import { verifySshCommitSignature } from './ssh-signature.js';
import { vouchCommand, vouchedCommits, whichCommits } from './vouch-trailers.js';
import { errorText } from '../common/errors.js';
import { redactCredentials, urlSecrets } from '../common/redact.js';
import { isCommitId } from '../contract/commit-id.js';

/** What a push hook tells secd about one push, plus a way to ask which commits passed before. */
export interface VerifyPushInput {
  projectId: number;
  /** The branch tip before the push; forty zeros when the branch is new. */
  before: string;
  /** The branch tip after the push: the commit that would run. */
  after: string;
  /** Where to fetch from; for HTTP it carries `oauth2:<token>@`, which never appears in a reason. */
  fetchUrl: string;
  /** Who pushed: the hook's `user_id` (null when the hook named none) and `user_username`, for reasons. */
  pusher: { id: number | null; username: string };
  /**
   * Whether `sha` was verified for this project by an earlier push (the leader asks its state
   * database: async; a set in memory may answer at once).
   */
  alreadyVerified: (sha: string) => Promise<boolean> | boolean;
}

/** The ports verifyPush works through. */
export interface VerifyPushDeps {
  mirror: GitMirror;
  gitlab: KeyringGitLab;
  now: () => Date;
  /** Parsed GPG keys kept between pushes; without it every push parses every key. */
  keyCache?: KeyCache;
}

/**
 * Why a push was refused: a signature problem, a pusher who may not run code in the project, or secd
 * could not get the commits or the keys.
 */
export type PushFailureCode = SignatureFailureCode | 'pusher_not_member' | 'fetch_failed' | 'gitlab_failed';

/** One refused commit accepted because a later commit, signed by the pusher, vouched for it. */
export interface Vouch {
  /** The full id of the vouched-for commit. */
  commit: string;
  /** The pusher's username (who signed the vouching commit). */
  by: string;
  /** The full id of the commit whose trailer vouched. */
  in: string;
}

/** The verdict on a push: the verified commits and who signed the head, or the first bad commit and why. */
export type PushVerdict =
  | {
      ok: true;
      /** Verified (or vouched-for) commits, oldest first; always ends with the head. */
      commits: string[];
      head: { sha: string; fingerprint: string; username: string; userId: number; committerEmail: string };
      /** Commits accepted by a `Secd-Vouches-For` trailer, oldest first. */
      vouched: Vouch[];
    }
  | {
      ok: false;
      code: PushFailureCode;
      /** Short (8-character) id of the first bad commit, or of the head when nothing could be checked. */
      commit: string;
      /** One line a researcher can act on; never holds a token. */
      reason: string;
    };

/** The all-zero id GitLab sends as `before` for a new branch and as `after` for a deleted one. */
export const ZERO_SHA = '0000000000000000000000000000000000000000';

/** GitLab's Developer access level: the least a pusher needs. */
export const MIN_PUSHER_ACCESS = 30;

const ACCESS_NAMES: Record<number, string> = { 0: 'no', 5: 'Minimal', 10: 'Guest', 20: 'Reporter', 30: 'Developer', 40: 'Maintainer', 50: 'Owner' };

/** Fetch a push into the mirror, then check the pusher and every unverified commit (see the header). */
export async function verifyPush(input: VerifyPushInput, deps: VerifyPushDeps): Promise<PushVerdict> {
  const { mirror } = deps;
  const headShort = short(input.after);
  if (!isCommitId(input.after) || input.after === ZERO_SHA) {
    return { ok: false, code: 'fetch_failed', commit: headShort, reason: `the push names no commit to run (after = ${headShort})` };
  }
  const objectFormat: ObjectFormat = input.after.length === 64 ? 'sha256' : 'sha1';

  // Members and keys come from GitLab's API, the commits from git: ask both at once (a push's answer
  // time is what a researcher waits for).
  const keyringAnswer = loadMemberKeyring(input.projectId, deps.gitlab, deps.keyCache).then(
    (keyring) => ({ ok: true as const, keyring }),
    (err: unknown) => ({ ok: false as const, err }),
  );
  try {
    await mirror.ensure();
    // Ask for the pushed commit by id: one small negotiation, however many branches (secd's results
    // branches among them) the project has. A server that refuses wants by id gets asked for every
    // branch instead.
    try {
      await mirror.fetch(input.fetchUrl, [input.after]);
    } catch {
      await mirror.fetch(input.fetchUrl, ['refs/heads/*']);
    }
  } catch (err) {
    const detail = redactCredentials(errorText(err), urlSecrets(input.fetchUrl));
    return { ok: false, code: 'fetch_failed', commit: headShort, reason: `could not fetch commit ${headShort} from GitLab: ${detail}` };
  }
  if (!(await mirror.hasCommit(input.after))) {
    return { ok: false, code: 'fetch_failed', commit: headShort, reason: `commit ${headShort} is not in the repository any more` };
  }
  // Crash tests stop the leader here: the mirror holds the push, nothing is checked yet.
  failpoint('leader.verify.fetched');

  const answer = await keyringAnswer;
  if (!answer.ok) {
    const detail = oneLine(errorText(answer.err));
    return { ok: false, code: 'gitlab_failed', commit: headShort, reason: `could not read the project's members and keys from GitLab: ${detail}` };
  }
  const { keyring } = answer;
  const pusherProblem = checkPusher(input.pusher, keyring);
  if (pusherProblem) return { ok: false, code: 'pusher_not_member', commit: headShort, reason: pusherProblem };
  const pusher: KeyOwner = { id: input.pusher.id!, username: input.pusher.username };

  const commits = await commitsToCheck(input, mirror);
  const now = deps.now();
  const checked: Checked[] = [];
  for (const sha of commits) {
    const raw = await mirror.readCommit(sha);
    const parsed = parseCommit(raw, objectFormat);
    checked.push({ sha, parent: parsed.parents[0] ?? null, vouches: vouchedCommits(parsed.message), verdict: await checkCommit(raw, keyring, now, objectFormat) });
  }

  // The newest commit runs with the pusher's grants: it must be theirs.
  const head = checked[checked.length - 1]!;
  if (head.verdict.ok && head.verdict.user.id !== pusher.id) {
    head.verdict = {
      ok: false,
      code: 'not_pushers_key',
      reason:
        `is the newest commit of a push by ${pusher.username}, but it is signed by ${head.verdict.user.username} ` +
        `(key ${head.verdict.fingerprint}); a run acts with the pusher's grants, so it runs only when the pusher signed it`,
      openpgp: true,
    };
  }

  // Vouching: a trailer counts only in a commit the pusher signed, for a commit older than it.
  const voucher = new Map<string, { index: number; in: string }>();
  checked.forEach((c, index) => {
    if (!c.verdict.ok || c.verdict.user.id !== pusher.id) return;
    for (const sha of c.vouches) if (!voucher.has(sha)) voucher.set(sha, { index, in: c.sha });
  });
  const vouched: Vouch[] = [];
  const refused: Array<{ index: number; c: Checked }> = [];
  checked.forEach((c, index) => {
    if (c.verdict.ok) return;
    const v = voucher.get(c.sha);
    if (v && v.index > index) vouched.push({ commit: c.sha, by: pusher.username, in: v.in });
    else refused.push({ index, c });
  });
  if (refused.length > 0) return refusal(refused, pusher);

  const signed = head.verdict as Accepted;
  // Every commit checked, nothing recorded yet.
  failpoint('leader.verify.checked');
  return {
    ok: true,
    commits,
    head: { sha: head.sha, fingerprint: signed.fingerprint, username: signed.user.username, userId: signed.user.id, committerEmail: signed.committerEmail },
    vouched,
  };
}

type Accepted = { ok: true; fingerprint: string; user: KeyOwner; committerEmail: string };
type Refused = { ok: false; code: SignatureFailureCode; reason: string; /** the clause wants the OpenPGP fix after it */ openpgp: boolean };

interface Checked {
  sha: string;
  /** First parent, for the rewrite command's base; null for a root commit. */
  parent: string | null;
  /** Commits this one's message vouches for. */
  vouches: string[];
  verdict: Accepted | Refused;
}

/** Why the pusher may not run code in the project, or null when they may. */
function checkPusher(pusher: VerifyPushInput['pusher'], keyring: MemberKeyring): string | null {
  const who = `${pusher.username} (GitLab user ${pusher.id ?? 'unknown'})`;
  const ask = 'ask a Maintainer of the project to give you Developer access, then push again';
  if (pusher.id === null) return `the push hook names no GitLab user id for ${pusher.username}, so secd cannot check that the pusher is a member: the push does not run`;
  const member = keyring.members.find((m) => m.id === pusher.id);
  if (!member) return `the push was made by ${who}, who is not a member of this project; secd runs pushes only of members with Developer access or more: ${ask}`;
  if (member.state !== 'active') return `the push was made by ${who}, whose GitLab account is ${member.state}; only active members' pushes run`;
  if (member.access_level < MIN_PUSHER_ACCESS) {
    const level = ACCESS_NAMES[member.access_level] ?? `level ${member.access_level}`;
    return `the push was made by ${who}, who has ${level} access to this project; secd runs pushes only of members with Developer access or more: ${ask}`;
  }
  return null;
}

/** The commits to check, oldest first, ending with the head. */
async function commitsToCheck(input: VerifyPushInput, mirror: GitMirror): Promise<string[]> {
  // `before` bounds the range only when secd verified it itself: a commit of a rejected push is in
  // the mirror but not verified, and neither is a tip of a force push the mirror never saw.
  const trusted = input.before !== ZERO_SHA && (await input.alreadyVerified(input.before)) && (await mirror.hasCommit(input.before));
  const commits = trusted
    ? await mirror.revList(input.after, [input.before])
    : await notYetVerified(await mirror.revList(input.after, []), input.alreadyVerified);
  // The head always needs a current signer: it is what runs, and run.json names its key.
  if (commits[commits.length - 1] !== input.after) commits.push(input.after);
  return commits;
}

/** How many commits are asked about at once (a first push of a long history asks about each). */
const VERIFIED_LOOKUPS_AT_ONCE = 32;

/** `shas` less those verified before, in their order; asked a few at a time, not one after another. */
async function notYetVerified(shas: readonly string[], alreadyVerified: VerifyPushInput['alreadyVerified']): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < shas.length; i += VERIFIED_LOOKUPS_AT_ONCE) {
    const batch = shas.slice(i, i + VERIFIED_LOOKUPS_AT_ONCE);
    const seen = await Promise.all(batch.map((sha) => alreadyVerified(sha)));
    batch.forEach((sha, j) => {
      if (!seen[j]) out.push(sha);
    });
  }
  return out;
}

/** One commit's signature by its kind, and the email rule for OpenPGP (the SSH verifier applies it itself). */
async function checkCommit(raw: Buffer, keyring: MemberKeyring, now: Date, objectFormat: ObjectFormat): Promise<Accepted | Refused> {
  const kind = signatureKind(raw, objectFormat);
  if (kind === null) return { ok: false, code: 'unsigned', reason: 'is not signed', openpgp: true };
  if (kind === 'x509') {
    return { ok: false, code: 'unsupported_signature', reason: 'is signed with an X.509 certificate (gpgsm), which secd does not accept', openpgp: true };
  }
  if (kind === 'ssh') {
    const v = await verifySshCommitSignature(raw, keyring.ssh, now, objectFormat);
    // SSH reasons carry their own fix (GitLab's SSH keys page, usage types): no OpenPGP help after them.
    return v.ok ? v : { ...v, openpgp: false };
  }
  const v = await verifyCommitSignature(raw, keyring.gpg, now, objectFormat);
  if (!v.ok) {
    let reason = v.reason;
    if (v.code === 'unknown_key' && keyring.unreadable.length > 0) reason += ` (GitLab keys secd could not read: ${keyring.unreadable.join(', ')})`;
    return { ok: false, code: v.code, reason, openpgp: true };
  }
  const own = keyring.emails.get(v.user.id) ?? [];
  if (!own.includes(v.committerEmail.toLowerCase())) {
    return {
      ok: false,
      code: 'email_mismatch',
      reason:
        `has committer email ${v.committerEmail}, a user id of key ${v.fingerprint} of ${v.user.username}, ` +
        `but not one of the verified emails of ${v.user.username}'s GitLab account (add and verify it in GitLab > Preferences > Emails)`,
      openpgp: true,
    };
  }
  return v;
}

/**
 * The refusal of the first refused commit, with both ways out for every refused commit: rewrite the
 * history signed (needs a force push, which a protected branch forbids: the commits are in GitLab
 * already) or vouch for them in one new signed commit (a plain push). Not for a newest commit signed
 * by someone else: a commit of the pusher's own on top is the fix, and signatureHelp says so.
 */
function refusal(refused: Array<{ index: number; c: Checked }>, pusher: KeyOwner): PushVerdict {
  const first = refused[0]!.c;
  const verdict = first.verdict as Refused;
  // A newest commit signed by another member needs no vouch once it is not the newest any more.
  const fixable = refused.filter(({ c }) => !c.verdict.ok && c.verdict.code !== 'not_pushers_key').map(({ c }) => c);
  let extra: string | undefined;
  if (fixable.length > 0 && verdict.code !== 'not_pushers_key') {
    const base = fixable[0]!.parent ?? '--root';
    const shas = fixable.map((c) => c.sha);
    extra =
      `to fix ${whichCommits(shas)} either rewrite the history signed: git rebase --exec 'git commit --amend --no-edit -S' ${base}, ` +
      `then git push --force-with-lease (only where the branch allows force pushes); ` +
      `or vouch for ${fixable.length === 1 ? 'it' : 'them'} as ${pusher.username} without rewriting: ` +
      `${vouchCommand(shas, fixable[0]!.parent ?? null)}, then git push (no force needed)`;
  }
  const reason = verdict.openpgp
    ? refusalReason(verdict.code, first.sha, verdict.reason, extra)
    : oneLine(`commit ${short(first.sha)} ${verdict.reason}${extra ? `; ${extra}` : ''}`);
  return { ok: false, code: verdict.code, commit: short(first.sha), reason };
}

function short(sha: string): string {
  return sha.slice(0, 8);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
