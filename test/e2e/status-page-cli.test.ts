/**
 * `secd status` as an operator runs it: the real CLI (built into dist/ by `npm test`) against a leader
 * with known nodes and runs prints them as aligned tables, and says so in one line when the leader
 * cannot be reached.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aGpu, aNode, aRun, startStatusServer, type StatusServer } from '../support/status-page-fixtures.js';

const CLI = resolve(import.meta.dirname, '../../dist/daemon/cli.js');
const GiB = 2 ** 30;

function secd(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" (npm test does it first)`);
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

/** The lines of one titled table in the output. */
function table(stdout: string, title: string): string[] {
  const lines = stdout.split('\n');
  const start = lines.indexOf(title);
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end === -1 ? undefined : end);
}

describe('secd status', () => {
  let server: StatusServer;

  beforeAll(async () => {
    const nodes = [
      aNode('gpu-01', [
        aGpu('gpu-01', 0, { uuid: 'GPU-0a', utilization_pct: 97, memory_used_bytes: 70 * GiB, memory_total_bytes: 80 * GiB, temperature_c: 71, power_w: 612, run_id: 'run0000001' }),
        aGpu('gpu-01', 1, { uuid: 'GPU-1b', utilization_pct: null, memory_used_bytes: null, temperature_c: null, power_w: null }),
      ], { load: 3.5, cpus: 96 }),
      aNode('gpu-02-long-name', 0, { state: 'down', last_seen: new Date(Date.now() - 3 * 3600_000).toISOString(), load: null }),
    ];
    server = await startStatusServer({ nodes: () => nodes });
    await aRun(server.store, { id: 'run0000001', state: 'running', project: 'lab/vision', user: 'alice', node: 'gpu-01', gpus: ['GPU-0a'] });
    await aRun(server.store, { id: 'run0000002', state: 'queued', project: 'lab/nlp', user: 'bob' });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('prints nodes, GPUs and runs as aligned tables', async () => {
    const { code, stdout, stderr } = await secd(['status', '--leader', server.url]);
    expect(code, stderr).toBe(0);
    expect(stdout.split('\n')[0]).toBe('Nodes up 1/2 · GPUs busy 1/2 · runs queued 1');
    const nodes = table(stdout, 'NODES');
    expect(nodes).toHaveLength(3);
    expect(nodes[0]).toMatch(/^NODE\s+STATE\s+LAST SEEN\s+LOAD\s+MEMORY\s+CPUS\s+GPUS BUSY\s+RUNS$/);
    expect(nodes[1]).toMatch(/^gpu-01\s+up\s+\d+s ago\s+3\.50\s+512\.0 GiB\s+96\s+1\/2\s+1$/);
    expect(nodes[2]).toMatch(/^gpu-02-long-name\s+down\s+3h ago\s+N\/A\s+512\.0 GiB\s+64\s+0\/0\s+0$/);
    // Aligned: every column starts at the same place on every line.
    for (const heading of ['STATE', 'LAST SEEN']) {
      const at = nodes[0]!.indexOf(heading);
      expect(nodes.slice(1).map((l) => l[at - 1] === ' ' && l[at] !== ' ')).toEqual([true, true]);
    }
    expect(nodes[0]!.indexOf('RUNS') + 4).toBe(nodes[1]!.length);

    const gpus = table(stdout, 'GPUS');
    expect(gpus[1]).toMatch(/^gpu-01\s+0\s+NVIDIA H100 80GB HBM3\s+97%\s+70\.0\/80\.0\s+71C\s+612W\s+run0000001$/);
    expect(gpus[2]).toMatch(/^gpu-01\s+1\s+NVIDIA H100 80GB HBM3\s+N\/A\s+N\/A\/79\.6\s+N\/A\s+N\/A\s+-$/);

    const runs = table(stdout, 'RUNS (newest first)');
    expect(runs[0]).toMatch(/^RUN\s+PROJECT\s+USER\s+STATE\s+NODE\s+GPUS\s+PUSHED \(UTC\)\s+FINISHED \(UTC\)\s+REASON$/);
    expect(runs[1]).toMatch(/^run0000002\s+lab\/nlp\s+bob\s+queued\s+-\s+-\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+-\s+waiting for a node$/);
    expect(runs[2]).toMatch(/^run0000001\s+lab\/vision\s+alice\s+running\s+gpu-01\s+gpu-01#0\s+.*container running$/);
  });

  it("escape sequences in a researcher's names and reasons print as inert text, never reaching the terminal", async () => {
    // What a secd.yml dataset name did (issue 13): retitle the terminal, erase the line, fake a row.
    const evil = '\x1b]0;pwned\x07\x1b[2K\r\nrun9999999  lab/fake  eve  succeeded\x9b31m';
    await aRun(server.store, {
      id: 'run0000009',
      state: 'rejected',
      project: 'lab/\u202egnp.exe',
      user: 'eve\u2066',
      reason: `secd.yml: datasets lists "${evil}", but no dataset has that name`,
    });
    const { code, stdout, stderr } = await secd(['status', '--leader', server.url]);
    expect(code, stderr).toBe(0);
    // Nothing a terminal acts on is left: no C0 control but newline, no DEL or C1, no bidi control.
    expect(stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
    const runs = table(stdout, 'RUNS (newest first)');
    expect(runs).toHaveLength(4);
    expect(runs.filter((l) => l.startsWith('run9999999'))).toEqual([]);
    expect(runs[1]).toMatch(/^run0000009\s+lab\/\\u202egnp\.exe\s+eve\\u2066\s+rejected\s+/);
    expect(runs[1]).toContain(
      'secd.yml: datasets lists "\\x1b]0;pwned\\x07\\x1b[2K run9999999 lab/fake eve succeeded\\x9b31m", but no dataset has that name',
    );
  });

  it('says in one line when the leader cannot be reached', async () => {
    // A port that was free a moment ago: nothing listens there.
    const probe = createServer();
    await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((done) => probe.close(done));
    const { code, stdout, stderr } = await secd(['status', '--leader', `http://127.0.0.1:${port}`]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe(`secd status: cannot reach the leader at http://127.0.0.1:${port} (connect ECONNREFUSED 127.0.0.1:${port})\n`);
  });
});

describe('secd status against a private leader (api.read_token)', () => {
  const TOKEN = 'a-read-token-of-thirty-two-chars';
  let server: StatusServer;
  let dir: string;

  beforeAll(async () => {
    server = await startStatusServer({ nodes: () => [], readToken: TOKEN });
    await aRun(server.store, { id: 'run0000009', state: 'queued', project: 'lab/secret-study', user: 'carol' });
    dir = mkdtempSync(join(tmpdir(), 'secd-status-token-'));
    writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
    writeFileSync(join(dir, 'wrong'), 'not-the-token-at-all-not-at-all\n');
    writeFileSync(join(dir, 'up.yml'), `listen: 127.0.0.1:9\npublic_url: ${server.url}\napi:\n  read_token: ${TOKEN}\n`);
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const runRow = (stdout: string) => table(stdout, 'RUNS (newest first)')[1] ?? '';

  it('without the token shows states but not who pushed what', async () => {
    const { code, stdout } = await secd(['status', '--leader', server.url]);
    expect(code).toBe(0);
    expect(runRow(stdout)).toMatch(/^run0000009\s+\(hidden\)\s+\(hidden\)\s+queued/);
    expect(stdout).not.toContain('secret-study');
  });

  it('with --read-token-file, or the token and URL from --config, shows the projects and users', async () => {
    for (const args of [['--leader', server.url, '--read-token-file', join(dir, 'token')], ['--config', join(dir, 'up.yml')]]) {
      const { code, stdout, stderr } = await secd(['status', ...args]);
      expect(code, stderr).toBe(0);
      expect(runRow(stdout)).toMatch(/^run0000009\s+lab\/secret-study\s+carol\s+queued/);
    }
  });

  it('a wrong token or an unreadable file says so in one line', async () => {
    const wrong = await secd(['status', '--leader', server.url, '--read-token-file', join(dir, 'wrong')]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/answered HTTP 401: the leader refused the read token\n$/);
    const missing = await secd(['status', '--leader', server.url, '--read-token-file', join(dir, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`--read-token-file: cannot read ${join(dir, 'nope')}`);
  });
});
