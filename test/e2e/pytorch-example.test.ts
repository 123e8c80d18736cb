/**
 * examples/pytorch through a signed push, as its README tells a data owner and a researcher to do:
 * the data owner generates the digits with data/make_digits.py into the node's dataset_root and
 * registers and grants them with the real CLI (`secd admin dataset add digits --path …`, `secd admin
 * grant`); the researcher pushes the example's files; the results branch holds the model, its
 * metrics (accuracy on the 1,000 held-out digits above ACCURACY_BOUND) and the training-curve PNG,
 * and a second push reuses the cached preprocessing.
 *
 * Opt-in like torch-image.test.ts (SECD_TEST_TORCH_IMAGE=1): it needs secd/base:torch, whose first
 * build downloads about 380 MB and takes about 6 minutes; this test builds it when it is missing,
 * with its package cache where torch-image.test.ts keeps its own.
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { ensureBaseImage } from '../../daemon/ops/base-image.js';
import { hermeticGitEnv } from '../../scheduler/common/git-env.js';
import { startCluster, type Cluster, type Researcher } from '../support/cluster-harness.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';
import { runSecd as secd } from '../support/secd-cli.js';

const EXAMPLE = resolve(import.meta.dirname, '../../examples/pytorch');
const FILES = ['Dockerfile', 'secd.yml', 'train.py', 'README.md', 'data/make_digits.py'];
/** What the example promises on its held-out digits (it reaches about 0.94 in 6 epochs). */
const ACCURACY_BOUND = 0.9;
const OPTED_IN = process.env.SECD_TEST_TORCH_IMAGE === '1';
const run = promisify(execFile);

if (!OPTED_IN) {
  process.stderr.write(
    'pytorch-example.test.ts skipped: it needs the secd/base:torch image (first build about 6 minutes, 380 MB): set SECD_TEST_TORCH_IMAGE=1 to run it\n',
  );
}

/** The PNG's width and height, from its IHDR chunk; throws when the bytes are no PNG. */
function pngSize(bytes: Buffer): { width: number; height: number } {
  if (!bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) throw new Error('not a PNG file');
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

describe.skipIf(!OPTED_IN)('examples/pytorch (SECD_TEST_TORCH_IMAGE=1: needs secd/base:torch)', () => {
  let cluster: Cluster;
  let ada: Researcher;
  let datasetRoot: string;

  beforeAll(async () => {
    const built = await ensureBaseImage(createDockerEngine(), {
      variant: 'torch',
      cacheDir: join(tmpdir(), 'secd-test-torch-work', 'work', 'base-image'),
      onProgress: (line) => process.stderr.write(`${line}\n`),
    });
    if (!built.ok) throw new Error(`secd/base:torch could not be built: ${built.reason}`);

    // The data owner's step, as in the README: the generator writes train.npz and test.npz.
    datasetRoot = await mkdtemp(join(tmpdir(), 'secd-datasets-'));
    const digits = join(datasetRoot, 'handwriting', 'digits');
    await mkdir(digits, { recursive: true });
    const { uid, gid } = userInfo();
    await run('docker', [
      'run', '--rm', '--network', 'none', '--user', `${uid}:${gid}`,
      '-v', `${join(EXAMPLE, 'data')}:/src:ro`, '-v', `${digits}:/data`,
      'secd/base:torch', 'python3', '/src/make_digits.py', '/data',
    ]);

    cluster = await startCluster({ datasetRoot });
    ada = await cluster.addResearcher({ username: 'ada', project: 'lab/digits' });
    const config = ['--config', cluster.configFile];
    const added = await secd(['admin', 'dataset', 'add', 'digits', '--path', 'handwriting/digits', '--release', 'direct', ...config]);
    expect(added, added.stderr).toMatchObject({ code: 0 });
    const granted = await secd(['admin', 'grant', 'ada', 'digits', ...config]);
    expect(granted, granted.stderr).toMatchObject({ code: 0 });
  }, 1_800_000);
  afterAll(async () => {
    await cluster?.close();
    if (datasetRoot) await rm(datasetRoot, { recursive: true, force: true });
  });

  it('a push trains the network on the granted digits and pushes model.pt, metrics.json and training-curve.png; a second push reuses the preprocessing', async () => {
    const files: Record<string, string> = {};
    for (const name of FILES) files[name] = readFileSync(join(EXAMPLE, name), 'utf8');
    const results = async (message: string, extra: Record<string, string> = {}) => {
      const t0 = Date.now();
      const pushed = await ada.pushRun({ ...files, ...extra }, { message });
      const done = await cluster.waitForRun(pushed.id, 900_000);
      process.stderr.write(`push "${message}" to results branch: ${Math.round((Date.now() - t0) / 1000)} s\n`);
      const repo = cluster.gitlab.repoDir('lab/digits');
      const folder = done.branch ? outputsFolder(done.branch) : '';
      const read = (f: string) => git(repo, ['show', `${done.branch}:${folder}/${f}`]);
      const readBytes = (f: string) => execFileSync('git', ['-C', repo, 'show', `${done.branch}:${folder}/${f}`], { env: hermeticGitEnv() });
      expect(done.state, `${done.reason}\n${done.branch ? read('_secd/run.log') : ''}`).toBe('succeeded');
      return { read, readBytes };
    };

    const first = await results('train the digit reader');
    const metrics = JSON.parse(first.read('metrics.json')) as Record<string, unknown>;
    expect(metrics).toMatchObject({ train_size: 6000, test_size: 1000, epochs: 6, device: 'cpu', data: 'dataset digits', production: true });
    expect(metrics.test_accuracy).toBeGreaterThan(ACCURACY_BOUND);
    for (const [digit, accuracy] of Object.entries(metrics.accuracy_by_digit as Record<string, number>)) {
      expect(accuracy, `digit ${digit}`).toBeGreaterThan(0.8);
    }
    const log = first.read('_secd/run.log');
    expect(log).toContain('training on the CPU');
    expect(log).toContain('Cache not found; recomputing preprocess');
    expect(log).toContain('preprocessed 6000 training and 1000 test images');
    expect(log).toMatch(/^epoch 6\/6: held-out loss [\d.]+, accuracy 0\.9\d+/m);

    // The model is torch.save's zip archive; the curve a 1000 x 400 PNG; curve.json its numbers.
    expect(first.readBytes('model.pt').subarray(0, 2).toString()).toBe('PK');
    expect(first.readBytes('model.pt').length).toBeGreaterThan(400_000);
    expect(pngSize(first.readBytes('training-curve.png'))).toEqual({ width: 1000, height: 400 });
    const curve = JSON.parse(first.read('curve.json')) as { test: Array<{ epoch: number; accuracy: number }> };
    expect(curve.test.map((p) => p.epoch)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(curve.test.at(-1)!.accuracy).toBe(metrics.test_accuracy);
    const report = JSON.parse(first.read('_secd/run.json')) as { datasets: { names: string[] } };
    expect(report.datasets.names).toEqual(['digits']);

    const second = await results('train again', { 'NOTES.md': 'second run\n' });
    const again = second.read('_secd/run.log');
    expect(again).toContain('Using cached result for preprocess');
    expect(again).not.toContain('preprocessed 6000 training');
    const metricsAgain = JSON.parse(second.read('metrics.json')) as { test_accuracy: number };
    expect(metricsAgain.test_accuracy).toBeGreaterThan(ACCURACY_BOUND);
  }, 2_000_000);
});
