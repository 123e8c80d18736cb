/**
 * The node's checkout against real git: the run's commit byte for byte, whatever the branch says by
 * now, and a failure that says which commit without the token of the source URL.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBareRemote, createResearcherRepo, type ResearcherRepo } from '../../test/support/git-repo.js';
import { checkoutCommit } from './git-checkout.js';

let repo: ResearcherRepo;
let remote: Awaited<ReturnType<typeof createBareRemote>>;
let root: string;

beforeEach(async () => {
  repo = await createResearcherRepo();
  remote = await createBareRemote();
  root = await mkdtemp(join(tmpdir(), 'secd-checkout-'));
});

afterEach(async () => {
  await repo.close();
  await remote.close();
  await rm(root, { recursive: true, force: true });
});

describe('checkoutCommit', () => {
  it('checks out the pushed commit, not what the branch points at by now', async () => {
    const pushed = await repo.commit('the run', { files: { 'train.py': 'print("run me")\n' } });
    await repo.commit('later', { files: { 'train.py': 'print("not me")\n' } });
    await repo.push(remote.url);
    const dir = join(root, 'src');

    await checkoutCommit(remote.url, pushed, dir);

    expect(await readFile(join(dir, 'train.py'), 'utf8')).toBe('print("run me")\n');
  });

  it('says which commit could not be fetched, and never shows the token of the source URL', async () => {
    const token = 'glpat-checkout-s3cret';
    // Nothing listens on port 1: the fetch fails at once.
    const port = 1;
    const commit = 'ab'.repeat(20);

    const failed = checkoutCommit(`http://oauth2:${token}@127.0.0.1:${port}/lab/x.git`, commit, join(root, 'src'));

    await expect(failed).rejects.toThrow(/^could not fetch commit abababab: .*127\.0\.0\.1/);
    await expect(failed).rejects.not.toThrow(token);
    await expect(failed).rejects.not.toThrow(Buffer.from(`oauth2:${token}`).toString('base64'));
    expect(await readFile(join(root, 'src', '.git', 'config'), 'utf8')).not.toContain(token);
  });
});
