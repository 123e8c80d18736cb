/**
 * Failpoints, as in etcd's gofail and TiKV's fail-rs: named places in the code where a crash test
 * stops the process, so "killed exactly between the push and the journal update" is a repeatable
 * test rather than a race. In production nothing is armed and `failpoint(name)` is one Map lookup.
 *
 * Arming, from outside the process: `SECD_FAILPOINTS=name[@hit][,name[@hit]…]` kills the process
 * with SIGKILL (no cleanup, no flush: what a power cut or `kill -9` leaves) the `hit`-th time (1 unless
 * given) the named point is passed. Inside a test process, `armFailpoints(handler)` calls `handler`
 * at every point instead; a handler may throw (the in-process stand-in for a kill) or record.
 */

/** What an in-process test does when a point is passed. */
export type FailpointHandler = (name: string) => void;

interface Armed {
  hit: number;
  seen: number;
}

const fromEnv = parseFailpoints(process.env.SECD_FAILPOINTS ?? '');
let handler: FailpointHandler | null = null;

/** Pass the named point: kills the process when the environment armed it, or calls a test's handler. */
export function failpoint(name: string): void {
  if (handler !== null) handler(name);
  if (fromEnv.size === 0) return;
  const armed = fromEnv.get(name);
  if (armed === undefined) return;
  armed.seen += 1;
  if (armed.seen === armed.hit) {
    process.stderr.write(`secd: failpoint ${name} (hit ${armed.hit}): killing the process\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}

/** Call `fn` at every failpoint of this process until the returned function disarms it (tests only). */
export function armFailpoints(fn: FailpointHandler): () => void {
  handler = fn;
  return () => {
    if (handler === fn) handler = null;
  };
}

/** `a,b@3` → {a: hit 1, b: hit 3}; a malformed entry is an error naming it (a silent typo would make a crash test pass). */
export function parseFailpoints(spec: string): Map<string, Armed> {
  const out = new Map<string, Armed>();
  for (const raw of spec.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const m = /^([a-z0-9][a-z0-9._-]*)(?:@([1-9][0-9]*))?$/.exec(raw);
    if (!m) throw new Error(`SECD_FAILPOINTS: "${raw}" is not name or name@hit (lowercase letters, digits, . _ -; hit from 1)`);
    out.set(m[1]!, { hit: m[2] ? Number(m[2]) : 1, seen: 0 });
  }
  return out;
}
