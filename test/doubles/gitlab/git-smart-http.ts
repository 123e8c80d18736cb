/**
 * Real git over smart HTTP: each request runs `git http-backend` as a CGI on the project's bare
 * repository, behind GitLab's checks (Basic auth as `oauth2` + admin token or a user's password;
 * Reporter may fetch, Developer may push; an unknown project and a forbidden one look the same).
 * A push snapshots the refs before and after under a per-repository lock and hands the changes to
 * the push-event builder and the hook sender, tracked before the git client gets its answer.
 * Deliberate simplification: no protected-branch enforcement.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ACCESS, type DoubleProject, type DoubleState, type Identity } from './double-state.js';
import type { HookSender } from './hook-sender.js';
import type { MergeRequests } from './merge-requests.js';
import { safeEqual, sendText } from './http-helpers.js';
import type { PushEventBuilder, RefMap } from './push-events.js';
import type { ProjectEvents } from './project-events.js';

/** One git smart-HTTP request the double answered. */
export interface RecordedGitRequest {
  method: string;
  /** the path after the host, without the query */
  path: string;
  /** git-upload-pack or git-receive-pack */
  service: string;
  /** the authenticated username, null when none */
  user: string | null;
  /** Content-Encoding of the request body (git gzips large fetch requests) */
  contentEncoding: string | null;
  status: number;
  at: string;
}

/** Serves clones, fetches and pushes, and records every request. */
export class GitSmartHttp {
  /** every git smart-HTTP request, in order */
  readonly gitRequests: RecordedGitRequest[] = [];
  private readonly repoLocks = new Map<number, Promise<void>>();
  private readonly children = new Set<ChildProcess>();

  constructor(
    private readonly state: DoubleState,
    private readonly events: PushEventBuilder,
    private readonly hooks: HookSender,
    private readonly mergeRequests: MergeRequests,
    private readonly projectEvents: ProjectEvents,
  ) {}

