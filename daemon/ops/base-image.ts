/**
 * `secd base-image`: builds `secd/base` and its variants (DESIGN §12; base-image-variants.ts says
 * what each holds) from a Debian mirror with debootstrap + `docker import`, because the cluster has
 * no image registry.
 *
 * Two layers, so that each changes only when it must: `secd/base-rootfs:<suite>[-<variant>]` is the
 * imported root filesystem, labelled with a hash of its package list, and the researcher's image
 * (`secd/base`, `secd/base:torch`, ...) adds the SDK on top (labelled with a hash of it, so a new secd
 * refreshes it in seconds). secd/base's rootfs tarball is cached, so a rebuild skips the minute of
 * debootstrap; a variant's is removed once imported (it is gigabytes), and its packages are cached
 * instead (rootfs-bootstrap.ts), so a rebuild downloads nothing. The mirror comes from the caller,
 * else from the machine's apt sources (apt-sources.ts).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ContainerEngine } from '../engine/container-engine.js';
import { baseImageVariantsIn, rootfsTagOf, variantPackagesHash, variantSpec, type BaseImageVariant, type VariantSpec } from './base-image-variants.js';
import type { FetchText } from './mirror-release.js';
import { bootstrapRootfs, type RootfsFailureCode } from './rootfs-bootstrap.js';

export { BASE_PACKAGES, DEFAULT_SUITE } from './base-image-variants.js';
export { FALLBACK_MIRROR } from './rootfs-bootstrap.js';

/** The image researchers' Dockerfiles start FROM. */
export const BASE_IMAGE = 'secd/base';
/** Dockerfile instructions applied at import (a rootfs tarball carries no image config). */
export const IMPORT_CHANGES = ['CMD ["python3"]', 'ENV LANG=C.UTF-8', 'ENV PYTHONUNBUFFERED=1'] as const;
/** Where the SDK lands: on Debian's python3 path, so `import secd` works with no pip. */
export const SDK_TARGET = '/usr/lib/python3/dist-packages/secd';

/** Options of buildBaseImage and ensureBaseImage. */
export interface BaseImageOptions {
  /** Holds the rootfs tarballs, the package cache and, while it runs, debootstrap's target folder (same filesystem). */
  cacheDir: string;
  /** Which image: secd/base (default), secd/base:torch, secd/base:torch-cuda. */
  variant?: BaseImageVariant;
  /** Debian mirror URL; default: the machine's apt sources, else FALLBACK_MIRROR. */
  mirror?: string;
  /** Overrides the variant's Debian suite. */
  suite?: string;
  /** The SDK package folder; default: the repository's sdk/python/secd when present; null: none. */
  sdkDir?: string | null;
  /** Ignore the cached rootfs tarball and run debootstrap again (a newer Debian point release); the package cache stays. */
  refreshRootfs?: boolean;
  /** debootstrap's and apt's I:/W:/E: lines, progress summaries and the final layer's build output. */
  onProgress?(line: string): void;
  signal?: AbortSignal;
  /** Root of the filesystem whose apt sources name the mirror (tests point it at a fixture). */
  aptRoot?: string;
  /** How the mirror's Release file is read (tests: a fake mirror). */
  fetchText?: FetchText;
}

/** Why the base image could not be built; each is something an operator can fix. */
export type BaseImageFailureCode = RootfsFailureCode | 'build_failed';

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
  return baseImageVariantsIn(dockerfileText).length > 0;
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

/** Path of the cached root filesystem tarball of a variant (its package-list hash in the name: another list, another file). */
export function rootfsTarballPath(cacheDir: string, spec: VariantSpec): string {
  const variant = spec.variant === 'base' ? '' : `-${spec.variant}`;
  return path.join(cacheDir, `secd-base-${spec.suite}${variant}-${variantPackagesHash(spec)}.tar`);
}

function specOf(opts: BaseImageOptions): VariantSpec {
  return variantSpec(opts.variant ?? 'base', opts.suite);
}

