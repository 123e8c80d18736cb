/**
 * The root filesystem of a secd/base variant, as a tarball for `docker import`: debootstrap of its
 * suite (minbase plus the base packages), then, for the torch variants, apt-get in a chroot for the
 * rest. Both download into one package cache per suite (`<cacheDir>/apt-archives/<suite>`, the
 * same `<pkg>_<version>_<arch>.deb` names for both tools), so a `--refresh`, another variant of the
 * same suite, or a rebuild after `docker image prune` fetches only what changed.
 *
 * Choices made here:
 * - The mirror is asked first (mirror-release.ts) whether it has the suite and components, so a
 *   mirror without `contrib` says so in a second instead of after debootstrap.
 * - The chroot gets /proc and the cache as mounts and a policy-rc.d that starts no service; all are
 *   undone before the tree is packed, and removeRootfs unmounts whatever a failure left behind.
 * - Pip's PEP 668 marker (`EXTERNALLY-MANAGED`) is removed: the image is the researcher's own
 *   environment, and `pip install` from a site mirror (DESIGN §12) must work in a RUN step.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { detectAptMirror } from './apt-sources.js';
import { aptSourcesList, type VariantSpec } from './base-image-variants.js';
import { checkMirrorRelease, type FetchText } from './mirror-release.js';
import { createPackageProgress } from './package-progress.js';

/** Used when neither the caller nor the machine's apt sources name a mirror. */
export const FALLBACK_MIRROR = 'http://deb.debian.org/debian';

/** Why a root filesystem could not be made; each is something an operator can fix. */
export type RootfsFailureCode =
  | 'not_root'
  | 'debootstrap_missing'
  | 'debootstrap_failed'
  | 'apt_failed'
  | 'suite_missing'
  | 'component_missing'
  | 'mirror_unreachable'
  | 'cancelled';

/** What bootstrapRootfs needs. */
export interface BootstrapOptions {
  cacheDir: string;
  mirror?: string;
  aptRoot?: string;
  signal?: AbortSignal;
  /** How the mirror's Release file is read (tests: a fake mirror). */
  fetchText?: FetchText;
}

/** The per-suite package cache shared by debootstrap and apt. */
export function packageCacheDir(cacheDir: string, suite: string): string {
  return path.join(cacheDir, 'apt-archives', suite);
}

interface Spawned {
  code: number | null;
  error: NodeJS.ErrnoException | null;
  tail: string[];
}

/** Runs a command, handing each output line (stdout and stderr) to `onLine`; keeps the last 40. */
export function runCommand(cmd: string, args: string[], onLine: (line: string) => void, opts: { signal?: AbortSignal; env?: NodeJS.ProcessEnv } = {}): Promise<Spawned> {
  return new Promise((resolve) => {
    const tail: string[] = [];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.env ? { env: opts.env } : {}) });
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

