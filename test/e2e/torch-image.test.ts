/**
 * The PyTorch images (DESIGN §12) built for real and used the way a researcher uses them: a project
 * `FROM secd/base:torch` (or `:torch-cuda`) run with `secd run`, which builds the image on first use.
 * Opt-in, because the first build downloads hundreds of megabytes (torch: about 420 packages,
 * 380 MB; torch-cuda: about 2.5 GB): `SECD_TEST_TORCH_IMAGE=1` and `SECD_TEST_CUDA_IMAGE=1`.
 * The work dir (and so the package cache) is kept between runs under the system's temp folder.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runSecd } from '../support/secd-cli.js';

const WORK = join(os.tmpdir(), 'secd-test-torch-work');

async function runProject(name: string, image: string, script: string) {
  const root = join(WORK, 'projects');
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), `FROM ${image}\nCOPY main.py /main.py\nCMD ["python3", "/main.py"]\n`);
  await writeFile(join(dir, 'main.py'), script);
  await writeFile(join(dir, 'secd.yml'), 'runfor: 0.5\n');
  const upYml = join(root, 'up.yml');
  await writeFile(upYml, `node:\n  work_dir: ${WORK}/work\n  cache_root: ${WORK}/cache\n`);
  const t0 = Date.now();
  const result = await runSecd(['run', '--config', upYml, dir], { cwd: root });
  process.stderr.write(`secd run of ${image} took ${Math.round((Date.now() - t0) / 1000)} s\n`);
  await rm(join(dir, 'outputs'), { recursive: true, force: true });
  return result;
}

describe.skipIf(process.env.SECD_TEST_TORCH_IMAGE !== '1')('secd/base:torch (SECD_TEST_TORCH_IMAGE=1)', () => {
  it('a project FROM secd/base:torch builds the image on first use and imports PyTorch and the scientific stack', async () => {
    const result = await runProject(
      'torch-cpu',
      'secd/base:torch',
      [
        'import torch, torchvision, sklearn, pandas, scipy, matplotlib, numpy, pymysql',
        'print(torch.__version__)',
        'x = torch.arange(6, dtype=torch.float32).reshape(2, 3)',
        'print("matmul", float((x @ x.T).sum()), "cuda built", torch.version.cuda, "backend", matplotlib.get_backend())',
      ].join('\n'),
    );
    expect(result.code, result.stdout.slice(-4000) + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^\d+\.\d+\.\d+/m);
    expect(result.stdout).toMatch(/^matmul 83\.0 cuda built None backend agg$/im);
  }, 3_600_000);
});

describe.skipIf(process.env.SECD_TEST_CUDA_IMAGE !== '1')('secd/base:torch-cuda (SECD_TEST_CUDA_IMAGE=1)', () => {
  it('a project FROM secd/base:torch-cuda builds the image on first use and has PyTorch built for CUDA', async () => {
    const result = await runProject('torch-cuda', 'secd/base:torch-cuda', 'import torch\nprint("cuda", torch.version.cuda)\nprint("available", torch.cuda.is_available())\n');
    expect(result.code, result.stdout.slice(-4000) + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^cuda \d+\.\d+$/m);
  }, 7_200_000);
});
