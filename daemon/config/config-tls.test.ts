import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configProblems, MINIMAL_LEADER_YML } from './config-test-kit.js';
import { parseLeaderConfig } from './leader-config.js';
import { parseNodeConfig } from './node-config.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'secd-config-tls-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const LEADER = MINIMAL_LEADER_YML;
const NODE = 'leader: wss://leader.example.org:8443/v1/nodes\nnode_id: gpu-01\ntoken: secdn_x\ncache_root: /mnt/cache\n';

const problems = configProblems;

describe('TLS settings', () => {
  it('the leader takes a certificate and key, relative to its config file', () => {
    writeFileSync(path.join(dir, 'leader.pem'), 'x');
    writeFileSync(path.join(dir, 'leader.key'), 'x');
    const cfg = parseLeaderConfig(`${LEADER}tls:\n  cert_file: leader.pem\n  key_file: leader.key\n`, path.join(dir, 'leader.yml'), {});
    expect(cfg.tls).toEqual({ cert_file: path.join(dir, 'leader.pem'), key_file: path.join(dir, 'leader.key') });
    expect(parseLeaderConfig(LEADER, path.join(dir, 'leader.yml'), {}).tls).toBeUndefined();
  });

  it('a missing certificate or key file, or a half-given tls section, is named at startup', () => {
    writeFileSync(path.join(dir, 'leader.pem'), 'x');
    expect(problems(() => parseLeaderConfig(`${LEADER}tls:\n  cert_file: leader.pem\n  key_file: nope.key\n`, path.join(dir, 'leader.yml'), {}))).toEqual([
      expect.stringMatching(/tls\.key_file names a file that does not exist/),
    ]);
    expect(problems(() => parseLeaderConfig(`${LEADER}tls:\n  cert_file: leader.pem\n`, path.join(dir, 'leader.yml'), {}))).toEqual([
      expect.stringMatching(/tls\.key_file is required/),
    ]);
  });

  it('a node trusts the CA file it names for wss://, and refuses to start with one that is not there', () => {
    writeFileSync(path.join(dir, 'ca.pem'), 'x');
    expect(parseNodeConfig(`${NODE}ca_file: ca.pem\n`, path.join(dir, 'node.yml'), {}).ca_file).toBe(path.join(dir, 'ca.pem'));
    expect(parseNodeConfig(NODE, path.join(dir, 'node.yml'), {}).ca_file).toBeNull();
    expect(problems(() => parseNodeConfig(`${NODE}ca_file: gone.pem\n`, path.join(dir, 'node.yml'), {}))).toEqual([
      expect.stringMatching(/ca_file names a file that does not exist/),
    ]);
  });
});
