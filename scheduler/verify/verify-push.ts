/**
 * Verification of a push before anything of it runs: every new commit must be signed with OpenPGP,
 * by a key that GitLab holds for an active member of the project, whose user id carries the
 * committer's email. secd checks the signatures itself, over the bytes in its own mirror.
 */
import { readCandidateKeys, verifyCommitSignature, type CandidateKey, type ObjectFormat, type SignatureFailureCode } from './commit-signature.js';
import type { GitMirror } from './git-mirror.js';
import { signatureHelp } from './signature-reasons.js';
import { errorText } from '../common/errors.js';
import { redactCredentials, urlSecrets } from '../common/redact.js';
import type { GitLabApi, GitLabMember } from '../gitlab/gitlab-port.js';
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
  /** Whether `sha` was verified for this project by an earlier push. */
  alreadyVerified: (sha: string) => boolean;
}

/** The ports verifyPush works through. */
export interface VerifyPushDeps {
  mirror: GitMirror;
  gitlab: Pick<GitLabApi, 'listProjectMembers' | 'listUserGpgKeys'>;
  now: () => Date;
}

/** Why a push was refused: a signature problem, or secd could not get the commits or the keys. */
export type PushFailureCode = SignatureFailureCode | 'fetch_failed' | 'gitlab_failed';

/** The verdict on a push: the verified commits and who signed the head, or the first bad commit and why. */
export type PushVerdict =
  | {
      ok: true;
      /** Verified commits, oldest first; always ends with the head. */
      commits: string[];
      head: { sha: string; fingerprint: string; username: string; userId: number; committerEmail: string };
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

// GitLab answers a few requests at a time well; a project with hundreds of members should not open hundreds.
const GITLAB_CONCURRENCY = 8;

/** Fetch a push into the mirror and verify its commits oldest first, stopping at the first bad one. */
export async function verifyPush(input: VerifyPushInput, deps: VerifyPushDeps): Promise<PushVerdict> {
  const { mirror } = deps;
  const headShort = short(input.after);
  if (!isCommitId(input.after) || input.after === ZERO_SHA) {
    return { ok: false, code: 'fetch_failed', commit: headShort, reason: `the push names no commit to run (after = ${headShort})` };
  }
  const objectFormat: ObjectFormat = input.after.length === 64 ? 'sha256' : 'sha1';

  // Members and keys come from GitLab's API, the commits from git: ask both at once (a push's answer
  // time is what a researcher waits for).
  const keyringAnswer = loadKeyring(input.projectId, deps.gitlab).then(
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

  // A new branch, or a force push from a tip the mirror never saw: before..after cannot be computed,
  // so every commit under the head that this project has not verified yet is checked.
  const fromScratch = input.before === ZERO_SHA || !(await mirror.hasCommit(input.before));
  const commits = fromScratch
    ? (await mirror.revList(input.after, [])).filter((sha) => !input.alreadyVerified(sha))
    : await mirror.revList(input.after, [input.before]);
  // The head always needs a current signer: it is what runs, and run.json names its key.
  if (commits[commits.length - 1] !== input.after) commits.push(input.after);

  const answer = await keyringAnswer;
  if (!answer.ok) {
    const detail = oneLine(errorText(answer.err));
    return { ok: false, code: 'gitlab_failed', commit: headShort, reason: `could not read the project's members and GPG keys from GitLab: ${detail}` };
  }
  const { keyring } = answer;

  const now = deps.now();
  let head: Extract<PushVerdict, { ok: true }>['head'] | null = null;
  for (const sha of commits) {
    const verdict = await verifyCommitSignature(await mirror.readCommit(sha), keyring.candidates, now, objectFormat);
    if (!verdict.ok) {
      let reason = `commit ${short(sha)} ${verdict.reason}`;
      if (verdict.code === 'unknown_key' && keyring.unreadable.length > 0) {
        reason += ` (GitLab keys secd could not read: ${keyring.unreadable.join(', ')})`;
      }
      return { ok: false, code: verdict.code, commit: short(sha), reason: oneLine(`${reason}: ${signatureHelp(verdict.code)}`) };
    }
    if (sha === input.after) {
      head = {
        sha,
        fingerprint: verdict.fingerprint,
        username: verdict.user.username,
        userId: verdict.user.id,
        committerEmail: verdict.committerEmail,
      };
    }
  }
  // The loop always ends at the head, so `head` is set here.
  return { ok: true, commits, head: head! };
}

interface Keyring {
  candidates: CandidateKey[];
  /** "username key <gitlab key id>" for every key GitLab holds that openpgp could not parse. */
  unreadable: string[];
}

// Keys of active members only: a blocked account's keys must not vouch for anything.
async function loadKeyring(projectId: number, gitlab: VerifyPushDeps['gitlab']): Promise<Keyring> {
  const members = (await gitlab.listProjectMembers(projectId)).filter((m) => m.state === 'active');
  const perMember = await mapLimited(members, GITLAB_CONCURRENCY, async (member) => readMemberKeys(member, gitlab));
  return {
    candidates: perMember.flatMap((m) => m.candidates),
    unreadable: perMember.flatMap((m) => m.unreadable),
  };
}

async function readMemberKeys(member: GitLabMember, gitlab: VerifyPushDeps['gitlab']): Promise<Keyring> {
  const user = { id: member.id, username: member.username };
  const candidates: CandidateKey[] = [];
  const unreadable: string[] = [];
  for (const entry of await gitlab.listUserGpgKeys(member.id)) {
    const keys = await readCandidateKeys(entry.key, user);
    if (keys === null) unreadable.push(`${member.username} key ${entry.id}`);
    else candidates.push(...keys);
  }
  return { candidates, unreadable };
}

async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function short(sha: string): string {
  return sha.slice(0, 8);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
