/**
 * The parent's side of gitlab-double-process.ts: start the GitLab double as its own process and ask
 * it for what a benchmark needs (webhooks, a researcher, a signed push) over the IPC channel. The
 * leader under test talks to it over 127.0.0.1 only, as it would to a real GitLab.
 *
 * Run from dist/ (the script is compiled beside this file): `npm run build` first.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { RecordedDelivery } from '../doubles/gitlab-double.js';

/** What the other process may ask, by name: arguments and answer. */
export interface Ops {
  /** Register a webhook for every project (`system`) or one (`project`, with its id). */
  addWebhook(a: { url: string; secret: string; kind: 'project' | 'system'; projectId?: number }): { id: number };
  /** A GitLab user with a fresh GnuPG key uploaded, a project they are a Developer of, and a signing repository. */
  addResearcher(a: { username: string; project: string }): { userId: number; projectId: number };
  /** Commit `files` signed as the researcher, push, wait for the double's deliveries; answers them. */
  pushRun(a: { username: string; files: Record<string, string>; message: string }): RecordedDelivery[];
  /** How much the double did so far. */
  counts(a: Record<string, never>): { deliveries: number; statuses: number; apiRequests: number; gitRequests: number; internalErrors: string[] };
  /** Wait until every push and delivery so far is done. */
  idle(a: Record<string, never>): null;
}

/** One request over the IPC channel. */
export interface OpRequest {
  id: number;
  op: keyof Ops;
  args: unknown;
}

/** Its answer. */
export type OpAnswer = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

/** A GitLab double running in another process. */
export interface RemoteGitLabDouble {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly token: string;
  readonly pid: number;
  /** Ask the double's process to do `op`. */
  call<K extends keyof Ops>(op: K, args: Parameters<Ops[K]>[0]): Promise<ReturnType<Ops[K]>>;
  /** Stop the process (it removes its data) and wait for it to exit. */
  close(): Promise<void>;
}

/** Start gitlab-double-process.js and wait for the URL it prints. */
export async function startRemoteGitLabDouble(opts: { token?: string } = {}): Promise<RemoteGitLabDouble> {
  const script = join(import.meta.dirname, 'gitlab-double-process.js');
  const child: ChildProcess = fork(script, opts.token ? ['--token', opts.token] : [], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const first = await new Promise<{ url: string; token: string }>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      try {
        resolve(JSON.parse(line) as { url: string; token: string });
      } catch {
        reject(new Error(`gitlab-double-process printed ${JSON.stringify(line)}, not its URL as JSON`));
      }
    });
    child.once('exit', (code) => reject(new Error(`gitlab-double-process exited (${code}) before printing its URL`)));
  });
  let next = 1;
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  child.on('message', (a: OpAnswer) => {
    const w = waiting.get(a.id);
    if (!w) return;
    waiting.delete(a.id);
    if (a.ok) w.resolve(a.value);
    else w.reject(new Error(`GitLab double: ${a.error}`));
  });
  void exited.then(() => {
    for (const w of waiting.values()) w.reject(new Error('the GitLab double process exited'));
    waiting.clear();
  });
  return {
    url: first.url,
    token: first.token,
    pid: child.pid!,
    call(op, args) {
      const id = next++;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.send({ id, op, args } satisfies OpRequest);
      });
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
