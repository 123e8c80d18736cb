import { describe, expect, it } from 'vitest';
import { configMessage } from './config-test-kit.js';
import { DEFAULT_LIMITS, parseLeaderConfig } from './leader-config.js';

// limits.fair_share_half_life_hours: how fast the planner forgets what a user ran (scheduler/plan/fair-share.ts).

const LEADER = `
gitlab:
  url: https://gitlab.example.org/
  token: glpat-abc
  webhook_secret: hook-secret
`;

function parse(limits: string) {
  return parseLeaderConfig(`${LEADER}limits:\n${limits}`, '/etc/secd/leader.yml', {});
}


describe('limits.fair_share_half_life_hours', () => {
  it('defaults to a week, in leader.yml and for a node without a leader config', () => {
    expect(parseLeaderConfig(LEADER, '/etc/secd/leader.yml', {}).limits.fair_share_half_life_hours).toBe(168);
    expect(DEFAULT_LIMITS.fair_share_half_life_hours).toBe(168);
  });

  it('is read as written, fractions of an hour included', () => {
    expect(parse('  fair_share_half_life_hours: 24\n').limits.fair_share_half_life_hours).toBe(24);
    expect(parse('  fair_share_half_life_hours: 0.5\n').limits.fair_share_half_life_hours).toBe(0.5);
  });

  it.each([
    ['0', 'limits.fair_share_half_life_hours must be greater than 0 (got 0)'],
    ['-3', 'limits.fair_share_half_life_hours must be greater than 0 (got -3)'],
    ['"a week"', 'limits.fair_share_half_life_hours'],
    ['100000', 'limits.fair_share_half_life_hours'],
  ])('%s is refused, naming the key', (value, expected) => {
    expect(configMessage(() => parse(`  fair_share_half_life_hours: ${value}\n`))).toContain(expected);
  });
});
