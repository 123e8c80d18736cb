import { describe, expect, it } from 'vitest';
import { buildingWords, gpuWords, ordinal, runningWords, runWords, shortGpuModel, timeLeftWords, type RunWordsInput } from './status-words.js';

// The words beside a researcher's commit and on top of the run page.

const h100 = { name: 'NVIDIA H100 80GB HBM3', migProfile: null };

describe('places in line', () => {
  it('say 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 22nd, 101st, 111th, 112th', () => {
    expect([1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112].map(ordinal)).toEqual([
      '1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '22nd', '23rd', '101st', '111th', '112th',
    ]);
  });
});

describe('GPU models as people say them', () => {
  it.each([
    ['NVIDIA H100 80GB HBM3', 'H100'],
    ['NVIDIA A100-SXM4-80GB', 'A100'],
    ['Tesla K80', 'K80'],
    ['Tesla V100-SXM2-16GB', 'V100'],
    ['NVIDIA H200', 'H200'],
    ['NVIDIA L40S', 'L40S'],
    ['NVIDIA RTX A5000', 'RTX A5000'],
    ['GeForce RTX 2080 Ti', 'RTX 2080 Ti'],
    ['NVIDIA RTX 4000 SFF Ada Generation', 'RTX 4000 SFF Ada'],
  ])('%s is %s', (name, short) => {
    expect(shortGpuModel(name)).toBe(short);
  });

  it('a run holding two H100s has "2× H100"; a MIG device says its profile; mixed models are each counted', () => {
    expect(gpuWords([h100, h100])).toBe('2× H100');
    expect(gpuWords([{ name: 'NVIDIA A100-SXM4-80GB', migProfile: '3g.40gb' }])).toBe('1× A100 MIG 3g.40gb');
    expect(gpuWords([h100, { name: 'NVIDIA A100-SXM4-80GB', migProfile: null }, h100])).toBe('2× H100 + 1× A100');
  });

  it('GPUs whose node no longer reports them are counted without a model', () => {
    expect(gpuWords([null, null])).toBe('2 GPUs');
    expect(gpuWords([null])).toBe('1 GPU');
    expect(gpuWords([h100, null])).toBe('1× H100 + 1× other');
    expect(gpuWords([])).toBe('');
  });
});

describe('time left', () => {
  it('says hours and minutes, to the nearest minute', () => {
    expect(timeLeftWords((2 * 60 + 50) * 60_000)).toBe('2 h 50 min');
    expect(timeLeftWords((2 * 60 + 49) * 60_000 + 40_000)).toBe('2 h 50 min');
    expect(timeLeftWords(3 * 3_600_000)).toBe('3 h');
    expect(timeLeftWords(45 * 60_000)).toBe('45 min');
    expect(timeLeftWords(20_000)).toBe('under a minute');
    expect(timeLeftWords(25 * 3_600_000 + 60_000)).toBe('25 h 1 min');
  });

  it('refuses what is not a time', () => {
    expect(() => timeLeftWords(Number.NaN)).toThrow(/milliseconds/);
  });
});

describe('what a run is doing', () => {
  const at = new Date('2026-01-01T10:10:00Z');
  const base: RunWordsInput = { state: 'running', reason: 'container running', node: 'gpu-03', gpus: [h100, h100], runforMs: 3 * 3_600_000, clockFrom: '2026-01-01T10:00:00Z' };

  it('building on its node', () => {
    expect(buildingWords('gpu-03')).toBe('building on gpu-03');
    expect(runWords({ ...base, state: 'building' }, at)).toBe('building on gpu-03');
  });

  it('running on its node with its GPUs and what is left of runfor since the build began', () => {
    expect(runWords(base, at)).toBe('running on gpu-03 (2× H100), 2 h 50 min left');
    expect(runWords({ ...base, gpus: [] }, at)).toBe('running on gpu-03, 2 h 50 min left');
    expect(runWords(base, new Date('2026-01-01T13:00:30Z'))).toBe('running on gpu-03 (2× H100), at its runfor limit');
  });

  it('without a known runfor (a reader who may not see the config) it leaves the time out', () => {
    expect(runWords({ ...base, runforMs: null }, at)).toBe('running on gpu-03 (2× H100)');
    expect(runningWords('gpu-03', [h100], null)).toBe('running on gpu-03 (1× H100)');
  });

  it('any other state says the run’s reason', () => {
    expect(runWords({ ...base, state: 'queued', reason: 'queued: 2nd in line for 2 GPUs', node: null }, at)).toBe('queued: 2nd in line for 2 GPUs');
    expect(runWords({ ...base, state: 'failed', reason: 'the image build failed' }, at)).toBe('the image build failed');
  });
});
