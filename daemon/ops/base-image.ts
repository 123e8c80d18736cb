/**
 * `secd base-image`: builds `secd/base` (Debian stable, Python 3, numpy, PyMySQL, the `secd` SDK)
 * from a Debian mirror with debootstrap + `docker import`, because the cluster has no image registry.
 *
 * Two layers, so that each changes only when it must: `secd/base-rootfs:<suite>` is the imported
 * root filesystem (its tarball is cached, so a rebuild skips the minute of debootstrap), and
 * `secd/base` adds the SDK on top (labelled with a hash of it, so a new secd refreshes it in seconds).
 * The mirror comes from the caller, else from the machine's apt sources (apt-sources.ts).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ContainerEngine } from '../engine/container-engine.js';
import { detectAptMirror } from './apt-sources.js';

/** The image researchers' Dockerfiles start FROM. */
export const BASE_IMAGE = 'secd/base';
/** Debian stable when this was written; an option, since stable moves. */
export const DEFAULT_SUITE = 'bookworm';
/** Used when neither the caller nor the machine's apt sources name a mirror. */
export const FALLBACK_MIRROR = 'http://deb.debian.org/debian';
/** Packages on top of minbase: what DESIGN §2 promises researchers. */
export const BASE_PACKAGES = ['python3', 'python3-numpy', 'python3-pymysql'] as const;
/** Dockerfile instructions applied at import (a rootfs tarball carries no image config). */
export const IMPORT_CHANGES = ['CMD ["python3"]', 'ENV LANG=C.UTF-8', 'ENV PYTHONUNBUFFERED=1'] as const;
/** Where the SDK lands: on Debian's python3 path, so `import secd` works with no pip. */
export const SDK_TARGET = '/usr/lib/python3/dist-packages/secd';

/** Options of buildBaseImage and ensureBaseImage. */
export interface BaseImageOptions {
  /** Holds `secd-base-<suite>.tar` and, while it runs, debootstrap's target folder (same filesystem). */
  cacheDir: string;
  /** Debian mirror URL; default: the machine's apt sources, else FALLBACK_MIRROR. */
  mirror?: string;
  suite?: string;
  /** The SDK package folder; default: the repository's sdk/python/secd when present; null: none. */
  sdkDir?: string | null;
  /** Ignore the cached rootfs tarball and run debootstrap again (a newer Debian point release). */
  refreshRootfs?: boolean;
  /** debootstrap's I:/W:/E: lines and the final layer's build output. */
  onProgress?(line: string): void;
  signal?: AbortSignal;
  /** Root of the filesystem whose apt sources name the mirror (tests point it at a fixture). */
  aptRoot?: string;
}

/** Why the base image could not be built; each is something an operator can fix. */
export type BaseImageFailureCode = 'not_root' | 'debootstrap_missing' | 'debootstrap_failed' | 'build_failed' | 'cancelled';

/** Outcome of building (or finding) the base image. */
export type BaseImageResult =
  | {
      ok: true;
      imageId: string;
      /** debootstrap ran (false: the cached tarball or the existing rootfs image served). */
      bootstrapped: boolean;
      /** Anything was built at all (false: ensureBaseImage found it up to date). */
      built: boolean;
    }
  | { ok: false; code: BaseImageFailureCode; reason: string };

/** True when a Dockerfile builds on secd/base (any tag or digest, `FROM` in any case, with or without `AS`). */
export function dockerfileUsesBaseImage(dockerfileText: string): boolean {
  const logical = dockerfileText.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  return logical.some((line) => {
    const m = /^\s*from\s+(?:--\S+\s+)*(\S+)/i.exec(line);
    return m !== null && /^(docker\.io\/)?secd\/base(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$/.test(m[1]!);
  });
}

/** The SDK folder shipped with secd (source tree or dist/), or null when it is not there. */
export function defaultSdkDir(): string | null {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const rel of ['../../sdk/python/secd', '../../../sdk/python/secd']) {
    const p = path.resolve(here, rel);
    if (fs.existsSync(p) && fs.statSync(p).isDirectory()) return p;
  }
  return null;
}

/** A short hash of the SDK's files (names and bytes, compiled caches left out), or 'none'. */
export async function sdkHash(sdkDir: string | null): Promise<string> {
  if (sdkDir === null) return 'none';
  const h = createHash('sha256');
  const walk = async (dir: string, rel: string): Promise<void> => {
    const entries = (await fs.promises.readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const e of entries) {
      if (e.name === '__pycache__' || e.name.endsWith('.pyc')) continue;
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(path.join(dir, e.name), r);
      else if (e.isFile()) h.update(`${r}\0`).update(await fs.promises.readFile(path.join(dir, e.name))).update('\0');
    }
  };
  await walk(sdkDir, '');
  return h.digest('hex').slice(0, 16);
}

function rootfsTag(suite: string): string {
  return `${BASE_IMAGE}-rootfs:${suite}`;
}

