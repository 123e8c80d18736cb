/**
 * `secd run <dir>` as a researcher uses it: the real CLI (built into dist/ by `npm test`), real Docker,
 * outputs in `<dir>/outputs/<stamp>-<run id>/`, one final line, exit 0 only on success.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { runSecd } from '../support/secd-cli.js';
import { BUSYBOX_IMAGE, ensureBusyboxImage } from '../support/test-images.js';

const secd = (args: string[], cwd: string) => runSecd(args, { cwd });

describe('secd run <dir>', () => {
  let root: string;

  beforeAll(async () => {
    await ensureBusyboxImage(createDockerEngine());
    root = await mkdtemp(join(tmpdir(), 'secd-run-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function projectDir(name: string, files: Record<string, string>): Promise<string> {
    const dir = join(root, name);
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
    for (const [file, content] of Object.entries(files)) await writeFile(join(dir, file), content);
    return dir;
  }

  it('builds and runs the folder, streams its output, and leaves outputs and logs in outputs/<stamp>-<id>/', async () => {
    const dir = await projectDir('ok', {
      Dockerfile: `FROM ${BUSYBOX_IMAGE}\nCOPY run.sh /run.sh\nCMD ["/bin/sh", "/run.sh"]\n`,
      'run.sh': 'echo "running as $SECD with id $SECD_RUN_ID"\necho 7 > $OUTPUT_PATH/seven.txt\n',
      'secd.yml': 'runfor: 0.05\n',
    });
    const result = await secd(['run', dir], root);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stdout).toContain('running as PRODUCTION with id');
    const last = result.stdout.trim().split('\n').at(-1)!;
    expect(last).toMatch(/^secd: run [0-9a-z]{10} succeeded — outputs in .*\/outputs\/\d{4}-\d{2}-\d{2}_\d{2}\.\d{2}\.\d{2}-[0-9a-z]{10}$/);
    const folder = last.split(' — outputs in ')[1]!;
    expect(await readFile(join(folder, 'seven.txt'), 'utf8')).toBe('7\n');
    expect(await readFile(join(folder, '_secd/run.log'), 'utf8')).toContain('running as PRODUCTION');
    expect(JSON.parse(await readFile(join(folder, '_secd/run.json'), 'utf8'))).toMatchObject({ state: 'succeeded', exit_code: 0 });
    // /outputs was the run's own volume: read back through the engine, then removed with the container.
    const runId = folder.slice(-10);
    expect(execFileSync('docker', ['volume', 'ls', '-q', '--filter', `label=secd.run=${runId}`], { encoding: 'utf8' })).toBe('');
    expect(execFileSync('docker', ['ps', '-aq', '--filter', `label=secd.run=${runId}`], { encoding: 'utf8' })).toBe('');
    // A second run does not build its own earlier outputs into the image or overwrite them.
    const again = await secd(['run', dir], root);
    expect(again.code).toBe(0);
    expect(await readdir(join(dir, 'outputs'))).toHaveLength(2);
  });

  it('runs `secd run .` from inside the project, whose default work dir (./.secd) is then inside it too', async () => {
    const dir = await projectDir('here', {
      Dockerfile: `FROM ${BUSYBOX_IMAGE}\nCOPY run.sh /run.sh\nCMD ["/bin/sh", "/run.sh"]\n`,
      'run.sh': 'ls -a / > $OUTPUT_PATH/root.txt\n',
      'secd.yml': 'runfor: 0.05\n',
    });
    const result = await secd(['run', '.'], dir);
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(existsSync(join(dir, '.secd', 'work'))).toBe(true);
    // The work dir was not built into the image (nor copied into itself).
    const again = await secd(['run', '.'], dir);
    expect(again.code, again.stderr + again.stdout).toBe(0);
  });

  it('exits non-zero and says why when the program fails', async () => {
    const dir = await projectDir('fails', {
      Dockerfile: `FROM ${BUSYBOX_IMAGE}\nCMD ["/bin/sh", "-c", "echo broken >&2; exit 3"]\n`,
    });
    const result = await secd(['run', dir], root);
    expect(result.code).toBe(1);
    expect(result.stdout.trim().split('\n').at(-1)).toMatch(/failed: the container exited with code 3/);
  });

  it('a broken Dockerfile fails the run with the build error, and build.log keeps it', async () => {
    const dir = await projectDir('badbuild', { Dockerfile: `FROM ${BUSYBOX_IMAGE}\nRUN exit 9\n` });
    const result = await secd(['run', dir], root);
    expect(result.code).toBe(1);
    const last = result.stdout.trim().split('\n').at(-1)!;
    expect(last).toMatch(/failed: docker build failed/);
    const folder = last.split(' — outputs in ')[1]!;
    expect(await readFile(join(folder, '_secd/build.log'), 'utf8')).toMatch(/exit 9|non-zero code: 9|returned a non-zero code/);
  });

  it('an invalid secd.yml is refused before anything is built, naming the key', async () => {
    const dir = await projectDir('badyml', { Dockerfile: `FROM ${BUSYBOX_IMAGE}\n`, 'secd.yml': 'runfor: 0\n' });
    const result = await secd(['run', dir], root);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('runfor');
    expect(existsSync(join(dir, 'outputs'))).toBe(false);
  });

  it('a folder without a Dockerfile is refused with a clear message', async () => {
    const dir = await projectDir('empty', { 'README.md': 'nothing' });
    const result = await secd(['run', dir], root);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('no Dockerfile');
  });
});
