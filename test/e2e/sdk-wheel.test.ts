/**
 * The SDK on a researcher's own machine: `npm run build` made dist/sdk/secd-<version>-py3-none-any.whl,
 * a leader serves it at /sdk/, and in a fresh virtualenv `pip install <leader>/sdk/<wheel>` (no package
 * index: nothing but the leader) gives a `secd` whose @cache keeps results in ./cache across runs and
 * whose get_output_path() is ./output — as sdk/python/README.md tells the researcher.
 *
 * Needs Python 3 with venv and ensurepip (Debian: python3-venv); without them it falls back to
 * `pip install --target` where a pip exists, and fails saying what to install where neither does.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStatusServer, type StatusServer } from '../support/status-page-fixtures.js';

const ROOT = resolve(import.meta.dirname, '../..');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const WHEEL = `secd-${VERSION}-py3-none-any.whl`;
const BUILT = join(ROOT, 'dist', 'sdk', WHEEL);

interface Ran {
  code: number;
  out: string;
}

/** Run a program to its end without blocking this process (the leader under test answers pip from it). */
function run(cmd: string, args: string[], opts: { cwd?: string; env: NodeJS.ProcessEnv }): Promise<Ran> {
  return new Promise((done) => {
    execFile(cmd, args, { ...opts, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      done({ code, out: `${stdout}${stderr}` });
    });
  });
}

/** How this machine installs a wheel: into a fresh virtualenv, else with pip --target. */
type Installer = { kind: 'venv'; python: string } | { kind: 'target'; python: string };

async function findInstaller(env: NodeJS.ProcessEnv): Promise<Installer> {
  const candidates = [process.env.SECD_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c);
  for (const python of candidates) {
    if ((await run(python, ['-c', 'import venv, ensurepip'], { env })).code === 0) return { kind: 'venv', python };
  }
  for (const python of candidates) {
    if ((await run(python, ['-m', 'pip', '--version'], { env })).code === 0) return { kind: 'target', python };
  }
  throw new Error(`no Python 3 with venv (or pip) among ${candidates.join(', ')}: install python3-venv (apt-get install -y python3-venv)`);
}

// What the researcher's script does, twice: one slow function behind @secd.cache, one output file.
const ANALYSE = `
import os
import secd

calls = []

@secd.cache
def slow_square(x):
    calls.append(x)
    return {"square": x * x}

print("first", slow_square(12))
print("second", slow_square(12))
print("computed", len(calls))
with open(os.path.join(secd.get_output_path(), "result.txt"), "w") as f:
    f.write("144\\n")
print("where", secd.__file__)
print("output", secd.get_output_path(), "cache", secd.cache_dir(), "production", secd.is_production())
`;

describe('the SDK wheel the leader serves', () => {
  let server: StatusServer;
  let root: string;
  // A researcher's shell: no PYTHONPATH, no pip configuration, no proxy, no secd run around it.
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run "npm run build" (npm test does it first)`);
    root = await mkdtemp(join(tmpdir(), 'secd-sdk-wheel-'));
    await mkdir(join(root, 'home'));
    env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(root, 'home'), LANG: 'C.UTF-8', PYTHONNOUSERSITE: '1' };
    server = await startStatusServer({ nodes: () => [] });
  });
  afterAll(async () => {
    await server?.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("has secd's version, and the built leader serves the build's dist/sdk by default", async () => {
    const pyproject = readFileSync(join(ROOT, 'sdk/python/pyproject.toml'), 'utf8');
    const project = /^\[project\]\n([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(pyproject)?.[1] ?? '';
    expect(/^version = "([^"]+)"$/m.exec(project)?.[1], 'sdk/python/pyproject.toml [project] version').toBe(VERSION);
    const built = (await import(pathToFileURL(join(ROOT, 'dist/web/sdk-files.js')).href)) as { defaultSdkDir(): string };
    expect(built.defaultSdkDir()).toBe(join(ROOT, 'dist', 'sdk'));
    const listing = await fetch(`${server.url}/sdk/`).then((r) => r.text());
    expect(listing).toContain(`href="${WHEEL}#sha256=`);
  });

  it('pip installs it from the leader into a fresh virtualenv, and @cache and get_output_path work from ./cache and ./output', async () => {
    const installer = await findInstaller(env);
    const pipArgs = ['--isolated', '--disable-pip-version-check', '--no-input', '--no-index'];
    let python: string;
    let runEnv = env;
    if (installer.kind === 'venv') {
      const venv = join(root, 'venv');
      const made = await run(installer.python, ['-m', 'venv', venv], { env });
      expect(made.code, made.out).toBe(0);
      python = join(venv, 'bin', 'python');
      const installed = await run(python, ['-m', 'pip', 'install', ...pipArgs, `${server.url}/sdk/${WHEEL}`], { env });
      expect(installed.code, installed.out).toBe(0);
      expect(installed.out).toContain(`Successfully installed secd-${VERSION}`);
      // The list pip reads with --find-links names the same wheel, with a hash pip checks.
      const again = await run(python, ['-m', 'pip', 'install', ...pipArgs, '--force-reinstall', '--find-links', `${server.url}/sdk/`, 'secd'], { env });
      expect(again.code, again.out).toBe(0);
      expect(again.out).toContain(`Successfully installed secd-${VERSION}`);
    } else {
      // No venv here: install where the script can import it from, as `pip --target` users do.
      python = installer.python;
      const target = join(root, 'site');
      const installed = await run(python, ['-m', 'pip', 'install', ...pipArgs, '--target', target, `${server.url}/sdk/${WHEEL}`], { env });
      expect(installed.code, installed.out).toBe(0);
      runEnv = { ...env, PYTHONPATH: target };
      console.warn(`sdk-wheel test: ${installer.python} has no venv; the wheel was installed with pip --target instead`);
    }
    const shown = await run(python, ['-m', 'pip', 'show', '--isolated', 'secd'], { env: runEnv });
    if (installer.kind === 'venv') expect(shown.out).toContain(`Version: ${VERSION}`);

    const project = join(root, 'study');
    await mkdir(project);
    await writeFile(join(project, 'analyse.py'), ANALYSE);
    const first = await run(python, ['analyse.py'], { cwd: project, env: runEnv });
    expect(first.code, first.out).toBe(0);
    expect(first.out).toContain('Cache not found; recomputing slow_square\nfirst {\'square\': 144}\nUsing cached result for slow_square\nsecond {\'square\': 144}\ncomputed 1');
    // The installed wheel, not a source tree, is what ran.
    const where = /^where (.*)$/m.exec(first.out)?.[1] ?? '';
    expect(where.startsWith(installer.kind === 'venv' ? join(root, 'venv') : join(root, 'site')), where).toBe(true);
    expect(first.out).toContain('output output cache cache production False');
    expect(await readFile(join(project, 'output', 'result.txt'), 'utf8')).toBe('144\n');
    const cached = await readdir(join(project, 'cache'));
    expect(cached).toHaveLength(1);
    expect(cached[0]).toMatch(/^[0-9a-f]{32}$/);

    // A second run of the script: the result comes from ./cache, the function never runs.
    const second = await run(python, ['analyse.py'], { cwd: project, env: runEnv });
    expect(second.code, second.out).toBe(0);
    expect(second.out).not.toContain('Cache not found');
    expect(second.out).toContain('Using cached result for slow_square\nfirst {\'square\': 144}');
    expect(second.out).toContain('computed 0');
    expect(await readdir(join(project, 'cache'))).toEqual(cached);
  }, 240_000);
});
