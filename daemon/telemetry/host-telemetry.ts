/**
 * The node's host figures for `hello`/`status`: load, CPUs, memory, and the disk holding
 * `cache_root`. The only file that imports systeminformation.
 *
 * - load: the 1-minute load average, as `uptime` shows it (null where the OS has none: Windows).
 *   systeminformation's `currentLoad().avgLoad` divides by the CPU count and takes the largest of
 *   the 1/5/15-minute values, which no operator would recognise, so this reads `os.loadavg()`.
 * - cpus: the CPUs this process may use (`os.availableParallelism()`, which honours affinity).
 * - memory: systeminformation's total and *available* memory (Linux `MemAvailable`: free plus
 *   reclaimable cache), which is what a run can still get; `free` alone is near 0 on a busy host.
 * - disk: systeminformation's `fsSize()` (df: size and the space available to non-root users),
 *   choosing the filesystem whose mount point holds `diskPath` and checking it is the same device,
 *   so a path on a filesystem df does not list (tmpfs) reads as unknown rather than as `/`.
 *   `df` blocks on a hung NFS mount, so a disk query that outlasts `diskTimeoutMs` reads as unknown
 *   and no second one starts until it returns. fsSize spawns df and reads /proc/mounts with a
 *   blocking execSync, and free space moves slowly, so the disk figures are re-read at most every
 *   `diskRefreshMs` (default 10 s) rather than on every 2-second report.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import si from 'systeminformation';
import { errorText } from '../../scheduler/common/errors.js';
import type { Log } from '../../scheduler/common/log.js';
import type { HostStatus } from '../../scheduler/contract/protocol.js';

/** Reads the host's figures. */
export interface HostTelemetry {
  /**
   * The host now, already in the words of the status message (scheduler/contract/protocol.ts
   * `hostStatusSchema`: whole bytes); null = unknown. Free memory is what new work can get (free
   * plus reclaimable cache); the disk is the filesystem holding `diskPath`, its free space what
   * unprivileged users may still write.
   */
  sample(): Promise<HostStatus>;
}

/** What `createHostTelemetry` needs. */
export interface HostTelemetryOptions {
  /** A path on the filesystem to report (the node's `cache_root`); need not exist yet. */
  diskPath: string;
  log?: Log;
  /** How long one disk query may take before it reads as unknown, default 5 s. */
  diskTimeoutMs?: number;
  /** How long disk figures are reused before df runs again, default 10 s (0: every sample). */
  diskRefreshMs?: number;
  /** The clock (milliseconds) that ages the disk figures and times a slow df; default `Date.now`. */
  nowMs?: () => number;
}

type Disk = { totalBytes: number; freeBytes: number } | null;

// The nearest existing folder at or above `p` (cache_root may not be created yet).
async function existingAncestor(p: string): Promise<string> {
  let dir = path.resolve(p);
  for (;;) {
    try {
      return await fs.realpath(dir);
    } catch {
      const up = path.dirname(dir);
      if (up === dir) return dir;
      dir = up;
    }
  }
}

function isUnder(child: string, mount: string): boolean {
  if (mount === '/') return child.startsWith('/');
  return child === mount || child.startsWith(`${mount}/`);
}

async function diskHolding(diskPath: string): Promise<{ disk: Disk; why?: string }> {
  const target = await existingAncestor(diskPath);
  const filesystems = await si.fsSize();
  const candidates = filesystems
    .filter((f) => typeof f.mount === 'string' && f.mount.startsWith('/') && isUnder(target, f.mount))
    .sort((a, b) => b.mount.length - a.mount.length);
  const best = candidates[0];
  if (!best) return { disk: null, why: `no filesystem listed by df holds ${target}` };
  const [targetStat, mountStat] = await Promise.all([fs.stat(target), fs.stat(best.mount)]);
  if (targetStat.dev !== mountStat.dev) {
    return { disk: null, why: `${target} is on a filesystem df does not list (closest mount: ${best.mount})` };
  }
  if (!Number.isFinite(best.size) || !Number.isFinite(best.available)) {
    return { disk: null, why: `df gave no size for ${best.mount}` };
  }
  return { disk: { totalBytes: best.size, freeBytes: best.available } };
}

// The wire carries whole, non-negative byte counts.
function wholeBytes(n: number): number {
  return Math.max(0, Math.round(n));
}

/** Creates host telemetry reporting the filesystem that holds `diskPath`. */
export function createHostTelemetry(opts: HostTelemetryOptions): HostTelemetry {
  const nowMs = opts.nowMs ?? Date.now;
  const diskTimeoutMs = opts.diskTimeoutMs ?? 5_000;
  const diskRefreshMs = opts.diskRefreshMs ?? 10_000;
  let lastDisk: { at: number; disk: Disk } | null = null;
  const log = opts.log?.child({ component: 'host-telemetry' });
  let diskInFlight: Promise<Disk> | null = null;
  let diskStartedAt = 0;
  let lastWhy: string | undefined;

  function queryDisk(): Promise<Disk> {
    if (diskInFlight) return diskInFlight;
    diskStartedAt = nowMs();
    diskInFlight = diskHolding(opts.diskPath)
      .then(({ disk, why }) => {
        if (why !== lastWhy && why) log?.warn({ disk_path: opts.diskPath }, `disk of cache_root unknown: ${why}`);
        lastWhy = why;
        lastDisk = { at: nowMs(), disk };
        return disk;
      })
      .catch((err: unknown) => {
        const why = errorText(err);
        if (why !== lastWhy) log?.warn({ disk_path: opts.diskPath }, `disk of cache_root unknown: ${why}`);
        lastWhy = why;
        return null;
      })
      .finally(() => {
        diskInFlight = null;
      });
    return diskInFlight;
  }

  return {
    async sample() {
      const memory = si.mem();
      let disk: Disk | 'timeout';
      if (lastDisk && nowMs() - lastDisk.at < diskRefreshMs) {
        disk = lastDisk.disk;
      } else {
        // A df still running from an earlier sample is waited for only up to its own deadline.
        const started = diskInFlight ? diskStartedAt : nowMs();
        const query = queryDisk();
        const waitMs = Math.max(0, started + diskTimeoutMs - nowMs());
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), waitMs);
          timer.unref();
        });
        disk = await Promise.race([query, timeout]);
        clearTimeout(timer);
        if (disk === 'timeout' && waitMs > 0) {
          log?.warn({ disk_path: opts.diskPath, timeout_ms: diskTimeoutMs }, 'disk query (df) did not answer in time');
        }
      }
      const mem = await memory;
      const known = disk === 'timeout' ? null : disk;
      return {
        load: process.platform === 'win32' ? null : (os.loadavg()[0] ?? null),
        cpus: os.availableParallelism(),
        memory_total_bytes: wholeBytes(mem.total),
        memory_free_bytes: wholeBytes(mem.available),
        disk_total_bytes: known ? wholeBytes(known.totalBytes) : null,
        disk_free_bytes: known ? wholeBytes(known.freeBytes) : null,
      };
    },
  };
}
