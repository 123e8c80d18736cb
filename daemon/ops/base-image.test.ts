import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectAptMirror, parseDeb822Sources, parseOneLineSources, pickDebianMirror } from './apt-sources.js';
import { BASE_IMAGE, defaultSdkDir, dockerfileUsesBaseImage, ensureBaseImage, sdkHash } from './base-image.js';
import { containerRequestFor, outputsVolumeName } from '../executor/container-profile.js';
import { createDockerEngine } from '../engine/docker-engine.js';
import { LogCapture } from '../executor/log-capture.js';
import { extractOutputsArchive } from '../results/outputs-archive.js';

// A Debian 12 container's /etc/apt/sources.list.d/debian.sources, with an inline key as some sites use.
const DEBIAN_SOURCES = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;

const SITE_MIRROR_SOURCES = `Types: deb deb-src
URIs: https://mirror.cluster.example/debian/
Suites: bookworm
Components: main contrib
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBGPL0BUBEAC...
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
URIs: http://old.example/debian
Suites: bookworm
Enabled: no
`;

describe('finding the Debian mirror', () => {
  it('reads deb822 stanzas, including continuation lines and Enabled: no', () => {
    expect(parseDeb822Sources(SITE_MIRROR_SOURCES)).toEqual([
      { types: ['deb', 'deb-src'], uris: ['https://mirror.cluster.example/debian/'], suites: ['bookworm'], enabled: true },
      { types: ['deb'], uris: ['http://old.example/debian'], suites: ['bookworm'], enabled: false },
    ]);
  });

  it('picks the main archive of a stock Debian machine, not the security one', () => {
    expect(pickDebianMirror(parseDeb822Sources(DEBIAN_SOURCES), 'bookworm')).toBe('http://deb.debian.org/debian');
  });

  it("picks the site's own mirror and drops the trailing slash", () => {
    expect(pickDebianMirror(parseDeb822Sources(SITE_MIRROR_SOURCES), 'bookworm')).toBe('https://mirror.cluster.example/debian');
  });

  it('reads one-line sources.list entries with options', () => {
    const text = '# comment\ndeb-src http://src.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main # trailing\n';
    expect(parseOneLineSources(text)).toEqual([
      { types: ['deb-src'], uris: ['http://src.example/debian'], suites: ['bookworm'], enabled: true },
      { types: ['deb'], uris: ['http://mirror.example/debian'], suites: ['bookworm'], enabled: true },
    ]);
    expect(pickDebianMirror(parseOneLineSources(text), 'bookworm')).toBe('http://mirror.example/debian');
  });

  it('on a Debian trixie machine still uses its Debian mirror for bookworm', () => {
    const text = 'deb http://ftp.example.org/debian trixie main\n';
    expect(pickDebianMirror(parseOneLineSources(text), 'bookworm')).toBe('http://ftp.example.org/debian');
  });

  it('never picks an Ubuntu archive', () => {
    const text = 'deb http://archive.ubuntu.com/ubuntu jammy main\ndeb http://archive.ubuntu.com/ubuntu jammy-updates main\n';
    expect(pickDebianMirror(parseOneLineSources(text), 'bookworm')).toBeNull();
  });

  it('reads sources.list.d before sources.list from a filesystem root', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'secd-apt-'));
    try {
      fs.mkdirSync(path.join(root, 'etc/apt/sources.list.d'), { recursive: true });
      fs.writeFileSync(path.join(root, 'etc/apt/sources.list.d/site.sources'), SITE_MIRROR_SOURCES);
      fs.writeFileSync(path.join(root, 'etc/apt/sources.list'), 'deb http://deb.debian.org/debian bookworm main\n');
      expect(await detectAptMirror('bookworm', root)).toBe('https://mirror.cluster.example/debian');
      fs.rmSync(path.join(root, 'etc/apt/sources.list.d'), { recursive: true });
      expect(await detectAptMirror('bookworm', root)).toBe('http://deb.debian.org/debian');
      fs.rmSync(path.join(root, 'etc/apt/sources.list'));
      expect(await detectAptMirror('bookworm', root)).toBeNull();
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('dockerfileUsesBaseImage', () => {
  it.each([
    'FROM secd/base\nCOPY . /app\n',
    'from secd/base:latest\n',
    '# comment\nARG X=1\nFROM secd/base:bookworm AS train\nRUN true\n',
    'FROM --platform=linux/amd64 secd/base\n',
    'FROM alpine AS tools\nFROM secd/base\nCOPY --from=tools /x /x\n',
    'FROM \\\n  secd/base\n',
    `FROM secd/base@sha256:${'a'.repeat(64)}\n`,
  ])('sees secd/base in %j', (text) => {
    expect(dockerfileUsesBaseImage(text)).toBe(true);
  });

  it.each([
    'FROM python:3.11\n',
    'FROM secd/base-rootfs:bookworm\n',
    'FROM secd/baseline\n',
    '# FROM secd/base\nFROM debian\n',
    'RUN echo FROM secd/base\n',
    'FROM myregistry/secd/base\n',
    '',
  ])('does not see secd/base in %j', (text) => {
    expect(dockerfileUsesBaseImage(text)).toBe(false);
  });
});

describe('the SDK hash', () => {
  it('changes with the SDK and ignores compiled caches', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'secd-sdk-'));
    try {
      fs.writeFileSync(path.join(dir, '__init__.py'), 'x = 1\n');
      const a = await sdkHash(dir);
      fs.mkdirSync(path.join(dir, '__pycache__'));
      fs.writeFileSync(path.join(dir, '__pycache__', '__init__.cpython-311.pyc'), 'junk');
      expect(await sdkHash(dir)).toBe(a);
      fs.writeFileSync(path.join(dir, '__init__.py'), 'x = 2\n');
      expect(await sdkHash(dir)).not.toBe(a);
      expect(await sdkHash(null)).toBe('none');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// The real thing: debootstrap + docker import, about two minutes the first time on a machine; the
// image (and the rootfs tarball) are kept afterwards, so later runs only check it.
describe('secd/base on the real engine', () => {
  it('is built when missing and runs numpy and PyMySQL without a network', async () => {
    const engine = createDockerEngine();
    const progress: string[] = [];
    const cacheDir = path.join(os.tmpdir(), 'secd-test-base-cache');
    const result = await ensureBaseImage(engine, { cacheDir, onProgress: (l) => progress.push(l) });
    if (!result.ok) throw new Error(`${result.code}: ${result.reason}\n${progress.slice(-30).join('\n')}`);
    expect(result.imageId).toMatch(/^sha256:/);
    if (result.bootstrapped) expect(progress.some((l) => l.startsWith('I: Base system installed successfully'))).toBe(true);

    const again = await ensureBaseImage(engine, { cacheDir });
    expect(again).toEqual({ ok: true, imageId: result.imageId, bootstrapped: false, built: false });

    const outputs = fs.mkdtempSync(path.join(os.tmpdir(), 'secd-base-out-'));
    try {
      const sdk = defaultSdkDir();
      const script = [
        'import os, sys, numpy, pymysql, pip',
        sdk ? 'import secd' : '',
        'print("numpy", numpy.__version__, "pymysql", pymysql.__version__)',
        'print("python", sys.version_info[0], os.environ["LANG"], os.environ["PYTHONUNBUFFERED"], os.environ["OUTPUT_PATH"])',
        'open(os.path.join(os.environ["OUTPUT_PATH"], "mean.txt"), "w").write(str(numpy.arange(5).mean()))',
      ].filter(Boolean).join('\n');
      const req = containerRequestFor(
        {
          runId: `base-${process.pid}`,
          project: 'secd-test/base',
          commit: '0'.repeat(40),
          source: '/dev/null',
          user: 'tester',
          signer: null,
          runforMs: 120_000,
          gpus: [],
          cacheDir: null,
          mountPath: '/cache',
          env: {},
          warnings: [],
          createdAt: new Date().toISOString(),
        },
        { cacheHostDir: null },
        { imageId: BASE_IMAGE, memoryBytes: 512 * 2 ** 20, pidsLimit: 256, stopGraceMs: 1000 },
      );
      expect(req.create.HostConfig.NetworkMode).toBe('none');
      const log = new LogCapture();
      const run = await engine.runContainer(
        { ...req, create: { ...req.create, Cmd: ['python3', '-c', script] } },
        {
          onLog: (b) => log.append(b),
          // /outputs is the run's volume: read it back before the container goes, as the executor does.
          onExited: async (id) => {
            const tar = await engine.readArchive(id, '/outputs/.');
            if (tar) await extractOutputsArchive(tar, outputs, { maxFileBytes: 1 << 20, maxTotalBytes: 1 << 20 });
          },
        },
      );
      await engine.removeVolume(outputsVolumeName(req.create.Labels['secd.run']!));
      expect(log.toString()).toMatch(/^numpy \d+\.\d+\.\d+ pymysql \d+\.\d+\.\d+\npython 3 C\.UTF-8 1 \/outputs\n$/);
      expect(run).toMatchObject({ end: 'exited', exitCode: 0 });
      expect(fs.readFileSync(path.join(outputs, 'mean.txt'), 'utf8')).toBe('2.0');
    } finally {
      fs.rmSync(outputs, { recursive: true, force: true });
    }
  }, 900_000);
});
