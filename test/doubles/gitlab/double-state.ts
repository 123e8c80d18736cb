/**
 * What the GitLab double knows: users with their passwords, GPG keys, SSH keys (with their usage and
 * expiry) and secondary emails (confirmed or not), projects with their direct
 * members and bare repositories, webhook registrations, and the work still in flight. The REST API,
 * git over HTTP and the hook sender all read and write this one object, so a user added by a test is
 * at once a member the API lists, a login git accepts and an author the push events name.
 *
 * Deliberate simplifications: only direct project members (no groups), and the admin token is the
 * only API credential.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hermeticGitEnv } from '../../../scheduler/common/git-env.js';

/** User id of `secd-bot`, the owner of the admin token (kept out of the 1, 2, ... range of addUser). */
export const BOT_USER_ID = 9999;

/** GitLab access levels. */
export const ACCESS = { guest: 10, reporter: 20, developer: 30, maintainer: 40, owner: 50 } as const;

/** A GitLab user known to the double. */
export interface DoubleUser {
  id: number;
  username: string;
  name: string;
  email: string;
  /** password / personal access token for git over HTTP (generated when not given) */
  password: string;
}

/** A project (and its bare repository). */
export interface DoubleProject {
  id: number;
  /** "group/name" (path_with_namespace) */
  path: string;
  /** last path segment */
  name: string;
  /** everything before the last segment */
  namespace: string;
  defaultBranch: string;
  /** user id -> access level (direct members only) */
  members: Map<number, number>;
}

/** A webhook registration: a project hook or a system hook. */
export interface DoubleWebhook {
  id: number;
  /** sent as X-Gitlab-Webhook-UUID */
  uuid: string;
  url: string;
  secret: string;
  kind: 'project' | 'system';
  /** for project hooks: the project it belongs to; absent = every project */
  projectId?: number;
}

/** Who a request authenticated as: a registered user, or `secd-bot` by the admin token. */
export interface Identity {
  user: DoubleUser;
  bot: boolean;
}

/** One entry of GET /users/:id/gpg_keys, as GitLab stores it. */
export interface StoredGpgKey {
  id: number;
  key: string;
  created_at: string;
}

/** One entry of GET /users/:id/keys, as GitLab's SSHKey entity shows it. */
export interface StoredSshKey {
  id: number;
  title: string;
  key: string;
  created_at: string;
  /** null: the key never expires */
  expires_at: string | null;
  usage_type: 'auth' | 'signing' | 'auth_and_signing';
}

/** One entry of GET /users/:id/emails: a secondary email, `confirmed_at` null until confirmed. */
export interface StoredEmail {
  id: number;
  email: string;
  confirmed_at: string | null;
}

/** The URLs GitLab derives from a project's path. */
export interface ProjectUrls {
  web: string;
  http: string;
  ssh: string;
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** The double's users, projects, hooks and pending work; the other parts take it as their one dependency. */
export class DoubleState {
  /** http://127.0.0.1:<port>, set once the server listens. */
  url = '';
  readonly token: string;
  readonly botUser: DoubleUser;
  /** failures inside the double itself (git errors while building events, ...) */
  readonly internalErrors: string[] = [];
  readonly reposDir: string;
  readonly users = new Map<number, DoubleUser>();
  readonly gpgKeys = new Map<number, StoredGpgKey[]>();
  readonly sshKeys = new Map<number, StoredSshKey[]>();
  /** Secondary emails per user; the primary is DoubleUser.email (always confirmed here). */
  readonly emails = new Map<number, StoredEmail[]>();
  readonly projects = new Map<number, DoubleProject>();
  readonly hooks: DoubleWebhook[] = [];

  private readonly dataDir: string;
  private readonly ownsDataDir: boolean;
  private readonly homeDir: string;
  private readonly pending = new Set<Promise<unknown>>();
  private nextUserId = 1;
  private nextGpgKeyId = 1;
  private nextSshKeyId = 1;
  private nextEmailId = 1;
  private nextHookId = 1;

