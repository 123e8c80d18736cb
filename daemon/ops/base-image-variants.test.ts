import { describe, expect, it } from 'vitest';
import {
  aptSourcesList,
  baseImageVariantsIn,
  BASE_PACKAGES,
  parseVariant,
  rootfsTagOf,
  variantOfImageRef,
  variantPackagesHash,
  variantSpec,
} from './base-image-variants.js';

describe('which secd/base variant a Dockerfile needs', () => {
  it.each([
    ['FROM secd/base\n', ['base']],
    ['FROM secd/base:torch\nRUN python3 -c "import torch"\n', ['torch']],
    ['from  secd/base:torch-cuda AS train\n', ['torch-cuda']],
    ['FROM --platform=linux/amd64 docker.io/secd/base:torch\n', ['torch']],
    ['FROM \\\n  secd/base:torch\n', ['torch']],
    ['FROM secd/base:torch AS prep\nFROM secd/base\nFROM secd/base:torch\n', ['torch', 'base']],
    ['FROM secd/base:latest\n', ['base']],
    [`FROM secd/base:torch@sha256:${'b'.repeat(64)}\n`, ['torch']],
  ])('%j builds on %j', (text, variants) => {
    expect(baseImageVariantsIn(text)).toEqual(variants);
  });

  it.each(['FROM python:3.11\n', 'FROM secd/base-rootfs:bookworm-torch\n', 'FROM secd/baseline:torch\n', '# FROM secd/base:torch\nFROM debian\n', 'RUN echo FROM secd/base:torch\n'])(
    'nothing in %j',
    (text) => {
      expect(baseImageVariantsIn(text)).toEqual([]);
    },
  );

  it('reads a tag that is no variant as plain secd/base, and anything else as none', () => {
    expect(variantOfImageRef('secd/base:bookworm')).toBe('base');
    expect(variantOfImageRef('secd/base:torch-cuda')).toBe('torch-cuda');
    expect(variantOfImageRef('myregistry/secd/base:torch')).toBeNull();
  });
});

describe('the variants', () => {
  it('torch is Debian stable main with PyTorch and the scientific stack on top of everything in secd/base', () => {
    const torch = variantSpec('torch');
    expect(torch).toMatchObject({ image: 'secd/base:torch', suite: 'bookworm', components: ['main'] });
    expect(torch.bootstrapPackages).toEqual(BASE_PACKAGES);
    expect(torch.aptPackages).toEqual(['python3-torch', 'python3-torchvision', 'python3-sklearn', 'python3-pandas', 'python3-scipy', 'python3-matplotlib']);
  });

  it('torch-cuda is trixie with contrib and non-free, and the CUDA build of PyTorch instead of the CPU one', () => {
    const cuda = variantSpec('torch-cuda');
    expect(cuda).toMatchObject({ image: 'secd/base:torch-cuda', suite: 'trixie', components: ['main', 'contrib', 'non-free'] });
    expect(cuda.aptPackages).toContain('python3-torch-cuda');
    expect(cuda.aptPackages).not.toContain('python3-torch');
  });

  it('secd/base promises pip and CA certificates and needs no apt step', () => {
    const base = variantSpec('base');
    expect(base.image).toBe('secd/base');
    expect(base.bootstrapPackages).toEqual(expect.arrayContaining(['python3', 'python3-pip', 'ca-certificates', 'python3-numpy', 'python3-pymysql']));
    expect(base.aptPackages).toEqual([]);
  });

  it('writes each variant its own apt sources from one mirror', () => {
    expect(aptSourcesList(variantSpec('torch'), 'http://mirror.internal/debian/')).toBe('deb http://mirror.internal/debian bookworm main\n');
    expect(aptSourcesList(variantSpec('torch-cuda'), 'http://deb.debian.org/debian')).toBe('deb http://deb.debian.org/debian trixie main contrib non-free\n');
  });

  it('names each rootfs apart and hashes what goes into it', () => {
    expect(rootfsTagOf(variantSpec('base'))).toBe('secd/base-rootfs:bookworm');
    expect(rootfsTagOf(variantSpec('torch'))).toBe('secd/base-rootfs:bookworm-torch');
    expect(rootfsTagOf(variantSpec('torch-cuda'))).toBe('secd/base-rootfs:trixie-torch-cuda');
    const hashes = new Set([variantSpec('base'), variantSpec('torch'), variantSpec('torch-cuda'), variantSpec('base', 'trixie')].map(variantPackagesHash));
    expect(hashes.size).toBe(4);
    expect(variantPackagesHash(variantSpec('torch'))).toBe(variantPackagesHash(variantSpec('torch')));
  });

  it('refuses an unknown --variant and names the choices', () => {
    expect(parseVariant('torch')).toEqual({ ok: true, variant: 'torch' });
    expect(parseVariant('cuda')).toEqual({ ok: false, reason: 'unknown image variant "cuda": choose one of base, torch, torch-cuda' });
  });
});
