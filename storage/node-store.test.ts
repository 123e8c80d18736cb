import { describe, expect, it } from 'vitest';
import { openDatabase } from './database.js';
import { NODE_TOKEN_PREFIX, NodeStore } from './node-store.js';

describe('node tokens', () => {
  it('a node authenticates with the token it was issued, and the database holds only a hash of it', () => {
    const db = openDatabase(':memory:');
    const store = new NodeStore(db);
    const token = store.issueToken('gpu-01');
    expect(token.startsWith(NODE_TOKEN_PREFIX)).toBe(true);
    expect(store.authenticate('gpu-01', token)).toMatchObject({ ok: true, node: { id: 'gpu-01', revoked: false, draining: false } });
    const dump = JSON.stringify(db.prepare('SELECT * FROM nodes').all());
    expect(dump).not.toContain(token);
    expect(dump).not.toContain(token.slice(NODE_TOKEN_PREFIX.length));
  });

  it('a wrong token, an unknown node and a revoked token are refused with distinct codes', () => {
    const store = new NodeStore(openDatabase(':memory:'));
    const token = store.issueToken('gpu-01');
    store.issueToken('gpu-02');
    expect(store.authenticate('gpu-02', token)).toMatchObject({ ok: false, code: 'bad_token' });
    expect(store.authenticate('gpu-09', token)).toMatchObject({ ok: false, code: 'unknown_node', reason: expect.stringContaining('secd admin node-token gpu-09') });
    expect(store.revoke('gpu-01')).toBe(true);
    expect(store.authenticate('gpu-01', token)).toMatchObject({ ok: false, code: 'revoked' });
    expect(store.revoke('gpu-09')).toBe(false);
  });

  it('issuing a new token retires the previous one and lifts a revocation', () => {
    const store = new NodeStore(openDatabase(':memory:'));
    const first = store.issueToken('gpu-01');
    store.revoke('gpu-01');
    const second = store.issueToken('gpu-01');
    expect(store.authenticate('gpu-01', first)).toMatchObject({ ok: false, code: 'bad_token' });
    expect(store.authenticate('gpu-01', second)).toMatchObject({ ok: true });
  });

  it('drain and undrain are remembered per node', () => {
    const store = new NodeStore(openDatabase(':memory:'));
    store.issueToken('gpu-01');
    expect(store.setDraining('gpu-01', true)).toBe(true);
    expect(store.flags()).toEqual([{ id: 'gpu-01', draining: true, revoked: false }]);
    store.setDraining('gpu-01', false);
    expect(store.get('gpu-01')?.draining).toBe(false);
    expect(store.setDraining('nope', true)).toBe(false);
  });
});
