import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../config/leader-config.js';
import { defaultCheckLimits, LEADER_DEFAULT_LIMITS, parseLeaderUrl } from './check-leader.js';

describe("secd check's limits", () => {
  it("are the leader's default limits, so an offline check holds secd.yml to what a default leader does", () => {
    expect(LEADER_DEFAULT_LIMITS).toEqual({ maxRunforHours: DEFAULT_LIMITS.max_runfor_hours, maxGpusPerRun: DEFAULT_LIMITS.max_gpus_per_run });
    expect(defaultCheckLimits()).toMatchObject({ ...LEADER_DEFAULT_LIMITS, largestNodeGpus: null });
  });

  it('takes an http(s) URL for --leader and names what is wrong with anything else', () => {
    expect(parseLeaderUrl('https://secd.example.org:8080')).toBeInstanceOf(URL);
    expect(parseLeaderUrl('secd.example.org')).toContain("--leader must be the leader's URL");
    expect(parseLeaderUrl('ws://secd.example.org')).toContain('--leader must be an http:// or https:// URL');
  });
});
