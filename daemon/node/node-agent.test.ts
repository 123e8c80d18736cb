import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLog } from '../../scheduler/common/log.js';
import { encodeMessage, PROTOCOL_VERSION, type HeldRun, type LeaderMessage, type NodeMessage } from '../../scheduler/contract/protocol.js';
import type { RunOutcome, RunSpec } from '../../scheduler/contract/run-spec.js';
import type { GpuSample } from '../telemetry/gpu-reading.js';
import { NodeAgent, reconnectDelay, type NodeAgentDeps } from './node-agent.js';
import type { NodeRunsEvents } from './node-runs.js';
import type { ClientSocket, ClientSocketHandlers } from '../../scheduler/common/websocket.js';
import { aRunOutcome } from '../../test/support/test-images.js';

const outcome = aRunOutcome();

const spec = (runId: string, gpus: string[] = []): RunSpec => ({
  runId,
  project: 'lab/x',
  commit: 'c'.repeat(40),
  source: 'https://example.org/lab/x.git',
  user: 'ada',
  signer: null,
  runforMs: 60_000,
  gpus,
  cacheDir: null,
  mountPath: '/cache',
  env: {},
  warnings: [],
  createdAt: '2026-01-01T00:00:00.000Z',
});

/** The runs side, in memory: assignments resolve when the test says their spec is "on disk". */
function fakeRuns() {
  let events: NodeRunsEvents | null = null;
  const table = new Map<string, HeldRun & { gpus: string[] }>();
  const saving = new Map<string, () => void>();
  const acknowledged: string[] = [];
  return {
    table,
    saving,
    acknowledged,
    events: () => events!,
    attach(e: NodeRunsEvents) {
      events = e;
    },
    assign(s: RunSpec) {
      return new Promise<void>((resolve) => {
        saving.set(s.runId, () => {
          table.set(s.runId, { run_id: s.runId, phase: 'assigned', outcome: null, gpus: s.gpus });
          resolve();
        });
      });
    },
    cancel() {},
    async acknowledge(runId: string) {
      acknowledged.push(runId);
      table.delete(runId);
    },
    held: () => [...table.values()].map(({ gpus: _gpus, ...h }) => h),
    pendingResults: () => [...table.values()].filter((h) => h.outcome).map((h) => ({ runId: h.run_id, outcome: h.outcome! })),
    gpusInUse: () => new Set([...table.values()].filter((h) => h.phase !== 'finished').flatMap((h) => h.gpus)),
    images: () => ['lab/x'],
  };
}

const busyGpu: GpuSample = { uuid: 'GPU-A', index: 0, utilization_pct: 50, memory_used_bytes: 1, memory_total_bytes: 2, temperature_c: 40, power_w: null, processes: [{ pid: 9, name: 'python', used_memory_bytes: 1 }] };
const otherGpu: GpuSample = { ...busyGpu, uuid: 'GPU-B', index: 1 };

