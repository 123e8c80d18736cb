import { describe, expect, it } from 'vitest';
import { encodeMessage, MAX_MESSAGE_BYTES, PROTOCOL_LIMITS, parseLeaderMessage, parseNodeMessage, PROTOCOL_VERSION, type LeaderMessage, type NodeMessage } from './protocol.js';
import type { RunSpec } from './run-spec.js';

const spec: RunSpec = {
  runId: 'abc123defg',
  project: 'lab/hello',
  commit: 'a'.repeat(40),
  source: 'https://oauth2:token@gitlab.example.org/lab/hello.git',
  user: 'ada',
  signer: 'F'.repeat(40),
  runforMs: 3_600_000,
  gpus: ['GPU-1', 'GPU-2'],
  cacheDir: null,
  mountPath: '/cache',
  env: {},
  warnings: [],
  createdAt: '2026-01-01T00:00:00.000Z',
  resultsRemote: 'https://oauth2:token@gitlab.example.org/lab/hello.git',
};

const outcome = {
  end: 'succeeded' as const,
  reason: 'ok',
  exitCode: 0,
  imageId: 'sha256:x',
  branch: 'b',
  outputsPath: 'o',
  startedAt: null,
  finishedAt: '2026-01-01T00:00:00.000Z',
};

const hello: NodeMessage = {
  type: 'hello',
  protocol: PROTOCOL_VERSION,
  node_id: 'gpu-01',
  hostname: 'gpu-01.example.org',
  inventory: { gpus: [{ uuid: 'GPU-1', index: 0, name: 'Tesla K80', memory_total_bytes: null }], cpus: 32, memory_bytes: 2 ** 37 },
  max_cpu_runs: 2,
  runs: [
    { run_id: 'abc123defg', phase: 'running', outcome: null },
    { run_id: 'zzz123defg', phase: 'finished', outcome },
  ],
};

