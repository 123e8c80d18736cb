/**
 * Webhook answer latency of a running leader: `n` distinct accepted pushes (each a new `after`,
 * as n commits pushed one after another would be) and `n` ignored ones (another branch), sent by
 * hook-client.ts in its own process, as GitLab sends them. The accepted pushes name commits the
 * repository does not hold, so their verification (in the background, after the answer) fails
 * fast: the leader still does all of a push's background work while the next delivery arrives.
 *
 * Three setups, side by side in one run (each round in a different order, against the load's drift):
 *  - `split` (the honest one): the GitLab double in its own process (split-leader.ts), as a real
 *    GitLab is; the leader in this process, its loop watched (leader-loop.ts);
 *  - `ungated`: the same, with the leader's intake gate off (scheduler/lifecycle/intake-gate.ts:
 *    quietMs 0, no limit on checks), which is how the leader behaved before it: a push's status and
 *    checks start on the next turn of the loop, between the answers of the burst;
 *  - `inproc` (the old harness): double, leader and in-process node all in this process
 *    (cluster-harness.ts), where the double's `git http-backend` spawns share the leader's loop.
 * Every setup first times a bare node:http server (floor-server.ts) with the same sender: this
 * machine's floor at that moment. Goal: p99 < 5 ms for accepted pushes at 200 pushes.
 *
 * Run alone: npm run build && node dist/test/bench/webhook-latency.js [n] [rounds]
 *   SECD_BENCH_SETUPS=split,ungated,inproc (the default: all three)
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { silentLog, type Log } from '../../scheduler/common/log.js';
import type { RecordedDelivery } from '../doubles/gitlab-double.js';
import type { Cluster } from '../support/cluster-harness.js';
import { loopLines, watchLoop, type LoopReport } from './leader-loop.js';

/** p50/p99 of one kind of delivery, in ms. */
export interface Latency {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/** Where the double runs and whether the leader's intake gate is on (see the header). */
export type Setup = 'split' | 'ungated' | 'inproc';

/** The leader's pacing before the intake gate: everything on the next turn, no limit on checks. */
const UNGATED = { quietMs: 0, maxWaitMs: 0, maxChecks: Number.MAX_SAFE_INTEGER };

/** One setup's figures: the sender's times, the route's own, and the leader's loop during each burst. */
export interface WebhookFigures {
  setup: Setup;
  accepted: Latency;
  ignored: Latency;
  /** From the route's start to the answer, as the leader logs it ('webhook answered' `ms`). */
  inRoute: { accepted: Latency; ignored: Latency };
  loop: { accepted: LoopReport; ignored: LoopReport };
  /** The same accepted bodies answered by a bare node:http server (floor-server.ts) just before: this machine's floor now. */
  floor: Latency;
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new Error('percentile of no samples');
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function summary(ms: readonly number[]): Latency {
  return { n: ms.length, p50: percentile(ms, 50), p99: percentile(ms, 99), max: Math.max(...ms) };
}

/** Send the bodies from a separate process and return each answer's time; `onStarted` once it is spawned. */
function sendFromOtherProcess(url: string, headers: Record<string, string>, bodies: string[], keyPrefix: string, onStarted = () => {}): Promise<number[]> {
  const client = join(import.meta.dirname, 'hook-client.js');
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [client], { maxBuffer: 2 ** 26 }, (err, stdout) => {
      if (err) return reject(err);
      const out = JSON.parse(stdout) as { statuses: number[]; ms: number[] };
      const bad = out.statuses.findIndex((s) => s !== 200);
      if (bad >= 0) return reject(new Error(`delivery ${bad} answered ${out.statuses[bad]}`));
      resolve(out.ms);
    });
    onStarted();
    child.stdin!.end(JSON.stringify({ url, headers, bodies, keyPrefix }));
  });
}

/** Send the bodies to a bare node:http server in its own process (floor-server.ts): the machine's floor. */
async function floorOf(headers: Record<string, string>, bodies: string[]): Promise<Latency> {
  const { spawn } = await import('node:child_process');
  const { createInterface } = await import('node:readline');
  const server = spawn(process.execPath, [join(import.meta.dirname, 'floor-server.js')], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      createInterface({ input: server.stdout! }).once('line', (line) => resolve((JSON.parse(line) as { url: string }).url));
      server.once('exit', (code) => reject(new Error(`floor-server exited (${code}) before printing its URL`)));
    });
    return summary(await sendFromOtherProcess(url, headers, bodies, `floor-${Date.now()}-`));
  } finally {
    server.stdin!.end();
    if (server.exitCode === null) await new Promise((r) => server.once('exit', r));
  }
}

/** A hex sha that differs per i and is no commit of the repository. */
function fakeSha(i: number): string {
  return `f${i.toString(16).padStart(39, '0')}`;
}

/** What the bursts need of a setup: the real push's delivery, the leader's store to watch, and settling. */
interface BurstTarget {
  template: RecordedDelivery;
  store: object;
  handler: HandlerTimes;
  settle(): Promise<void>;
}

