import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Log } from '../../scheduler/common/log.js';
import { createHostTelemetry } from './host-telemetry.js';

const run = promisify(execFile);
const GiB = 1024 ** 3;

// What df says about the filesystem holding `p`: POSIX output, 1024-byte blocks.
async function df(p: string): Promise<{ totalBytes: number; availableBytes: number; mount: string }> {
  const { stdout } = await run('df', ['-kP', p]);
  const fields = stdout.trim().split('\n')[1]!.trim().split(/\s+/);
  return { totalBytes: Number(fields[1]) * 1024, availableBytes: Number(fields[3]) * 1024, mount: fields[5]! };
}

function meminfoKiB(key: string): number {
  const line = readFileSync('/proc/meminfo', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${key}:`));
  return Number(/(\d+)/.exec(line ?? '')?.[1]);
}

let cacheRoot: string;
beforeAll(async () => {
  cacheRoot = await fs.mkdtemp(path.join(os.tmpdir(), 'secd-cache-root-'));
});
afterAll(async () => {
  await fs.rm(cacheRoot, { recursive: true, force: true });
});

it('reports this machine’s CPUs, memory, load and the disk holding cache_root as os and df see them', async () => {
  const sample = await createHostTelemetry({ diskPath: cacheRoot }).sample();
  const seen = await df(cacheRoot);

  expect(sample.cpus).toBe(os.availableParallelism());
  expect(sample.memory_total_bytes).toBe(os.totalmem());
  // Available memory moves while the tests run: compare with /proc/meminfo within 10 %.
  const available = meminfoKiB('MemAvailable') * 1024;
  expect(sample.memory_free_bytes).toBeGreaterThan(0);
  expect(sample.memory_free_bytes).toBeLessThanOrEqual(sample.memory_total_bytes);
  expect(Math.abs(sample.memory_free_bytes - available)).toBeLessThan(available * 0.1);
  // The 1-minute load average of /proc/loadavg (it moves slowly; others share the machine).
  const loadavg = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  expect(sample.load).not.toBeNull();
  expect(Math.abs(sample.load! - loadavg)).toBeLessThan(1.5);
  // The filesystem's size is fixed; the space available moves as others write.
  expect(sample.disk_total_bytes).toBe(seen.totalBytes);
  expect(Math.abs(sample.disk_free_bytes! - seen.availableBytes)).toBeLessThan(GiB);
  expect(sample.disk_free_bytes!).toBeLessThanOrEqual(sample.disk_total_bytes!);
});

it('a cache_root not created yet reports the filesystem it will be created on', async () => {
  const notYet = path.join(cacheRoot, 'not', 'created', 'yet');
  const sample = await createHostTelemetry({ diskPath: notYet }).sample();
  expect(sample.disk_total_bytes).toBe((await df(cacheRoot)).totalBytes);
});

// A tmpfs (df as systeminformation runs it leaves tmpfs out): the disk must read as unknown, not as `/`.
const tmpfsMount = readFileSync('/proc/mounts', 'utf8')
  .split('\n')
  .map((l) => l.split(' '))
  .find((f) => f[2] === 'tmpfs' && f[1] === '/dev/shm')?.[1];

it.skipIf(!tmpfsMount)('a cache_root on a filesystem df does not list reads as unknown and says why', async () => {
  const warnings: string[] = [];
  const log: Log = {
    debug() {},
    info() {},
    warn: (_o, msg) => void warnings.push(msg ?? ''),
    error() {},
    child: () => log,
  };
  const sample = await createHostTelemetry({ diskPath: tmpfsMount!, log }).sample();
  expect(sample.disk_total_bytes).toBeNull();
  expect(sample.disk_free_bytes).toBeNull();
  expect(sample.memory_total_bytes).toBe(os.totalmem());
  expect(warnings.join('\n')).toMatch(/disk of cache_root unknown: \/dev\/shm is on a filesystem df does not list/);
});