describe('the leader <-> node protocol', () => {
  it('every message a node sends comes back identical through encode and parse', () => {
    const messages: NodeMessage[] = [
      hello,
      {
        type: 'status',
        at: '2026-01-01T00:00:00.000Z',
        gpus: [
          { uuid: 'GPU-1', index: 0, utilization_pct: null, memory_used_bytes: 0, memory_total_bytes: null, temperature_c: 31, power_w: null, processes: 1, foreign_busy: true },
        ],
        host: { load: null, cpus: 8, memory_total_bytes: 1, memory_free_bytes: 0, disk_total_bytes: null, disk_free_bytes: null },
      },
      { type: 'run.ack', run_id: 'abc123defg' },
      { type: 'run.event', run_id: 'abc123defg', phase: 'uploading', at: '2026-01-01T00:00:00.000Z' },
      { type: 'run.result', run_id: 'abc123defg', outcome },
    ];
    for (const m of messages) expect(parseNodeMessage(encodeMessage(m))).toEqual({ ok: true, message: m });
  });

  it('every message the leader sends comes back identical through encode and parse', () => {
    const messages: LeaderMessage[] = [
      { type: 'welcome', protocol: PROTOCOL_VERSION, node_id: 'gpu-01', node_timeout_ms: 20_000, epoch: 3 },
      { type: 'run.assign', spec, epoch: 3 },
      { type: 'run.result.ack', run_id: 'abc123defg', epoch: 3 },
      { type: 'run.cancel', run_id: 'abc123defg', reason: 'superseded by a newer push', epoch: 3 },
      { type: 'error', code: 'protocol', message: 'this leader speaks protocol 1', epoch: 3 },
    ];
    for (const m of messages) expect(parseLeaderMessage(encodeMessage(m))).toEqual({ ok: true, message: m });
  });

  it("every leader message carries the leader's epoch, a whole number from 0; one without it is refused naming the field", () => {
    const messages: LeaderMessage[] = [
      { type: 'welcome', protocol: PROTOCOL_VERSION, node_id: 'gpu-01', node_timeout_ms: 20_000, epoch: 7 },
      { type: 'run.assign', spec, epoch: 7 },
      { type: 'run.result.ack', run_id: 'abc123defg', epoch: 0 },
      { type: 'run.cancel', run_id: 'abc123defg', reason: 'superseded by a newer push', epoch: 7 },
      { type: 'error', code: 'protocol', message: 'this leader speaks protocol 1', epoch: 7 },
    ];
    for (const m of messages) {
      expect(parseLeaderMessage(encodeMessage(m))).toEqual({ ok: true, message: m });
      for (const epoch of [-1, 1.5, '7', undefined]) {
        expect(parseLeaderMessage(JSON.stringify({ ...m, epoch })), `${m.type} ${epoch}`).toEqual({ ok: false, reason: expect.stringContaining(`"${m.type}" rejected: epoch: `) });
      }
    }
  });

  it('a malformed message is a reason naming the field, never an exception', () => {
    const bad = parseNodeMessage(JSON.stringify({ ...hello, inventory: { gpus: [{ uuid: 'GPU-1', index: -1, name: 'x', memory_total_bytes: 0 }], cpus: 1, memory_bytes: 1 } }));
    expect(bad).toEqual({ ok: false, reason: expect.stringMatching(/^message "hello" rejected: inventory\.gpus\.0\.index: /) });
    expect(parseNodeMessage('{not json')).toEqual({ ok: false, reason: 'message is not JSON' });
    expect(parseNodeMessage('[]')).toMatchObject({ ok: false });
    expect(parseNodeMessage(JSON.stringify({ type: 'run.assign', spec }))).toMatchObject({ ok: false, reason: expect.stringContaining('"run.assign"') });
    expect(parseLeaderMessage(JSON.stringify({ type: 'hello' }))).toMatchObject({ ok: false });
    expect(parseNodeMessage('x'.repeat(MAX_MESSAGE_BYTES + 1))).toMatchObject({ ok: false, reason: expect.stringContaining('limit') });
  });

  it('an N/A reading travels as null, and a reading given as text is refused rather than read as 0', () => {
    const status = {
      type: 'status',
      at: '2026-01-01T00:00:00.000Z',
      gpus: [{ uuid: 'GPU-1', index: 0, utilization_pct: 'N/A', memory_used_bytes: 0, memory_total_bytes: 0, temperature_c: 0, power_w: 0, processes: 0, foreign_busy: false }],
      host: { load: 0.5, cpus: 8, memory_total_bytes: 1, memory_free_bytes: 0, disk_total_bytes: 1, disk_free_bytes: 1 },
    };
    expect(parseNodeMessage(JSON.stringify(status))).toMatchObject({ ok: false, reason: expect.stringContaining('gpus.0.utilization_pct') });
  });

  it('run ids that could walk out of the work dir or pass as git options are refused on the wire', () => {
    for (const runId of ['../etc', 'a/b', '-rf', '']) {
      expect(parseLeaderMessage(JSON.stringify({ type: 'run.assign', spec: { ...spec, runId } })), runId).toMatchObject({ ok: false });
    }
    expect(parseLeaderMessage(JSON.stringify({ type: 'run.assign', spec: { ...spec, commit: '--upload-pack=evil' } }))).toMatchObject({
      ok: false,
      reason: expect.stringContaining('spec.commit'),
    });
  });

  it('a node cannot grow the leader with long names or long lists: ids and lists over a limit are refused', () => {
    const refused = (m: unknown, field: string) =>
      expect(parseNodeMessage(JSON.stringify(m))).toMatchObject({ ok: false, reason: expect.stringContaining(field) });
    refused({ ...hello, hostname: 'h'.repeat(PROTOCOL_LIMITS.hostname + 1) }, 'hostname');
    const gpu = hello.type === 'hello' ? hello.inventory.gpus[0]! : null;
    refused({ ...hello, inventory: { gpus: Array.from({ length: PROTOCOL_LIMITS.gpus + 1 }, (_, index) => ({ ...gpu, index })), cpus: 1, memory_bytes: 1 } }, 'inventory.gpus');
    refused({ ...hello, inventory: { gpus: [{ ...gpu, uuid: `GPU-${'9'.repeat(PROTOCOL_LIMITS.gpuUuid)}` }], cpus: 1, memory_bytes: 1 } }, 'inventory.gpus.0.uuid');
    refused({ ...hello, images: ['lab/' + 'p'.repeat(PROTOCOL_LIMITS.project)] }, 'images.0');
    refused({ ...hello, images: Array.from({ length: PROTOCOL_LIMITS.images + 1 }, (_, i) => `p${i}`) }, 'images');
    refused({ ...hello, runs: Array.from({ length: PROTOCOL_LIMITS.heldRuns + 1 }, (_, i) => ({ run_id: `run${i}`, phase: 'running', outcome: null })) }, 'runs');
    refused({ type: 'run.event', run_id: 'abc123defg', phase: 'running', at: `2026-01-01T00:00:00.000Z${' '.repeat(100)}` }, 'at');
  });

  it('free text a person reads is cut to its limit, so a long reason is recorded short instead of re-sent for ever', () => {
    const long = 'x'.repeat(100_000);
    const result = parseNodeMessage(JSON.stringify({ type: 'run.result', run_id: 'abc123defg', outcome: { ...outcome, reason: long } }));
    expect(result.ok).toBe(true);
    const reason = result.ok && result.message.type === 'run.result' ? result.message.outcome.reason : '';
    expect(reason).toHaveLength(PROTOCOL_LIMITS.reason);
    expect(reason.endsWith('…')).toBe(true);
    const named = parseNodeMessage(JSON.stringify({ ...hello, inventory: { gpus: [{ uuid: 'GPU-1', index: 0, name: long, memory_total_bytes: null }], cpus: 1, memory_bytes: 1 } }));
    expect(named.ok && named.message.type === 'hello' ? named.message.inventory.gpus[0]!.name.length : 0).toBe(PROTOCOL_LIMITS.gpuName);
    const warned = parseLeaderMessage(JSON.stringify({ type: 'run.assign', spec: { ...spec, warnings: Array.from({ length: 5000 }, (_, i) => `unknown key k${i}`) }, epoch: 1 }));
    const warnings = warned.ok && warned.message.type === 'run.assign' ? warned.message.spec.warnings : [];
    expect(warnings).toHaveLength(PROTOCOL_LIMITS.warnings);
    expect(warnings.at(-1)).toBe(`${5000 - PROTOCOL_LIMITS.warnings + 1} more warnings left out`);
  });
});
