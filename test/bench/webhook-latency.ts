/**
 * Webhook answer latency of a running leader: `n` distinct accepted pushes (each a new `after`,
 * as n commits pushed one after another would be) and `n` ignored ones (another branch), sent by
 * hook-client.ts in its own process, as GitLab sends them. The accepted pushes name commits the
 * repository does not hold, so their verification (in the background, after the answer) fails
 * fast: the leader still does all of a push's background work while the next delivery arrives.
 *
 * Run alone: npm run build && node dist/test/bench/webhook-latency.js [n]
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Log } from '../../scheduler/common/log.js';
import type { Cluster } from '../support/cluster-harness.js';

/** p50/p99 of one kind of delivery, in ms. */
export interface Latency {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new Error('percentile of no samples');
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function summary(ms: readonly number[]): Latency {
  return { n: ms.length, p50: percentile(ms, 50), p99: percentile(ms, 99), max: Math.max(...ms) };
}

/** Send the bodies from a separate process and return each answer's time. */
function sendFromOtherProcess(url: string, headers: Record<string, string>, bodies: string[], keyPrefix: string): Promise<number[]> {
  const client = join(import.meta.dirname, 'hook-client.js');
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [client], { maxBuffer: 2 ** 26 }, (err, stdout) => {
      if (err) return reject(err);
      const out = JSON.parse(stdout) as { statuses: number[]; ms: number[] };
      const bad = out.statuses.findIndex((s) => s !== 200);
      if (bad >= 0) return reject(new Error(`delivery ${bad} answered ${out.statuses[bad]}`));
      resolve(out.ms);
    });
    child.stdin!.end(JSON.stringify({ url, headers, bodies, keyPrefix }));
  });
}

/** A hex sha that differs per i and is no commit of the repository. */
function fakeSha(i: number): string {
  return `f${i.toString(16).padStart(39, '0')}`;
}

/**
 * Measure on `cluster`: one real push of a project without a Dockerfile gives the delivery's shape;
 * then `n` distinct accepted pushes and `n` ignored ones. Settles the cluster afterwards.
 */
export async function measureWebhook(cluster: Cluster, n = 200): Promise<{ accepted: Latency; ignored: Latency }> {
  const who = await cluster.addResearcher({ username: 'latency', project: 'bench/latency' });
  const from = cluster.gitlab.deliveries.length;
  await who.pushRun({ 'a.txt': 'a' }, { message: 'no dockerfile' });
  const template = cluster.gitlab.deliveries[from];
  if (!template) throw new Error('the push sent no webhook');
  await cluster.settle();
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(template.headers)) if (!/^(idempotency-key|x-gitlab-event-uuid|content-length)$/i.test(k)) headers[k] = v;
  const shape = JSON.parse(template.body) as Record<string, unknown>;
  const accepted = Array.from({ length: n }, (_, i) => JSON.stringify({ ...shape, before: i === 0 ? shape.after : fakeSha(i - 1), after: fakeSha(i) }));
  const ignored = Array.from({ length: n }, (_, i) => JSON.stringify({ ...shape, ref: 'refs/heads/other', after: fakeSha(i) }));
  const acceptedMs = await sendFromOtherProcess(template.url, headers, accepted, `bench-accepted-${Date.now()}-`);
  const ignoredMs = await sendFromOtherProcess(template.url, headers, ignored, `bench-ignored-${Date.now()}-`);
  await cluster.settle();
  return { accepted: summary(acceptedMs), ignored: summary(ignoredMs) };
}

/**
 * A Log that keeps only the leader's own time for each answered hook (its 'webhook answered' line:
 * from the route's start to the answer), by action; hand it to startCluster. The difference to what
 * the sender measures is the wait for the event loop and the network.
 */
export function handlerTimes(): { log: Log; ms: Map<string, number[]> } {
  const ms = new Map<string, number[]>();
  const log: Log = {
    debug() {},
    warn() {},
    error() {},
    info(obj: object, msg?: string) {
      const o = obj as { action?: unknown; ms?: unknown };
      if (msg !== 'webhook answered' || typeof o.ms !== 'number') return;
      const action = String(o.action);
      ms.set(action, [...(ms.get(action) ?? []), o.ms]);
    },
    child: () => log,
  };
  return { log, ms };
}

export function latencyLine(label: string, l: Latency): string {
  return `${label} (n=${l.n}): p50 ${l.p50.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms, max ${l.max.toFixed(1)} ms`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { startCluster } = await import('../support/cluster-harness.js');
  const n = Number(process.argv[2] ?? 200);
  const handler = handlerTimes();
  const cluster = await startCluster({ log: handler.log });
  try {
    const r = await measureWebhook(cluster, n);
    const inRoute = (handler.ms.get('accepted') ?? []).slice(-n);
    process.stdout.write(
      `${latencyLine('webhook answer, accepted', r.accepted)} (goal p99 < 5 ms)\n${latencyLine('webhook answer, ignored ', r.ignored)}\n` +
        `${latencyLine('  of which in the route, accepted', summary(inRoute))}\n`,
    );
  } finally {
    await cluster.close();
  }
}
