import { it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGitLabDouble } from '/work/main/test/doubles/gitlab-double.js';
it('prof', async () => {
  const s = mkdtempSync(join(tmpdir(), 'prof-'));
  const env = { PATH: process.env.PATH, HOME: s, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0', GIT_AUTHOR_NAME: 'a', GIT_AUTHOR_EMAIL: 'a@x', GIT_COMMITTER_NAME: 'a', GIT_COMMITTER_EMAIL: 'a@x' };
  const g = (cwd: string, ...a: string[]) => execFileSync('git', a, { cwd, env }).toString();
  let t = performance.now();
  const lap = (m: string) => { const n = performance.now(); console.log(m, (n - t).toFixed(0)); t = n; };
  const gl = await startGitLabDouble({ token: 't' });
  gl.addProject({ path: 'a/b' });
  lap('start');
  const d = join(s, 'c');
  g(s, 'clone', '-q', gl.gitUrl('a/b'), d); lap('clone');
  for (let i = 0; i < 25; i++) { writeFileSync(join(d, `f${i}`), 'x'); g(d, 'add', '.'); g(d, 'commit', '-qm', `m${i}`); }
  lap('25 commits');
  g(d, 'push', '-q', 'origin', 'HEAD:main'); lap('push');
  await gl.idle(); lap('idle');
  await gl.close(); lap('close');
});