function mountsUnder(dir: string, mountsText: string): string[] {
  return mountsText
    .split('\n')
    .map((l) => (l.split(' ')[1] ?? '').replace(/\\040/g, ' '))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

async function unmountUnder(dir: string): Promise<void> {
  const mounts = mountsUnder(dir, await fs.promises.readFile('/proc/self/mounts', 'utf8').catch(() => ''));
  for (const m of mounts) await runCommand('umount', ['-l', m], () => {});
}

// debootstrap and the chroot mount /proc (and here the package cache) in the target; removing the
// folder through such a mount would delete from the host, so unmount first.
async function removeRootfs(dir: string): Promise<void> {
  await unmountUnder(dir);
  await runCommand('rm', ['-rf', '--one-file-system', dir], () => {});
}

// Bytes of the .deb files written to the cache since `sinceMs`: debootstrap prints no sizes.
function debBytesSince(dir: string, sinceMs: number): number {
  let total = 0;
  for (const f of fs.readdirSync(dir)) {
    if (!f.endsWith('.deb')) continue;
    const st = fs.statSync(path.join(dir, f), { throwIfNoEntry: false });
    if (st && st.mtimeMs >= sinceMs) total += st.size;
  }
  return total;
}

type Failure = { ok: false; code: RootfsFailureCode; reason: string };

// apt in the chroot: the variant's sources, the shared cache mounted as its archive, no services.
async function aptInstall(target: string, spec: VariantSpec, mirror: string, cache: string, progress: (l: string) => void, signal?: AbortSignal): Promise<Failure | null> {
  await fs.promises.writeFile(path.join(target, 'etc/apt/sources.list'), aptSourcesList(spec, mirror));
  const policy = path.join(target, 'usr/sbin/policy-rc.d');
  await fs.promises.writeFile(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  const archives = path.join(target, 'var/cache/apt/archives');
  await fs.promises.mkdir(archives, { recursive: true });
  const mount = async (args: string[]) => {
    const r = await runCommand('mount', args, progress);
    if (r.code !== 0) throw new Error(`mount ${args.join(' ')} failed: ${r.tail.join(' ')}`);
  };
  await mount(['-t', 'proc', 'proc', path.join(target, 'proc')]);
  await mount(['--bind', cache, archives]);
  try {
    const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', DEBIAN_FRONTEND: 'noninteractive', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' };
    const tracker = createPackageProgress();
    const errors: string[] = [];
    let cudnnFailed = false;
    const onLine = (line: string) => {
      if (/error processing package nvidia-cudnn/.test(line)) cudnnFailed = true;
      if (/^(E|W): /.test(line)) {
        progress(line);
        if (line.startsWith('E: ')) errors.push(line.slice(3));
      } else if (/^Need to get |^\d+ upgraded, /.test(line)) progress(`I: apt: ${line}`);
      const summary = tracker.observe(line);
      if (summary) progress(summary);
    };
    progress(`I: apt-get update (${spec.suite}: ${spec.components.join(' ')})`);
    const update = await runCommand('chroot', [target, 'apt-get', '-q', 'update'], onLine, { env, ...(signal ? { signal } : {}) });
    if (signal?.aborted) return { ok: false, code: 'cancelled', reason: 'base image build cancelled' };
    if (update.code !== 0) return { ok: false, code: 'apt_failed', reason: `apt-get update of ${spec.suite} from ${mirror} failed: ${errors.at(-1) ?? update.tail.at(-1) ?? `exit code ${update.code}`}` };
    progress(`I: apt-get install ${spec.aptPackages.join(' ')}`);
    const install = await runCommand(
      'chroot',
      [target, 'apt-get', '-q', '-y', '-o', 'APT::Install-Recommends=false', '-o', 'Dpkg::Use-Pty=0', 'install', ...spec.aptPackages],
      onLine,
      { env, ...(signal ? { signal } : {}) },
    );
    if (signal?.aborted) return { ok: false, code: 'cancelled', reason: 'base image build cancelled' };
    if (install.code !== 0) {
      if (cudnnFailed) {
        return {
          ok: false,
          code: 'apt_failed',
          reason: `nvidia-cudnn could not be set up: it downloads cuDNN from developer.download.nvidia.com while it installs, so the machine building ${spec.image} must reach that site for this build`,
        };
      }
      const why = errors.find((e) => /Unable to locate package|has no installation candidate/.test(e)) ?? errors.at(-1) ?? install.tail.at(-1) ?? `exit code ${install.code}`;
      return { ok: false, code: 'apt_failed', reason: `apt-get could not install ${spec.image}'s packages from ${mirror} ${spec.suite}: ${why}` };
    }
    return null;
  } finally {
    await unmountUnder(path.join(target, 'proc'));
    await unmountUnder(archives);
    await fs.promises.rm(policy, { force: true });
  }
}

/** Debootstraps `spec` (and apt-installs the rest) into a fresh folder and packs it into `tarball`; null on success. */
export async function bootstrapRootfs(opts: BootstrapOptions, spec: VariantSpec, tarball: string, progress: (l: string) => void): Promise<Failure | null> {
  const { suite } = spec;
  const mirror = opts.mirror ?? (await detectAptMirror(suite, opts.aptRoot)) ?? FALLBACK_MIRROR;
  const check = await checkMirrorRelease(mirror, spec, opts.fetchText);
  if (!check.ok) return check;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    const command = `sudo secd base-image${spec.variant === 'base' ? '' : ` --variant ${spec.variant}`}`;
    return { ok: false, code: 'not_root', reason: `debootstrap needs root: build ${spec.image} once on this machine with \`${command}\`` };
  }
  const cache = packageCacheDir(opts.cacheDir, suite);
  await fs.promises.mkdir(path.join(cache, 'partial'), { recursive: true });
  const target = path.join(opts.cacheDir, `rootfs-${suite}-${spec.variant}-${process.pid}-${Date.now()}`);
  progress(`I: debootstrap ${suite} (${spec.components.join(' ')}) from ${mirror} into ${target}, packages cached in ${cache}`);
  const started = Date.now() - 1000;
  const tracker = createPackageProgress({ bytesOnDisk: () => debBytesSince(cache, started) });
  try {
    const run = await runCommand(
      'debootstrap',
      ['--variant=minbase', `--components=${spec.components.join(',')}`, `--include=${spec.bootstrapPackages.join(',')}`, `--cache-dir=${cache}`, suite, target, mirror],
      (line) => {
        if (/^[IWE]: /.test(line) && !/^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) /.test(line)) progress(line);
        const summary = tracker.observe(line);
        if (summary) progress(summary);
      },
      opts.signal ? { signal: opts.signal } : {},
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
    const { fetched, fetchedBytes } = tracker.state();
    progress(`I: debootstrap fetched ${fetched} packages (${Math.round(fetchedBytes / 1e6)} MB; the rest came from the cache)`);
    if (spec.aptPackages.length > 0) {
      const failed = await aptInstall(target, spec, mirror, cache, progress, opts.signal);
      if (failed) return failed;
    }
    // Downloaded .debs and package lists are a third of the tree and useless without a network.
    const archives = path.join(target, 'var/cache/apt/archives');
    for (const f of await fs.promises.readdir(archives).catch(() => [] as string[])) if (f.endsWith('.deb')) await fs.promises.rm(path.join(archives, f), { force: true });
    const lists = path.join(target, 'var/lib/apt/lists');
    for (const f of await fs.promises.readdir(lists).catch(() => [] as string[])) if (f !== 'partial' && f !== 'lock') await fs.promises.rm(path.join(lists, f), { recursive: true, force: true });
    for (const dir of await fs.promises.readdir(path.join(target, 'usr/lib')).catch(() => [] as string[])) {
      if (/^python3(\.\d+)?$/.test(dir)) await fs.promises.rm(path.join(target, 'usr/lib', dir, 'EXTERNALLY-MANAGED'), { force: true });
    }

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
