/**
 * `secd admin release list|show` as a data owner runs them against leader.yml: runs held for review,
 * released and withheld, written through the stores the leader uses, then read back by the real CLI.
 * Needs `npm run build` first (see test/support/secd-cli.ts).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunState } from '../../storage/run-states.js';
import { aNewRun } from '../support/run-rows.js';
import { runSecd } from '../support/secd-cli.js';
import { openStateFile } from '../support/state-file.js';

const MINUTE = 60_000;
const MR = 'https://gitlab.example.org/secd/output-review/-/merge_requests';
const REVIEW_COMMIT = 'c'.repeat(40);

describe('secd admin release', () => {
  let dir: string;
  let config: string[];
  // Four hours before the CLI runs, so ages read as they would on a real leader.
  const start = Date.now() - 4 * 60 * MINUTE;
  let clock = start;
  const at = (minutesAfterStart: number) => new Date(start + minutesAfterStart * MINUTE).toISOString();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'secd-release-admin-'));
    const file = join(dir, 'leader.yml');
    await writeFile(file, `data_dir: ${join(dir, 'data')}\ngitlab:\n  url: https://gitlab.example.org\n  token: t\n  webhook_secret: s\n`);
    config = ['--config', file];

    const db = await openStateFile(join(dir, 'data', 'secd.db'), () => new Date(clock));
    const { runs, releases } = db;
    const reach = async (id: string, path: readonly RunState[]) => {
      for (const to of path) expect((await runs.transition(id, to, `to ${to}`)).ok, `${id} → ${to}`).toBe(true);
    };
    const toUploading: RunState[] = ['verified', 'queued', 'assigned', 'running', 'uploading'];
    /** A review run put up for review at minute `heldAt` (its merge request !iid). */
    const hold = async (id: string, user: string, project: string, iid: number, required: number, datasets: string[], heldAt: number) => {
      clock = start + (heldAt - 5) * MINUTE;
      await runs.createRun(aNewRun({ id, user, project, deliveryKey: id }));
      await releases.decide(id, { policy: 'review', approvalsRequired: required, datasets });
      await reach(id, toUploading);
      clock = start + heldAt * MINUTE;
      await releases.update(id, { reviewProjectId: 42, reviewBranch: `secd-20260101-${id}`, reviewCommit: REVIEW_COMMIT, mrIid: iid, mrUrl: `${MR}/${iid}` });
      await reach(id, ['held']);
      await runs.note(id, `merge request !${iid} opened: ${MR}/${iid}`);
    };
    const approve = async (id: string, user: string, userId: number, minute: number) => {
      clock = start + minute * MINUTE;
      const counted = [...(await releases.get(id))!.approvals, { user, userId, at: at(minute) }];
      await releases.update(id, { approvals: counted });
      await runs.note(id, `approval counted: ${user} (${counted.length}/${(await releases.get(id))!.approvalsRequired})`);
    };

    // Two released or withheld earlier, two still held (the oldest first), one direct, one rejected.
    await hold('rel0000001', 'ada', 'lab/cohort', 1, 2, ['clinic'], 10);
    await approve('rel0000001', 'alice', 11, 20);
    await approve('rel0000001', 'carol', 13, 30);
    await releases.update('rel0000001', { outcome: 'released', decidedBy: 'alice, carol', decidedAt: at(30) });
    await reach('rel0000001', ['succeeded']);

    await hold('wth0000001', 'bob', 'lab/genes', 2, 2, ['genome', 'clinic'], 40);
    clock = start + 50 * MINUTE;
    await releases.update('wth0000001', { outcome: 'withheld', decidedBy: 'dave', decidedAt: at(50) });
    await reach('wth0000001', ['withheld']);

    await hold('hld0000001', 'ada', 'lab/cohort', 3, 2, ['clinic'], 60);
    await releases.update('hld0000001', { findings: [
      { file: 'counts.csv', rule: 'small_cell', detail: 'row 3, column n: a count below 10' },
      { file: 'ids.csv', rule: 'forbidden_column', detail: 'column patient_id' },
    ] });
    await approve('hld0000001', 'alice', 11, 70);

    await hold('hld0000002', 'bob', 'lab/genes', 4, 1, [], 230);

    clock = start + 100 * MINUTE;
    await runs.createRun(aNewRun({ id: 'dir0000001', user: 'eve', project: 'lab/open', deliveryKey: 'dir0000001' }));
    await releases.decide('dir0000001', { policy: 'direct', approvalsRequired: 2, datasets: [] });
    await reach('dir0000001', [...toUploading, 'succeeded']);
    await runs.createRun(aNewRun({ id: 'rej0000001', user: 'eve', project: 'lab/open', deliveryKey: 'rej0000001' }));
    await reach('rej0000001', ['rejected']);
    await db.close();
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const secd = (...args: string[]) => runSecd(['admin', 'release', ...args, ...config]);

  it('list shows the held runs, oldest first, with approvals so far, age and merge request; nothing decided', async () => {
    const list = await secd('list');
    expect(list.code, list.stderr).toBe(0);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^RUN\s+PROJECT\s+RESEARCHER\s+APPROVALS\s+AGE\s+MERGE REQUEST$/);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(new RegExp(`^hld0000001\\s+lab/cohort\\s+ada\\s+1/2\\s+3h 0m\\s+${MR}/3$`)),
      expect.stringMatching(new RegExp(`^hld0000002\\s+lab/genes\\s+bob\\s+0/1\\s+10m\\s+${MR}/4$`)),
    ]);
  });

  it('list --all adds the released and withheld runs with who decided and how long each was held; direct runs are not reviews', async () => {
    const list = await secd('list', '--all');
    expect(list.code, list.stderr).toBe(0);
    const rows = list.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^RUN\s+PROJECT\s+RESEARCHER\s+APPROVALS\s+OUTCOME\s+DECIDED BY\s+HELD FOR\s+MERGE REQUEST$/);
    const byRun = new Map(rows.slice(1).map((r) => [r.split(/\s+/)[0], r]));
    expect([...byRun.keys()]).toEqual(['hld0000002', 'hld0000001', 'wth0000001', 'rel0000001']);
    // Held at minute 10, released at 30; held at 40, withheld at 50.
    expect(byRun.get('rel0000001')).toMatch(new RegExp(`\\s2/2\\s+released\\s+alice, carol\\s+20m\\s+${MR}/1$`));
    expect(byRun.get('wth0000001')).toMatch(new RegExp(`\\s0/2\\s+withheld\\s+dave\\s+10m\\s+${MR}/2$`));
    expect(byRun.get('hld0000001')).toMatch(/\s1\/2\s+waiting\s+-\s+3h 0m\s/);
    expect(list.stdout).not.toContain('dir0000001');
  });

  it('list --json gives the same facts to scripts', async () => {
    const list = await secd('list', '--json');
    expect(list.code, list.stderr).toBe(0);
    const rows = JSON.parse(list.stdout) as Array<Record<string, unknown>>;
    expect(rows.map((r) => r.run_id)).toEqual(['hld0000001', 'hld0000002']);
    expect(rows[0]).toMatchObject({
      project: 'lab/cohort',
      researcher: 'ada',
      state: 'held',
      policy: 'review',
      approvals_counted: 1,
      approvals_required: 2,
      held_at: at(60),
      merge_request_url: `${MR}/3`,
      outcome: null,
    });
    expect(rows[0]!.held_seconds as number).toBeGreaterThanOrEqual(180 * 60);
    expect(rows[0]!.held_seconds as number).toBeLessThan(182 * 60);
  });

  it('show of a held run gives its policy and datasets, findings, review, each approval and its audit events', async () => {
    const show = await secd('show', 'hld0000001');
    expect(show.code, show.stderr).toBe(0);
    const out = show.stdout;
    expect(out).toContain('run hld0000001: lab/cohort@aaaaaaaa (refs/heads/main) by ada\nstate: held');
    expect(out).toContain('policy: review, 2 approvals required (set by dataset clinic)');
    expect(out).toMatch(/disclosure findings \(2\):\n\s+FILE\s+RULE\s+DETAIL\n\s+counts\.csv\s+small_cell\s+row 3, column n: a count below 10\n\s+ids\.csv\s+forbidden_column\s+column patient_id\n/);
    expect(out).toContain(`  branch:        secd-20260101-hld0000001\n  commit:        ${REVIEW_COMMIT}\n  merge request: ${MR}/3 (!3)`);
    expect(out).toMatch(new RegExp(`approvals counted \\(1/2\\):\\n\\s+REVIEWER\\s+AT\\n\\s+alice\\s+${at(70).replace(/\./g, '\\.')}\\n`));
    expect(out).toContain('outcome: none yet: held for 3h 0m, waiting for 1 more approval');
    expect(out).toMatch(/uploading → held\s+to held/);
    expect(out).toMatch(new RegExp(`held \\(note\\)\\s+merge request !3 opened: ${MR}/3`));
    expect(out).toMatch(/held \(note\)\s+approval counted: alice \(1\/2\)/);
  });

  it('show of decided runs says who released or withheld them and when', async () => {
    const released = await secd('show', 'rel0000001');
    expect(released.code, released.stderr).toBe(0);
    expect(released.stdout).toContain(`outcome: released after review by alice, carol at ${at(30)}`);
    expect(released.stdout).toMatch(/approvals counted \(2\/2\):\n\s+REVIEWER\s+AT\n\s+alice\s+\S+\n\s+carol\s+\S+\n/);
    expect(released.stdout).toMatch(/held → succeeded/);

    const withheld = await secd('show', 'wth0000001');
    expect(withheld.stdout).toContain('policy: review, 2 approvals required (set by datasets genome, clinic)');
    expect(withheld.stdout).toContain(`outcome: withheld by dave at ${at(50)}; nothing reached the researcher`);
    expect(withheld.stdout).toContain('approvals counted (0/2): none');
  });

  it('show of a direct run and of a run that never reached a node say so', async () => {
    const direct = await secd('show', 'dir0000001');
    expect(direct.stdout).toContain('policy: direct (release.default: the run was given no dataset): outputs go straight to the researcher');
    expect(direct.stdout).toContain('disclosure findings: none');
    expect(direct.stdout).not.toContain('approvals counted');
    const rejected = await secd('show', 'rej0000001');
    expect(rejected.code, rejected.stderr).toBe(0);
    expect(rejected.stdout).toContain('release: no record: the run never reached a node');
    expect(rejected.stdout).toMatch(/received → rejected\s+to rejected/);
  });

  it('show --json has the review, approvals and events; an unknown run is refused with exit status 2', async () => {
    const show = await secd('show', 'hld0000001', '--json');
    expect(show.code, show.stderr).toBe(0);
    const body = JSON.parse(show.stdout) as { run: unknown; release: Record<string, unknown>; events: Array<{ from: string; to: string }> };
    expect(body.run).toMatchObject({ id: 'hld0000001', researcher: 'ada', state: 'held' });
    expect(body.release).toMatchObject({
      policy: 'review',
      approvals_required: 2,
      datasets: ['clinic'],
      review: { project_id: 42, branch: 'secd-20260101-hld0000001', commit: REVIEW_COMMIT, merge_request_iid: 3, merge_request_url: `${MR}/3` },
      approvals: [{ user: 'alice', user_id: 11, at: at(70) }],
      outcome: null,
    });
    expect(body.release.findings).toHaveLength(2);
    expect(body.events.map((e) => e.to)).toEqual(['received', 'verified', 'queued', 'assigned', 'running', 'uploading', 'held', 'held', 'held']);

    const unknown = await secd('show', 'nope000001');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('secd admin: no run nope000001');
    const badLimit = await secd('list', '--all', '--limit', 'x');
    expect(badLimit.code).toBe(2);
    expect(badLimit.stderr).toContain('--limit must be a whole number');
  });
});
