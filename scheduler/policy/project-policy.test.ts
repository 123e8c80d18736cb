import { describe, expect, it } from 'vitest';
import { resolveRunConfig, type PolicyLimits, type RunConfig } from './project-policy.js';

const limits: PolicyLimits = { maxRunforHours: 24, maxGpusPerRun: 8, largestNodeGpus: 4 };

const DEFAULTS: RunConfig = {
  runforHours: 3,
  runforMs: 3 * 3_600_000,
  gpus: 0,
  cacheDir: null,
  mountPath: '/cache',
  datasets: null,
};

function accepted(yaml: string | null, l: PolicyLimits = limits) {
  const r = resolveRunConfig(yaml, l);
  if (!r.ok) throw new Error(`expected secd.yml to be accepted, got: ${r.reason}`);
  return r;
}

describe('a project without settings', () => {
  it.each([
    ['no secd.yml', null],
    ['an empty secd.yml', ''],
    ['a secd.yml with only comments', '# nothing to see\n'],
    ['an empty mapping', '{}'],
  ])('%s runs with the defaults', (_name, yaml) => {
    expect(accepted(yaml)).toEqual({ ok: true, config: DEFAULTS, warnings: [] });
  });
});

describe('settings a researcher writes', () => {
  it('a full secd.yml is read as written', () => {
    const r = accepted('runfor: 0.1\ngpu: 2\ncache_dir: hf/models\nmount_path: /root/.cache\ndatasets: [mimic, ukb]\n');
    expect(r.config).toEqual({
      runforHours: 0.1,
      runforMs: 360_000,
      gpus: 2,
      cacheDir: 'hf/models',
      mountPath: '/root/.cache',
      datasets: ['mimic', 'ukb'],
    });
  });

  it.each([
    ['gpu: true', 1],
    ['gpu: false', 0],
    ['gpu: 0', 0],
    ['gpu: 4', 4],
  ])('%s asks for %i GPUs', (yaml, n) => {
    expect(accepted(yaml).config.gpus).toBe(n);
  });

  it('runfor may be exactly the leader limit', () => {
    expect(accepted('runfor: 24').config.runforMs).toBe(24 * 3_600_000);
  });

  it('datasets: [] asks for no datasets at all, unlike leaving the key out', () => {
    expect(accepted('datasets: []').config.datasets).toEqual([]);
  });

  it('unknown keys are kept as warnings, with a hint for near misses', () => {
    const r = accepted('gpus: 2\nnotes: hello\n');
    expect(r.config).toEqual(DEFAULTS);
    expect(r.warnings).toEqual(['secd.yml: unknown key "gpus" ignored (did you mean "gpu"?)', 'secd.yml: unknown key "notes" ignored']);
  });

  it('run_for and Run-For are near misses of runfor', () => {
    expect(accepted('run_for: 1\n').warnings).toEqual(['secd.yml: unknown key "run_for" ignored (did you mean "runfor"?)']);
    expect(accepted('Run-For: 1\n').warnings).toEqual(['secd.yml: unknown key "Run-For" ignored (did you mean "runfor"?)']);
  });
});

