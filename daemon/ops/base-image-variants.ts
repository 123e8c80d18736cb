/**
 * The images `secd base-image` builds (DESIGN §12), as data: which Debian suite and components each
 * comes from, which packages debootstrap installs and which apt adds in the chroot afterwards, and
 * which of them a Dockerfile's `FROM` lines need.
 *
 * Choices made here:
 * - `secd/base` stays debootstrap-only (about a hundred packages, a minute); the torch variants add
 *   hundreds of packages with alternatives and virtual names that debootstrap's resolver gets wrong,
 *   so apt installs those in the chroot, with Recommends off (they pull compilers and -dev packages).
 * - `torch-cuda` is Debian 13 "trixie", where `python3-torch-cuda` lives (contrib; its CUDA runtime
 *   libraries are in non-free). It conflicts with the CPU `python3-torch`, so it is its own image.
 *   Its `nvidia-cudnn` dependency is an installer that fetches cuDNN from NVIDIA when it is set up:
 *   a site whose build machine reaches only Debian mirrors must allow that host for this one build.
 * - A `FROM secd/base:<tag>` whose tag is no variant (`secd/base:bookworm`, an operator's own) is
 *   read as plain secd/base, as before variants existed: the build then says what is missing.
 */
import { createHash } from 'node:crypto';

/** The variants `secd base-image --variant` accepts; `base` is plain secd/base. */
export const BASE_IMAGE_VARIANTS = ['base', 'torch', 'torch-cuda'] as const;
/** One of BASE_IMAGE_VARIANTS. */
export type BaseImageVariant = (typeof BASE_IMAGE_VARIANTS)[number];

/** What one variant is made of. */
export interface VariantSpec {
  variant: BaseImageVariant;
  /** The image researchers write in FROM. */
  image: string;
  /** Debian suite it is bootstrapped from. */
  suite: string;
  /** Archive components its packages need (checked against the mirror's Release file first). */
  components: readonly string[];
  /** Installed by debootstrap on top of minbase. */
  bootstrapPackages: readonly string[];
  /** Installed by apt in the chroot after debootstrap (none for secd/base). */
  aptPackages: readonly string[];
  /** Extra Dockerfile instructions applied at import. */
  importChanges: readonly string[];
}

/** Debian stable when this was written; an option, since stable moves. */
export const DEFAULT_SUITE = 'bookworm';

/** Packages on top of minbase: what DESIGN §12 promises in secd/base. */
export const BASE_PACKAGES = ['ca-certificates', 'python3', 'python3-pip', 'python3-numpy', 'python3-pymysql'] as const;

// Matplotlib without a display: Agg writes PNGs, which is all a run can do with a figure.
const TORCH_CHANGES = ['ENV MPLBACKEND=Agg'] as const;

const SPECS: Record<BaseImageVariant, Omit<VariantSpec, 'variant'>> = {
  base: { image: 'secd/base', suite: DEFAULT_SUITE, components: ['main'], bootstrapPackages: BASE_PACKAGES, aptPackages: [], importChanges: [] },
  torch: {
    image: 'secd/base:torch',
    suite: DEFAULT_SUITE,
    components: ['main'],
    bootstrapPackages: BASE_PACKAGES,
    aptPackages: ['python3-torch', 'python3-torchvision', 'python3-sklearn', 'python3-pandas', 'python3-scipy', 'python3-matplotlib'],
    importChanges: TORCH_CHANGES,
  },
  'torch-cuda': {
    image: 'secd/base:torch-cuda',
    suite: 'trixie',
    components: ['main', 'contrib', 'non-free'],
    bootstrapPackages: BASE_PACKAGES,
    aptPackages: ['python3-torch-cuda', 'python3-torchvision', 'python3-sklearn', 'python3-pandas', 'python3-scipy', 'python3-matplotlib'],
    importChanges: TORCH_CHANGES,
  },
};

/** The spec of a variant; `suite` overrides its Debian suite (`secd/base` on a newer stable). */
export function variantSpec(variant: BaseImageVariant, suite?: string): VariantSpec {
  const spec = SPECS[variant];
  return { variant, ...spec, suite: suite ?? spec.suite };
}

/** Parses `--variant`: a known name, or a sentence naming the choices. */
export function parseVariant(text: string): { ok: true; variant: BaseImageVariant } | { ok: false; reason: string } {
  const found = BASE_IMAGE_VARIANTS.find((v) => v === text);
  if (found) return { ok: true, variant: found };
  return { ok: false, reason: `unknown image variant ${JSON.stringify(text)}: choose one of ${BASE_IMAGE_VARIANTS.join(', ')}` };
}

/**
 * A short hash of what goes into a variant's root filesystem (suite, components, packages, import
 * changes): an image or cached tarball with another hash was made from another list and is rebuilt.
 */
export function variantPackagesHash(spec: VariantSpec): string {
  const text = JSON.stringify([spec.suite, spec.components, spec.bootstrapPackages, spec.aptPackages, spec.importChanges]);
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}

/** The imported root filesystem a variant's final image is built on. */
export function rootfsTagOf(spec: VariantSpec): string {
  return spec.variant === 'base' ? `secd/base-rootfs:${spec.suite}` : `secd/base-rootfs:${spec.suite}-${spec.variant}`;
}

/** The variant a FROM image reference names, or null when it is not secd/base at all. */
export function variantOfImageRef(ref: string): BaseImageVariant | null {
  const m = /^(?:docker\.io\/)?secd\/base(?::([\w][\w.-]{0,127}))?(?:@sha256:[0-9a-f]{64})?$/.exec(ref);
  if (!m) return null;
  const tag = m[1];
  return tag === 'torch' || tag === 'torch-cuda' ? tag : 'base';
}

/** The secd/base variants a Dockerfile builds on, in FROM order, each once (`FROM` in any case, with flags, `AS`, continuations). */
export function baseImageVariantsIn(dockerfileText: string): BaseImageVariant[] {
  const logical = dockerfileText.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  const out: BaseImageVariant[] = [];
  for (const line of logical) {
    const m = /^\s*from\s+(?:--\S+\s+)*(\S+)/i.exec(line);
    const variant = m ? variantOfImageRef(m[1]!) : null;
    if (variant !== null && !out.includes(variant)) out.push(variant);
  }
  return out;
}

/** The `sources.list` a variant's chroot installs from: its suite with its components, from one mirror. */
export function aptSourcesList(spec: VariantSpec, mirror: string): string {
  return `deb ${mirror.replace(/\/+$/, '')} ${spec.suite} ${spec.components.join(' ')}\n`;
}