/** `n` accepted then `n` ignored deliveries shaped like the template, the leader's loop watched for each burst. */
async function sendBursts(setup: WebhookFigures['setup'], t: BurstTarget, n: number): Promise<WebhookFigures> {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(t.template.headers)) if (!/^(idempotency-key|x-gitlab-event-uuid|content-length)$/i.test(k)) headers[k] = v;
  const shape = JSON.parse(t.template.body) as Record<string, unknown>;
  const accepted = Array.from({ length: n }, (_, i) => JSON.stringify({ ...shape, before: i === 0 ? shape.after : fakeSha(i - 1), after: fakeSha(i) }));
  const ignored = Array.from({ length: n }, (_, i) => JSON.stringify({ ...shape, ref: 'refs/heads/other', after: fakeSha(i) }));
  const routeFrom = { accepted: t.handler.ms.get('accepted')?.length ?? 0, ignored: t.handler.ms.get('ignored')?.length ?? 0 };
  const floor = await floorOf(headers, accepted);
  const stamp = Date.now();
  // Each window opens once the sender is spawned (that spawn is the benchmark's, not the leader's).
  const burst = async (bodies: string[], prefix: string): Promise<[number[], LoopReport]> => {
    const watches: Array<ReturnType<typeof watchLoop>> = [];
    const ms = await sendFromOtherProcess(t.template.url, headers, bodies, prefix, () => watches.push(watchLoop({ store: t.store })));
    return [ms, watches[0]!.stop()];
  };
  const [acceptedMs, loopAccepted] = await burst(accepted, `bench-accepted-${stamp}-`);
  const [ignoredMs, loopIgnored] = await burst(ignored, `bench-ignored-${stamp}-`);
  await t.settle();
  const route = (action: 'accepted' | 'ignored') => summary((t.handler.ms.get(action) ?? []).slice(routeFrom[action]));
  return {
    setup,
    accepted: summary(acceptedMs),
    ignored: summary(ignoredMs),
    inRoute: { accepted: route('accepted'), ignored: route('ignored') },
    loop: { accepted: loopAccepted, ignored: loopIgnored },
    floor,
  };
}

/**
 * The old setup, on `cluster` (double, leader and node in this process): one real push of a project
 * without a Dockerfile gives the delivery's shape; then the bursts. `handler` must be the cluster's log.
 */
export async function measureWebhook(cluster: Cluster, handler: HandlerTimes, n = 200): Promise<WebhookFigures> {
  const who = await cluster.addResearcher({ username: 'latency', project: 'bench/latency' });
  const from = cluster.gitlab.deliveries.length;
  await who.pushRun({ 'a.txt': 'a' }, { message: 'no dockerfile' });
  const template = cluster.gitlab.deliveries[from];
  if (!template) throw new Error('the push sent no webhook');
  await cluster.settle();
  return sendBursts('inproc', { template, store: cluster.leader.store, handler, settle: () => cluster.settle() }, n);
}

/** The honest setup: the double in its own process, the leader in this one (split-leader.ts); `ungated`: the gate off. */
export async function measureSplitWebhook(n = 200, setup: 'split' | 'ungated' = 'split'): Promise<WebhookFigures> {
  const { startSplitLeader } = await import('./split-leader.js');
  // The leader logs as `secd leader` does (pino JSON lines, written asynchronously), to /dev/null.
  const { createLogger } = await import('../../daemon/wiring/logger.js');
  const { openSync } = await import('node:fs');
  const handler = handlerTimes(createLogger({ fd: openSync('/dev/null', 'w') }));
  const split = await startSplitLeader(handler.log, setup === 'ungated' ? UNGATED : undefined);
  try {
    const [template] = await split.push({ 'a.txt': 'a' }, 'no dockerfile');
    if (!template || template.status !== 200) throw new Error(`the push's webhook was not answered 200: ${JSON.stringify(template ?? null)}`);
    await split.settle();
    const figures = await sendBursts(setup, { template, store: split.leader.store, handler, settle: () => split.settle() }, n);
    const counts = await split.gitlab.call('counts', {});
    // The fake commits' fetches fail in the double as they would in GitLab ("not our ref"): expected.
    const unexpected = counts.internalErrors.filter((e) => !/not our ref f[0-9a-f]{39}/.test(e));
    if (unexpected.length > 0) throw new Error(`the GitLab double failed: ${unexpected.slice(0, 3).join('; ')}`);
    return figures;
  } finally {
    await split.close();
  }
}

/** The in-process setup from scratch (its own cluster), for the side-by-side run. */
export async function measureInProcessWebhook(n = 200): Promise<WebhookFigures> {
  const { startCluster } = await import('../support/cluster-harness.js');
  const handler = handlerTimes();
  const cluster = await startCluster({ log: handler.log });
  try {
    return await measureWebhook(cluster, handler, n);
  } finally {
    await cluster.close();
  }
}

/** The leader's own time for each answered hook, by action (from its 'webhook answered' lines). */
export interface HandlerTimes {
  log: Log;
  ms: Map<string, number[]>;
}

/**
 * A Log that passes everything to `inner` and keeps the leader's own time for each answered hook
 * (its 'webhook answered' line: from the route's start to the answer), by action; hand it to the leader. The difference to what
 * the sender measures is the wait for the event loop and the network.
 */
