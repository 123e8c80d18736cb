/**
 * Datasets end to end, for real: MariaDB seeded here, a signed push through the GitLab double, the
 * leader's temporary account, the node's dataset socket into a container without network, a file
 * dataset mounted read-only, and the account gone once the run ends.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Log } from '../../scheduler/common/log.js';
import { startCluster, type Cluster, type Researcher } from '../support/cluster-harness.js';
import { accountExists, cleanUp, loginError, MARIADB, MARIADB_ADMIN, seedDatabase, testTag } from '../support/mariadb.js';
import { gitOutput as git, outputsFolder } from '../support/repo-reader.js';

const tag = testTag();
const prefix = `secdt${tag}_`;
const SALES = `secdt_${tag}_sales`;
const HR = `secdt_${tag}_hr`;

/** A Log that keeps every line, to check what the leader and node wrote. */
function capturingLog(lines: string[]): Log {
  const log: Log = {
    debug: (o, m) => void lines.push(`${JSON.stringify(o)} ${m ?? ''}`),
    info: (o, m) => void lines.push(`${JSON.stringify(o)} ${m ?? ''}`),
    warn: (o, m) => void lines.push(`${JSON.stringify(o)} ${m ?? ''}`),
    error: (o, m) => void lines.push(`${JSON.stringify(o)} ${m ?? ''}`),
    child: () => log,
  };
  return log;
}

const PROBE = `
import json, os, pymysql, secd

out = {}
db = secd.connect("sales")

def attempt(sql):
    try:
        with db.cursor() as c:
            c.execute(sql)
            return c.fetchall()
    except pymysql.MySQLError as e:
        return "refused %d" % e.args[0]

out["sales"] = [list(r) for r in attempt("SELECT COUNT(*), CAST(SUM(amount) AS CHAR) FROM orders")]
out["select_hr"] = attempt("SELECT * FROM \`${HR}\`.staff")
out["insert"] = attempt("INSERT INTO orders VALUES (99, 1.00)")
out["update"] = attempt("UPDATE orders SET amount = 0")
out["delete"] = attempt("DELETE FROM orders")
out["drop"] = attempt("DROP TABLE orders")
out["env"] = {k: os.environ.get(k) for k in ["DB_HOST", "DB_PORT", "DB_SOCKET", "DB_USER"]}
out["datasets"] = secd.datasets()
out["uid"] = os.getuid()
out["scans"] = open(secd.dataset_path("scans") + "/readme.txt").read()
try:
    open("/datasets/scans/new.txt", "w")
    out["scans_write"] = "allowed"
except OSError:
    out["scans_write"] = "refused"
json.dump(out, open(os.path.join(secd.get_output_path(), "probe.json"), "w"))
# Written only so this test can look for the password everywhere secd shows or stores things.
open(os.path.join(secd.get_output_path(), "password.txt"), "w").write(os.environ["DB_PASS"])
print("probe done")
`;

