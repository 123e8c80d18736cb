/**
 * A data owner sets how outputs leave, per dataset, with `secd admin dataset add|set|list` against
 * leader.yml (DESIGN §10): new datasets are held for review unless told `direct`, and the command
 * says so. Folder datasets, so no dataset server is needed; the real CLI (`npm run build` first).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSecd } from '../support/secd-cli.js';
import { withStateFile } from '../support/state-file.js';

describe('secd admin dataset release policy', () => {
  let dir: string;
  let config: string[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'secd-dataset-policy-'));
    const file = join(dir, 'leader.yml');
    // approvals 3, not the built-in 2: `list` must show the config's number for datasets without one.
    await writeFile(
      file,
      `data_dir: ${join(dir, 'data')}\ngitlab:\n  url: https://gitlab.example.org\n  token: t\n  webhook_secret: s\nrelease:\n  approvals: 3\n`,
    );
    config = ['--config', file];
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const secd = (...args: string[]) => runSecd(['admin', 'dataset', ...args, ...config]);
  /** The policy as the leader will read it. */
  const stored = (name: string) =>
    withStateFile(join(dir, 'data', 'secd.db'), async ({ datasets }) => {
      const d = await datasets.get(name);
      return d && { release: d.release, approvals: d.approvals };
    });

  it('a dataset added without --release is review with the config\'s approvals, and the command says how to make it direct', async () => {
    const added = await secd('add', 'cohort', '--path', 'clinic/cohort');
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain('added dataset cohort (folder clinic/cohort under dataset_root)');
    expect(added.stdout).toContain('release review, 3 approvals (default): new datasets are review by default');
    expect(added.stdout).toContain('"secd admin dataset set cohort --release direct"');
    expect(await stored('cohort')).toEqual({ release: 'review', approvals: null });
  });

  it('--release direct and --approvals are taken as given, without the default note', async () => {
    const open = await secd('add', 'open', '--path', 'public/open', '--release', 'direct');
    expect(open.code, open.stderr).toBe(0);
    expect(open.stdout).toContain('secd admin: release direct\n');
    expect(open.stdout).not.toContain('by default');
    const icu = await secd('add', 'icu', '--path', 'clinic/icu', '--release', 'review', '--approvals', '1');
    expect(icu.code, icu.stderr).toBe(0);
    expect(icu.stdout).toContain('secd admin: release review, 1 approval\n');
    expect(await stored('open')).toEqual({ release: 'direct', approvals: null });
    expect(await stored('icu')).toEqual({ release: 'review', approvals: 1 });
  });

  it('list shows each dataset\'s release policy, the config\'s count marked (default)', async () => {
    const list = await secd('list');
    expect(list.code, list.stderr).toBe(0);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+KIND\s+SOURCE\s+USERS\s+RELEASE$/);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^cohort\s+path\s+clinic\/cohort\s+0\s+review, 3 approvals \(default\)$/),
      expect.stringMatching(/^icu\s+path\s+clinic\/icu\s+0\s+review, 1 approval$/),
      expect.stringMatching(/^open\s+path\s+public\/open\s+0\s+direct$/),
    ]);
  });

  it('set prints the policy before and after; "default" gives the count back to the config', async () => {
    const direct = await secd('set', 'cohort', '--release', 'direct');
    expect(direct.code, direct.stderr).toBe(0);
    expect(direct.stdout).toContain('dataset cohort: release review, 3 approvals (default) → direct; runs already handed to a node keep the policy they started with');
    expect(await stored('cohort')).toEqual({ release: 'direct', approvals: null });

    const back = await secd('set', 'cohort', '--release', 'review', '--approvals', '4');
    expect(back.stdout).toContain('dataset cohort: release direct → review, 4 approvals;');
    const reset = await secd('set', 'cohort', '--approvals', 'default');
    expect(reset.stdout).toContain('dataset cohort: release review, 4 approvals → review, 3 approvals (default);');
    expect(await stored('cohort')).toEqual({ release: 'review', approvals: null });

    const onDirect = await secd('set', 'open', '--approvals', '2');
    expect(onDirect.stdout).toContain('note: open is direct, so its approvals count only once it is set to review');
    expect(await stored('open')).toEqual({ release: 'direct', approvals: 2 });
  });

  it('bad values are refused naming the flag, and change nothing', async () => {
    const refusals: Array<[string[], string]> = [
      [['add', 'x', '--path', 'x', '--release', 'maybe'], '--release must be direct or review (got "maybe")'],
      [['add', 'x', '--path', 'x', '--approvals', '0'], '--approvals must be a whole number of 1 or more, or "default" for release.approvals (got "0")'],
      [['add', 'x', '--path', 'x', '--approvals', 'x'], '--approvals must be a whole number of 1 or more'],
      [['add', 'x', '--path', 'x', '--approvals', '1.5'], '--approvals must be a whole number of 1 or more'],
      [['set', 'icu', '--release', 'Review'], '--release must be direct or review (got "Review")'],
      [['set', 'icu', '--approvals', '-2'], '--approvals must be a whole number of 1 or more'],
      [['set', 'icu'], 'dataset set needs --release direct|review, --approvals <n> (or "default"), or both'],
      [['set', 'icuu', '--release', 'direct'], 'no dataset named icuu'],
    ];
    for (const [args, message] of refusals) {
      const result = await secd(...args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toContain(`secd admin: ${message}`);
    }
    expect(await stored('x')).toBeUndefined();
    expect(await stored('icu')).toEqual({ release: 'review', approvals: 1 });
  });

  it('a grant made without asking GitLab needs the account\'s id, and is kept by it', async () => {
    const grant = (...args: string[]) => runSecd(['admin', 'grant', ...args, ...config]);
    const noId = await grant('ada', 'icu', '--skip-user-check');
    expect(noId.code).toBe(2);
    expect(noId.stderr).toContain(
      'secd admin: --skip-user-check needs --user-id <GitLab user id>: grants belong to GitLab accounts, and without an id the grant cannot be bound to one',
    );
    for (const bad of ['0', '-3', '7x', '1.5']) {
      const result = await grant('ada', 'icu', '--skip-user-check', '--user-id', bad);
      expect(result.code, bad).toBe(2);
      expect(result.stderr, bad).toContain(`--user-id must be a GitLab user id, a whole number of 1 or more (got "${bad}")`);
    }
    const granted = await grant('ada', 'icu', '--skip-user-check', '--user-id', '7');
    expect(granted, granted.stderr).toMatchObject({ code: 0 });
    expect(granted.stdout).toContain('ada (GitLab user 7) may read icu from their next run');
    expect(granted.stdout).toContain('as asked, GitLab was not asked whether user 7 is ada');
    await withStateFile(join(dir, 'data', 'secd.db'), async ({ datasets: store }) => {
      expect((await store.datasetsOf(7)).map((d) => d.name)).toEqual(['icu']);
      expect(await store.grants('ada')).toMatchObject([{ user: 'ada', userId: 7, dataset: 'icu', bound: 'operator' }]);
    });
    const listed = await runSecd(['admin', 'grants', ...config]);
    expect(listed.stdout).toMatch(/^USER\s+DATASET\s+GRANTED\s+USER ID\nada\s+icu\s+\S+\s+7\n$/);
    // Revoking asks no one: the account may be gone from GitLab.
    const revoked = await runSecd(['admin', 'revoke', 'ada', 'icu', ...config]);
    expect(revoked, revoked.stderr).toMatchObject({ code: 0 });
    expect(revoked.stdout).toContain('ada (GitLab user 7) may no longer read icu');
  });
});
