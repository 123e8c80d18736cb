/**
 * `secd run --dataset NAME=DIR`: a researcher's own folder served to a local run where a node serves a
 * file dataset — read-only at /datasets/NAME and named in SECD_DATASETS — with secd.yml's `datasets:`
 * choosing among them as on the cluster, and what it asks for but is not given said, not dropped.
 * The real CLI and Docker.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { runSecd } from '../support/secd-cli.js';
import { BUSYBOX_IMAGE, ensureBusyboxImage } from '../support/test-images.js';

let root: string;

beforeAll(async () => {
  await ensureBusyboxImage(createDockerEngine());
  root = await mkdtemp(join(tmpdir(), 'secd-run-datasets-'));
  await mkdir(join(root, 'my data'), { recursive: true });
  await writeFile(join(root, 'my data', 'rows.csv'), 'id,label\n1,seven\n');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function project(name: string, secdYml: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), `FROM ${BUSYBOX_IMAGE}\nCOPY run.sh /run.sh\nCMD ["/bin/sh", "/run.sh"]\n`);
  await writeFile(
    join(dir, 'run.sh'),
    [
      'echo "catalog: $SECD_DATASETS"',
      'cp /datasets/digits/rows.csv $OUTPUT_PATH/copied.csv || echo "no digits dataset"',
      'touch /datasets/digits/new 2>/dev/null && echo "dataset writable" || echo "dataset read-only"',
    ].join('\n'),
  );
  await writeFile(join(dir, 'secd.yml'), secdYml);
  return dir;
}

describe('secd run --dataset NAME=DIR', () => {
  it('mounts the folder read-only at /datasets/NAME and names it in SECD_DATASETS', async () => {
    const dir = await project('served', 'runfor: 0.05\n');
    const result = await runSecd(['run', '--dataset', 'digits=my data', dir], { cwd: root });
    expect(result.code, result.stderr + result.stdout).toBe(0);
    expect(result.stdout).toContain('catalog: {"digits":{"kind":"path","path":"/datasets/digits"}}');
    expect(result.stdout).toContain('dataset read-only');
    const folder = result.stdout.split('\n').find((l) => l.includes(' succeeded — outputs in '))!.split(' — outputs in ')[1]!;
    expect(await readFile(join(folder, 'copied.csv'), 'utf8')).toBe('id,label\n1,seven\n');
    expect(JSON.parse(await readFile(join(folder, '_secd/run.json'), 'utf8'))).toMatchObject({ datasets: { names: ['digits'] } });
  }, 120_000);

  it("says which of secd.yml's datasets the run does not have, instead of dropping them silently", async () => {
    const dir = await project('asked', 'runfor: 0.05\ndatasets: [digits, sales]\n');
    const without = await runSecd(['run', dir], { cwd: root });
    expect(without.code, without.stderr + without.stdout).toBe(0);
    expect(without.stdout).toContain(
      'secd: note: secd.yml asks for datasets digits, sales, which this run does not have: give a folder with --dataset NAME=DIR (MySQL datasets are served only on the cluster)',
    );
    expect(without.stdout).toContain('no digits dataset');
    const some = await runSecd(['run', '--dataset', `digits=${join(root, 'my data')}`, dir], { cwd: root });
    expect(some.stdout).toContain('secd: note: secd.yml asks for dataset sales, which this run does not have');
    expect(some.stdout).toContain('catalog: {"digits":');
  }, 120_000);

  it('refuses a malformed flag, a bad name and a missing folder before building, naming each', async () => {
    const dir = await project('refused', 'runfor: 0.05\n');
    const cases: Array<[string, RegExp]> = [
      ['digits', /^secd: --dataset "digits" must be NAME=DIR/],
      ['../x=my data', /^secd: --dataset "\.\.\/x=my data": dataset name "\.\.\/x" must be/],
      ['digits=nowhere', /^secd: --dataset digits: nowhere is not a folder/],
    ];
    for (const [flag, expected] of cases) {
      const result = await runSecd(['run', '--dataset', flag, dir], { cwd: root });
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(expected);
      expect(result.stdout).toBe('');
    }
  }, 60_000);
});
