/**
 * Which image a build gets on first use, with an engine that only records: a variant that is up to
 * date is left alone, one made from another package list is rebuilt on its own rootfs, and an
 * operator's own image of that name (no secd labels) is never touched.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BuildRequest, ContainerEngine, ImageInfo } from '../engine/container-engine.js';
import { baseImageEnsurer, ensureBaseImage, sdkHash } from './base-image.js';
import { variantPackagesHash, variantSpec } from './base-image-variants.js';

const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'secd-ensure-'));
afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

function recordingEngine(images: Record<string, ImageInfo>) {
  const builds: Array<{ tag: string; dockerfile: string; labels: Record<string, string> }> = [];
  const engine = {
    inspectImage: async (ref: string) => images[ref] ?? null,
    imageExists: async (ref: string) => ref in images,
    async buildImage(req: BuildRequest) {
      builds.push({ tag: req.tag, dockerfile: fs.readFileSync(path.join(req.contextDir, 'Dockerfile'), 'utf8'), labels: req.labels ?? {} });
      return { ok: true as const, imageId: `sha256:${'1'.repeat(64)}` };
    },
    importRootfs: async () => {
      throw new Error('nothing should be imported: the rootfs image is current');
    },
  } as unknown as ContainerEngine;
  return { engine, builds };
}

const torch = variantSpec('torch');
const current = async (over: Record<string, string> = {}) => ({
  'secd.base.sdk': await sdkHash(null),
  'secd.base.packages': variantPackagesHash(torch),
  ...over,
});

describe('secd/base:torch on first use', () => {
  it('is left alone when it carries the current SDK and package list', async () => {
    const { engine, builds } = recordingEngine({ 'secd/base:torch': { id: 'sha256:t', labels: await current() } });
    expect(await ensureBaseImage(engine, { variant: 'torch', cacheDir, sdkDir: null })).toEqual({ ok: true, imageId: 'sha256:t', bootstrapped: false, built: false });
    expect(builds).toEqual([]);
  });

  it('made from another package list, it is rebuilt on its own current rootfs, labelled with its variant', async () => {
    const { engine, builds } = recordingEngine({
      'secd/base:torch': { id: 'sha256:old', labels: await current({ 'secd.base.packages': 'older-list' }) },
      'secd/base-rootfs:bookworm-torch': { id: 'sha256:r', labels: { 'secd.base.packages': variantPackagesHash(torch) } },
    });
    const lines: string[] = [];
    const result = await ensureBaseImage(engine, { variant: 'torch', cacheDir, sdkDir: null, onProgress: (l) => lines.push(l) });
    expect(result).toMatchObject({ ok: true, bootstrapped: false, built: true });
    expect(builds).toEqual([
      {
        tag: 'secd/base:torch',
        dockerfile: 'FROM secd/base-rootfs:bookworm-torch\n',
        labels: { 'secd.base.suite': 'bookworm', 'secd.base.variant': 'torch', 'secd.base.packages': variantPackagesHash(torch), 'secd.base.sdk': 'none' },
      },
    ]);
    expect(lines).toContain('I: building secd/base:torch (no SDK found)');
  });

  it("an operator's own secd/base:torch (no secd labels) is used as it is", async () => {
    const { engine, builds } = recordingEngine({ 'secd/base:torch': { id: 'sha256:own', labels: {} } });
    const ensure = baseImageEnsurer(engine, { mirror: null, cacheDir });
    await ensure(() => {}, 'torch');
    expect(builds).toEqual([]);
  });

  it('two runs asking for the same variant at once share one build, and a failure names the image', async () => {
    const { engine, builds } = recordingEngine({
      'secd/base:torch': { id: 'sha256:old', labels: await current({ 'secd.base.sdk': 'older-sdk' }) },
      'secd/base-rootfs:bookworm-torch': { id: 'sha256:r', labels: { 'secd.base.packages': variantPackagesHash(torch) } },
    });
    const ensure = baseImageEnsurer(engine, { mirror: null, cacheDir });
    await Promise.all([ensure(() => {}, 'torch'), ensure(() => {}, 'torch')]);
    expect(builds.map((b) => b.tag)).toEqual(['secd/base:torch']);
    const failing = { ...engine, buildImage: async () => ({ ok: false as const, code: 'build_failed' as const, reason: 'disk full' }) };
    await expect(baseImageEnsurer(failing, { mirror: null, cacheDir })(() => {}, 'torch')).rejects.toThrow('the secd/base:torch image could not be built: disk full');
  });
});
