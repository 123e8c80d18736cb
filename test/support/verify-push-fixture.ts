/**
 * What the tests of verifyPush share: a GitLab that knows only members (with state and access
 * level), their GPG keys, SSH keys and own verified emails; and a scene of one researcher
 * repository, GitLab's copy of it and secd's mirror, where a push is made as a researcher makes it
 * and verified as the leader verifies it on the push hook. No vitest imports (compiled into dist).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBareRemote, createResearcherRepo, type ResearcherRepo } from './git-repo.js';
import type { GitLabGpgKey, GitLabMember, GitLabSshKey } from '../../scheduler/gitlab/gitlab-port.js';
import { GitMirror } from '../../scheduler/verify/git-mirror.js';
import type { KeyCache } from '../../scheduler/verify/key-cache.js';
import type { KeyringGitLab } from '../../scheduler/verify/member-keyring.js';
import { verifyPush, ZERO_SHA, type PushVerdict, type VerifyPushInput } from '../../scheduler/verify/verify-push.js';

/** The project every scene's pushes belong to. */
export const PROJECT = 42;

/** A member as a test adds one. */
export interface FakeMember {
  id: number;
  username: string;
  gpgKeys?: string[];
  sshKeys?: Array<{ key: string; usageType?: GitLabSshKey['usage_type']; expiresAt?: string | null }>;
  /** The user's own verified GitLab emails (default `<username>@example.org`). */
  emails?: string[];
  state?: string;
  accessLevel?: number;
}

/** A GitLab that knows members, their keys and emails, nothing else; it counts what it was asked. */
export class FakeGitLab implements KeyringGitLab {
  members: GitLabMember[] = [];
  gpg = new Map<number, GitLabGpgKey[]>();
  ssh = new Map<number, GitLabSshKey[]>();
  emails = new Map<number, string[]>();
  /** Calls per method name. */
  calls: Record<string, number> = {};
  private nextKeyId = 1;

  addMember(m: FakeMember): void {
    this.members.push({ id: m.id, username: m.username, name: m.username, state: m.state ?? 'active', access_level: m.accessLevel ?? 30 });
    this.gpg.set(m.id, []);
    this.ssh.set(m.id, []);
    for (const key of m.gpgKeys ?? []) this.addGpgKey(m.id, key);
    for (const key of m.sshKeys ?? []) this.addSshKey(m.id, key);
    this.emails.set(m.id, m.emails ?? [`${m.username}@example.org`]);
  }

  addGpgKey(userId: number, key: string): void {
    this.gpg.get(userId)!.push({ id: this.nextKeyId++, key, created_at: '2025-01-01T00:00:00Z' });
  }

  addSshKey(userId: number, k: { key: string; usageType?: GitLabSshKey['usage_type']; expiresAt?: string | null }): void {
    this.ssh.get(userId)!.push({ id: this.nextKeyId++, key: k.key, usage_type: k.usageType ?? 'auth_and_signing', expires_at: k.expiresAt ?? null });
  }

  async listProjectMembers(projectId: number): Promise<GitLabMember[]> {
    this.count('listProjectMembers');
    if (projectId !== PROJECT) throw new Error(`FakeGitLab knows only project ${PROJECT}, not ${projectId}`);
    return this.members;
  }

  async listUserGpgKeys(userId: number): Promise<GitLabGpgKey[]> {
    this.count('listUserGpgKeys');
    return [...(this.gpg.get(userId) ?? [])];
  }

  async listUserSshKeys(userId: number): Promise<GitLabSshKey[]> {
    this.count('listUserSshKeys');
    return [...(this.ssh.get(userId) ?? [])];
  }

  async listUserEmails(userId: number): Promise<string[]> {
    this.count('listUserEmails');
    return (this.emails.get(userId) ?? []).map((e) => e.toLowerCase());
  }

  private count(name: string): void {
    this.calls[name] = (this.calls[name] ?? 0) + 1;
  }
}

/** One test's repository, GitLab's copy, secd's mirror and the commits secd verified so far. */
export interface PushScene {
  repo: ResearcherRepo;
  remote: Awaited<ReturnType<typeof createBareRemote>>;
  mirror: GitMirror;
  verified: Set<string>;
  gitlab: FakeGitLab;
  /**
   * Push the branch like a researcher would (as `pusher`, default user 1 "ada"), then verify it as
   * the leader would on the push hook; commits of an accepted push count as verified afterwards.
   */
  pushAndVerify(overrides?: Partial<VerifyPushInput>, options?: { force?: boolean; keyCache?: KeyCache }): Promise<PushVerdict>;
  /** Verify without pushing (a hook for what is on GitLab already, such as "Test push events"). */
  verify(input: Partial<VerifyPushInput> & Pick<VerifyPushInput, 'before' | 'after'>, keyCache?: KeyCache): Promise<PushVerdict>;
  close(): Promise<void>;
}

/** The default pusher: user 1. */
export const ADA = { id: 1, username: 'ada' };

/** A fresh scene around `gitlab`. */
export async function createPushScene(gitlab: FakeGitLab): Promise<PushScene> {
  const repo = await createResearcherRepo();
  const remote = await createBareRemote();
  const mirrorDir = await mkdtemp(join(tmpdir(), 'secd-mirror-'));
  const mirror = new GitMirror(join(mirrorDir, `${PROJECT}.git`));
  const verified = new Set<string>();
  const verify: PushScene['verify'] = async (input, keyCache) => {
    const verdict = await verifyPush(
      { projectId: PROJECT, fetchUrl: remote.url, pusher: ADA, alreadyVerified: (sha) => verified.has(sha), ...input },
      { mirror, gitlab, now: () => new Date(), ...(keyCache ? { keyCache } : {}) },
    );
    if (verdict.ok) for (const sha of verdict.commits) verified.add(sha);
    return verdict;
  };
  return {
    repo,
    remote,
    mirror,
    verified,
    gitlab,
    async pushAndVerify(overrides = {}, options = {}) {
      const before = (await remote.tip('refs/heads/main')) ?? ZERO_SHA;
      await repo.push(remote.url, options.force ? { force: true } : {});
      const after = await repo.head();
      return verify({ before, after, ...overrides }, options.keyCache);
    },
    verify,
    async close() {
      await repo.close();
      await remote.close();
      await rm(mirrorDir, { recursive: true, force: true });
    },
  };
}