export function handlerTimes(inner: Log = silentLog): HandlerTimes {
  const ms = new Map<string, number[]>();
  const tap = (through: Log): Log => ({
    debug: (obj, msg) => through.debug(obj, msg),
    warn: (obj, msg) => through.warn(obj, msg),
    error: (obj, msg) => through.error(obj, msg),
    info(obj: object, msg?: string) {
      through.info(obj, msg);
      const o = obj as { action?: unknown; ms?: unknown };
      if (msg !== 'webhook answered' || typeof o.ms !== 'number') return;
      const action = String(o.action);
      const list = ms.get(action) ?? [];
      list.push(o.ms);
      ms.set(action, list);
    },
    child: (bindings) => tap(through.child(bindings)),
  });
  return { log: tap(inner), ms };
}

export function latencyLine(label: string, l: Latency): string {
  return `${label} (n=${l.n}): p50 ${l.p50.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms, max ${l.max.toFixed(1)} ms`;
}

const SETUP_NAMES: Record<Setup, string> = {
  split: 'GitLab double in its own process',
  ungated: 'GitLab double in its own process, intake gate off (the leader before it)',
  inproc: 'GitLab double in the leader process (old harness)',
};

/** The printout of one setup, indented by `indent`. */
export function webhookLines(f: WebhookFigures, indent = ''): string[] {
  return [
    `${indent}webhook, ${SETUP_NAMES[f.setup]}:`,
    `${indent}  ${latencyLine('floor: bare node:http   ', f.floor)} (same bodies, same sender, just before)`,
    `${indent}  ${latencyLine('webhook answer, accepted', f.accepted)} (goal p99 < 5 ms)`,
    `${indent}  ${latencyLine('  of which in the route ', f.inRoute.accepted)}`,
    ...loopLines(`${indent}    `, f.loop.accepted),
    `${indent}  ${latencyLine('webhook answer, ignored ', f.ignored)}`,
    `${indent}  ${latencyLine('  of which in the route ', f.inRoute.ignored)}`,
    ...loopLines(`${indent}    `, f.loop.ignored),
  ];
}

/**
 * Measure one setup in a fresh process (this file with `--setup`): each leader starts from a heap
 * without the previous setup's garbage, whose collection would otherwise land in the next burst.
 */
export function measureInFreshProcess(setup: Setup, n = 200): Promise<WebhookFigures> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [import.meta.filename, '--setup', setup, String(n)], { maxBuffer: 2 ** 26 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`webhook-latency --setup ${setup} failed: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout) as WebhookFigures);
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const known: Setup[] = ['split', 'ungated', 'inproc'];
  if (process.argv[2] === '--setup') {
    // One setup, in this fresh process; the figures go out as JSON.
    const setup = process.argv[3] as Setup;
    if (!known.includes(setup)) throw new Error(`--setup must be one of ${known.join(', ')} (got ${setup})`);
    const n = Number(process.argv[4] ?? 200);
    const f = setup === 'inproc' ? await measureInProcessWebhook(n) : await measureSplitWebhook(n, setup);
    process.stdout.write(JSON.stringify(f));
  } else {
    const n = Number(process.argv[2] ?? 200);
    const rounds = Number(process.argv[3] ?? 1);
    const setups = (process.env.SECD_BENCH_SETUPS ?? 'split,ungated,inproc').split(',').map((x) => x.trim());
    const bad = setups.find((x) => !(known as string[]).includes(x));
    if (bad !== undefined) throw new Error(`SECD_BENCH_SETUPS lists ${JSON.stringify(bad)}: each must be one of ${known.join(', ')}`);
    if (!Number.isInteger(n) || n < 1 || !Number.isInteger(rounds) || rounds < 1) throw new Error('usage: webhook-latency.js [n ≥ 1] [rounds ≥ 1]');
    const { cpus, loadavg } = await import('node:os');
    const p99s = new Map<string, number[]>();
    for (let round = 1; round <= rounds; round++) {
      // Each round in another order, so that a load that drifts during the run favours no setup.
      const order = [...setups.slice((round - 1) % setups.length), ...setups.slice(0, (round - 1) % setups.length)] as Setup[];
      process.stdout.write(`round ${round} of ${rounds}, n=${n}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} CPUs\n`);
      for (const setup of order) {
        const f = await measureInFreshProcess(setup, n);
        process.stdout.write(`${webhookLines(f, '  ').join('\n')}\n`);
        for (const [k, v] of [[`${setup} accepted`, f.accepted.p99], [`${setup} ignored`, f.ignored.p99], [`${setup} floor`, f.floor.p99]] as const) {
          p99s.set(k, [...(p99s.get(k) ?? []), v]);
        }
      }
    }
    process.stdout.write(`p99 over ${rounds} round(s), min / median / max (ms):\n`);
    for (const [k, v] of p99s) process.stdout.write(`  ${k.padEnd(18)} ${Math.min(...v).toFixed(2)} / ${percentile(v, 50).toFixed(2)} / ${Math.max(...v).toFixed(2)}\n`);
  }
}