/** Path of the cached root filesystem tarball for a suite. */
export function rootfsTarballPath(cacheDir: string, suite: string): string {
  return path.join(cacheDir, `secd-base-${suite}.tar`);
}

interface Spawned {
  code: number | null;
  error: NodeJS.ErrnoException | null;
  tail: string[];
}

function runCommand(cmd: string, args: string[], onLine: (line: string) => void, signal?: AbortSignal): Promise<Spawned> {
  return new Promise((resolve) => {
    const tail: string[] = [];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(signal ? { signal } : {}) });
    let error: NodeJS.ErrnoException | null = null;
    const lines = (stream: NodeJS.ReadableStream) => {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        buf += d;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).replace(/\r$/, '');
          buf = buf.slice(i + 1);
          tail.push(line);
          if (tail.length > 40) tail.shift();
          onLine(line);
        }
      });
      stream.on('end', () => {
        if (buf) {
          tail.push(buf);
          onLine(buf);
        }
      });
    };
    lines(child.stdout);
    lines(child.stderr);
    child.on('error', (err) => {
      error = err;
    });
    child.on('close', (code) => resolve({ code, error, tail }));
  });
}

// debootstrap mounts /proc and /sys in its target while it works and may leave them behind when it
// fails; removing the folder through such a mount would delete from the host, so unmount first.
async function removeRootfs(dir: string): Promise<void> {
  const mounts = (await fs.promises.readFile('/proc/self/mounts', 'utf8').catch(() => ''))
    .split('\n')
    .map((l) => (l.split(' ')[1] ?? '').replace(/\\040/g, ' '))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await runCommand('umount', ['-l', m], () => {});
  await runCommand('rm', ['-rf', '--one-file-system', dir], () => {});
}

async function bootstrapRootfs(opts: BaseImageOptions, suite: string, tarball: string, progress: (l: string) => void): Promise<BaseImageResult | null> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return { ok: false, code: 'not_root', reason: 'debootstrap needs root: run `secd base-image` as root' };
  }
  const mirror = opts.mirror ?? (await detectAptMirror(suite, opts.aptRoot)) ?? FALLBACK_MIRROR;
  await fs.promises.mkdir(opts.cacheDir, { recursive: true });
  const target = path.join(opts.cacheDir, `rootfs-${suite}-${process.pid}-${Date.now()}`);
  progress(`I: debootstrap ${suite} from ${mirror} into ${target}`);
  try {
    const run = await runCommand(
      'debootstrap',
      ['--variant=minbase', `--include=${BASE_PACKAGES.join(',')}`, suite, target, mirror],
      (line) => {
        if (/^[IWE]: /.test(line)) progress(line);
      },
      opts.signal,
    );
    if (opts.signal?.aborted) return { ok: false, code: 'cancelled', reason: 'base image build cancelled' };
    if (run.error?.code === 'ENOENT') {
      return { ok: false, code: 'debootstrap_missing', reason: 'debootstrap is not installed (apt-get install debootstrap)' };
    }
    if (run.code !== 0) {
      const log = await fs.promises.readFile(path.join(target, 'debootstrap/debootstrap.log'), 'utf8').catch(() => '');
      for (const l of log.trim().split('\n').slice(-5)) if (l) progress(`debootstrap.log: ${l}`);
      const last = [...run.tail].reverse().find((l) => l.startsWith('E: ')) ?? run.tail[run.tail.length - 1] ?? `exit code ${run.code}`;
      return { ok: false, code: 'debootstrap_failed', reason: `debootstrap ${suite} from ${mirror} failed: ${last.replace(/^E: /, '')}` };
    }
    // Downloaded .debs and package lists are a third of the tree and useless without a network.
    const archives = path.join(target, 'var/cache/apt/archives');
    for (const f of await fs.promises.readdir(archives).catch(() => [] as string[])) if (f.endsWith('.deb')) await fs.promises.rm(path.join(archives, f), { force: true });
    const lists = path.join(target, 'var/lib/apt/lists');
    for (const f of await fs.promises.readdir(lists).catch(() => [] as string[])) if (f !== 'partial' && f !== 'lock') await fs.promises.rm(path.join(lists, f), { force: true });

    progress(`I: packing the root filesystem into ${tarball}`);
    const partial = `${tarball}.partial-${process.pid}`;
    const tar = await runCommand(
      'tar',
      ['--numeric-owner', '-C', target, '--exclude=./proc/*', '--exclude=./sys/*', '--exclude=./dev/*', '-cf', partial, '.'],
      progress,
    );
    if (tar.code !== 0) {
      await fs.promises.rm(partial, { force: true });
      throw new Error(`tar of ${target} failed: ${tar.tail.join(' ') || tar.error?.message}`);
    }
    await fs.promises.rename(partial, tarball);
    return null;
  } finally {
    await removeRootfs(target);
  }
}

