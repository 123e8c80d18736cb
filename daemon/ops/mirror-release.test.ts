import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerEngine } from '../engine/container-engine.js';
import { buildBaseImage } from './base-image.js';
import { variantSpec } from './base-image-variants.js';
import { checkMirrorRelease, releaseComponents } from './mirror-release.js';

// A site mirror as one often is: stable only, and only main (InRelease signed, as Debian's are).
const BOOKWORM_INRELEASE = `-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Origin: Debian
Suite: stable
Codename: bookworm
Components: main
Description: Debian 12.11 Released 17 May 2025
-----BEGIN PGP SIGNATURE-----
iQIzBAEBCgAdFiEE
-----END PGP SIGNATURE-----
`;
const TRIXIE_RELEASE = 'Origin: Debian\nCodename: trixie\nComponents: main contrib\n';

describe('asking the Debian mirror before building', () => {
  let server: http.Server;
  let mirror: string;
  const asked: string[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      asked.push(req.url ?? '');
      const files: Record<string, string> = {
        '/debian/dists/bookworm/InRelease': BOOKWORM_INRELEASE,
        '/debian/dists/trixie/Release': TRIXIE_RELEASE,
      };
      const body = files[req.url ?? ''];
      res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'text/plain' }).end(body ?? 'not found');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    mirror = `http://127.0.0.1:${(server.address() as AddressInfo).port}/debian`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('reads the components of a signed InRelease file', () => {
    expect(releaseComponents(BOOKWORM_INRELEASE)).toEqual(['main']);
    expect(releaseComponents('Origin: x\n')).toEqual([]);
  });

  it('passes when the mirror has the suite and its components', async () => {
    expect(await checkMirrorRelease(mirror, variantSpec('torch'))).toEqual({ ok: true });
    expect(asked).toContain('/debian/dists/bookworm/InRelease');
  });

  it('names the component the mirror lacks (trixie without non-free)', async () => {
    const check = await checkMirrorRelease(mirror, variantSpec('torch-cuda'));
    expect(check).toEqual({
      ok: false,
      code: 'component_missing',
      reason: `the Debian mirror ${mirror} carries trixie with components main, contrib, but secd/base:torch-cuda needs non-free: add it to the mirror, or give another with --mirror`,
    });
    expect(asked).toContain('/debian/dists/trixie/Release');
  });

  it('names the suite the mirror lacks', async () => {
    const check = await checkMirrorRelease(mirror, variantSpec('base', 'forky'));
    expect(check.ok).toBe(false);
    if (check.ok) return;
    expect(check.code).toBe('suite_missing');
    expect(check.reason).toBe(
      `the Debian mirror ${mirror} has no suite forky (no ${mirror}/dists/forky/InRelease or Release), which secd/base is built from: add forky to the mirror, or give another with --mirror`,
    );
  });

  it('says so when the mirror cannot be reached at all', async () => {
    const check = await checkMirrorRelease('http://127.0.0.1:1/debian', variantSpec('base'));
    expect(check).toMatchObject({ ok: false, code: 'mirror_unreachable' });
    if (!check.ok) expect(check.reason).toContain('http://127.0.0.1:1/debian could not be reached');
  });

  it('`secd base-image --variant torch-cuda` against that mirror fails at once with the reason, before debootstrap or docker', async () => {
    const untouchable = new Proxy({} as ContainerEngine, {
      get: (_t, name) => () => {
        throw new Error(`the engine was called (${String(name)}) before the mirror was checked`);
      },
    });
    const lines: string[] = [];
    const cacheDir = path.join(os.tmpdir(), `secd-mirror-check-${process.pid}`);
    const result = await buildBaseImage(untouchable, { variant: 'torch-cuda', mirror, cacheDir, onProgress: (l) => lines.push(l) }).finally(() =>
      fs.rmSync(cacheDir, { recursive: true, force: true }),
    );
    expect(result).toMatchObject({ ok: false, code: 'component_missing' });
    if (!result.ok) expect(result.reason).toContain('needs non-free');
    expect(lines.some((l) => l.includes('debootstrap'))).toBe(false);
  });
});
