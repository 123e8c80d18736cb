/**
 * A node with several leaders (DESIGN §11): it sweeps node.yml's list from the leader that last
 * accepted, moving on at once past a standby's 503 or an unreachable one, backs off only after a
 * whole sweep failed, and refuses what an ex-leader (an older epoch) still sends. The first tests use
 * real sockets on 127.0.0.1 (a standby is a server answering the upgrade with 503, an active leader
 * the real node endpoint); the timing tests drive the agent's injected `connect` under fake timers.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLog, type Log } from '../../scheduler/common/log.js';
import { attachNodeEndpoint, connectClient, type ClientSocketHandlers, type NodeEndpoint, type ServerSocket } from '../../scheduler/common/websocket.js';
import { encodeMessage, parseNodeMessage, PROTOCOL_VERSION, type LeaderMessage, type NodeMessage } from '../../scheduler/contract/protocol.js';
import type { RunSpec } from '../../scheduler/contract/run-spec.js';
import { NodeAgent, type NodeAgentDeps } from './node-agent.js';

/** What the agent needs besides its leaders and its connect: a node with no runs and one GPU. */
function nodeDeps(log: Log = silentLog) {
  const assigned: string[] = [];
  const cancelled: string[] = [];
  const deps: Omit<NodeAgentDeps, 'leaders' | 'connect'> = {
    nodeId: 'gpu-01',
    hostname: 'gpu-01.example.org',
    maxCpuRuns: 1,
    reportIntervalMs: 60_000,
    runs: {
      attach() {},
      assign: async (s: RunSpec) => void assigned.push(s.runId),
      cancel: (runId: string) => void cancelled.push(runId),
      acknowledge: async () => undefined,
      held: () => [],
      pendingResults: () => [],
      gpusInUse: () => new Set<string>(),
      images: () => [],
    },
    gpu: { inventory: async () => [{ uuid: 'GPU-A', index: 0, name: 'Tesla K80', memory_total_bytes: 1024 }], sample: async () => [] },
    host: { sample: async () => ({ load: 0, cpus: 4, memory_total_bytes: 1, memory_free_bytes: 1, disk_total_bytes: null, disk_free_bytes: null }) },
    log,
    now: () => new Date(),
    random: () => 0.5,
    resendMs: 60_000,
  };
  return { deps, assigned, cancelled };
}

/** A log that keeps what was said, to read back what an operator would see. */
function recordingLog() {
  const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
  const at = (level: string) => (fields: object, msg = '') => void lines.push({ level, msg, fields: fields as Record<string, unknown> });
  const log: Log = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return { log, lines };
}

