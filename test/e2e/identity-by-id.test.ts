/**
 * The attack "identity by username", for real (issue 14, DESIGN §13): ada (one GitLab account) is
 * granted a dataset with `secd admin grant` and fills her cache; she renames her account, another
 * account registers as "ada" and pushes. That account gets neither ada's dataset nor her cache,
 * because grants and caches follow the GitLab user id, not the name. Then the upgrade path: a
 * name-only grant (as migration 6 leaves one) counts for no one, and `secd admin grants migrate`
 * binds it only where GitLab and secd's own runs agree on the account.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../storage/database.js';
import { startCluster, type Cluster, type Researcher } from '../support/cluster-harness.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';
import { runSecd } from '../support/secd-cli.js';
import { busyboxProject } from '../support/test-images.js';

/** Shows what the run could see: its datasets, the cache as it found it; then marks the cache. */
const PROBE = (mark: string) =>
  [
    'echo "${SECD_DATASETS:-none}" > $OUTPUT_PATH/catalog.txt',
    'cat /datasets/cohort/secret.txt > $OUTPUT_PATH/secret.txt 2>/dev/null; true',
    'ls -a "$SECD_CACHE_DIR" > $OUTPUT_PATH/cache-before.txt',
    `echo ${mark} > "$SECD_CACHE_DIR/left-by.txt"`,
    '',
  ].join('\n');