// The final image: the rootfs plus the SDK, built (not imported) so that it is a small layer.
async function buildSdkLayer(engine: ContainerEngine, opts: BaseImageOptions, suite: string, sdkDir: string | null, progress: (l: string) => void): Promise<BaseImageResult> {
  const context = await fs.promises.mkdtemp(path.join(opts.cacheDir, 'sdk-layer-'));
  try {
    const lines = [`FROM ${rootfsTag(suite)}`];
    if (sdkDir !== null) {
      await fs.promises.cp(sdkDir, path.join(context, 'secd'), {
        recursive: true,
        filter: (src) => !src.includes(`${path.sep}__pycache__`) && !src.endsWith('.pyc'),
      });
      lines.push(`COPY secd ${SDK_TARGET}`);
    }
    await fs.promises.writeFile(path.join(context, 'Dockerfile'), `${lines.join('\n')}\n`);
    const built = await engine.buildImage({
      contextDir: context,
      tag: BASE_IMAGE,
      labels: { 'secd.base.suite': suite, 'secd.base.sdk': await sdkHash(sdkDir) },
      onLog: progress,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (!built.ok) return { ok: false, code: built.code === 'cancelled' ? 'cancelled' : 'build_failed', reason: built.reason };
    return { ok: true, imageId: built.imageId, bootstrapped: false, built: true };
  } finally {
    await fs.promises.rm(context, { recursive: true, force: true });
  }
}

// Two builders on one machine (the node and a `secd run`, or two test files) would debootstrap twice
// and race on the tags; a lock file in the cache folder makes the second wait and then reuse.
async function withBuildLock<T>(cacheDir: string, fn: () => Promise<T>): Promise<T> {
  await fs.promises.mkdir(cacheDir, { recursive: true });
  const lock = path.join(cacheDir, 'secd-base.lock');
  for (;;) {
    try {
      await fs.promises.writeFile(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(await fs.promises.readFile(lock, 'utf8').catch(() => ''));
      let alive = false;
      if (Number.isInteger(holder) && holder > 0) {
        try {
          process.kill(holder, 0);
          alive = true;
        } catch (e) {
          alive = (e as NodeJS.ErrnoException).code === 'EPERM';
        }
      }
      if (!alive) await fs.promises.rm(lock, { force: true });
      else await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.promises.rm(lock, { force: true });
  }
}

async function buildUnlocked(engine: ContainerEngine, opts: BaseImageOptions, reuseRootfsImage: boolean): Promise<BaseImageResult> {
  const suite = opts.suite ?? DEFAULT_SUITE;
  const progress = opts.onProgress ?? (() => {});
  const sdkDir = opts.sdkDir === undefined ? defaultSdkDir() : opts.sdkDir;
  const tarball = rootfsTarballPath(opts.cacheDir, suite);
  let bootstrapped = false;

  const haveRootfsImage = reuseRootfsImage && !opts.refreshRootfs && (await engine.imageExists(rootfsTag(suite)));
  if (!haveRootfsImage) {
    if (opts.refreshRootfs || !fs.existsSync(tarball)) {
      const failed = await bootstrapRootfs(opts, suite, tarball, progress);
      if (failed) return failed;
      bootstrapped = true;
    } else {
      progress(`I: reusing the cached root filesystem ${tarball}`);
    }
    progress(`I: importing ${rootfsTag(suite)}`);
    await engine.importRootfs(fs.createReadStream(tarball), rootfsTag(suite), [...IMPORT_CHANGES, `LABEL secd.base.suite=${suite}`]);
  }
  progress(`I: building ${BASE_IMAGE}${sdkDir ? ` with the SDK from ${sdkDir}` : ' (no SDK found)'}`);
  const result = await buildSdkLayer(engine, opts, suite, sdkDir, progress);
  return result.ok ? { ...result, bootstrapped } : result;
}

/** Builds secd/base afresh (`secd base-image`): re-imports the cached rootfs tarball, or debootstraps when there is none. */
export async function buildBaseImage(engine: ContainerEngine, opts: BaseImageOptions): Promise<BaseImageResult> {
  return withBuildLock(opts.cacheDir, () => buildUnlocked(engine, opts, false));
}

/**
 * Makes sure secd/base exists before a build that needs it: nothing happens when it is there with
 * the current SDK; a changed SDK only rebuilds the top layer. An image without secd's label (an
 * operator's own) is left alone.
 */
export async function ensureBaseImage(engine: ContainerEngine, opts: BaseImageOptions): Promise<BaseImageResult> {
  const sdkDir = opts.sdkDir === undefined ? defaultSdkDir() : opts.sdkDir;
  const upToDate = async () => {
    const info = await engine.inspectImage(BASE_IMAGE);
    if (info === null) return null;
    const label = info.labels['secd.base.sdk'];
    return label === undefined || label === (await sdkHash(sdkDir)) ? info : null;
  };
  const found = await upToDate();
  if (found) return { ok: true, imageId: found.id, bootstrapped: false, built: false };
  return withBuildLock(opts.cacheDir, async () => {
    const again = await upToDate();
    if (again) return { ok: true, imageId: again.id, bootstrapped: false, built: false };
    return buildUnlocked(engine, { ...opts, sdkDir }, true);
  });
}