/** One leader process on 127.0.0.1: a standby answers the node websocket with 503; an active one welcomes with its epoch. */
async function aLeader() {
  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/nodes`;
  const hellos: string[] = [];
  const nodes: ServerSocket[] = [];
  let endpoint: NodeEndpoint | null = null;
  const refuse = (_req: unknown, socket: Duplex) => {
    socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 25\r\n\r\nthis leader is a standby\n');
  };
  const leader = {
    url,
    hellos,
    standby() {
      server.on('upgrade', refuse);
    },
    activate(epoch: number) {
      server.off('upgrade', refuse);
      endpoint = attachNodeEndpoint(server, {
        path: '/v1/nodes',
        log: silentLog,
        authenticate: () => ({ ok: true, nodeId: 'gpu-01' }),
        accept: (nodeId, socket) => {
          nodes.push(socket);
          return {
            message(text) {
              const parsed = parseNodeMessage(text);
              if (parsed.ok && parsed.message.type === 'hello') {
                hellos.push(nodeId);
                socket.send(encodeMessage({ type: 'welcome', protocol: PROTOCOL_VERSION, node_id: nodeId, node_timeout_ms: 20_000, epoch }));
              }
            },
            close() {},
          };
        },
      });
    },
    /** Lose the lease: drop the nodes and answer 503 from now on. */
    async demote() {
      await endpoint?.close();
      endpoint = null;
      leader.standby();
    },
    async close() {
      await endpoint?.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return leader;
}

describe('a node with several leaders, over real sockets', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  it('skips an unreachable leader and a standby (503) and connects to the active one; when that one steps down it goes back through the list', async () => {
    const gone = await aLeader();
    await gone.close(); // nothing listens at its port any more: a connection error
    const standby = await aLeader();
    const active = await aLeader();
    cleanup.push(() => standby.close(), () => active.close());
    standby.standby();
    active.activate(1);

    const { log, lines } = recordingLog();
    const { deps } = nodeDeps(log);
    const agent = new NodeAgent({
      ...deps,
      leaders: [gone.url, standby.url, active.url],
      connect: (url, handlers) => connectClient({ url, headers: {}, handshakeTimeoutMs: 2000 }, handlers),
      backoff: { initialMs: 20, maxMs: 100 },
    });
    cleanup.push(() => agent.stop());
    agent.start();
    await vi.waitFor(() => expect(agent.leader).toBe(active.url), { timeout: 5000 });
    expect(agent.epoch).toBe(1);
    expect(lines.find((l) => l.msg === 'this leader is a standby')?.fields).toMatchObject({ leader: standby.url, why: 'the leader answered 503: this leader is a standby' });
    expect(lines.find((l) => l.msg === 'could not reach this leader')?.fields).toMatchObject({ leader: gone.url });
    expect(lines.find((l) => l.msg === 'connected to the leader')?.fields).toMatchObject({ leader: active.url, epoch: 1 });
    // One sweep got there: no backoff was needed.
    expect(lines.filter((l) => 'retry_in_ms' in l.fields)).toEqual([]);

    // Failover: the active leader loses its lease, the standby takes over with a newer epoch.
    await active.demote();
    standby.activate(2);
    await vi.waitFor(() => expect(agent.leader).toBe(standby.url), { timeout: 5000 });
    expect(agent.epoch).toBe(2);
    expect(standby.hellos).toEqual(['gpu-01']);
    expect(active.hellos).toEqual(['gpu-01']);
    const afterLoss = lines.slice(lines.findIndex((l) => l.msg === 'lost the leader'));
    // The sweep after the loss starts with the leader just lost, then moves on in the list's order.
    expect(afterLoss.filter((l) => l.fields.leader !== undefined).map((l) => [l.msg, l.fields.leader])).toEqual([
      ['lost the leader', active.url],
      ['this leader is a standby', active.url],
      ['could not reach this leader', gone.url],
      ['connected to the leader', standby.url],
    ]);
  });
});

/** Fake sockets the agent opens, one per attempt, in order. */
function fakeConnect() {
  const attempts: Array<{ url: string; handlers: ClientSocketHandlers; sent: NodeMessage[]; closedWith: [number | undefined, string | undefined] | null }> = [];
  const connect: NodeAgentDeps['connect'] = (url, handlers) => {
    const entry = { url, handlers, sent: [] as NodeMessage[], closedWith: null as [number | undefined, string | undefined] | null };
    attempts.push(entry);
    return {
      send: (text) => void entry.sent.push(JSON.parse(text) as NodeMessage),
      close: (code, reason) => {
        entry.closedWith = [code, reason];
      },
    };
  };
  return { attempts, connect };
}

describe('a node with several leaders, timed', () => {
  const A = 'wss://leader-a.internal/v1/nodes';
  const B = 'wss://leader-b.internal/v1/nodes';
  const C = 'wss://leader-c.internal/v1/nodes';
  let agent: NodeAgent | null = null;
  afterEach(() => {
    agent?.stop();
    vi.useRealTimers();
  });

  function setUp(log: Log = silentLog) {
    vi.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z') });
    const fake = fakeConnect();
    const node = nodeDeps(log);
    agent = new NodeAgent({ ...node.deps, leaders: [A, B, C], connect: fake.connect, backoff: { initialMs: 500, maxMs: 15_000 } });
    const urls = () => fake.attempts.map((a) => a.url);
    const last = () => fake.attempts.at(-1)!;
    const refuse = () => last().handlers.closed('the leader answered 503: this leader is a standby');
    const say = (m: LeaderMessage) => last().handlers.message(encodeMessage(m));
    const accept = async (epoch = 1) => {
      last().handlers.open();
      await vi.advanceTimersByTimeAsync(0);
      say({ type: 'welcome', protocol: PROTOCOL_VERSION, node_id: 'gpu-01', node_timeout_ms: 20_000, epoch });
    };
    return { ...fake, ...node, agent, urls, last, refuse, say, accept };
  }

  /** Refuse the attempts in progress one after another, `n` of them, each followed by what runs "at once". */
  async function refuseEach(t: ReturnType<typeof setUp>, n: number) {
    for (let i = 0; i < n; i++) {
      t.refuse();
      await vi.advanceTimersByTimeAsync(0);
    }
  }

  it('tries every leader at once before backing off, and backs off longer after each failed sweep', async () => {
    const t = setUp();
    t.agent.start();
    await refuseEach(t, 3);
    expect(t.urls()).toEqual([A, B, C]);
    // Only now, a whole sweep failed: 0.5 * 500 + 0.5 * 0.5 * 500 = 375 ms.
    await vi.advanceTimersByTimeAsync(374);
    expect(t.urls()).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(t.urls()).toEqual([A, B, C, A]);
    await refuseEach(t, 3);
    expect(t.urls()).toEqual([A, B, C, A, B, C]);
    // The second failed sweep waits twice as long: 750 ms.
    await vi.advanceTimersByTimeAsync(749);
    expect(t.urls()).toHaveLength(6);
    await vi.advanceTimersByTimeAsync(1);
    expect(t.urls()).toHaveLength(7);
    // A sweep that gets through resets the backoff.
    t.refuse();
    await vi.advanceTimersByTimeAsync(0);
    await t.accept(3);
    expect(t.agent.leader).toBe(B);
    t.last().handlers.closed('connection closed (1006)');
    await vi.advanceTimersByTimeAsync(374);
    expect(t.urls()).toHaveLength(8);
    await vi.advanceTimersByTimeAsync(1);
    expect(t.urls()).toEqual([A, B, C, A, B, C, A, B, B]);
  });

  it('while a standby refuses (503), sweeps come within a second however many failed; unreachable leaders alone back off to 15 s', async () => {
    const t = setUp();
    t.agent.start();
    // Six sweeps of A and B unreachable and C a standby: 375 ms, then 750 ms (capped at 1 s, jitter 0.5) each time.
    const gaps: number[] = [];
    for (let sweep = 0; sweep < 6; sweep++) {
      t.last().handlers.closed('connect ECONNREFUSED 10.0.0.1:8080');
      await vi.advanceTimersByTimeAsync(0);
      t.last().handlers.closed('connect ECONNREFUSED 10.0.0.2:8080');
      await vi.advanceTimersByTimeAsync(0);
      t.refuse();
      const before = t.attempts.length;
      let waited = 0;
      while (t.attempts.length === before) {
        await vi.advanceTimersByTimeAsync(5);
        waited += 5;
      }
      gaps.push(waited);
    }
    expect(gaps).toEqual([375, 750, 750, 750, 750, 750]);
    // No standby in the sweep: the grown backoff applies (attempt 6: 15 s cap, jitter 0.5 → 11.25 s).
    for (let i = 0; i < 3; i++) {
      t.last().handlers.closed('connect ECONNREFUSED 10.0.0.9:8080');
      await vi.advanceTimersByTimeAsync(0);
    }
    const before = t.attempts.length;
    await vi.advanceTimersByTimeAsync(11_249);
    expect(t.attempts).toHaveLength(before);
    await vi.advanceTimersByTimeAsync(1);
    expect(t.attempts).toHaveLength(before + 1);
  });

  it('after losing the leader that accepted, the next sweep starts with it, then goes on through the list', async () => {
    const t = setUp();
    t.agent.start();
    await refuseEach(t, 1);
    await t.accept(1);
    expect(t.agent.leader).toBe(B);
    t.last().handlers.closed('connection closed (1006)');
    expect(t.agent.connected).toBe(false);
    // A lost connection waits the first backoff before its sweep, so a restarted leader is not hit by every node at once.
    await vi.advanceTimersByTimeAsync(375);
    expect(t.urls()).toEqual([A, B, B]);
    await refuseEach(t, 1);
    expect(t.urls()).toEqual([A, B, B, C]);
    await t.accept(2);
    expect(t.agent.leader).toBe(C);
    // And the one after that starts with C, wrapping round to A.
    t.last().handlers.closed('connection closed (1006)');
    await vi.advanceTimersByTimeAsync(375);
    await refuseEach(t, 1);
    expect(t.urls().slice(4)).toEqual([C, A]);
  });

  it('a message of an older epoch than one already seen is dropped with a warning naming both, and its connection closed', async () => {
    const { log, lines } = recordingLog();
    const t = setUp(log);
    t.agent.start();
    await t.accept(5);
    expect(t.agent.epoch).toBe(5);
    t.say({ type: 'run.cancel', run_id: 'run-1', reason: 'cancelled by ada', epoch: 5 });
    t.say({ type: 'run.cancel', run_id: 'run-2', reason: 'cancelled by ada', epoch: 5 });
    expect(t.cancelled).toEqual(['run-1', 'run-2']);
    t.say({ type: 'run.cancel', run_id: 'run-3', reason: 'cancelled by ada', epoch: 4 });
    t.say({ type: 'run.cancel', run_id: 'run-4', reason: 'cancelled by ada', epoch: 5 });
    await vi.advanceTimersByTimeAsync(0);
    expect(t.cancelled).toEqual(['run-1', 'run-2']);
    expect(t.last().closedWith).toEqual([1008, 'leader epoch 4 is older than 5']);
    expect(t.agent.connected).toBe(false);
    const warning = lines.find((l) => l.level === 'warn' && l.fields.epoch === 4);
    expect(warning?.msg).toBe('dropped a run.cancel of leader epoch 4, older than epoch 5 already seen: closing the connection to this ex-leader');
    expect(warning?.fields).toMatchObject({ leader: A, epoch: 4, newest_epoch: 5 });

    // Once closed, the next sweep starts after the ex-leader; one that welcomes with an older epoch is passed over at once.
    t.last().handlers.closed('connection closed (1008)');
    await vi.advanceTimersByTimeAsync(375);
    expect(t.urls()).toEqual([A, B]);
    await t.accept(3);
    expect(t.agent.connected).toBe(false);
    expect(t.last().closedWith?.[0]).toBe(1008);
    t.last().handlers.closed('connection closed (1008)');
    await vi.advanceTimersByTimeAsync(0);
    expect(t.urls()).toEqual([A, B, C]);
    await t.accept(6);
    expect(t.agent.leader).toBe(C);
    expect(t.agent.epoch).toBe(6);
  });

  it('with one leader, every failed connect is a failed sweep (the backoff of old)', async () => {
    vi.useFakeTimers({ now: Date.parse('2026-01-01T00:00:00Z') });
    const fake = fakeConnect();
    agent = new NodeAgent({ ...nodeDeps().deps, leaders: [A], connect: fake.connect, backoff: { initialMs: 500, maxMs: 15_000 } });
    agent.start();
    fake.attempts.at(-1)!.handlers.closed('connect ECONNREFUSED');
    await vi.advanceTimersByTimeAsync(374);
    expect(fake.attempts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(fake.attempts).toHaveLength(2);
  });
});