// The final image: the rootfs plus the SDK, built (not imported) so that it is a small layer.
async function buildSdkLayer(engine: ContainerEngine, opts: BaseImageOptions, spec: VariantSpec, sdkDir: string | null, progress: (l: string) => void): Promise<BaseImageResult> {
  const context = await fs.promises.mkdtemp(path.join(opts.cacheDir, 'sdk-layer-'));
  try {
    const lines = [`FROM ${rootfsTagOf(spec)}`];
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
      tag: spec.image,
      labels: {
        'secd.base.suite': spec.suite,
        'secd.base.variant': spec.variant,
        'secd.base.packages': variantPackagesHash(spec),
        'secd.base.sdk': await sdkHash(sdkDir),
      },
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
// One lock per suite: its variants share the package cache, which debootstrap and apt do not lock.
async function withBuildLock<T>(cacheDir: string, suite: string, fn: () => Promise<T>): Promise<T> {
  await fs.promises.mkdir(cacheDir, { recursive: true });
  const lock = path.join(cacheDir, `secd-base-${suite}.lock`);
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
  const spec = specOf(opts);
  const progress = opts.onProgress ?? (() => {});
  const sdkDir = opts.sdkDir === undefined ? defaultSdkDir() : opts.sdkDir;
  const tarball = rootfsTarballPath(opts.cacheDir, spec);
  const rootfsTag = rootfsTagOf(spec);
  const packages = variantPackagesHash(spec);
  let bootstrapped = false;

  const rootfsImage = reuseRootfsImage && !opts.refreshRootfs ? await engine.inspectImage(rootfsTag) : null;
  if (rootfsImage?.labels['secd.base.packages'] !== packages) {
    if (opts.refreshRootfs || !fs.existsSync(tarball)) {
      const failed = await bootstrapRootfs(opts, spec, tarball, progress);
      if (failed) return failed;
      bootstrapped = true;
    } else {
      progress(`I: reusing the cached root filesystem ${tarball}`);
    }
    progress(`I: importing ${rootfsTag}`);
    const changes = [...IMPORT_CHANGES, ...spec.importChanges, `LABEL secd.base.suite=${spec.suite}`, `LABEL secd.base.packages=${packages}`];
    await engine.importRootfs(fs.createReadStream(tarball), rootfsTag, changes);
    if (spec.variant !== 'base') await fs.promises.rm(tarball, { force: true });
  }
  progress(`I: building ${spec.image}${sdkDir ? ` with the SDK from ${sdkDir}` : ' (no SDK found)'}`);
  const result = await buildSdkLayer(engine, opts, spec, sdkDir, progress);
  return result.ok ? { ...result, bootstrapped } : result;
}

/** Builds a base image afresh (`secd base-image`): re-imports the cached rootfs tarball, or debootstraps when there is none. */
export async function buildBaseImage(engine: ContainerEngine, opts: BaseImageOptions): Promise<BaseImageResult> {
  return withBuildLock(opts.cacheDir, specOf(opts).suite, () => buildUnlocked(engine, opts, false));
}

/**
 * Makes sure a base image exists before a build that needs it: nothing happens when it is there with
 * the current SDK and package list; a changed SDK only rebuilds the top layer. An image without
 * secd's label (an operator's own) is left alone.
 */
export async function ensureBaseImage(engine: ContainerEngine, opts: BaseImageOptions): Promise<BaseImageResult> {
  const spec = specOf(opts);
  const sdkDir = opts.sdkDir === undefined ? defaultSdkDir() : opts.sdkDir;
  const upToDate = async () => {
    const info = await engine.inspectImage(spec.image);
    if (info === null) return null;
    const label = info.labels['secd.base.sdk'];
    if (label === undefined) return info;
    return label === (await sdkHash(sdkDir)) && info.labels['secd.base.packages'] === variantPackagesHash(spec) ? info : null;
  };
  const found = await upToDate();
  if (found) return { ok: true, imageId: found.id, bootstrapped: false, built: false };
  return withBuildLock(opts.cacheDir, spec.suite, async () => {
    const again = await upToDate();
    if (again) return { ok: true, imageId: again.id, bootstrapped: false, built: false };
    return buildUnlocked(engine, { ...opts, sdkDir }, true);
  });
}

/** Where base images are built and how: a node's mirror and cache folder. */
export interface BaseImageSource {
  mirror: string | null;
  cacheDir: string;
}

/**
 * The executor's `ensureBaseImage(onProgress, variant)`: builds the variant on first use; two runs
 * asking for the same variant at once share one build. Throws the failure's reason.
 */
export function baseImageEnsurer(engine: ContainerEngine, source: BaseImageSource): (onProgress: (line: string) => void, variant?: BaseImageVariant) => Promise<void> {
  const inFlight = new Map<BaseImageVariant, Promise<BaseImageResult>>();
  return async (onProgress, variant = 'base') => {
    let build = inFlight.get(variant);
    if (!build) {
      build = ensureBaseImage(engine, { variant, ...(source.mirror ? { mirror: source.mirror } : {}), cacheDir: source.cacheDir, onProgress }).finally(() => inFlight.delete(variant));
      inFlight.set(variant, build);
    }
    const result = await build;
    if (!result.ok) throw new Error(`the ${variantSpec(variant).image} image could not be built: ${result.reason}`);
  };
}