describe('an invalid secd.yml rejects the run with a reason naming the key', () => {
  const cases: Array<[string, string, string, PolicyLimits?]> = [
    // [secd.yml, key, reason]
    ['runfor: -1', 'runfor', 'secd.yml: runfor must be greater than 0 (got -1)'],
    ['runfor: 0', 'runfor', 'secd.yml: runfor must be greater than 0 (got 0)'],
    ['runfor: 25', 'runfor', "secd.yml: runfor must be at most 24 hours, the leader's limit (got 25)"],
    ['runfor: "3h"', 'runfor', 'secd.yml: runfor must be a number of hours (got "3h")'],
    ['runfor: .nan', 'runfor', 'secd.yml: runfor must be a number of hours (got NaN)'],
    ['runfor: .inf', 'runfor', 'secd.yml: runfor must be a number of hours (got Infinity)'],
    ['runfor:', 'runfor', 'secd.yml: runfor has no value; remove the key to take the default'],
    ['gpu: "yes"', 'gpu', 'secd.yml: gpu must be true, false or a number of GPUs (got "yes")'],
    ['gpu: -1', 'gpu', 'secd.yml: gpu must be true, false or a whole number of GPUs (got -1)'],
    ['gpu: 1.5', 'gpu', 'secd.yml: gpu must be true, false or a whole number of GPUs (got 1.5)'],
    ['gpu: 9', 'gpu', "secd.yml: gpu asks for 9 GPUs, more than the leader's limit of 8"],
    ['gpu: 6', 'gpu', 'secd.yml: gpu asks for 6 GPUs, but no node has 6 GPUs (the largest has 4)'],
    [
      'gpu: true',
      'gpu',
      'secd.yml: gpu asks for 1 GPU, but no node has 1 GPU (the largest has 0)',
      { ...limits, largestNodeGpus: 0 },
    ],
    ['cache_dir: /data', 'cache_dir', 'secd.yml: cache_dir must be a relative folder name, not an absolute path (got "/data")'],
    ['cache_dir: a/../b', 'cache_dir', 'secd.yml: cache_dir must not contain ".." (got "a/../b")'],
    ['cache_dir: ..', 'cache_dir', 'secd.yml: cache_dir must not contain ".." (got "..")'],
    ['cache_dir: .', 'cache_dir', 'secd.yml: cache_dir must not contain "." segments (got ".")'],
    ['cache_dir: a//b', 'cache_dir', 'secd.yml: cache_dir must not contain empty segments (got "a//b")'],
    ['cache_dir: models/', 'cache_dir', 'secd.yml: cache_dir must not contain empty segments (got "models/")'],
    ['cache_dir: ""', 'cache_dir', 'secd.yml: cache_dir must not be empty'],
    [
      'cache_dir: "my models"',
      'cache_dir',
      'secd.yml: cache_dir may use only letters, digits, ".", "_" and "-" between slashes (got "my models")',
    ],
    ['cache_dir: 3', 'cache_dir', 'secd.yml: cache_dir must be a folder name like "models" (got 3)'],
    ['mount_path: cache', 'mount_path', 'secd.yml: mount_path must be an absolute path (got "cache")'],
    ['mount_path: /', 'mount_path', 'secd.yml: mount_path must not be "/"'],
    [
      'mount_path: /cache/',
      'mount_path',
      'secd.yml: mount_path must be a normalized path (got "/cache/"; did you mean "/cache"?)',
    ],
    [
      'mount_path: /a/../etc',
      'mount_path',
      'secd.yml: mount_path must be a normalized path (got "/a/../etc"; did you mean "/etc"?)',
    ],
    [
      'mount_path: "/a:b"',
      'mount_path',
      'secd.yml: mount_path may use only letters, digits, ".", "_" and "-" between slashes (got "/a:b")',
    ],
    [
      'mount_path: /outputs',
      'mount_path',
      'secd.yml: mount_path must not be /outputs or inside it: that is where the run\'s results are collected (got "/outputs")',
    ],
    ['mount_path: /outputs/cache', 'mount_path', 'must not be /outputs or inside it'],
    ['mount_path: /proc', 'mount_path', 'must not be /proc or inside it'],
    ['mount_path: /sys/x', 'mount_path', 'must not be /sys or inside it'],
    ['mount_path: /dev', 'mount_path', 'must not be /dev or inside it'],
    ['mount_path: /etc/ssl', 'mount_path', 'must not be /etc or inside it'],
    ['mount_path: /usr/local/cache', 'mount_path', 'must not be /usr or inside it'],
    ['mount_path: /bin', 'mount_path', 'must not be /bin or inside it'],
    ['mount_path: /sbin', 'mount_path', 'must not be /sbin or inside it'],
    ['mount_path: /lib', 'mount_path', 'must not be /lib or inside it'],
    ['mount_path: /lib64', 'mount_path', 'must not be /lib64 or inside it'],
    ['mount_path: /boot', 'mount_path', 'must not be /boot or inside it'],
    [
      'mount_path: /run/mysqld',
      'mount_path',
      'secd.yml: mount_path must not be /run/mysqld or inside it: that is reserved for the dataset socket (got "/run/mysqld")',
    ],
    [
      'mount_path: /run',
      'mount_path',
      'secd.yml: mount_path must not contain /run/mysqld: that is reserved for the dataset socket (got "/run")',
    ],
    ['mount_path: /datasets/scans', 'mount_path', 'must not be /datasets or inside it: that is where file datasets are mounted'],
    ['datasets: mimic', 'datasets', 'secd.yml: datasets must be a list of dataset names (got "mimic")'],
    ['datasets: [mimic, mimic]', 'datasets', 'secd.yml: datasets lists "mimic" twice'],
    ['datasets: [mimic, ""]', 'datasets', 'secd.yml: datasets[1] must be a dataset name, not empty'],
    ['datasets: [mimic, 3]', 'datasets', 'secd.yml: datasets[1] must be a dataset name (got 3)'],
    ['datasets:', 'datasets', 'secd.yml: datasets has no value; remove the key to take the default'],
  ];

  it.each(cases)('%s → %s', (yaml, key, reason, l = limits) => {
    const r = resolveRunConfig(yaml, l);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.key).toBe(key);
    expect(r.reason).toContain(reason);
    expect(r.reason.startsWith(`secd.yml: ${key}`)).toBe(true);
    expect(r.reason).not.toContain('\n');
  });

  it('a file that does not parse gives the line and column', () => {
    const r = resolveRunConfig('runfor: 3\ngpu: [1,\n', limits);
    expect(r).toMatchObject({ ok: false, key: 'secd.yml' });
    if (r.ok) return;
    expect(r.reason).toMatch(/^secd\.yml: not valid YAML at line \d+, column \d+: \S/);
    expect(r.reason).not.toContain('\n');
  });

  it('a key written twice is a YAML error', () => {
    const r = resolveRunConfig('runfor: 3\nrunfor: 4\n', limits);
    expect(r).toMatchObject({ ok: false, key: 'secd.yml' });
    if (r.ok) return;
    expect(r.reason).toContain('line 2, column 1');
  });

  it.each([
    ['- runfor: 3', 'a list'],
    ['just some text', 'the text "just some text"'],
    ['42', '42'],
  ])('a top level that is not a mapping (%s) says so', (yaml, what) => {
    expect(resolveRunConfig(yaml, limits)).toEqual({
      ok: false,
      key: 'secd.yml',
      reason: `secd.yml: the file must be a mapping of keys (like "runfor: 3"), not ${what}`,
    });
  });

  it('the first problem is the one reported', () => {
    const r = resolveRunConfig('runfor: -1\ngpu: 99\n', limits);
    expect(r).toMatchObject({ ok: false, key: 'runfor' });
  });
});

