import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NODE_TOKEN_PREFIX, type NodeStore } from './node-store.js';
import { scratchStores, STATE_ENGINES, type ScratchStores } from '../test/support/scratch-state.js';

describe.each(STATE_ENGINES)('node tokens (%s)', (engine) => {
  let s: ScratchStores;
  let store: NodeStore;
  beforeEach(async () => {
    s = await scratchStores(engine, () => new Date('2026-01-02T03:04:05Z'));
    store = s.nodes;
  });
  afterEach(() => s.dispose());

  it('a node authenticates with the token it was issued, and the database holds only a hash of it', async () => {
    const token = await store.issueToken('gpu-01');
    expect(token.startsWith(NODE_TOKEN_PREFIX)).toBe(true);
    expect(await store.authenticate('gpu-01', token)).toMatchObject({ ok: true, node: { id: 'gpu-01', revoked: false, draining: false } });
    const dump = JSON.stringify(await s.state.db.selectFrom('nodes').selectAll().execute());
    expect(dump).toContain('gpu-01');
    expect(dump).not.toContain(token);
    expect(dump).not.toContain(token.slice(NODE_TOKEN_PREFIX.length));
  });

  it('a wrong token, an unknown node and a revoked token are refused with distinct codes', async () => {
    const token = await store.issueToken('gpu-01');
    await store.issueToken('gpu-02');
    expect(await store.authenticate('gpu-02', token)).toMatchObject({ ok: false, code: 'bad_token' });
    expect(await store.authenticate('gpu-09', token)).toMatchObject({ ok: false, code: 'unknown_node', reason: expect.stringContaining('secd admin node-token gpu-09') });
    expect(await store.revoke('gpu-01')).toBe(true);
    expect(await store.authenticate('gpu-01', token)).toMatchObject({ ok: false, code: 'revoked' });
    expect(await store.revoke('gpu-09')).toBe(false);
  });

  it('node ids are exact: a node id differing only in case is another (unknown) node', async () => {
    const token = await store.issueToken('gpu-01');
    expect(await store.authenticate('GPU-01', token)).toMatchObject({ ok: false, code: 'unknown_node' });
    expect(await store.get('GPU-01')).toBeUndefined();
  });

  it('issuing a new token retires the previous one and lifts a revocation', async () => {
    const first = await store.issueToken('gpu-01');
    await store.revoke('gpu-01');
    const second = await store.issueToken('gpu-01');
    expect(await store.authenticate('gpu-01', first)).toMatchObject({ ok: false, code: 'bad_token' });
    expect(await store.authenticate('gpu-01', second)).toMatchObject({ ok: true });
    expect(await store.list()).toHaveLength(1);
  });

  it('drain and undrain are remembered per node, and setting the same value again still finds the node', async () => {
    await store.issueToken('gpu-01');
    expect(await store.setDraining('gpu-01', true)).toBe(true);
    expect(await store.setDraining('gpu-01', true)).toBe(true);
    expect(await store.flags()).toEqual([{ id: 'gpu-01', draining: true, revoked: false }]);
    await store.setDraining('gpu-01', false);
    expect((await store.get('gpu-01'))?.draining).toBe(false);
    expect(await store.setDraining('nope', true)).toBe(false);
  });

  it('a hello is kept: hostname, inventory and when the node was last seen', async () => {
    await store.issueToken('gpu-02');
    await store.issueToken('gpu-01');
    await store.recordHello('gpu-01', 'gpu-01.lab', { gpus: [{ index: 0, name: 'H200' }], cpus: 16 });
    expect(await store.get('gpu-01')).toEqual({
      id: 'gpu-01',
      tokenIssuedAt: '2026-01-02T03:04:05.000Z',
      revoked: false,
      draining: false,
      hostname: 'gpu-01.lab',
      lastSeen: '2026-01-02T03:04:05.000Z',
      inventory: { gpus: [{ index: 0, name: 'H200' }], cpus: 16 },
      createdAt: '2026-01-02T03:04:05.000Z',
    });
    await store.recordSeen('gpu-01', '2026-01-02T03:05:00.000Z');
    expect((await store.get('gpu-01'))?.lastSeen).toBe('2026-01-02T03:05:00.000Z');
    expect((await store.list()).map((n) => [n.id, n.hostname])).toEqual([
      ['gpu-01', 'gpu-01.lab'],
      ['gpu-02', null],
    ]);
  });
});