describe('a run reads exactly the datasets its researcher may read', () => {
  let cluster: Cluster;
  let ada: Researcher;
  let datasetRoot: string;
  const logLines: string[] = [];

  beforeAll(async () => {
    await seedDatabase(SALES, [
      'CREATE TABLE {db}.orders (id INT PRIMARY KEY, amount DECIMAL(10,2))',
      'INSERT INTO {db}.orders VALUES (1, 10.50), (2, 20.25), (3, 5.00)',
    ]);
    await seedDatabase(HR, ['CREATE TABLE {db}.staff (name VARCHAR(20), salary INT)', "INSERT INTO {db}.staff VALUES ('eve', 1)"]);
    datasetRoot = await mkdtemp(join(tmpdir(), 'secd-datasets-'));
    await mkdir(join(datasetRoot, 'radiology', 'scans'), { recursive: true });
    await writeFile(join(datasetRoot, 'radiology', 'scans', 'readme.txt'), 'scan index v1\n');
    cluster = await startCluster({
      mysql: { ...MARIADB, admin_user: MARIADB_ADMIN.user, admin_password: MARIADB_ADMIN.password, user_prefix: prefix },
      datasetRoot,
      log: capturingLog(logLines),
    });
    ada = await cluster.addResearcher({ username: 'ada', project: 'lab/datasets' });
    const d = cluster.leader.datasetStore;
    // `direct`: this story reads the results from the researcher's branch; held runs have their own.
    expect((await d.add({ name: 'sales', kind: 'mysql', mysqlDatabase: SALES }, { release: 'direct' })).ok).toBe(true);
    expect((await d.add({ name: 'hr', kind: 'mysql', mysqlDatabase: HR }, { release: 'direct' })).ok).toBe(true);
    expect((await d.add({ name: 'scans', kind: 'path', path: 'radiology/scans' }, { release: 'direct' })).ok).toBe(true);
    // Grants belong to ada's GitLab account (its id), as `secd admin grant` stores them.
    await d.grant({ username: 'ada', userId: ada.user.id }, 'sales');
    await d.grant({ username: 'ada', userId: ada.user.id }, 'scans');
  });
  afterAll(async () => {
    await cluster?.close();
    await cleanUp([SALES, HR], prefix);
    if (datasetRoot) await rm(datasetRoot, { recursive: true, force: true });
  });

  it('reads its granted database and file dataset; other databases, writes and drops are refused; the account is gone afterwards', async () => {
    await ada.repo.commit('probe the datasets', {
      signer: ada.signer,
      committerEmail: ada.user.email,
      // Not root: the dataset socket must be connectable by whatever user the image runs as.
      files: { Dockerfile: 'FROM secd/base\nCOPY probe.py /probe.py\nUSER 1234:1234\nCMD ["python3", "/probe.py"]\n', 'probe.py': PROBE },
    });
    const { id: runId } = await ada.pushRun();
    const run = await cluster.waitForRun(runId, 240_000);
    const repo = cluster.gitlab.repoDir('lab/datasets');
    const folder = run.branch ? outputsFolder(run.branch) : '';
    expect(run.state, `${run.reason}\n${run.branch ? git(repo, ['show', `${run.branch}:${folder}/_secd/run.log`]) : ''}`).toBe('succeeded');

    const probe = JSON.parse(git(repo, ['show', `${run.branch}:${folder}/probe.json`])) as Record<string, unknown>;
    expect(probe.sales).toEqual([[3, '35.75']]);
    // 1142: "command denied to user" for the table; 1044: access denied to the database.
    expect(probe.select_hr).toMatch(/^refused (1142|1044)$/);
    for (const write of ['insert', 'update', 'delete', 'drop']) expect(probe[write], write).toBe('refused 1142');
    const account = `${prefix}${runId}`;
    expect(probe.env).toEqual({ DB_HOST: 'localhost', DB_PORT: String(MARIADB.port), DB_SOCKET: '/run/mysqld/mysqld.sock', DB_USER: account });
    expect(probe.datasets).toEqual({ sales: { kind: 'mysql', database: SALES }, scans: { kind: 'path', path: '/datasets/scans' } });
    expect(probe.uid).toBe(1234);
    expect(probe.scans).toBe('scan index v1\n');
    expect(probe.scans_write).toBe('refused');

    // Once the run has ended the temporary account cannot log in and does not exist.
    const password = git(repo, ['show', `${run.branch}:${folder}/password.txt`]);
    expect(password.length).toBeGreaterThanOrEqual(32);
    expect(await loginError(MARIADB, { user: account, password })).toMatch(/^ER_ACCESS_DENIED/);
    expect(await accountExists(account)).toBe(false);

    // run.json and the audit log say what the run was given and how much it read, never the password.
    const runJson = git(repo, ['show', `${run.branch}:${folder}/_secd/run.json`]);
    const report = JSON.parse(runJson) as { datasets: { names: string[]; mysql_user: string; bytes_from_server: number } };
    expect(report.datasets).toMatchObject({ names: ['sales', 'scans'], mysql_user: account });
    expect(report.datasets.bytes_from_server).toBeGreaterThan(100);
    const audit = (await cluster.leader.datasetStore.runAccess(runId))!;
    expect(audit.datasets.map((d) => d.name)).toEqual(['sales', 'scans']);
    expect(audit).toMatchObject({ mysqlUser: account, droppedAt: expect.any(String), bytesFromServer: report.datasets.bytes_from_server });

    // The password appears nowhere secd writes or shows.
    const shown = [
      runJson,
      git(repo, ['show', `${run.branch}:${folder}/_secd/build.log`]),
      git(repo, ['show', `${run.branch}:${folder}/_secd/run.log`]),
      logLines.join('\n'),
      await (await fetch(`${cluster.leader.url}/api/v1/runs/${runId}`)).text(),
      await (await fetch(`${cluster.leader.url}/api/v1/runs`)).text(),
      await (await fetch(`${cluster.leader.url}/runs/${runId}`)).text(),
      await (await fetch(`${cluster.leader.url}/`)).text(),
      cluster.gitlab.statuses.map((s) => JSON.stringify(s)).join('\n'),
    ];
    for (const [i, text] of shown.entries()) expect(text.includes(password), `shown text #${i}`).toBe(false);
    const dataDir = join(cluster.configFile, '..', 'leader');
    for (const file of readdirSync(dataDir).filter((f) => f.startsWith('secd.db'))) {
      expect(readFileSync(join(dataDir, file)).includes(password), file).toBe(false);
    }
  });

  it('asking in secd.yml for a dataset not granted, or unknown, rejects the push naming it', async () => {
    for (const [yml, named] of [
      ['datasets: [sales, hr]\n', '"hr", which ada is not granted'],
      ['datasets: [salez]\n', '"salez", but no dataset has that name'],
    ] as const) {
      const sha = await ada.repo.commit(`ask for ${yml.trim()}`, { signer: ada.signer, committerEmail: ada.user.email, files: { 'secd.yml': yml } });
      const run = await cluster.waitForRun((await ada.pushRun()).id);
      expect(run.state).toBe('rejected');
      expect(run.reason).toContain(named);
      const last = cluster.gitlab.statuses.filter((s) => s.sha === sha).at(-1);
      expect(last).toMatchObject({ state: 'failed', description: expect.stringContaining(named) });
    }
    expect(await cluster.leader.datasetStore.openAccesses()).toEqual([]);
  });
});
