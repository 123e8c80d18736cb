/**
 * The status page's event stream under attack (issue 13, finding 6): clients on the network that open
 * `/api/v1/events` and never read. Real TCP sockets against the real leader HTTP server, while the
 * nodes' reports change; the leader's own accounting (/metrics, EventStreams.stats) shows what it
 * holds. Before the limits, 100 such clients grew the leader by ~1.7 GiB in 40 s.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { countRunsByState } from '../../storage/run-counts.js';
import { silentLog } from '../../scheduler/common/log.js';
import type { RunLifecycle } from '../../scheduler/lifecycle/run-lifecycle.js';
import type { ApiNode } from '../../web/api-schema.js';
import { EventStreams } from '../../web/event-streams.js';
import { buildLeaderServer } from '../../web/leader-server.js';
import { createLeaderMetrics } from '../../web/metrics.js';
import { StatusFeed } from '../../web/status-feed.js';
import { scratchStores } from '../support/scratch-state.js';
import { aGpu, aNode } from '../support/status-page-fixtures.js';

const MiB = 2 ** 20;

// 20 nodes × 64 GPUs whose utilisation changes on every tick: each update is ~0.6 MiB of JSON.
let round = 0;
const nodes = async (): Promise<ApiNode[]> =>
  Array.from({ length: 20 }, (_, n) =>
    aNode(`gpu-${n}`, Array.from({ length: 64 }, (_, i) => aGpu(`gpu-${n}`, i, { utilization_pct: (round * 7 + i + n) % 100, name: `NVIDIA H100 80GB HBM3 ${'x'.repeat(200)}` }))),
  );

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startLeader(streams?: EventStreams) {
  const stores = await scratchStores('sqlite');
  const store = stores.runs;
  const feed = new StatusFeed({ nodes, store, now: () => new Date(), pollMs: 3_600_000 });
  const metrics = createLeaderMetrics({ nodes, runCounts: () => countRunsByState(stores.scope) });
  const app = buildLeaderServer({
    store,
    lifecycle: {} as RunLifecycle,
    log: silentLog,
    intake: null,
    healthy: async () => true,
    nodes,
    status: feed,
    metrics,
    ...(streams ? { eventStreams: streams } : {}),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const sockets: Socket[] = [];
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    feed.close();
    await app.close();
    await stores.dispose();
  });
  /** Open a stream from `from` (a loopback address); `read: false` stops reading once the status line is in. */
  const open = (from: string, read: boolean): Promise<{ socket: Socket; head: string; bytes: () => number }> =>
    new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, localAddress: from });
      sockets.push(socket);
      let head = '';
      let bytes = 0;
      socket.on('error', () => undefined);
      socket.once('connect', () => socket.write(`GET /api/v1/events HTTP/1.1\r\nHost: leader\r\nAccept: text/event-stream\r\n\r\n`));
      socket.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (head) return;
        head = chunk.toString('latin1');
        if (!read) socket.pause();
        resolve({ socket, head, bytes: () => bytes });
      });
      socket.once('close', () => (head ? undefined : reject(new Error('closed before answering'))));
    });
  const scrape = async () => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const value = (line: string) => Number(text.split('\n').find((l) => l.startsWith(line))?.slice(line.length).trim() ?? NaN);
    return {
      open: value('secd_event_streams_open '),
      buffered: value('secd_event_streams_buffered_bytes '),
      slow: value('secd_event_streams_closed_total{reason="slow"} '),
      address: value('secd_event_streams_closed_total{reason="address"} '),
      full: value('secd_event_streams_closed_total{reason="full"} '),
    };
  };
  return { feed, open, scrape };
}

describe('status streams whose clients never read', () => {
  it('closes each idle client before it holds more than 1 MiB, keeps a reading page live, and says so in /metrics', async () => {
    const leader = await startLeader();
    const idle = await Promise.all(Array.from({ length: 20 }, () => leader.open('127.0.0.1', false)));
    for (const c of idle) expect(c.head).toMatch(/^HTTP\/1\.1 200/);
    const page = await leader.open('127.0.0.2', true);

    let worst = 0;
    const deadline = Date.now() + 60_000;
    let m = await leader.scrape();
    while (m.slow < 20 && Date.now() < deadline) {
      round++;
      await leader.feed.tick(true);
      await new Promise((r) => setTimeout(r, 50));
      m = await leader.scrape();
      worst = Math.max(worst, m.buffered);
    }
    // Every idle client was dropped; the leader never held more than 1 MiB (plus one message) per stream.
    expect(m.slow).toBe(20);
    expect(worst).toBeGreaterThan(0);
    expect(worst).toBeLessThan(21 * 2 * MiB);
    // The page that reads is still served, and received far more than any idle client was allowed to queue.
    expect(m.open).toBe(1);
    expect(page.socket.destroyed).toBe(false);
    expect(page.bytes()).toBeGreaterThan(4 * MiB);
  });

  it('answers 429 with a sentence to the 21st stream from one address, and serves other addresses', async () => {
    const leader = await startLeader();
    await Promise.all(Array.from({ length: 20 }, () => leader.open('127.0.0.1', false)));
    const refused = await leader.open('127.0.0.1', false);
    expect(refused.head).toMatch(/^HTTP\/1\.1 429/);
    expect(refused.head).toMatch(/retry-after: 30/i);
    expect(refused.head).toContain('20 live status streams are already open from 127.0.0.1');
    expect((await leader.open('127.0.0.3', false)).head).toMatch(/^HTTP\/1\.1 200/);
    const m = await leader.scrape();
    expect(m.open).toBe(21);
    expect(m.address).toBe(1);
  });

  it('answers 503 once the cap in all is reached, and admits again when a stream closes', async () => {
    const leader = await startLeader(new EventStreams({ maxStreams: 6, maxPerAddress: 2 }));
    const opened = await Promise.all([1, 1, 2, 2, 3, 3].map((n) => leader.open(`127.0.0.${n + 10}`, false)));
    const refused = await leader.open('127.0.0.20', false);
    expect(refused.head).toMatch(/^HTTP\/1\.1 503/);
    expect(refused.head).toContain('already serves 6 live status streams');
    opened[0]!.socket.destroy();
    const deadline = Date.now() + 30_000;
    while ((await leader.scrape()).open !== 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect((await leader.open('127.0.0.20', false)).head).toMatch(/^HTTP\/1\.1 200/);
    expect((await leader.scrape()).full).toBe(1);
  });
});
