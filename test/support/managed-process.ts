/**
 * A process of the test cluster (process-cluster.ts) and the small tools its tests share: start a
 * `secd` role with its output in a log file, kill or signal it, know how it ended; poll until
 * something holds; GET a URL over http or https.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
/** A `secd leader` or `secd node` process. */
export interface ClusterProcess {
  readonly name: string;
  readonly running: boolean;
  /** Start it (again) on the same config. */
  start(): Promise<void>;
  /** Send `signal` and wait for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Send `signal` without waiting (SIGSTOP, SIGCONT). */
  signal(signal: NodeJS.Signals): void;
  /** How the last run of it ended (null while it runs, or before it first ran). */
  readonly lastExit: { code: number | null; signal: NodeJS.Signals | null } | null;
  /** Resolves when the current run of it ends. */
  exited(): Promise<void>;
}

export class ManagedProcess implements ClusterProcess {
  private child: ChildProcess | null = null;
  private exit: Promise<void> = Promise.resolve();
  lastExit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  readonly logFile: string;

  constructor(
    readonly name: string,
    root: string,
    private readonly args: string[],
    private readonly ready: () => Promise<void>,
  ) {
    this.logFile = join(root, `${name.replace(/\W+/g, '-')}.log`);
  }

  get running(): boolean {
    return this.child !== null;
  }

  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.name} is already running`);
    const out = createWriteStream(this.logFile, { flags: 'a' });
    const child = spawn(process.execPath, this.args, { env: { ...process.env, SECD_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    this.child = child;
    this.lastExit = null;
    this.exit = new Promise((done) =>
      child.once('exit', (code, signal) => {
        this.lastExit = { code, signal };
        if (this.child === child) this.child = null;
        out.end();
        done();
      }),
    );
    await this.ready();
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.child) throw new Error(`${this.name} is not running`);
    this.child.kill(signal);
  }

  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child || child.pid === undefined) return;
    child.kill(signal);
    await this.exit;
  }

  exited(): Promise<void> {
    return this.exit;
  }
}

export async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  logs?: () => Promise<string>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${logs ? `\n${await logs()}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** GET a URL over http or https (trusting `ca`), without following redirects. */
export function request(url: string, ca?: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.get(url, { ...(ca ? { ca } : {}), timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => done({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', fail);
  });
}