describe('the node agent', () => {
  let sockets: Array<{ handlers: ClientSocketHandlers; sent: NodeMessage[]; closed: boolean }>;
  let runs: ReturnType<typeof fakeRuns>;
  let agent: NodeAgent;
  let diskLow: string | null;

  beforeEach(() => {
    diskLow = null;
    vi.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z') });
    sockets = [];
    runs = fakeRuns();
    const deps: NodeAgentDeps = {
      nodeId: 'gpu-01',
      hostname: 'gpu-01.example.org',
      maxCpuRuns: 3,
      reportIntervalMs: 2000,
      runs,
      gpu: {
        inventory: async () => [
          { uuid: 'GPU-A', index: 0, name: 'Tesla K80', memory_total_bytes: 1024 },
          { uuid: 'GPU-B', index: 1, name: 'Tesla K80', memory_total_bytes: null },
        ],
        sample: async () => [busyGpu, otherGpu],
      },
      host: { sample: async () => ({ load: 0.5, cpus: 8, memory_total_bytes: 1000, memory_free_bytes: 500, disk_total_bytes: null, disk_free_bytes: null }) },
      leaders: ['ws://leader.internal:8080/v1/nodes'],
      connect: (_url, handlers) => {
        const entry = { handlers, sent: [] as NodeMessage[], closed: false };
        sockets.push(entry);
        const socket: ClientSocket = {
          send: (text) => entry.sent.push(JSON.parse(text) as NodeMessage),
          close: () => {
            entry.closed = true;
          },
        };
        return socket;
      },
      log: silentLog,
      now: () => new Date(),
      random: () => 0.5,
      backoff: { initialMs: 500, maxMs: 15_000 },
      resendMs: 3000,
      diskLow: async () => diskLow,
    };
    agent = new NodeAgent(deps);
  });
  afterEach(() => {
    agent.stop();
    vi.useRealTimers();
  });

  const current = () => sockets.at(-1)!;
  const fromLeader = (m: LeaderMessage) => current().handlers.message(encodeMessage(m));
  const welcome = () => fromLeader({ type: 'welcome', protocol: PROTOCOL_VERSION, node_id: 'gpu-01', node_timeout_ms: 20_000, epoch: 1 });
  const flush = () => vi.advanceTimersByTimeAsync(0);

  it("a status says while the disk is under its watermark, in the node's words, and stops saying it once there is room", async () => {
    agent.start();
    current().handlers.open();
    await flush();
    welcome();
    diskLow = 'node gpu-01 has 1.2 GiB free in /var/lib/secd-node, under its disk watermark of 2 GiB';
    await vi.advanceTimersByTimeAsync(2000);
    const statuses = () => current().sent.filter((m) => m.type === 'status');
    expect(statuses().at(-1)).toMatchObject({ type: 'status', disk_low: diskLow });
    diskLow = null;
    await vi.advanceTimersByTimeAsync(2000);
    expect(statuses().length).toBeGreaterThanOrEqual(2);
    expect(statuses().at(-1)).not.toHaveProperty('disk_low');
  });

  it('reconnect delays double from the first one up to the cap, each drawn from its upper half', () => {
    const b = { initialMs: 500, maxMs: 15_000 };
    expect([0, 1, 2, 3, 4, 5, 10].map((a) => reconnectDelay(a, b, 0))).toEqual([250, 500, 1000, 2000, 4000, 7500, 7500]);
    for (const [a, d] of [[0, 500], [3, 4000], [5, 15_000], [40, 15_000]] as const) {
      expect(reconnectDelay(a, b, 0.999)).toBeLessThanOrEqual(d);
      expect(reconnectDelay(a, b, 0.999)).toBeGreaterThan(d * 0.99);
    }
  });

  it('says hello with its inventory and the runs it holds, then reports every interval, naming GPUs busy with foreign processes', async () => {
    runs.table.set('run-old', { run_id: 'run-old', phase: 'running', outcome: null, gpus: ['GPU-A'] });
    agent.start();
    current().handlers.open();
    await flush();
    expect(current().sent[0]).toEqual({
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      node_id: 'gpu-01',
      hostname: 'gpu-01.example.org',
      inventory: {
        gpus: [
          { uuid: 'GPU-A', index: 0, name: 'Tesla K80', memory_total_bytes: 1024 },
          { uuid: 'GPU-B', index: 1, name: 'Tesla K80', memory_total_bytes: null },
        ],
        cpus: 8,
        memory_bytes: 1000,
      },
      max_cpu_runs: 3,
      runs: [{ run_id: 'run-old', phase: 'running', outcome: null }],
      images: ['lab/x'],
    });
    welcome();
    await vi.advanceTimersByTimeAsync(4100);
    const statuses = current().sent.filter((m) => m.type === 'status');
    expect(statuses).toHaveLength(3);
    // GPU-A's process is the run's own; GPU-B's belongs to nobody secd knows.
    expect(statuses[0]).toMatchObject({ gpus: [{ uuid: 'GPU-A', foreign_busy: false, processes: 1 }, { uuid: 'GPU-B', foreign_busy: true }], host: { load: 0.5, memory_free_bytes: 500 } });
  });

  it('acknowledges an assignment only once it is on disk', async () => {
    agent.start();
    current().handlers.open();
    await flush();
    welcome();
    fromLeader({ type: 'run.assign', spec: spec('run-1'), epoch: 1 });
    await flush();
    expect(current().sent.some((m) => m.type === 'run.ack')).toBe(false);
    runs.saving.get('run-1')!();
    await flush();
    expect(current().sent.filter((m) => m.type === 'run.ack')).toEqual([{ type: 'run.ack', run_id: 'run-1' }]);
  });

  it('sends a result again until the leader acknowledges it, even across a reconnect', async () => {
    agent.start();
    current().handlers.open();
    await flush();
    welcome();
    runs.table.set('run-1', { run_id: 'run-1', phase: 'finished', outcome, gpus: [] });
    runs.events().result('run-1', outcome);
    const results = () => current().sent.filter((m) => m.type === 'run.result').length;
    expect(results()).toBe(1);
    await vi.advanceTimersByTimeAsync(3100);
    expect(results()).toBe(2);

    current().handlers.closed('connection closed (1006)');
    // Reconnect after 0.5 * 500 + 0.5 * 0.5 * 500 = 375 ms.
    await vi.advanceTimersByTimeAsync(374);
    expect(sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets).toHaveLength(2);
    current().handlers.open();
    await flush();
    expect(current().sent[0]).toMatchObject({ type: 'hello', runs: [{ run_id: 'run-1', phase: 'finished', outcome }] });
    welcome();
    expect(results()).toBe(1);
    fromLeader({ type: 'run.result.ack', run_id: 'run-1', epoch: 1 });
    await flush();
    expect(runs.acknowledged).toEqual(['run-1']);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(results()).toBe(1);
  });

  it('ignores what the leader sends that fails its schema, and stays connected', async () => {
    agent.start();
    current().handlers.open();
    await flush();
    welcome();
    current().handlers.message('{"type":"run.assign","spec":{"runId":"../../x"}}');
    current().handlers.message('garbage');
    await flush();
    expect(runs.saving.size).toBe(0);
    expect(current().closed).toBe(false);
    expect(agent.connected).toBe(true);
  });
});
