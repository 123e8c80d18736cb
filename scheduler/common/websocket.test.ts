/** The node endpoint over a real HTTP server and `ws` client: the leader's verdict on an upgrade may be async. */
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLog, type Log } from './log.js';
import { attachNodeEndpoint, connectClient, type NodeEndpoint, type ServerSocketHandlers, type UpgradeVerdict } from './websocket.js';

const PATH = '/v1/nodes';

interface Harness {
  url: string;
  endpoint: NodeEndpoint;
  accepted: string[];
  frames: string[];
  errors: string[];
}

let server: Server | null = null;
let endpoint: NodeEndpoint | null = null;

afterEach(async () => {
  await endpoint?.close();
  endpoint = null;
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = null;
});

/** A leader's HTTP server with the node endpoint, whose verdict is `verdict` (sync or async). */
async function leaderWith(verdict: (headers: Record<string, unknown>) => UpgradeVerdict | Promise<UpgradeVerdict>): Promise<Harness> {
  const accepted: string[] = [];
  const frames: string[] = [];
  const errors: string[] = [];
  const log: Log = { ...silentLog, error: (o: object, m?: string) => void errors.push(`${m ?? ''} ${JSON.stringify(o)}`), child: () => log };
  server = createServer((_req, res) => res.end());
  endpoint = attachNodeEndpoint(server, {
    path: PATH,
    log,
    authenticate: (headers) => verdict(headers),
    accept: (nodeId, socket): ServerSocketHandlers => {
      accepted.push(nodeId);
      socket.send('welcome');
      return { message: (text) => void frames.push(text), close: () => undefined };
    },
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { url: `ws://127.0.0.1:${port}${PATH}`, endpoint, accepted, frames, errors };
}

/** Connect as a node: what it heard, and why the connection ended. */
function connectAs(url: string, token: string): Promise<{ opened: boolean; heard: string[]; why: string }> {
  return new Promise((resolve) => {
    const heard: string[] = [];
    let opened = false;
    const client = connectClient(
      { url, headers: { authorization: `Bearer ${token}` }, handshakeTimeoutMs: 5000 },
      {
        open: () => {
          opened = true;
          client.send('hello');
        },
        message: (text) => {
          heard.push(text);
          client.close(1000, 'done');
        },
        closed: (why) => resolve({ opened, heard, why }),
      },
    );
  });
}

const tokenOf = (headers: Record<string, unknown>) => String(headers.authorization ?? '').replace(/^Bearer /, '');

describe('the node endpoint', () => {
  it('waits for an async verdict and lets the node in once it says yes', async () => {
    const h = await leaderWith(async (headers) => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return tokenOf(headers) === 'good' ? { ok: true, nodeId: 'gpu-01' } : { ok: false, status: 401, message: 'node token refused' };
    });
    const node = await connectAs(h.url, 'good');
    expect(node).toMatchObject({ opened: true, heard: ['welcome'] });
    expect(h.accepted).toEqual(['gpu-01']);
  });

  it('answers an async refusal as before: the status and message, no websocket', async () => {
    const h = await leaderWith(async () => ({ ok: false, status: 401, message: 'node token refused' }));
    const node = await connectAs(h.url, 'bad');
    expect(node.opened).toBe(false);
    expect(node.why).toBe('the leader answered 401: node token refused');
    expect(h.accepted).toEqual([]);
  });

  it('a sync verdict still works', async () => {
    const h = await leaderWith(() => ({ ok: true, nodeId: 'gpu-02' }));
    expect(await connectAs(h.url, 'any')).toMatchObject({ opened: true, heard: ['welcome'] });
    expect(h.accepted).toEqual(['gpu-02']);
  });

  it('a verdict that fails (the database unreachable) is answered 503 and logged, never let in', async () => {
    const h = await leaderWith(async () => {
      throw new Error('connect ECONNREFUSED 10.0.0.5:3306');
    });
    const node = await connectAs(h.url, 'good');
    expect(node.opened).toBe(false);
    expect(node.why).toMatch(/^the leader answered 503: /);
    expect(h.accepted).toEqual([]);
    expect(h.errors.join('\n')).toContain('ECONNREFUSED');
  });

  it('an endpoint closed while a verdict was on its way refuses the upgrade as shutting down', async () => {
    let release!: (verdict: UpgradeVerdict) => void;
    let asked!: () => void;
    const wasAsked = new Promise<void>((resolve) => (asked = resolve));
    const h = await leaderWith(
      () =>
        new Promise<UpgradeVerdict>((resolve) => {
          release = resolve;
          asked();
        }),
    );
    const connecting = connectAs(h.url, 'good');
    await wasAsked;
    await h.endpoint.close();
    release({ ok: true, nodeId: 'gpu-03' });
    const node = await connecting;
    expect(node.opened).toBe(false);
    expect(node.why).toBe('the leader answered 400: the leader is shutting down');
    expect(h.accepted).toEqual([]);
  });
});