describe('a secd.yml too big to read (issue 13: one file froze the leader)', () => {
  /** `n` top-level keys, one a line, the way the attack wrote them. */
  const manyKeys = (n: number) => Array.from({ length: n }, (_, i) => `key_${i}: ${i}\n`).join('');

  it('a 440 KB file of 45,000 keys is refused before parsing, naming its size and the limit', () => {
    const text = manyKeys(45_000);
    expect(resolveRunConfig(text, limits)).toEqual({
      ok: false,
      key: 'secd.yml',
      reason: `secd.yml: the file is ${Buffer.byteLength(text).toLocaleString('en-US')} bytes, more than the limit of 65,536 bytes (64 KiB)`,
    });
  });

  it('the size is counted in bytes, not characters', () => {
    const text = `# ${'é'.repeat(33_000)}\nrunfor: 1\n`;
    expect(text.length).toBeLessThan(65_536);
    const r = resolveRunConfig(text, limits);
    expect(r).toMatchObject({ ok: false, key: 'secd.yml' });
    if (!r.ok) expect(r.reason).toContain('more than the limit of 65,536 bytes');
  });

  it.each([
    ['4,000 keys one a line', manyKeys(4_000)],
    ['a flow mapping of 8,000 keys', `{${Array.from({ length: 8_000 }, (_, i) => `${i}:0`).join(',')}}`],
    ['a list 30,000 deep', `${'['.repeat(30_000)}${']'.repeat(30_000)}`],
  ])('%s under 64 KiB is refused for its token count', (_name, text) => {
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(65_536);
    expect(resolveRunConfig(text, limits)).toEqual({
      ok: false,
      key: 'secd.yml',
      reason: 'secd.yml: the file has more than 4,096 YAML tokens (keys, values, punctuation), the limit',
    });
  });

  it('lists nested 40 deep are refused for their depth', () => {
    const r = resolveRunConfig(`datasets: ${'['.repeat(40)}${']'.repeat(40)}\n`, limits);
    expect(r).toEqual({ ok: false, key: 'secd.yml', reason: 'secd.yml: nests mappings and lists deeper than 32 levels, the limit' });
  });

  it('a generous real file (comments, 200 datasets) is still read', () => {
    const names = Array.from({ length: 200 }, (_, i) => `  - dataset_${i} # why this one\n`).join('');
    const r = accepted(`# experiment settings\nrunfor: 2\ngpu: 1\ndatasets:\n${names}`);
    expect(r.config.datasets).toHaveLength(200);
  });
});

