/**
 * DESIGN §12 in the build: `build.env` reaches every RUN step of every stage without an ARG in the
 * Dockerfile, the project's Dockerfile and .dockerignore on disk stay as written, secd's generated
 * files never reach the image, and a step that wanted the network says builds have none.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUSYBOX_IMAGE, ensureBusyboxImage } from '../../test/support/test-images.js';
import { dockerfileWithBuildEnv, dockerignoreWithGenerated, escapeCharOf, GENERATED_DOCKERFILE } from './build-env-dockerfile.js';
import { lastStepLines, networkFailureHint, networkFailureLine } from './build-network-hint.js';
import type { ContainerEngine } from './container-engine.js';
import { createDockerEngine } from './docker-engine.js';

describe('the generated Dockerfile', () => {
  it('declares each build.env name after every FROM, continuation lines included, and changes nothing else', () => {
    const text = '# syntax=docker/dockerfile:1\nARG BASE=secd/base\nFROM ${BASE} AS prep\nRUN pip install x\nfrom \\\n  secd/base:torch\n# comment\nCOPY . /app\n';
    expect(dockerfileWithBuildEnv(text, ['PIP_INDEX_URL', 'PIP_TRUSTED_HOST'])).toBe(
      '# syntax=docker/dockerfile:1\nARG BASE=secd/base\nFROM ${BASE} AS prep\nARG PIP_INDEX_URL\nARG PIP_TRUSTED_HOST\nRUN pip install x\nfrom \\\n  secd/base:torch\nARG PIP_INDEX_URL\nARG PIP_TRUSTED_HOST\n# comment\nCOPY . /app\n',
    );
  });

  it('follows an `# escape=` directive and does not take a RUN line mentioning FROM for a FROM', () => {
    const text = '# escape=`\nFROM secd/base `\n  AS x\nRUN echo FROM secd/base \\\n'.replace(/\\\n$/, '\n');
    expect(escapeCharOf(text)).toBe('`');
    expect(dockerfileWithBuildEnv(text, ['A'])).toBe('# escape=`\nFROM secd/base `\n  AS x\nARG A\nRUN echo FROM secd/base \n');
    expect(escapeCharOf('FROM x\n# escape=`\n')).toBe('\\');
  });

  it('refuses a name that is no variable name', () => {
    expect(() => dockerfileWithBuildEnv('FROM x\n', ['A B'])).toThrow('build.env name "A B" is not a variable name');
  });

  it("adds its own name to the project's .dockerignore, or makes one that also drops itself", () => {
    expect(dockerignoreWithGenerated('secret.txt')).toBe(`secret.txt\n${GENERATED_DOCKERFILE}\n`);
    expect(dockerignoreWithGenerated('secret.txt\n')).toBe(`secret.txt\n${GENERATED_DOCKERFILE}\n`);
    expect(dockerignoreWithGenerated(null)).toBe(`.dockerignore\n${GENERATED_DOCKERFILE}\n`);
  });
});

describe('a RUN step that wanted the network', () => {
  const step = (...out: string[]) => ['Step 1/3 : FROM secd/base', 'Step 2/3 : RUN pip install torch', ...out];

  it.each([
    ["WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError(': Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')'"],
    ["Err:1 http://deb.debian.org/debian bookworm InRelease\n  Could not resolve 'deb.debian.org'"],
    ['W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving \'deb.debian.org\''],
    ['curl: (6) Could not resolve host: files.example.org'],
    ['wget: unable to resolve host address ‘files.example.org’'],
    ["wget: bad address 'files.example.org'"],
    ['npm ERR! request to https://registry.npmjs.org/x failed, reason: getaddrinfo EAI_AGAIN registry.npmjs.org'],
  ])('is recognised from %j', (out) => {
    expect(networkFailureLine(step(...out.split('\n')))).not.toBeNull();
  });

  it('gets a reason that says builds have no network and how a sysadmin gives them a mirror', () => {
    const hint = networkFailureHint(step('curl: (6) Could not resolve host: x.org'), 'none')!;
    expect(hint).toMatch(/^builds have no network, and this RUN step tried to reach one \("curl: \(6\) Could not resolve host: x\.org"\)/);
    expect(hint).toContain('build: { network: <docker network>, env: { PIP_INDEX_URL: ... } }');
    expect(hint).toContain('Package mirrors for builds');
    expect(networkFailureHint(step('curl: (6) Could not resolve host: x.org'), 'secd-build')).toContain("builds reach only the site's mirrors (docker network secd-build)");
  });

  it('reads only the failing step, and passes over failures that are not the network', () => {
    const lines = ['Step 2/3 : RUN pip download x || true', 'Temporary failure in name resolution', 'Step 3/3 : RUN false'];
    expect(lastStepLines(lines)).toEqual(['Step 3/3 : RUN false']);
    expect(networkFailureHint(lastStepLines(lines), 'none')).toBeNull();
    expect(networkFailureHint(step('ERROR: No matching distribution found for torch==9'), 'none')).toBeNull();
  });
});

describe('build.env on the real engine', () => {
  let engine: ContainerEngine;
  const suffix = randomBytes(4).toString('hex');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'secd-build-env-'));
  const tags: string[] = [];

  beforeAll(async () => {
    engine = createDockerEngine();
    await ensureBusyboxImage(engine);
  });
  afterAll(async () => {
    for (const t of tags) await engine.removeImage(t);
    fs.rmSync(root, { recursive: true, force: true });
  });

  async function build(name: string, files: Record<string, string>, env?: Record<string, string>) {
    const dir = path.join(root, name);
    fs.mkdirSync(dir, { recursive: true });
    // A first step unique to this test run: the layer cache would otherwise replay the steps silently.
    for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), f === 'Dockerfile' ? text.replace(/^(FROM .*)$/gm, `$1\nRUN echo ${suffix}`) : text);
    const tag = `secd-test/build-env-${name}:${suffix}`;
    tags.push(tag);
    const lines: string[] = [];
    const result = await engine.buildImage({ contextDir: dir, tag, onLog: (l) => lines.push(l), ...(env ? { env } : {}) });
    return { dir, result, lines };
  }

  it('every RUN step of every stage sees build.env with no ARG declared; the Dockerfile ENV still wins; secd\'s files stay out', async () => {
    const dockerfile = [
      `FROM ${BUSYBOX_IMAGE} AS first`,
      'RUN echo "first sees [$SECD_T_MIRROR]"',
      `FROM ${BUSYBOX_IMAGE}`,
      'COPY . /ctx/',
      'RUN echo "second sees [$SECD_T_MIRROR] [$SECD_T_HOST]" && ls -a /ctx | tr "\\n" " " && echo',
      'ENV SECD_T_HOST=from-dockerfile',
      'RUN echo "after ENV [$SECD_T_HOST]"',
      '',
    ].join('\n');
    const { dir, result, lines } = await build('stages', { Dockerfile: dockerfile, '.dockerignore': 'secret.txt', 'secret.txt': 'no', 'data.txt': 'yes' }, {
      SECD_T_MIRROR: 'http://mirror.internal/simple',
      SECD_T_HOST: 'mirror.internal',
    });
    expect(result.ok, lines.join('\n')).toBe(true);
    expect(lines).toContain('first sees [http://mirror.internal/simple]');
    expect(lines).toContain('second sees [http://mirror.internal/simple] [mirror.internal]');
    expect(lines).toContain('. .. .dockerignore Dockerfile data.txt ');
    expect(lines).toContain('after ENV [from-dockerfile]');
    expect(fs.readFileSync(path.join(dir, 'Dockerfile'), 'utf8')).toBe(dockerfile.replace(/^(FROM .*)$/gm, `$1\nRUN echo ${suffix}`));
    expect(fs.readFileSync(path.join(dir, '.dockerignore'), 'utf8')).toBe('secret.txt');
    expect(fs.readdirSync(dir).sort()).toEqual(['.dockerignore', 'Dockerfile', 'data.txt', 'secret.txt']);
  });

  it('a project without .dockerignore gets none in its image, and a project without build.env builds as written', async () => {
    const dockerfile = `FROM ${BUSYBOX_IMAGE}\nCOPY . /ctx/\nRUN ls -a /ctx | tr "\\n" " " && echo && echo "sees [$SECD_T_MIRROR]"\n`;
    const withEnv = await build('plain', { Dockerfile: dockerfile }, { SECD_T_MIRROR: 'm' });
    expect(withEnv.result.ok, withEnv.lines.join('\n')).toBe(true);
    expect(withEnv.lines).toContain('. .. Dockerfile ');
    expect(withEnv.lines).toContain('sees [m]');
    const without = await build('plain', { Dockerfile: dockerfile });
    expect(without.lines).toContain('sees []');
    expect(without.lines.some((l) => l.startsWith('Step 3/4 : COPY'))).toBe(true);
  });

  it('a RUN step that tries the network fails with the reason that builds have none', async () => {
    const { result, lines } = await build('offline', { Dockerfile: `FROM ${BUSYBOX_IMAGE}\nRUN wget -q -O /x http://deb.debian.org/debian/\n` });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.reason).toMatch(/returned a non-zero code: 1: builds have no network, and this RUN step tried to reach one \("wget: bad address 'deb\.debian\.org'"\)/);
    expect(lines.at(-1)).toMatch(/^\[secd\] builds have no network/);
  });
});
