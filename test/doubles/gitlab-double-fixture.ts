/**
 * What the GitLab double's own tests share: plain git in a scratch folder, isolated from the host (the
 * one hermetic recipe, Ada as author and committer); a webhook receiver like secd's /v1/hook that keeps
 * every request it got; and one fresh double per test, with Ada, her project research/alpha and a
 * project hook to the receiver. Each test file hands over vitest's hooks, so this module (compiled
 * into dist) imports nothing from vitest.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hermeticGitEnv } from '../../scheduler/common/git-env.js';
import { startGitLabDouble, type DoubleProject, type DoubleUser, type GitLabDouble, type PushEvent } from './gitlab-double.js';

/** The double's admin token (secd's `gitlab.token`). */
export const TOKEN = 'admin-token-for-tests';
/** The project hook's secret token. */
export const SECRET = 'hook-secret';

/** One request the webhook receiver got. */
export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** vitest's lifecycle hooks, handed in by the test file. */
export interface TestHooks {
  beforeAll(fn: () => Promise<void>): void;
  afterAll(fn: () => Promise<void>): void;
  beforeEach(fn: () => Promise<void>): void;
  afterEach(fn: () => Promise<void>): void;
}

/** The scene of one test, and git to act in it. */
export interface GitLabDoubleFixture {
  /** A folder for this file's clones; git's HOME is inside it. */
  readonly scratch: string;
  readonly receiverUrl: string;
  /** Every request the receiver got during this test, in order. */
  readonly received: Received[];
  /** This test's double, its user Ada and her project research/alpha. */
  readonly gl: GitLabDouble;
  readonly ada: DoubleUser;
  readonly project: DoubleProject;
  /** Run git in `cwd`; resolves with its trimmed stdout, rejects with its stderr. */
  git(cwd: string, ...args: string[]): Promise<string>;
  /** The same, with `input` on git's stdin. */
  gitWithInput(cwd: string, input: string | null, ...args: string[]): Promise<string>;
  /** Commit `n` files ("step-1.txt" ... with messages "step 1" ...) on top of HEAD's branch in one git process. */
  commitMany(dir: string, n: number): Promise<string[]>;
  /** Write, add and commit one file; returns the new commit id. */
  commitFile(dir: string, file: string, content: string, message?: string): Promise<string>;
  /** Clone `url` into a new folder of the scratch folder. */
  clone(url: string): Promise<string>;
  /** The requests that reached the project hook's /v1/hook. */
  hooks(): Received[];
  /** A hook request's body as the push event it carries. */
  payload(r: Received): PushEvent;
  /** Ada's clone of research/alpha with a first commit pushed to main, once the double's hooks are sent. */
  pushedClone(): Promise<{ dir: string; first: string }>;
}

/** Register the hooks that build and tear down the scene; returns the fixture the tests read it through. */
export function prepareGitLabDouble(hooks: TestHooks): GitLabDoubleFixture {
  let scratch = '';
  let receiver: Server | null = null;
  let receiverUrl = '';
  let received: Received[] = [];
  let gl: GitLabDouble | null = null;
  let ada: DoubleUser | null = null;
  let project: DoubleProject | null = null;
  let cloneCount = 0;
  const current = <T>(value: T | null, what: string): T => {
    if (value === null) throw new Error(`${what} exists only inside a test`);
    return value;
  };

  hooks.beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'gitlab-double-test-'));
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"ok":true}');
      });
    });
    receiver = server;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    receiverUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  hooks.afterAll(async () => {
    await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
    rmSync(scratch, { recursive: true, force: true });
  });
  hooks.beforeEach(async () => {
    received = [];
    gl = await startGitLabDouble({ token: TOKEN });
    ada = gl.addUser({ username: 'ada', name: 'Ada Researcher', email: 'ada@example.org', password: 'ada-password' });
    project = gl.addProject({ path: 'research/alpha', members: [ada.id] });
    gl.addWebhook({ url: `${receiverUrl}/v1/hook`, secret: SECRET, kind: 'project', projectId: project.id });
  });
  hooks.afterEach(async () => {
    await gl?.close();
    gl = ada = project = null;
  });

  const gitEnv = (): NodeJS.ProcessEnv => ({
    ...hermeticGitEnv({ home: join(scratch, 'home') }),
    GIT_AUTHOR_NAME: 'Ada Researcher',
    GIT_AUTHOR_EMAIL: 'ada@example.org',
    GIT_COMMITTER_NAME: 'Ada Researcher',
    GIT_COMMITTER_EMAIL: 'ada@example.org',
  });

  const gitWithInput = (cwd: string, input: string | null, ...args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      const child = execFile('git', args, { cwd, env: gitEnv() }, (err, stdout, stderr) => {
        if (err) reject(Object.assign(new Error(`git ${args.join(' ')}: ${stderr}`), { stderr }));
        else resolve(stdout.trim());
      });
      child.stdin?.on('error', () => {}); // git may exit before reading stdin; its exit code tells
      if (input === null) child.stdin?.end();
      else child.stdin?.end(input);
    });
  const git = (cwd: string, ...args: string[]): Promise<string> => gitWithInput(cwd, null, ...args);

  const commitMany = async (dir: string, n: number): Promise<string[]> => {
    const branch = await git(dir, 'symbolic-ref', 'HEAD');
    const parent = await git(dir, 'rev-parse', 'HEAD');
    let stream = '';
    for (let i = 1; i <= n; i++) {
      const message = `step ${i}\n`;
      const content = `${i}\n`;
      stream += `commit ${branch}\ncommitter Ada Researcher <ada@example.org> ${1_700_000_000 + i} +0000\n`;
      stream += `data ${Buffer.byteLength(message)}\n${message}`;
      if (i === 1) stream += `from ${parent}\n`;
      stream += `M 100644 inline step-${i}.txt\ndata ${Buffer.byteLength(content)}\n${content}\n`;
    }
    await gitWithInput(dir, stream, 'fast-import', '--quiet');
    await git(dir, 'reset', '-q', '--hard');
    return (await git(dir, 'rev-list', '--reverse', `${parent}..HEAD`)).split('\n');
  };

  const commitFile = async (dir: string, file: string, content: string, message = `add ${file}`): Promise<string> => {
    writeFileSync(join(dir, file), content);
    await git(dir, 'add', file);
    await git(dir, 'commit', '-q', '-m', message);
    return git(dir, 'rev-parse', 'HEAD');
  };

  const clone = async (url: string): Promise<string> => {
    const dir = join(scratch, `clone-${++cloneCount}`);
    await git(scratch, 'clone', '-q', url, dir);
    return dir;
  };

  return {
    get scratch() {
      return scratch;
    },
    get receiverUrl() {
      return receiverUrl;
    },
    get received() {
      return received;
    },
    get gl() {
      return current(gl, 'the double');
    },
    get ada() {
      return current(ada, 'Ada');
    },
    get project() {
      return current(project, 'research/alpha');
    },
    git,
    gitWithInput,
    commitMany,
    commitFile,
    clone,
    hooks: () => received.filter((r) => r.path === '/v1/hook'),
    payload: (r) => JSON.parse(r.body) as PushEvent,
    async pushedClone() {
      const double = current(gl, 'the double');
      const dir = await clone(double.gitUrl('research/alpha', current(ada, 'Ada')));
      const first = await commitFile(dir, 'README.md', '# alpha\n', 'first commit');
      await git(dir, 'push', '-q', 'origin', 'HEAD:main');
      await double.idle();
      return { dir, first };
    },
  };
}