describe('gpu: asking for what each GPU must be', () => {
  const MiB = 1024 * 1024;
  // The cluster as the planner sees it: an H100 node and an A100 node with one GPU in MIG mode.
  const gpuNodes: PolicyLimits['gpuNodes'] = [
    { id: 'gpu-01', gpus: ['H-0'], gpuDetails: [{ uuid: 'H-0', name: 'NVIDIA H100 80GB HBM3', memoryBytes: 81559 * MiB, mig: null }] },
    {
      id: 'gpu-02',
      gpus: ['A-0', 'MIG-a'],
      gpuDetails: [
        { uuid: 'A-0', name: 'NVIDIA A100-SXM4-80GB', memoryBytes: 81920 * MiB, mig: null, migMode: true },
        { uuid: 'MIG-a', name: 'NVIDIA A100-SXM4-80GB', memoryBytes: 40192 * MiB, mig: { profile: '3g.40gb', gpu: 'A-0' } },
      ],
    },
  ];
  const withNodes: PolicyLimits = { ...limits, gpuNodes };

  it.each([
    ['gpu: { count: 2, model: H100, memory: 40GB }', { gpus: 2, gpuRequest: { model: 'H100', memoryBytes: 40e9 } }, limits],
    ['gpu: { model: h100, memory: 80GB }', { gpus: 1, gpuRequest: { model: 'h100', memoryBytes: 80e9 } }, withNodes],
    ['gpu: { memory: 40GiB }', { gpus: 1, gpuRequest: { memoryBytes: 40 * 1024 ** 3 } }, limits],
    ['gpu: { count: 1, mig: 3G.40GB }', { gpus: 1, gpuRequest: { mig: '3g.40gb' } }, withNodes],
    ['gpu: { count: 3 }', { gpus: 3 }, limits],
  ])('%s is read as a count and a request', (yaml, expected, l) => {
    const config = accepted(yaml, l).config;
    expect({ gpus: config.gpus, ...(config.gpuRequest ? { gpuRequest: config.gpuRequest } : {}) }).toEqual(expected);
  });

  it('plain gpu: 2 keeps meaning two whole GPUs, with no request', () => {
    expect(accepted('gpu: 2').config).toEqual({ ...DEFAULTS, gpus: 2 });
  });

  it.each([
    ['gpu: { count: 1, modle: H100 }', 'secd.yml: gpu has an unknown key "modle" (known: count, model, memory, mig)'],
    ['gpu: { count: 0, model: H100 }', 'secd.yml: gpu.count must be a whole number of GPUs, at least 1 (got 0; for none, write gpu: false)'],
    ['gpu: { memory: lots }', 'secd.yml: gpu.memory must be a size such as 40GB or 40GiB, or a number of bytes (got "lots")'],
    ['gpu: { mig: half }', 'secd.yml: gpu.mig must be a MIG profile such as 3g.40gb (got "half")'],
    ['gpu: { count: 9, model: H100 }', "secd.yml: gpu asks for 9 GPUs, more than the leader's limit of 8"],
  ])('%s is rejected naming the key', (yaml, reason) => {
    expect(resolveRunConfig(yaml, withNodes)).toEqual({ ok: false, key: 'gpu', reason });
  });

  it('a request no node can ever meet is rejected at policy time, naming what is missing', () => {
    expect(resolveRunConfig('gpu: { count: 2, model: H100, memory: 40GB }', withNodes)).toEqual({
      ok: false,
      key: 'gpu',
      reason: 'secd.yml: gpu cannot be met: no node has 2 GPUs matching model H100 with at least 40 GB; largest: 1× NVIDIA H100 80GB HBM3 on gpu-01',
    });
    expect(resolveRunConfig('gpu: { mig: 1g.10gb }', withNodes)).toMatchObject({
      ok: false,
      reason: 'secd.yml: gpu cannot be met: no node has 1 MIG device 1g.10gb; none has even one',
    });
  });
});
