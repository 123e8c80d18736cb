import { describe, expect, it } from 'vitest';
import { configMessage } from './config-test-kit.js';
import { parseLeaderConfig } from './leader-config.js';
import { parseUpConfig } from './up-config.js';

// reconcile_interval_ms: how often the leader looks for pushes whose webhook never came (scheduler/reconcile).

const LEADER = `
gitlab:
  url: https://gitlab.example.org/
  token: glpat-abc
  webhook_secret: hook-secret
`;


describe('reconcile_interval_ms', () => {
  it('defaults to a minute in leader.yml and for secd up', () => {
    expect(parseLeaderConfig(LEADER, '/etc/secd/leader.yml', {}).reconcile_interval_ms).toBe(60_000);
    expect(parseUpConfig('', 'up.yml', {}, { baseDir: '/tmp/x' }).reconcile_interval_ms).toBe(60_000);
  });

  it('is read as written', () => {
    expect(parseLeaderConfig(`${LEADER}reconcile_interval_ms: 15000\n`, '/etc/secd/leader.yml', {}).reconcile_interval_ms).toBe(15_000);
  });

  it.each([
    ['500', 'reconcile_interval_ms must be at least 1000'],
    ['0', 'reconcile_interval_ms'],
    ['"1m"', 'reconcile_interval_ms'],
  ])('%s is refused, naming the key', (value, expected) => {
    expect(configMessage(() => parseLeaderConfig(`${LEADER}reconcile_interval_ms: ${value}\n`, '/etc/secd/leader.yml', {}))).toContain(expected);
  });
});
