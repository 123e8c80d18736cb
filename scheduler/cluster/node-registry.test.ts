import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { NodeStore } from '../../storage/node-store.js';
import { silentLog } from '../common/log.js';
import { CLOSE_CODES, NodeRegistry, type NodeRunReports } from './node-registry.js';
import type { NodeConnection } from './remote-node.js';
import { encodeMessage, PROTOCOL_VERSION, type HelloMessage, type LeaderMessage, type NodeMessage } from '../contract/protocol.js';
import type { RunOutcome, RunSpec } from '../contract/run-spec.js';
import { memoryStores } from '../../test/support/scratch-state.js';
import { aRunOutcome } from '../../test/support/test-images.js';

const TIMEOUT = 20_000;
/** The epoch the registry's leader leads: every message to a node carries it (DESIGN §11). */
const EPOCH = 4;

function aSpec(runId: string): RunSpec {
  return {
    runId,
    project: 'lab/x',
    commit: 'b'.repeat(40),
    source: 'https://example.org/lab/x.git',
    user: 'ada',
    signer: null,
    runforMs: 60_000,
    gpus: ['GPU-A'],
    cacheDir: null,
    mountPath: '/cache',
    env: {},
    warnings: [],
    createdAt: '2026-01-01T00:00:00.000Z',
  };
}

const outcome = aRunOutcome();

function helloFrom(nodeId: string, over: Partial<HelloMessage> = {}): HelloMessage {
  return {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    node_id: nodeId,
    hostname: `${nodeId}.example.org`,
    inventory: { gpus: [{ uuid: 'GPU-A', index: 0, name: 'Tesla K80', memory_total_bytes: 12 * 2 ** 30 }], cpus: 16, memory_bytes: 2 ** 36 },
    max_cpu_runs: 2,
    runs: [],
    ...over,
  };
}

/** A connection that records what the leader sends. */
function fakeConnection() {
  const sent: LeaderMessage[] = [];
  const conn: NodeConnection & { sent: LeaderMessage[]; closed: number | null; terminated: boolean } = {
    remote: '127.0.0.1:5555',
    sent,
    closed: null,
    terminated: false,
    send(text) {
      sent.push(JSON.parse(text) as LeaderMessage);
    },
    close(code) {
      conn.closed = code;
    },
    terminate() {
      conn.terminated = true;
    },
  };
  return conn;
}

function recordingReports() {
  const calls: string[] = [];
  const reports: NodeRunReports & { calls: string[] } = {
    calls,
    onPhase: (node, run, phase) => void calls.push(`phase ${node} ${run} ${phase}`),
    onResult: (node, run, o) => void calls.push(`result ${node} ${run} ${o.end}`),
    onNodeHello: (node, held) => void calls.push(`hello ${node} [${held.map((h) => `${h.runId}:${h.phase}`).join(',')}]`),
    scheduleSoon: () => calls.push('schedule'),
  };
  return reports;
}

