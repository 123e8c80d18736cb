/**
 * examples/simple-stdout as its README tells a researcher to try it: `secd run` (the real CLI, real
 * Docker, secd/base) of a program that writes no output file comes back with what it printed as
 * `_secd/run.log`, and nothing else but secd's own records.
 */
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSecd } from '../support/secd-cli.js';

const ROOT = resolve(import.meta.dirname, '../..');
const EXAMPLE = join(ROOT, 'examples/simple-stdout');

/** python3 main.py outside secd, with the SDK from the source tree: the lines a laptop prints. */
function printedOnALaptop(dir: string): Promise<string> {
  return new Promise((done, fail) => {
    execFile('python3', ['main.py'], { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PYTHONPATH: join(ROOT, 'sdk/python'), PYTHONDONTWRITEBYTECODE: '1' }, encoding: 'utf8' }, (err, stdout, stderr) =>
      err ? fail(new Error(`python3 main.py failed: ${stderr}`)) : done(stdout),
    );
  });
}

describe('examples/simple-stdout', () => {
  let root: string;
  let dir: string;

  beforeAll(async () => {
    // A copy, so the run's outputs/ land in a temporary folder and not in the repository.
    root = await mkdtemp(join(tmpdir(), 'secd-simple-stdout-'));
    dir = join(root, 'simple-stdout');
    await cp(EXAMPLE, dir, { recursive: true, filter: (src) => !src.includes('/outputs') });
  });
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('a run that only prints comes back with its lines in _secd/run.log and no other output', async () => {
    const result = await runSecd(['run', dir], { cwd: root });
    expect(result.code, result.stderr + result.stdout).toBe(0);
    const last = result.stdout.trim().split('\n').at(-1)!;
    expect(last).toMatch(/^secd: run [0-9a-z]{10} succeeded — outputs in /);
    const folder = last.split(' — outputs in ')[1]!;

    const log = await readFile(join(folder, '_secd/run.log'), 'utf8');
    expect(log).toMatch(/^simple-stdout: 7 readings\nmean 37\.14, median 37\.00, max 38\.2\nin a secd run: True \(Python 3\.\d+\.\d+\)\n$/);
    // The same lines streamed to the terminal while it ran.
    expect(result.stdout).toContain('mean 37.14, median 37.00, max 38.2\n');
    // Nothing but secd's own records: the program wrote no file of its own.
    expect(await readdir(folder)).toEqual(['_secd']);
    expect((await readdir(join(folder, '_secd'))).sort()).toEqual(['build.log', 'run.json', 'run.log']);
    expect(JSON.parse(await readFile(join(folder, '_secd/run.json'), 'utf8'))).toMatchObject({ state: 'succeeded', exit_code: 0 });

    // On a laptop the program prints the same, but for where it ran (the README's last paragraph).
    const laptop = (await printedOnALaptop(dir)).split('\n');
    const inRun = log.split('\n');
    expect(laptop.slice(0, 2)).toEqual(inRun.slice(0, 2));
    expect(laptop[2]).toMatch(/^in a secd run: False /);
  }, 300_000);
});
