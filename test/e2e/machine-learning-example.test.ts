/**
 * examples/machine-learning through a signed push, as its README tells a data owner and a researcher
 * to do: load data/visits.sql into MariaDB, `secd admin dataset add` + `secd admin grant` with the
 * real CLI (the dataset is `review`, the default), push the example's files, let two output checkers
 * approve the held results in the review project, and find the model and its metrics on the results
 * branch once released.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster, type Researcher } from '../support/cluster-harness.js';
import { cleanUp, MARIADB, MARIADB_ADMIN, seedDatabase, testTag } from '../support/mariadb.js';
import { runSecd as secd } from '../support/secd-cli.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';

const EXAMPLE = resolve(import.meta.dirname, '../../examples/machine-learning');
const tag = testTag();
const prefix = `secdm${tag}_`;
const DB = `secdm_${tag}_clinic`;

describe('examples/machine-learning', () => {
  let cluster: Cluster;
  let ada: Researcher;
  let review: { id: number; users: Record<string, number> };

  beforeAll(async () => {
    // The data owner's load, as in the README (the file's statements, one by one).
    const statements = readFileSync(join(EXAMPLE, 'data', 'visits.sql'), 'utf8')
      .split(/;\s*\n/)
      .map((s) => s.replace(/^--.*$/gm, '').trim())
      .filter(Boolean)
      .map((s) => s.replace(/\b(TABLE( IF EXISTS)?|INTO) visits\b/, (m) => m.replace('visits', '{db}.visits')));
    await seedDatabase(DB, statements);
    cluster = await startCluster({
      mysql: { ...MARIADB, admin_user: MARIADB_ADMIN.user, admin_password: MARIADB_ADMIN.password, user_prefix: prefix },
    });
    ada = await cluster.addResearcher({ username: 'ada', project: 'lab/readmissions' });
    review = cluster.addReviewProject(['carol', 'dan']);
  });
  afterAll(async () => {
    await cluster?.close();
    await cleanUp([DB], prefix);
  });

  it('the data owner registers and grants the dataset with secd admin, with clear errors for unknown names', async () => {
    const config = ['--config', cluster.configFile];
    const added = await secd(['admin', 'dataset', 'add', 'clinic', '--mysql-database', DB, ...config]);
    expect(added, added.stderr).toMatchObject({ code: 0 });
    expect(added.stdout).toContain(`added dataset clinic (mysql database ${DB})`);
    expect(added.stdout).toContain('review');
    const missingDb = await secd(['admin', 'dataset', 'add', 'other', '--mysql-database', `${DB}_nope`, ...config]);
    expect(missingDb.code).toBe(2);
    expect(missingDb.stderr).toContain(`has no database ${DB}_nope`);

    const unknownUser = await secd(['admin', 'grant', 'nobody', 'clinic', ...config]);
    expect(unknownUser.code).toBe(2);
    expect(unknownUser.stderr).toContain('has no user named nobody');
    const unknownDataset = await secd(['admin', 'grant', 'ada', 'clinc', ...config]);
    expect(unknownDataset.code).toBe(2);
    expect(unknownDataset.stderr).toContain('no dataset named clinc');
    // Without GitLab's answer a grant needs the account's id: a bare name cannot be bound to one.
    const unchecked = await secd(['admin', 'grant', 'ada', 'clinic', '--skip-user-check', ...config]);
    expect(unchecked.code).toBe(2);
    expect(unchecked.stderr).toContain('--skip-user-check needs --user-id <GitLab user id>: grants belong to GitLab accounts');
    const wrongId = await secd(['admin', 'grant', 'ada', 'clinic', '--user-id', String(ada.user.id + 100), ...config]);
    expect(wrongId.code).toBe(2);
    expect(wrongId.stderr).toContain(`GitLab says ada is user ${ada.user.id}, not ${ada.user.id + 100}`);
    // GitLab compares usernames case-insensitively; the grant is stored with the account's id and
    // GitLab's spelling of the name.
    const granted = await secd(['admin', 'grant', 'ADA', 'clinic', ...config]);
    expect(granted, granted.stderr).toMatchObject({ code: 0 });
    expect(granted.stdout).toContain(`ada (GitLab user ${ada.user.id}) may read clinic`);

    const grants = await secd(['admin', 'grants', 'ada', ...config]);
    expect(grants.stdout).toMatch(new RegExp(`^USER\\s+DATASET\\s+GRANTED\\s+USER ID\\nada\\s+clinic\\s+\\d{4}-\\S+\\s+${ada.user.id}\\n$`));
    const list = await secd(['admin', 'dataset', 'list', ...config]);
    expect(list.stdout).toMatch(new RegExp(`clinic\\s+mysql\\s+${DB}\\s+1`));
    const revokeNone = await secd(['admin', 'revoke', 'bob', 'clinic', ...config]);
    expect(revokeNone.code).toBe(2);
    expect(revokeNone.stderr).toContain('bob has no grant on dataset clinic');

    // File datasets are named relative to dataset_root; this config has none to check against.
    const outside = await secd(['admin', 'dataset', 'add', 'scans', '--path', '/etc', ...config]);
    expect(outside.code).toBe(2);
    expect(outside.stderr).toContain('names no dataset_root');
    const escape = await secd(['admin', 'dataset', 'add', 'scans', '--path', 'a/../../etc', ...config]);
    expect(escape.code).toBe(2);
    expect(escape.stderr).toContain('without "." or ".."');
    const both = await secd(['admin', 'dataset', 'add', 'scans', '--path', 'scans', '--mysql-database', DB, ...config]);
    expect(both.stderr).toContain('exactly one of --mysql-database <db> or --path <dir>');
    const scans = await secd(['admin', 'dataset', 'add', 'scans', '--path', 'radiology/scans', ...config]);
    expect(scans, scans.stderr).toMatchObject({ code: 0 });
    expect(scans.stdout).toContain('each node finds radiology/scans under its own dataset_root');
    expect((await secd(['admin', 'dataset', 'remove', 'scans', ...config])).stdout).toContain('removed dataset scans');
  });

  it('a push trains the model on the granted dataset and pushes model.json and metrics.json; a second push reuses the cleaning', async () => {
    const files: Record<string, string> = {};
    for (const name of ['Dockerfile', 'secd.yml', 'train.py', 'README.md']) files[name] = readFileSync(join(EXAMPLE, name), 'utf8');
    const results = async (message: string, extra: Record<string, string> = {}) => {
      const pushed = await ada.pushRun({ ...files, ...extra }, { message });
      // The clinic dataset is `review`: the results wait in the review project for two checkers.
      const held = await cluster.waitForState(pushed.id, 'held', 240_000);
      expect(held.reason).toBe('outputs held for review (0/2 approvals)');
      const branch = (await cluster.leader.releaseStore.get(held.id))!.reviewBranch!;
      const mr = cluster.gitlab.mergeRequests(review.id).find((m) => m.sourceBranch === branch)!;
      expect(mr.description).toContain('metrics.json');
      for (const checker of ['carol', 'dan']) cluster.gitlab.approveMergeRequest(review.id, mr.iid, review.users[checker]!);
      await cluster.settle();
      const run = await cluster.waitForRun(pushed.id, 30_000);
      expect(run.reason).toContain('released after review by carol, dan');
      const repo = cluster.gitlab.repoDir('lab/readmissions');
      const folder = run.branch ? outputsFolder(run.branch) : '';
      const read = (f: string) => git(repo, ['show', `${run.branch}:${folder}/${f}`]);
      expect(run.state, `${run.reason}\n${run.branch ? read('_secd/run.log') : ''}`).toBe('succeeded');
      return read;
    };

    const first = await results('train the readmission model');
    const metrics = JSON.parse(first('metrics.json')) as Record<string, number | boolean>;
    expect(metrics).toMatchObject({ visits_read: 2000, visits_dropped: 190, production: true });
    expect(metrics.test_accuracy).toBeGreaterThan((metrics.baseline_accuracy as number) + 0.1);
    const model = JSON.parse(first('model.json')) as { features: string[]; weights: number[] };
    expect(model.features).toEqual(['age', 'bmi', 'systolic_bp', 'smoker']);
    expect(model.weights.every((w) => w > 0)).toBe(true);
    expect(first('_secd/run.log')).toContain('cleaned 1810 visits, dropped 190');

    const second = await results('retrain', { 'NOTES.md': 'second run\n' });
    expect(second('_secd/run.log')).toContain('Using cached result for clean');
    expect(second('_secd/run.log')).not.toContain('cleaned 1810 visits');
    expect(JSON.parse(second('metrics.json'))).toMatchObject({ test_accuracy: metrics.test_accuracy });

    // The data owner's audit: both runs, their temporary accounts (dropped), and what they read.
    const audit = await secd(['admin', 'dataset', 'audit', 'clinic', '--config', cluster.configFile]);
    const rows = audit.stdout.trim().split('\n').slice(1);
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toMatch(new RegExp(`^\\w{10}\\s+ada\\s+\\S+\\s+\\d{4}-\\S+\\s+${prefix}\\w{10}\\s+\\d{5,}$`));
  }, 400_000);
});
