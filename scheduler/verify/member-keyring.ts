/**
 * The keys that may sign a project's commits, read from GitLab for one push: the project's active
 * members (a blocked account's keys vouch for nothing), each member's GPG keys (parsed through the
 * KeyCache), SSH keys and own verified emails. Every answer is asked for afresh on each push; only
 * the parsing of GPG keys is reused. A few requests at a time: a project with hundreds of members
 * must not open hundreds of connections at once.
 */
import type { CandidateKey } from './commit-signature.js';
import { parseGpgKeys, type KeyCache } from './key-cache.js';
import type { SshKeyCandidate } from './ssh-signature.js';
import type { GitLabApi, GitLabMember } from '../gitlab/gitlab-port.js';

/** The GitLab calls a keyring is read with. */
export type KeyringGitLab = Pick<GitLabApi, 'listProjectMembers' | 'listUserGpgKeys'> &
  Required<Pick<GitLabApi, 'listUserSshKeys' | 'listUserEmails'>>;

/** One push's view of who may sign. */
export interface MemberKeyring {
  /** Every member as GitLab lists them (any state), for the pusher rule. */
  members: GitLabMember[];
  gpg: CandidateKey[];
  ssh: SshKeyCandidate[];
  /** Each active member's own verified emails, lower-cased, by user id. */
  emails: Map<number, string[]>;
  /** "username key <gitlab key id>" for every GPG key GitLab holds that openpgp could not read. */
  unreadable: string[];
}

const GITLAB_CONCURRENCY = 8;

/**
 * `gitlab` as a KeyringGitLab: a client without the SSH-key or email calls (a fake of another step)
 * gets ones that fail saying so, so its pushes are refused as "GitLab failed" instead of passing an
 * email rule nobody checked.
 */
export function keyringCalls(gitlab: GitLabApi): KeyringGitLab {
  const missing = (what: string) => async (): Promise<never> => {
    throw new Error(`this GitLab client cannot list users' ${what}`);
  };
  return {
    listProjectMembers: (projectId) => gitlab.listProjectMembers(projectId),
    listUserGpgKeys: (userId) => gitlab.listUserGpgKeys(userId),
    listUserSshKeys: gitlab.listUserSshKeys?.bind(gitlab) ?? missing('SSH keys'),
    listUserEmails: gitlab.listUserEmails?.bind(gitlab) ?? missing('emails'),
  };
}

/** Read the members of `projectId` and the keys and emails of the active ones. */
export async function loadMemberKeyring(projectId: number, gitlab: KeyringGitLab, cache?: KeyCache): Promise<MemberKeyring> {
  const members = await gitlab.listProjectMembers(projectId);
  const active = members.filter((m) => m.state === 'active');
  const perMember = await mapLimited(active, GITLAB_CONCURRENCY, async (member) => {
    const user = { id: member.id, username: member.username };
    const [gpgEntries, sshEntries, emails] = await Promise.all([
      gitlab.listUserGpgKeys(member.id),
      gitlab.listUserSshKeys(member.id),
      gitlab.listUserEmails(member.id),
    ]);
    const gpg = cache ? await cache.gpgKeysOf(user, gpgEntries) : await parseGpgKeys(user, gpgEntries);
    const ssh: SshKeyCandidate[] = sshEntries.map((k) => ({ id: k.id, key: k.key, usageType: k.usage_type, expiresAt: k.expires_at, user, emails }));
    return { member, gpg, ssh, emails };
  });
  return {
    members,
    gpg: perMember.flatMap((m) => m.gpg.candidates),
    ssh: perMember.flatMap((m) => m.ssh),
    emails: new Map(perMember.map((m) => [m.member.id, m.emails])),
    unreadable: perMember.flatMap((m) => m.gpg.unreadable.map((id) => `${m.member.username} key ${id}`)),
  };
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
