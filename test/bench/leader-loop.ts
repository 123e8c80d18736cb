/**
 * What held the leader's event loop during a benchmark window, measured in the leader's own process:
 * the loop's delay (perf_hooks.monitorEventLoopDelay sampling every millisecond), the synchronous
 * part of every child-process spawn (ChildProcess.prototype.spawn, which all of child_process and
 * simple-git go through: fork/exec runs on the calling thread), garbage-collection pauses, and,
 * for objects the caller names, the synchronous time of their methods (for an async method, such
 * as the run store's since its queries went through Kysely, only the part up to its first await: the
 * query itself runs later, inside the driver). A diagnostic for benchmarks only: it patches and
 * restores, nothing ships with it.
 */
import { ChildProcess } from 'node:child_process';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

/** n, total, p99 and max of a set of durations, in ms. */
export interface Durations {
  n: number;
  totalMs: number;
  p99: number;
  max: number;
}

/** The window's figures. */
export interface LoopReport {
  /** The event loop's delay: how late a 1 ms timer fired, in ms. */
  delay: { p50: number; p99: number; max: number; mean: number };
  /** The synchronous part of each spawn (fork + exec on the loop's thread). */
  spawns: Durations;
  gc: Durations;
  /** Per watched method ("store.transition"), its synchronous time. */
  methods: Record<string, Durations>;
  windowMs: number;
}

function durations(xs: number[]): Durations {
  if (xs.length === 0) return { n: 0, totalMs: 0, p99: 0, max: 0 };
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, totalMs: s.reduce((a, b) => a + b, 0), p99: s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)]!, max: s[s.length - 1]! };
}

/** Start watching; `stop()` restores what was patched and returns the window's figures. */
export function watchLoop(watched: Record<string, object> = {}): { stop(): LoopReport } {
  const started = performance.now();
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  const spawnMs: number[] = [];
  const proto = ChildProcess.prototype as unknown as { spawn: (...a: unknown[]) => unknown };
  const originalSpawn = proto.spawn;
  proto.spawn = function timedSpawn(this: unknown, ...args: unknown[]) {
    const t0 = performance.now();
    try {
      return originalSpawn.apply(this, args);
    } finally {
      spawnMs.push(performance.now() - t0);
    }
  };
  const gcMs: number[] = [];
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs.push(e.duration);
  });
  gc.observe({ entryTypes: ['gc'] });
  const methodMs = new Map<string, number[]>();
  const restore: Array<() => void> = [];
  for (const [label, obj] of Object.entries(watched)) {
    const target = obj as Record<string, unknown>;
    let proto: object | null = Object.getPrototypeOf(obj) as object | null;
    const names = new Set<string>();
    while (proto && proto !== Object.prototype) {
      for (const name of Object.getOwnPropertyNames(proto)) if (name !== 'constructor') names.add(name);
      proto = Object.getPrototypeOf(proto) as object | null;
    }
    for (const name of names) {
      const fn = target[name];
      if (typeof fn !== 'function') continue;
      const key = `${label}.${name}`;
      const timed = function (this: unknown, ...args: unknown[]) {
        const t0 = performance.now();
        try {
          return (fn as (...a: unknown[]) => unknown).apply(this, args);
        } finally {
          const list = methodMs.get(key) ?? [];
          list.push(performance.now() - t0);
          methodMs.set(key, list);
        }
      };
      target[name] = timed;
      restore.push(() => delete target[name]);
    }
  }
  return {
    stop() {
      histogram.disable();
      proto.spawn = originalSpawn;
      gc.disconnect();
      for (const r of restore) r();
      const ms = (ns: number) => ns / 1e6;
      const methods: Record<string, Durations> = {};
      for (const [k, v] of methodMs) methods[k] = durations(v);
      return {
        delay: { p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max), mean: ms(histogram.mean) },
        spawns: durations(spawnMs),
        gc: durations(gcMs),
        methods,
        windowMs: performance.now() - started,
      };
    },
  };
}

/** One or two lines for a report: the loop's delay, spawns, GC and the busiest watched methods. */
export function loopLines(indent: string, r: LoopReport): string[] {
  const d = (x: Durations) => `${x.n} × (total ${x.totalMs.toFixed(1)} ms, p99 ${x.p99.toFixed(2)} ms, max ${x.max.toFixed(1)} ms)`;
  const busiest = Object.entries(r.methods)
    .filter(([, v]) => v.n > 0)
    .sort((a, b) => b[1].totalMs - a[1].totalMs)
    .slice(0, 4)
    .map(([k, v]) => `${k} ${v.n}× ${v.totalMs.toFixed(1)} ms (max ${v.max.toFixed(1)})`);
  return [
    `${indent}leader loop delay over ${(r.windowMs / 1000).toFixed(1)} s: p50 ${r.delay.p50.toFixed(2)} ms, p99 ${r.delay.p99.toFixed(2)} ms, max ${r.delay.max.toFixed(1)} ms`,
    `${indent}  spawns ${d(r.spawns)}; GC ${d(r.gc)}`,
    ...(busiest.length > 0 ? [`${indent}  sync in ${busiest.join(', ')}`] : []),
  ];
}