describe('the node registry', () => {
  let stores: Awaited<ReturnType<typeof memoryStores>>;
  let store: NodeStore;
  let registry: NodeRegistry;
  let reports: ReturnType<typeof recordingReports>;

  beforeEach(async () => {
    // The database is opened and migrated on real timers; the clock is faked from the first row on.
    stores = await memoryStores(() => new Date());
    vi.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z') });
    store = stores.nodes;
    await store.issueToken('gpu-01');
    registry = new NodeRegistry({ store, log: silentLog, now: () => new Date(), nodeTimeoutMs: TIMEOUT, resendMs: 3000, epoch: () => EPOCH });
    await registry.refresh();
    reports = recordingReports();
    registry.attach(reports);
    registry.start(1000);
  });
  afterEach(async () => {
    await registry.close();
    vi.useRealTimers();
    await stores.close();
  });

  /** Let the store writes and reports the frames so far caused finish. */
  const settle = () => registry.idle();

  function connect(nodeId = 'gpu-01') {
    const conn = fakeConnection();
    const handlers = registry.connect(nodeId, conn);
    const say = (m: NodeMessage | string) => handlers.message(typeof m === 'string' ? m : encodeMessage(m));
    return { conn, handlers, say };
  }

  it('a node is up once it said hello, and down once silent longer than node_timeout_ms, its connection dropped', async () => {
    const { conn, say } = connect();
    expect(registry.get('gpu-01')?.state()).toBe('down');
    say(helloFrom('gpu-01', { images: ['lab/x'] }));
    expect(conn.sent[0]).toEqual({ type: 'welcome', protocol: PROTOCOL_VERSION, node_id: 'gpu-01', node_timeout_ms: TIMEOUT, epoch: EPOCH });
    const node = registry.get('gpu-01')!;
    expect(node.state()).toBe('up');
    expect(node.gpus()).toEqual(['GPU-A']);
    expect(node.cpuSlots()).toBe(2);
    expect(node.images()).toEqual(['lab/x']);
    await settle();
    expect(reports.calls).toContain('hello gpu-01 []');
    expect(await store.get('gpu-01')).toMatchObject({ hostname: 'gpu-01.example.org', lastSeen: '2026-01-01T00:00:00.000Z' });

    vi.advanceTimersByTime(TIMEOUT - 1000);
    expect(node.state()).toBe('up');
    vi.advanceTimersByTime(2000);
    expect(node.state()).toBe('down');
    expect(conn.closed).toBe(CLOSE_CODES.silent);
    expect(conn.terminated).toBe(true);
    expect(registry.downSince('gpu-01')?.getTime()).toBe(Date.parse('2026-01-01T00:00:00Z') + TIMEOUT);
  });

  it('a status keeps the node up and tells the leader which GPUs foreign processes hold', async () => {
    const { say } = connect();
    say(helloFrom('gpu-01'));
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(TIMEOUT / 2);
      say({
        type: 'status',
        at: new Date().toISOString(),
        gpus: [{ uuid: 'GPU-A', index: 0, utilization_pct: 97, memory_used_bytes: 1, memory_total_bytes: 2, temperature_c: 60, power_w: null, processes: 1, foreign_busy: true }],
        host: { load: 1.5, cpus: 16, memory_total_bytes: 2 ** 36, memory_free_bytes: 2 ** 35, disk_total_bytes: null, disk_free_bytes: null },
      });
    }
    await settle();
    const node = registry.get('gpu-01')!;
    expect(node.state()).toBe('up');
    expect(node.foreignBusyGpus()).toEqual(['GPU-A']);
    // Only the change from "free" to "busy" asks for a new plan, not every report.
    expect(reports.calls.filter((c) => c === 'schedule')).toHaveLength(1);
    // The view keeps the node's own words; web/api-schema.ts turns them into the API's node.
    expect(registry.views()[0]).toMatchObject({ state: 'up', status: { host: { load: 1.5 }, gpus: [{ uuid: 'GPU-A', utilization_pct: 97, power_w: null, foreign_busy: true }] } });
  });

  it('an assignment is sent again until the node acknowledges it, and not after', () => {
    const { conn, say } = connect();
    say(helloFrom('gpu-01'));
    registry.get('gpu-01')!.assign(aSpec('run000001'));
    registry.get('gpu-01')!.assign(aSpec('run000001'));
    const assigns = () => conn.sent.filter((m) => m.type === 'run.assign').length;
    expect(assigns()).toBe(1);
    vi.advanceTimersByTime(3000);
    expect(assigns()).toBe(2);
    say({ type: 'run.ack', run_id: 'run000001' });
    vi.advanceTimersByTime(10_000);
    expect(assigns()).toBe(2);
  });

  it('at hello the lifecycle decides what is sent again: a stale assignment is dropped, a cancel stands for a run still held', async () => {
    const node = registry.get('gpu-01')!;
    node.assign(aSpec('stale0001'));
    node.cancel('held00001', 'superseded by a newer push');
    node.cancel('gone00001', 'superseded by a newer push');
    reports.onNodeHello = (id, held) => {
      reports.calls.push(`hello ${id} [${held.map((h) => h.runId).join(',')}]`);
      node.assign(aSpec('again0001'));
    };
    const { conn, say } = connect();
    say(helloFrom('gpu-01', { runs: [{ run_id: 'held00001', phase: 'running', outcome: null }] }));
    await settle();
    expect(conn.sent.slice(1)).toEqual([
      { type: 'run.assign', spec: aSpec('again0001'), epoch: EPOCH },
      { type: 'run.cancel', run_id: 'held00001', reason: 'superseded by a newer push', epoch: EPOCH },
    ]);
    expect(reports.calls).toContain('hello gpu-01 [held00001]');
  });

  it('a result goes to the lifecycle first and is acknowledged after', async () => {
    const { conn, say } = connect();
    say(helloFrom('gpu-01'));
    say({ type: 'run.event', run_id: 'run000001', phase: 'running', at: new Date().toISOString() });
    say({ type: 'run.result', run_id: 'run000001', outcome });
    await settle();
    expect(reports.calls.slice(-2)).toEqual(['phase gpu-01 run000001 running', 'result gpu-01 run000001 succeeded']);
    expect(conn.sent.at(-1)).toEqual({ type: 'run.result.ack', run_id: 'run000001', epoch: EPOCH });
  });

  it("an async report finishes before the node's next one starts, and a result is acknowledged only once recorded", async () => {
    let finishPhase!: () => void;
    reports.onPhase = (node, run, phase) =>
      new Promise<void>((resolve) => {
        finishPhase = () => {
          reports.calls.push(`phase ${node} ${run} ${phase}`);
          resolve();
        };
      });
    const { conn, say } = connect();
    say(helloFrom('gpu-01'));
    say({ type: 'run.event', run_id: 'run000001', phase: 'running', at: new Date().toISOString() });
    say({ type: 'run.result', run_id: 'run000001', outcome });
    await vi.waitFor(() => expect(finishPhase).toBeDefined());
    await vi.advanceTimersByTimeAsync(10);
    // The phase is still being recorded: the result waits behind it, and nothing is acknowledged.
    const meanwhile = { reported: reports.calls.filter((c) => !c.startsWith('hello')), acked: conn.sent.some((m) => m.type === 'run.result.ack') };
    finishPhase();
    await settle();
    expect(meanwhile).toEqual({ reported: [], acked: false });
    expect(reports.calls.slice(-2)).toEqual(['phase gpu-01 run000001 running', 'result gpu-01 run000001 succeeded']);
    expect(conn.sent.at(-1)).toEqual({ type: 'run.result.ack', run_id: 'run000001', epoch: EPOCH });
  });

  it('a result the lifecycle could not record is not acknowledged, so the node sends it again', async () => {
    const lines: string[] = [];
    await registry.close();
    registry = new NodeRegistry({
      store,
      log: { ...silentLog, warn: (o: object, m?: string) => void lines.push(`${m ?? ''} ${JSON.stringify(o)}`), child: () => silentLog },
      now: () => new Date(),
      nodeTimeoutMs: TIMEOUT,
      epoch: () => EPOCH,
    });
    await registry.refresh();
    let failing = true;
    registry.attach({
      ...reports,
      onResult: async (node, run, o) => {
        if (failing) throw new Error('database is locked');
        reports.calls.push(`result ${node} ${run} ${o.end}`);
      },
    });
    const { conn, say } = connect();
    say(helloFrom('gpu-01'));
    say({ type: 'run.result', run_id: 'run000001', outcome });
    await settle();
    expect(conn.sent.some((m) => m.type === 'run.result.ack')).toBe(false);
    expect(lines.join('\n')).toMatch(/could not record a run's result .*run000001.*database is locked/);
    failing = false;
    say({ type: 'run.result', run_id: 'run000001', outcome });
    await settle();
    expect(reports.calls).toContain('result gpu-01 run000001 succeeded');
    expect(conn.sent.at(-1)).toEqual({ type: 'run.result.ack', run_id: 'run000001', epoch: EPOCH });
  });

  it('a malformed message, or one sent before hello, is dropped and the node stays connected', async () => {
    const { conn, say } = connect();
    say({ type: 'run.result', run_id: 'run000001', outcome });
    say(helloFrom('gpu-01'));
    say('{"type":"status","gpus":"lots"}');
    say('not even json');
    say(JSON.stringify({ type: 'run.result', run_id: '../../etc', outcome }));
    await settle();
    expect(reports.calls.filter((c) => c.startsWith('result'))).toEqual([]);
    expect(conn.closed).toBeNull();
    expect(registry.get('gpu-01')!.state()).toBe('up');
  });

  it('a hello naming another node, or another protocol version, is refused with a reason and the connection closed', async () => {
    await store.issueToken('gpu-02');
    const a = connect();
    a.say(helloFrom('gpu-02'));
    expect(a.conn.sent).toEqual([{ type: 'error', code: 'node_id', message: expect.stringContaining('gpu-02'), epoch: EPOCH }]);
    expect(a.conn.closed).toBe(CLOSE_CODES.conflict);
    const b = connect();
    b.say(helloFrom('gpu-01', { protocol: 99 }));
    expect(b.conn.sent[0]).toMatchObject({ type: 'error', code: 'protocol' });
    expect(registry.get('gpu-01')!.state()).toBe('down');
  });

  it('an operator draining a node makes it draining and asks for a new plan; revoking disconnects it', async () => {
    const { conn, say } = connect();
    say(helloFrom('gpu-01'));
    await settle();
    reports.calls.length = 0;
    await store.setDraining('gpu-01', true);
    vi.advanceTimersByTime(1000);
    await settle();
    const node = registry.get('gpu-01')!;
    expect(node.state()).toBe('draining');
    expect(reports.calls).toEqual(['schedule']);
    await store.revoke('gpu-01');
    vi.advanceTimersByTime(1000);
    await settle();
    expect(conn.closed).toBe(CLOSE_CODES.revoked);
    expect(node.state()).toBe('down');
    expect(registry.handles().map((h) => h.id)).toEqual([]);
    expect(await registry.authenticate('gpu-01', 'anything')).toMatchObject({ ok: false });
  });

  it('a node given a token after the leader started is let in with its token, known before any refresh, and a wrong token is not', async () => {
    const token = await store.issueToken('gpu-03');
    expect(registry.get('gpu-03')).toBeUndefined();
    expect(await registry.authenticate('gpu-03', 'not-its-token')).toEqual({ ok: false, reason: "the token is not node gpu-03's current token" });
    expect(await registry.authenticate('gpu-03', token)).toEqual({ ok: true });
    expect(registry.get('gpu-03')?.state()).toBe('down');
    const { say } = connect('gpu-03');
    say(helloFrom('gpu-03'));
    expect(registry.get('gpu-03')?.state()).toBe('up');
    registry.reserve('gpu-04');
    expect(await registry.authenticate('gpu-04', token)).toEqual({ ok: false, reason: "node id gpu-04 is the leader's in-process node" });
  });

  it('a restarted leader lists the nodes it knew as down with their last inventory, until they say hello', async () => {
    const { say } = connect();
    say(helloFrom('gpu-01'));
    // Closing waits for the hello's write.
    await registry.close();
    vi.advanceTimersByTime(5000);
    const restarted = new NodeRegistry({ store, log: silentLog, now: () => new Date(), nodeTimeoutMs: TIMEOUT });
    expect(restarted.get('gpu-01')).toBeUndefined();
    await restarted.refresh();
    const node = restarted.get('gpu-01')!;
    expect(node.state()).toBe('down');
    expect(node.gpus()).toEqual(['GPU-A']);
    expect(restarted.views()[0]).toMatchObject({ hello: { hostname: 'gpu-01.example.org', max_cpu_runs: 2 }, state: 'down', lastSeen: '2026-01-01T00:00:00.000Z' });
    // Down since the leader started: the node has lost_after from now to come back.
    expect(restarted.downSince('gpu-01')?.toISOString()).toBe('2026-01-01T00:00:05.000Z');
    expect(restarted.downSince('never-seen')?.toISOString()).toBe('2026-01-01T00:00:05.000Z');
  });

  it('a leader upgraded in place still knows the GPUs an older version stored, until the node says hello', async () => {
    await store.issueToken('gpu-07');
    await store.recordHello('gpu-07', 'gpu-07.example.org', {
      v: 1,
      inventory: { hostname: 'gpu-07.example.org', gpus: [{ uuid: 'GPU-Z', index: 0, name: 'Tesla T4', memoryTotalBytes: 16 * 2 ** 30 }], cpus: 8, memoryBytes: 2 ** 35, maxCpuRuns: 1 },
    });
    const restarted = new NodeRegistry({ store, log: silentLog, now: () => new Date(), nodeTimeoutMs: TIMEOUT });
    await restarted.refresh();
    expect(restarted.get('gpu-07')?.gpus()).toEqual(['GPU-Z']);
    expect(restarted.views().find((v) => v.id === 'gpu-07')?.hello).toEqual({
      hostname: 'gpu-07.example.org',
      inventory: { gpus: [{ uuid: 'GPU-Z', index: 0, name: 'Tesla T4', memory_total_bytes: 16 * 2 ** 30 }], cpus: 8, memory_bytes: 2 ** 35 },
      max_cpu_runs: 1,
    });
  });
});
