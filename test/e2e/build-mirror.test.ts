/**
 * DESIGN §12 for real: a site's package mirror on a Docker network of its own, and `secd run`
 * building a project whose RUN step pip-installs from it. The mirror is a PEP 503 simple index of a
 * wheel the test makes, served by `python3 -m http.server` in a secd/base container on an
 * `--internal` bridge network (dockerd here runs with --bridge=none --iptables=false; a user-defined
 * internal bridge still works, and reaches nothing but its own containers). With `build.network`
 * and `build.env` the install works, with no ARG in the Dockerfile; without them the build fails and
 * says builds have no network; the run itself never has one.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { ensureBaseImage } from '../../daemon/ops/base-image.js';
import { runSecd } from '../support/secd-cli.js';

const suffix = randomBytes(4).toString('hex');
const NETWORK = `secd-test-mirror-${suffix}`;
const MIRROR = `secd-test-mirror-${suffix}`;
const INDEX = 'http://mirror:8000/simple';

// Makes the wheel (a zip with its RECORD hashes) and the two index pages, then serves /srv.
const MIRROR_SCRIPT = String.raw`
import base64, hashlib, os, zipfile
files = {
    "secd_mirror_probe/__init__.py": 'GREETING = "installed from the site mirror"\n',
    "secd_mirror_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: secd-mirror-probe\nVersion: 1.0\n",
    "secd_mirror_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: secd-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
record = "".join("%s,%s,%d\n" % (name, digest(text.encode()), len(text.encode())) for name, text in files.items())
files["secd_mirror_probe-1.0.dist-info/RECORD"] = record + "secd_mirror_probe-1.0.dist-info/RECORD,,\n"
wheel = "secd_mirror_probe-1.0-py3-none-any.whl"
os.makedirs("/srv/files"); os.makedirs("/srv/simple/secd-mirror-probe")
with zipfile.ZipFile("/srv/files/" + wheel, "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
sha = hashlib.sha256(open("/srv/files/" + wheel, "rb").read()).hexdigest()
open("/srv/simple/index.html", "w").write('<a href="secd-mirror-probe/">secd-mirror-probe</a>\n')
open("/srv/simple/secd-mirror-probe/index.html", "w").write('<a href="../../files/%s#sha256=%s">%s</a>\n' % (wheel, sha, wheel))
os.execvp("python3", ["python3", "-m", "http.server", "8000", "--directory", "/srv"])
`;

const RUN_PY = String.raw`
import os, socket, secd_mirror_probe
print("probe says:", secd_mirror_probe.GREETING)
try:
    socket.create_connection(("mirror", 8000), timeout=3)
    print("run network: reached the mirror")
except OSError as e:
    print("run network: none (%s)" % type(e).__name__)
open(os.path.join(os.environ["OUTPUT_PATH"], "probe.txt"), "w").write(secd_mirror_probe.GREETING)
`;

const docker = (...args: string[]) => execFileSync('docker', args, { encoding: 'utf8' }).trim();

describe('builds reach a package mirror only when a sysadmin names one', () => {
  let root: string;
  const projects: string[] = [];

  beforeAll(async () => {
    root = await mkdtemp(join(os.tmpdir(), 'secd-build-mirror-'));
    const base = await ensureBaseImage(createDockerEngine(), { cacheDir: join(os.tmpdir(), 'secd-test-base-cache') });
    if (!base.ok) throw new Error(`secd/base: ${base.reason}`);
    docker('network', 'create', '--driver', 'bridge', '--internal', '--label', 'secd.test=build-mirror', NETWORK);
    docker('run', '-d', '--name', MIRROR, '--network', NETWORK, '--network-alias', 'mirror', '--label', 'secd.test=build-mirror', 'secd/base', 'python3', '-c', MIRROR_SCRIPT);
    for (let i = 0; !docker('logs', MIRROR).includes('Serving HTTP'); i++) {
      if (i > 100) throw new Error(`the mirror did not start:\n${docker('logs', MIRROR)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 900_000);

  afterAll(async () => {
    execFileSync('docker', ['rm', '-f', MIRROR], { stdio: 'ignore' });
    execFileSync('docker', ['network', 'rm', NETWORK], { stdio: 'ignore' });
    for (const p of projects) execFileSync('docker', ['rmi', '-f', `secd-project/${p}:latest`], { stdio: 'ignore' });
    await rm(root, { recursive: true, force: true });
    // Nothing of the test is left: no network, no container.
    expect(docker('network', 'ls', '-q', '--filter', `name=${NETWORK}`)).toBe('');
    expect(docker('ps', '-aq', '--filter', `name=${MIRROR}`)).toBe('');
  });

  async function project(name: string, extra = ''): Promise<string> {
    const dir = join(root, name);
    await mkdir(dir, { recursive: true });
    // No ARG for PIP_INDEX_URL: build.env reaches the RUN step anyway. `extra` keeps each test's build off another's layer cache.
    await writeFile(join(dir, 'Dockerfile'), `FROM secd/base\nRUN pip install --no-cache-dir secd-mirror-probe${extra}\nCOPY run.py /run.py\nCMD ["python3", "/run.py"]\n`);
    await writeFile(join(dir, 'run.py'), RUN_PY);
    await writeFile(join(dir, 'secd.yml'), 'runfor: 0.1\n');
    projects.push(name);
    return dir;
  }

  const outputsOf = (stdout: string) => stdout.trim().split('\n').at(-1)!.split(' — outputs in ')[1]!;

  it('with build.network and build.env in up.yml, pip installs from the mirror; the run itself has no network', async () => {
    const dir = await project(`mirror-config-${suffix}`);
    const upYml = join(root, 'up.yml');
    await writeFile(upYml, `node:\n  build:\n    network: ${NETWORK}\n    env: { PIP_INDEX_URL: "${INDEX}", PIP_TRUSTED_HOST: mirror }\n`);
    const result = await runSecd(['run', '--config', upYml, dir], { cwd: root });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/Successfully installed secd-mirror-probe-1\.0/);
    expect(result.stdout).toContain('probe says: installed from the site mirror');
    expect(result.stdout).toMatch(/run network: none \((gaierror|OSError|TimeoutError)\)/);
    expect(await readFile(join(outputsOf(result.stdout), 'probe.txt'), 'utf8')).toBe('installed from the site mirror');
    expect(await readFile(dir + '/Dockerfile', 'utf8')).not.toContain('ARG');
  }, 300_000);

  it('`secd run --build-network --build-env` does the same without a config file', async () => {
    const dir = await project(`mirror-flags-${suffix}`, ' && echo flags');
    const result = await runSecd(['run', '--build-network', NETWORK, '--build-env', `PIP_INDEX_URL=${INDEX}`, '--build-env', 'PIP_TRUSTED_HOST=mirror', dir], { cwd: root });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain('probe says: installed from the site mirror');
    expect(result.stdout).toMatch(/run network: none/);
  }, 300_000);

  it('without the setting the build fails, and the reason says builds have no network and how a sysadmin gives them a mirror', async () => {
    const dir = await project(`mirror-none-${suffix}`, ' && echo none');
    const result = await runSecd(['run', '--build-env', `PIP_INDEX_URL=${INDEX}`, '--build-env', 'PIP_TRUSTED_HOST=mirror', dir], { cwd: root });
    expect(result.code).toBe(1);
    const last = result.stdout.trim().split('\n').at(-1)!;
    expect(last).toMatch(/^secd: run [0-9a-z]{10} failed: docker build failed: The command .*pip install.* returned a non-zero code: 1: builds have no network, and this RUN step tried to reach one/);
    expect(last).toContain('Package mirrors for builds');
    expect(last).toContain('build: { network: <docker network>');
    const runJson = JSON.parse(await readFile(join(outputsOf(result.stdout), '_secd/run.json'), 'utf8')) as { reason: string };
    expect(runJson.reason).toContain('builds have no network');
  }, 300_000);

  it('refuses a --build-env that is not NAME=value, and the host network', async () => {
    const dir = await project(`mirror-bad-${suffix}`);
    const bad = await runSecd(['run', '--build-env', 'PIP_INDEX_URL', dir], { cwd: root });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('secd: --build-env "PIP_INDEX_URL" must be NAME=value\n');
    const host = await runSecd(['run', '--build-network', 'host', dir], { cwd: root });
    expect(host.code).toBe(2);
    expect(host.stderr).toContain("--build-network must not be host: that is this machine's whole network");
  });
});
