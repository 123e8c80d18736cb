import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configProblems, MINIMAL_LEADER_YML } from './config-test-kit.js';
import { parseLeaderConfig } from './leader-config.js';
import { parseUpConfig } from './up-config.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'secd-config-api-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const LEADER = MINIMAL_LEADER_YML;
const TOKEN = 'f3a1c9e07b2d44e5a6b8c0d1e2f3a4b5';

const problems = configProblems;

describe('the api: section (who may read who pushed what)', () => {
  it('without a read token the runs stay public, as a single-user secd up wants', () => {
    expect(parseLeaderConfig(LEADER, path.join(dir, 'leader.yml'), {}).api).toEqual({ read_token: null });
    expect(parseUpConfig('', path.join(dir, 'secd.yml'), {}).api).toEqual({ read_token: null });
  });

  it('takes the read token inline, from a file or from the systemd credential api_read_token', () => {
    expect(parseLeaderConfig(`${LEADER}api:\n  read_token: ${TOKEN}\n`, path.join(dir, 'leader.yml'), {}).api.read_token).toBe(TOKEN);
    writeFileSync(path.join(dir, 'read-token'), `${TOKEN}\n`);
    expect(parseLeaderConfig(`${LEADER}api:\n  read_token_file: read-token\n`, path.join(dir, 'leader.yml'), {}).api.read_token).toBe(TOKEN);
    mkdirSync(path.join(dir, 'creds'));
    writeFileSync(path.join(dir, 'creds', 'api_read_token'), TOKEN);
    expect(parseLeaderConfig(LEADER, path.join(dir, 'leader.yml'), { CREDENTIALS_DIRECTORY: path.join(dir, 'creds') }).api.read_token).toBe(TOKEN);
  });

  it('refuses a guessable read token, saying how to make one', () => {
    expect(problems(() => parseLeaderConfig(`${LEADER}api:\n  read_token: secret\n`, path.join(dir, 'leader.yml'), {}))).toEqual([
      expect.stringMatching(/api\.read_token.*at least 16 characters.*openssl rand -hex 24/),
    ]);
  });
});