  /** Answer one request for `/<projectPath>.git<rest>`. */
  async handle(req: IncomingMessage, res: ServerResponse, projectPath: string, rest: string, query: string): Promise<void> {
    const identity = this.gitIdentity(req);
    const service = rest.startsWith('/git-') ? rest.slice(1) : new URLSearchParams(query).get('service') ?? '';
    const encoding = req.headers['content-encoding'];
    res.on('finish', () =>
      this.gitRequests.push({
        method: req.method ?? 'GET',
        path: `/${projectPath}.git${rest}`,
        service,
        user: identity?.user.username ?? null,
        contentEncoding: typeof encoding === 'string' ? encoding : null,
        status: res.statusCode,
        at: new Date().toISOString(),
      }),
    );
    if (!identity) {
      res.writeHead(401, { 'Content-Type': 'text/plain', 'WWW-Authenticate': 'Basic realm="GitLab"' });
      res.end('HTTP Basic: Access denied\n');
      req.resume();
      return;
    }
    const project = this.state.findProjectByPath(projectPath);
    const level = project ? (identity.bot ? ACCESS.owner : project.members.get(identity.user.id) ?? 0) : 0;
    if (!project || level < ACCESS.reporter) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end("The project you were looking for could not be found or you don't have permission to view it.\n");
      req.resume();
      return;
    }
    const receivePack = service === 'git-receive-pack';
    if (receivePack && level < ACCESS.developer) {
      res.writeHead(403, { 'Content-Type': 'text/plain' });
      res.end('You are not allowed to push code to this project.\n');
      req.resume();
      return;
    }
    const env = this.cgiEnv(req, project, rest, query, identity.user.username);
    if (!(req.method === 'POST' && rest === '/git-receive-pack')) {
      await this.runHttpBackend(req, res, env);
      return;
    }
    // A push: snapshot refs before and after under a per-repository lock, then send the webhooks
    // once the git client has its answer. The work is tracked before the response can end, so
    // idle() called right after `git push` returns always waits for it.
    await this.state.track(async () => {
      const repo = this.state.repoDir(project.path);
      const events = await this.withRepoLock(project.id, async () => {
        const before = await this.snapshotRefs(repo);
        const result = await this.runHttpBackend(req, res, env);
        if (result.status !== 200 || result.exitCode !== 0) return [];
        const after = await this.snapshotRefs(repo);
        return this.events.build(project, identity.user, before, after);
      });
      for (const event of events) {
        // GitLab records the push in the project's activity whether or not any hook is reached.
        this.projectEvents.record(project, identity.user, event);
        this.hooks.send(project, event);
        // GitLab's MergeRequests::RefreshService: an open merge request from a pushed branch moves with it.
        this.mergeRequests.refresh(project, event);
      }
    });
  }

  /** `oauth2` + admin token = secd-bot; a registered user's username + password. */
  private gitIdentity(req: IncomingMessage): Identity | null {
    const auth = req.headers.authorization;
    if (!auth || !/^Basic /i.test(auth)) return null;
    const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return null;
    const username = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    if (username === 'oauth2' || username === this.state.botUser.username) {
      return safeEqual(password, this.state.token) ? { user: this.state.botUser, bot: true } : null;
    }
    const user = this.state.findUserByName(username);
    return user && safeEqual(password, user.password) ? { user, bot: false } : null;
  }

  private cgiEnv(req: IncomingMessage, project: DoubleProject, rest: string, query: string, remoteUser: string): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...this.state.gitEnv(),
      GIT_PROJECT_ROOT: this.state.reposDir,
      GIT_HTTP_EXPORT_ALL: '1',
      GATEWAY_INTERFACE: 'CGI/1.1',
      SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: `/${project.path}.git${rest}`,
      QUERY_STRING: query,
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_USER: remoteUser,
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    };
    const length = req.headers['content-length'];
    if (length !== undefined) env.CONTENT_LENGTH = length;
    const encoding = req.headers['content-encoding'];
    if (encoding !== undefined) env.HTTP_CONTENT_ENCODING = encoding; // http-backend inflates gzip itself
    const protocol = req.headers['git-protocol'];
    if (typeof protocol === 'string') env.HTTP_GIT_PROTOCOL = protocol; // protocol v2
    return env;
  }

  /** Run `git http-backend` as a CGI; resolves when it exited and the response is finished. */
  private runHttpBackend(
    req: IncomingMessage,
    res: ServerResponse,
    env: NodeJS.ProcessEnv,
  ): Promise<{ status: number; exitCode: number | null }> {
    return new Promise((resolve) => {
      const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      this.children.add(child);
      let stderr = '';
      let head = Buffer.alloc(0);
      let status = 0;
      let exitCode: number | null = null;
      let childDone = false;
      let responseDone = false;
      const finish = () => {
        if (!childDone || !responseDone) return;
        this.children.delete(child);
        resolve({ status, exitCode });
      };
      child.stderr.on('data', (d: Buffer) => {
        stderr = (stderr + d.toString('utf8')).slice(-8192);
      });
      child.stdin.on('error', () => {}); // EPIPE when the backend answers before reading everything
      req.pipe(child.stdin);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const parsed = parseCgiHead(head);
        if (!parsed) return;
        child.stdout.off('data', onData);
        status = parsed.status;
        res.writeHead(parsed.status, parsed.headers);
        if (parsed.body.length > 0) res.write(parsed.body);
        child.stdout.pipe(res);
      };
      child.stdout.on('data', onData);
      const onChildDone = (code: number | null, err?: Error) => {
        if (childDone) return;
        childDone = true;
        exitCode = code;
        if (err) stderr += String(err);
        if (!res.headersSent) {
          status = 502;
          sendText(res, 502, `git http-backend failed: ${stderr}`);
        }
        if (code !== 0) this.state.internalErrors.push(`git http-backend ${env.REQUEST_METHOD} ${env.PATH_INFO} exited ${code}: ${stderr.trim()}`);
        finish();
      };
      child.on('close', (code) => onChildDone(code));
      child.on('error', (err) => onChildDone(null, err));
      res.on('close', () => {
        responseDone = true;
        finish();
      });
    });
  }

  private async withRepoLock<T>(projectId: number, fn: () => Promise<T>): Promise<T> {
    const previous = this.repoLocks.get(projectId) ?? Promise.resolve();
    let release!: () => void;
    const mine = previous.then(() => new Promise<void>((r) => (release = r)));
    this.repoLocks.set(projectId, mine);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.repoLocks.get(projectId) === mine) this.repoLocks.delete(projectId);
    }
  }

  private async snapshotRefs(repo: string): Promise<RefMap> {
    const out = await this.state.git(repo, ['for-each-ref', '--format=%(objectname) %(refname)']);
    const refs: RefMap = new Map();
    for (const line of out.split('\n')) {
      const space = line.indexOf(' ');
      if (space > 0) refs.set(line.slice(space + 1), line.slice(0, space));
    }
    return refs;
  }

  /** Kill every `git http-backend` still running (on close). */
  killBackends(): void {
    for (const child of this.children) child.kill('SIGKILL');
  }
}

/** Split a CGI answer into status, headers and the start of the body; null until complete. */
function parseCgiHead(buf: Buffer): { status: number; headers: Record<string, string>; body: Buffer } | null {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  let end: number;
  let sepLength: number;
  if (crlf >= 0 && (lf < 0 || crlf < lf)) {
    end = crlf;
    sepLength = 4;
  } else if (lf >= 0) {
    end = lf;
    sepLength = 2;
  } else {
    return null;
  }
  let status = 200;
  const headers: Record<string, string> = {};
  for (const line of buf.subarray(0, end).toString('latin1').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else headers[key] = value;
  }
  return { status, headers, body: buf.subarray(end + sepLength) };
}
