/**
 * The Python SDK's own unit tests (sdk/python/tests, `python3 -m unittest`), run from `npm test` so
 * CI has one test command. They use the real MariaDB for secd.connect().
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SDK = resolve(import.meta.dirname, '../../sdk/python');

/** The first Python 3 that has PyMySQL: $SECD_PYTHON, python3 on PATH, then Debian's own. */
function findPython(): string {
  const candidates = [process.env.SECD_PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string => !!c);
  for (const python of candidates) {
    if (spawnSync(python, ['-c', 'import pymysql'], { stdio: 'ignore' }).status === 0) return python;
  }
  throw new Error(`no Python 3 with PyMySQL among ${candidates.join(', ')}: install python3-pymysql (apt-get install -y python3-pymysql)`);
}

describe('the secd Python SDK', () => {
  it('passes its unit tests (python3 -m unittest)', () => {
    const python = findPython();
    const run = spawnSync(python, ['-m', 'unittest', 'discover', '-s', 'tests', '-v'], {
      cwd: SDK,
      env: { ...process.env, PYTHONPATH: SDK, PYTHONDONTWRITEBYTECODE: '1' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    const output = `${run.stdout ?? ''}${run.stderr ?? ''}`;
    expect(run.status, output).toBe(0);
    expect(output).toMatch(/Ran \d+ tests/);
    expect(output).toMatch(/\nOK\b/);
    // Every test module ran (a module that fails to import shows up as an error, but say so plainly).
    for (const name of ['test_cache', 'test_db', 'test_env', 'test_wheel']) expect(output, output).toContain(`(${name}.`);
  });
});