  constructor(opts: { token: string; dataDir?: string }) {
    if (!opts.token) throw new Error('startGitLabDouble: token is required');
    this.token = opts.token;
    this.ownsDataDir = opts.dataDir === undefined;
    this.dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'gitlab-double-'));
    this.reposDir = join(this.dataDir, 'repositories');
    this.homeDir = join(this.dataDir, 'home');
    mkdirSync(this.reposDir, { recursive: true });
    mkdirSync(this.homeDir, { recursive: true });
    this.botUser = {
      id: BOT_USER_ID,
      username: 'secd-bot',
      name: 'secd bot',
      email: 'secd-bot@noreply.gitlab.invalid',
      password: opts.token,
    };
  }

  // ----- setup ---------------------------------------------------------------------------------

  addUser(u: { username: string; name?: string; email: string; password?: string; gpgKeys?: string[] }): DoubleUser {
    if (!NAME.test(u.username)) throw new Error(`addUser: invalid username ${u.username}`);
    if (u.username === 'oauth2' || u.username === this.botUser.username || this.findUserByName(u.username)) {
      throw new Error(`addUser: username ${u.username} is taken`);
    }
    if (this.nextUserId === BOT_USER_ID) this.nextUserId++;
    const user: DoubleUser = {
      id: this.nextUserId++,
      username: u.username,
      name: u.name ?? u.username,
      email: u.email,
      password: u.password ?? `glpat-${randomBytes(12).toString('hex')}`,
    };
    this.users.set(user.id, user);
    this.gpgKeys.set(user.id, []);
    this.sshKeys.set(user.id, []);
    this.emails.set(user.id, []);
    for (const key of u.gpgKeys ?? []) this.addGpgKey(user.id, key);
    return user;
  }

  addGpgKey(userId: number, armored: string): void {
    const keys = this.gpgKeys.get(userId);
    if (!keys) throw new Error(`addGpgKey: no user ${userId}`);
    keys.push({ id: this.nextGpgKeyId++, key: armored, created_at: new Date().toISOString() });
  }

  /**
   * Add an SSH public key line (`ssh-ed25519 AAAA... comment`) to a user's SSH keys: GitLab's
   * default usage is `auth_and_signing`; `expiresAt` is an ISO time (GitLab stores the day's start).
   */
  addSshKey(userId: number, k: { key: string; usageType?: StoredSshKey['usage_type']; expiresAt?: string | null; title?: string }): StoredSshKey {
    const keys = this.sshKeys.get(userId);
    if (!keys) throw new Error(`addSshKey: no user ${userId}`);
    if (!/^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+/.test(k.key)) throw new Error(`addSshKey: not an OpenSSH public key line: ${k.key.slice(0, 40)}`);
    const stored: StoredSshKey = {
      id: this.nextSshKeyId++,
      title: k.title ?? `key ${this.nextSshKeyId - 1}`,
      key: k.key.trim(),
      created_at: new Date().toISOString(),
      expires_at: k.expiresAt ?? null,
      usage_type: k.usageType ?? 'auth_and_signing',
    };
    keys.push(stored);
    return stored;
  }

  /** Remove one of a user's SSH keys (as the user would in their profile). */
  removeSshKey(userId: number, keyId: number): void {
    const keys = this.sshKeys.get(userId);
    const i = keys?.findIndex((k) => k.id === keyId) ?? -1;
    if (!keys || i < 0) throw new Error(`removeSshKey: user ${userId} has no SSH key ${keyId}`);
    keys.splice(i, 1);
  }

  /** Add a secondary email to a user, confirmed (the default) or still waiting for confirmation. */
  addEmail(userId: number, email: string, opts: { confirmed?: boolean } = {}): void {
    const emails = this.emails.get(userId);
    if (!emails) throw new Error(`addEmail: no user ${userId}`);
    emails.push({ id: this.nextEmailId++, email, confirmed_at: opts.confirmed === false ? null : new Date().toISOString() });
  }

  addProject(p: { path: string; defaultBranch?: string; members?: number[] }): DoubleProject {
    const segments = p.path.split('/');
    if (segments.length < 2 || segments.some((s) => !NAME.test(s) || s.endsWith('.git'))) {
      throw new Error(`addProject: path must be "group/name", got ${p.path}`);
    }
    if (this.findProjectByPath(p.path)) throw new Error(`addProject: ${p.path} exists`);
    const project: DoubleProject = {
      id: this.projects.size + 1,
      path: p.path,
      name: segments[segments.length - 1]!,
      namespace: segments.slice(0, -1).join('/'),
      defaultBranch: p.defaultBranch ?? 'main',
      members: new Map(),
    };
    const dir = this.repoDir(p.path);
    mkdirSync(dir, { recursive: true });
    const env = this.gitEnv();
    execFileSync('git', ['init', '--quiet', '--bare', '-b', project.defaultBranch, dir], { env });
    execFileSync('git', ['--git-dir', dir, 'config', 'http.receivepack', 'true'], { env });
    this.projects.set(project.id, project);
    for (const userId of p.members ?? []) this.addMember(project.id, userId);
    return project;
  }

  addMember(projectId: number, userId: number, accessLevel: number = ACCESS.developer): void {
    const project = this.projects.get(projectId);
    if (!project) throw new Error(`addMember: no project ${projectId}`);
    if (!this.users.has(userId)) throw new Error(`addMember: no user ${userId}`);
    project.members.set(userId, accessLevel);
  }

  project(idOrPath: number | string): DoubleProject {
    const project = typeof idOrPath === 'number' ? this.projects.get(idOrPath) : this.findProjectByPath(idOrPath);
    if (!project) throw new Error(`no project ${idOrPath}`);
    return project;
  }

  gitUrl(projectPath: string, user?: { username: string; password: string }): string {
    const project = this.project(projectPath);
    const u = new URL(`${this.url}/${project.path}.git`);
    u.username = encodeURIComponent(user ? user.username : 'oauth2');
    u.password = encodeURIComponent(user ? user.password : this.token);
    return u.toString();
  }

  repoDir(projectPath: string): string {
    return join(this.reposDir, `${projectPath}.git`);
  }

  addWebhook(h: { url: string; secret: string; kind: 'project' | 'system'; projectId?: number }): DoubleWebhook {
    if (h.projectId !== undefined && !this.projects.has(h.projectId)) throw new Error(`addWebhook: no project ${h.projectId}`);
    const hook: DoubleWebhook = { id: this.nextHookId++, uuid: randomUUID(), url: h.url, secret: h.secret, kind: h.kind };
    if (h.projectId !== undefined) hook.projectId = h.projectId;
    this.hooks.push(hook);
    return hook;
  }

  // ----- lookups -------------------------------------------------------------------------------

  /** GitLab compares usernames case-insensitively. */
  findUserByName(username: string): DoubleUser | undefined {
    const lower = username.toLowerCase();
    for (const u of this.users.values()) if (u.username.toLowerCase() === lower) return u;
    return undefined;
  }

  /** GitLab paths are case-insensitive. */
  findProjectByPath(path: string): DoubleProject | undefined {
    const lower = path.toLowerCase();
    for (const p of this.projects.values()) if (p.path.toLowerCase() === lower) return p;
    return undefined;
  }

  /** The project named in an API path: a numeric id or a (URL-decoded) path. */
  findProjectByRef(ref: string): DoubleProject | undefined {
    return /^\d+$/.test(ref) ? this.projects.get(Number(ref)) : this.findProjectByPath(ref);
  }

  projectUrls(project: DoubleProject): ProjectUrls {
    const host = new URL(this.url).hostname;
    return {
      web: `${this.url}/${project.path}`,
      http: `${this.url}/${project.path}.git`,
      ssh: `git@${host}:${project.path}.git`,
    };
  }

  // ----- work in flight ------------------------------------------------------------------------

  /** Keep `fn`'s promise in the pending set until it settles; idle() waits for that set. */
  track<T>(fn: () => Promise<T>): Promise<T> {
    const p = fn();
    this.pending.add(p);
    const forget = () => this.pending.delete(p);
    p.then(forget, (err: unknown) => {
      forget();
      this.internalErrors.push(String(err));
    });
    return p;
  }

  /** Resolve once nothing tracked is pending any more (work may start more work: wait again). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  /** Remove the data dir if the double made it. */
  removeDataDir(): void {
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  // ----- git -----------------------------------------------------------------------------------

  /** The one hermetic git recipe, with the double's own HOME, so the host's ~/.gitconfig never leaks in. */
  gitEnv(): NodeJS.ProcessEnv {
    return hermeticGitEnv({ home: this.homeDir });
  }

  /** Run git on a bare repository; resolves with stdout, rejects with stderr. */
  git(gitDir: string, args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('git', ['--git-dir', gitDir, ...args], { env: this.gitEnv(), maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`git ${args.join(' ')}: ${stderr || err.message}`));
        else resolve(stdout);
      });
    });
  }
}
