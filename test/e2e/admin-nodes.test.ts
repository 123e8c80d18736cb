/**
 * `secd admin node-token` and `secd admin node ...` as an operator runs them against leader.yml.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSecd as secd } from '../support/secd-cli.js';
import { withStateFile } from '../support/state-file.js';

describe('secd admin for nodes', () => {
  let dir: string;
  let config: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'secd-admin-'));
    config = join(dir, 'leader.yml');
    await writeFile(config, `data_dir: ${join(dir, 'data')}\ngitlab:\n  url: https://gitlab.example.org\n  token: t\n  webhook_secret: s\n`);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('node-token prints a token as the last line; the database keeps only its hash', async () => {
    const result = await secd(['admin', 'node-token', 'gpu-01', '--config', config]);
    expect(result.code, result.stderr).toBe(0);
    const token = result.stdout.trim().split('\n').at(-1)!;
    // Where it goes, as docs/sysadmin.md section 4 says.
    expect(result.stdout).toContain('copy the last line now into /etc/secd/credentials/token on gpu-01');
    expect(token).toMatch(/^secdn_[A-Za-z0-9_-]{43}$/);
    await withStateFile(join(dir, 'data', 'secd.db'), async ({ nodes, handle }) => {
      expect(await nodes.authenticate('gpu-01', token)).toMatchObject({ ok: true });
      expect(JSON.stringify(handle.prepare('SELECT * FROM nodes').all())).not.toContain(token);
    });
  });

  it('node list has headers and, from the running leader, a true last seen', async () => {
    // A stand-in for the running leader at public_url: its nodes API says gpu-01 was heard 30 s ago.
    const seen = new Date(Date.now() - 30_000).toISOString();
    const server = createServer((req, res) => {
      res.writeHead(req.url === '/api/v1/nodes' ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ nodes: [{ id: 'gpu-01', state: 'up', last_seen: seen }] }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const liveConfig = join(dir, 'leader-live.yml');
    const port = (server.address() as AddressInfo).port;
    await writeFile(liveConfig, `data_dir: ${join(dir, 'data')}\npublic_url: http://127.0.0.1:${port}\ngitlab:\n  url: https://gitlab.example.org\n  token: t\n  webhook_secret: s\n`);
    try {
      await secd(['admin', 'node-token', 'gpu-02', '--config', liveConfig]);
      const out = (await secd(['admin', 'node', 'list', '--config', liveConfig])).stdout;
      const lines = out.trim().split('\n');
      expect(lines[0]).toMatch(/^NODE +STATE +SWITCHES +LAST SEEN +HOST$/);
      expect(out).toMatch(new RegExp(`^gpu-01 +up +\\S+ +${seen.replace(/\.\d{3}Z$/, 'Z')} \\((29|30|31|32) s ago\\)`, 'm'));
      expect(out).toMatch(/^gpu-02 +not connected +- +never +-$/m);
      expect(out).not.toContain('did not answer');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    // With no leader answering, the list says the times are the database's.
    const offline = (await secd(['admin', 'node', 'list', '--config', config])).stdout;
    expect(offline).toContain("did not answer (");
    expect(offline).toContain("LAST SEEN is each node's last hello or disconnect as the database has it");
  });

  it('drain, undrain and revoke say what they did; an unknown or malformed node id is refused', async () => {
    expect((await secd(['admin', 'node', 'drain', 'gpu-01', '--config', config])).stdout).toContain('node gpu-01 is draining');
    expect((await secd(['admin', 'node', 'list', '--config', config])).stdout).toMatch(/^gpu-01 +\? +draining +never/m);
    expect((await secd(['admin', 'node', 'undrain', 'gpu-01', '--config', config])).stdout).toContain('takes runs again');
    expect((await secd(['admin', 'node', 'revoke', 'gpu-01', '--config', config])).stdout).toContain("gpu-01's token is revoked");
    expect((await secd(['admin', 'node', 'list', '--config', config])).stdout).toMatch(/^gpu-01 +\? +revoked +/m);

    const unknown = await secd(['admin', 'node', 'drain', 'gpu-99', '--config', config]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no node gpu-99 is known');
    const malformed = await secd(['admin', 'node-token', '../x', '--config', config]);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('is not a node id');
  });
});