describe('grants and caches follow the GitLab account, not its name', () => {
  let cluster: Cluster;
  let ada: Researcher;
  let taker: Researcher;
  let datasetRoot: string;
  let adaRunId = '';
  const admin = (...args: string[]) => runSecd(['admin', ...args, '--config', cluster.configFile]);

  beforeAll(async () => {
    datasetRoot = await mkdtemp(join(tmpdir(), 'secd-identity-'));
    for (const [dir, text] of [['cohort', 'ada-only cohort data\n'], ['notes', 'notes\n']] as const) {
      await mkdir(join(datasetRoot, 'clinic', dir), { recursive: true });
      await writeFile(join(datasetRoot, 'clinic', dir, 'secret.txt'), text);
    }
    cluster = await startCluster({ datasetRoot });
    ada = await cluster.addResearcher({ username: 'ada', project: 'lab/ada-study' });
    const d = cluster.leader.datasetStore;
    // `direct`: the story reads results from the researcher's branch.
    expect((await d.add({ name: 'cohort', kind: 'path', path: 'clinic/cohort' }, { release: 'direct' })).ok).toBe(true);
    expect((await d.add({ name: 'notes', kind: 'path', path: 'clinic/notes' }, { release: 'direct' })).ok).toBe(true);
  }, 120_000);
  afterAll(async () => {
    await cluster?.close();
    if (datasetRoot) await rm(datasetRoot, { recursive: true, force: true });
  });

  async function pushAndWait(r: Researcher, files: Record<string, string>, message: string) {
    const run = await cluster.waitForRun((await r.pushRun(files, { message })).id, 240_000);
    const repo = cluster.gitlab.repoDir(r.project.path);
    const folder = run.branch ? outputsFolder(run.branch) : null;
    const read = (file: string) => (folder ? git(repo, ['show', `${run.branch}:${folder}/${file}`]) : '');
    return { run, read };
  }

  it('ada is granted the dataset by her account, reads it and fills her cache under her user id', async () => {
    const granted = await admin('grant', 'ada', 'cohort');
    expect(granted, granted.stderr).toMatchObject({ code: 0 });
    expect(granted.stdout).toContain(`ada (GitLab user ${ada.user.id}) may read cohort`);

    const { run, read } = await pushAndWait(ada, busyboxProject(PROBE('ada'), 'cache_dir: work\ndatasets: [cohort]\n'), 'read the cohort');
    expect(run.state, run.reason).toBe('succeeded');
    expect(run.userId).toBe(ada.user.id);
    adaRunId = run.id;
    expect(read('secret.txt')).toBe('ada-only cohort data\n');
    const report = JSON.parse(read('_secd/run.json')) as { cache: { dir: string; path: string } };
    expect(report.cache).toMatchObject({ dir: 'work', path: `@${ada.user.id}/work` });
    expect(await readFile(join(cluster.cacheRoot, `@${ada.user.id}`, 'work', 'left-by.txt'), 'utf8')).toBe('ada\n');
  }, 240_000);

  it('another account that takes the name "ada" gets neither her dataset nor her cache', async () => {
    // GitLab's rename: the account keeps its id and gives the name up; a new account takes it.
    ada.user.username = 'ada-lovelace';
    taker = await cluster.addResearcher({ username: 'ada', project: 'lab/taken-name', email: 'new-ada@example.org' });
    expect(taker.user.id).not.toBe(ada.user.id);

    const all = await pushAndWait(taker, busyboxProject(PROBE('taker'), 'cache_dir: work\n'), 'whatever ada had');
    expect(all.run.state, all.run.reason).toBe('succeeded');
    expect(all.run.user).toBe('ada');
    expect(all.read('catalog.txt')).toBe('none\n');
    expect(all.read('secret.txt')).toBe('');
    expect(all.read('cache-before.txt').trim().split('\n').sort()).toEqual(['.', '..']);
    const report = JSON.parse(all.read('_secd/run.json')) as { cache: { path: string }; datasets?: unknown };
    expect(report.cache.path).toBe(`@${taker.user.id}/work`);
    expect(report.datasets).toBeUndefined();

    // Asking for it by name is refused at policy time: the grant is read by the pusher's id.
    const asked = await pushAndWait(taker, { 'secd.yml': 'cache_dir: work\ndatasets: [cohort]\n' }, 'ask for the cohort');
    expect(asked.run.state).toBe('rejected');
    expect(asked.run.reason).toContain('"cohort", which ada is not granted');
    expect(asked.read('secret.txt')).toBe('');

    // On the node: ada's cache is untouched, the taker's is its own.
    expect(await readFile(join(cluster.cacheRoot, `@${ada.user.id}`, 'work', 'left-by.txt'), 'utf8')).toBe('ada\n');
    expect(await readFile(join(cluster.cacheRoot, `@${taker.user.id}`, 'work', 'left-by.txt'), 'utf8')).toBe('taker\n');
    // The audit: only ada's run was ever given the cohort.
    expect((await cluster.leader.datasetStore.runsGiven('cohort')).map((r) => r.runId)).toEqual([adaRunId]);
  }, 300_000);

  it('the grant still shows, by the name it was made to, with ada\'s id, and revoking by that name removes hers', async () => {
    const shown = await admin('grants', 'ada');
    expect(shown.stdout).toMatch(new RegExp(`\\nada\\s+cohort\\s+\\S+\\s+${ada.user.id}\\n`));
    // The taker may be granted too; the name then shows two accounts' grants and revoke asks which.
    expect((await admin('grant', 'ada', 'cohort')).stdout).toContain(`ada (GitLab user ${taker.user.id}) may read cohort`);
    const ambiguous = await admin('revoke', 'ada', 'cohort');
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toContain(`the name ada holds grants of 2 accounts on cohort (user id ${ada.user.id} and user id ${taker.user.id}): say which with --user-id`);
    const revoked = await admin('revoke', 'ada', 'cohort', '--user-id', String(taker.user.id));
    expect(revoked, revoked.stderr).toMatchObject({ code: 0 });
    expect(await cluster.leader.datasetStore.datasetsOf(taker.user.id)).toEqual([]);
    expect((await cluster.leader.datasetStore.datasetsOf(ada.user.id)).map((d) => d.name)).toEqual(['cohort']);
  }, 60_000);

  it('after an upgrade, a name-only grant counts for no one, and grants migrate binds only what GitLab and secd\'s runs agree on', async () => {
    const bob = await cluster.addResearcher({ username: 'bob', project: 'lab/bob-study' });
    const bobRun = await pushAndWait(bob, busyboxProject('echo hi > $OUTPUT_PATH/hi.txt\n'), 'a first run');
    expect(bobRun.run.state, bobRun.run.reason).toBe('succeeded');
    // What migration 6 leaves of grants made by name before it: no user id.
    const db = openDatabase(join(dirname(cluster.configFile), 'leader', 'secd.db'));
    try {
      for (const user of ['ada', 'bob']) {
        db.prepare("INSERT INTO dataset_grants (user, dataset, granted_at) VALUES (?, 'notes', '2025-06-02T00:00:00.000Z')").run(user);
      }
    } finally {
      db.close();
    }
    const listed = await admin('grants');
    expect(listed.stdout).toMatch(/\nbob\s+notes\s+\S+\s+none \(name-only: counts for no one; see "secd admin grants migrate"\)\n/);

    const refused = await pushAndWait(taker, { 'secd.yml': 'datasets: [notes]\n' }, 'ask for the notes');
    expect(refused.run.state).toBe('rejected');
    expect(refused.run.reason).toContain('"notes", granted to the name ada before secd bound grants to GitLab accounts');

    const dry = await admin('grants', 'migrate');
    expect(dry, dry.stderr).toMatchObject({ code: 0 });
    expect(dry.stdout).toContain(`ada on notes: left name-only (counts for no one): runs under the name came from 2 accounts (user ids ${ada.user.id}, ${taker.user.id})`);
    expect(dry.stdout).toContain(`bob on notes: would bind to GitLab user ${bob.user.id}: GitLab's id for the name now, and the only id on secd's 1 run(s)`);
    expect(dry.stdout).toContain('nothing changed');
    expect(await cluster.leader.datasetStore.datasetsOf(bob.user.id)).toEqual([]);

    const bound = await admin('grants', 'migrate', '--bind');
    expect(bound.stdout).toContain(`audit: bound bob's grant on notes (granted 2025-06-02T00:00:00.000Z) to GitLab user ${bob.user.id}`);
    expect(bound.stdout).toContain('bound 1 grant; 1 grant left name-only');
    expect((await cluster.leader.datasetStore.datasetsOf(bob.user.id)).map((d) => d.name)).toEqual(['notes']);
    expect(await cluster.leader.datasetStore.datasetsOf(taker.user.id)).toEqual([]);
    expect((await cluster.leader.datasetStore.unboundGrants()).map((g) => `${g.user}/${g.dataset}`)).toEqual(['ada/notes']);
    // The caches of earlier versions, keyed by name, are nobody's now.
    expect((await readdir(cluster.cacheRoot)).filter((f) => !f.startsWith(':')).sort()).toEqual(
      [`@${ada.user.id}`, `@${taker.user.id}`].sort(),
    );
  }, 240_000);
});
