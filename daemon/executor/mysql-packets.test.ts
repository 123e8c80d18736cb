/**
 * The dataset socket's packet reader, byte by byte: a refused command never reaches the server
 * however the client splits or batches its packets, and long statements are followed as one command.
 */
import { describe, expect, it } from 'vitest';
import { checkHandshake, ClientCommandGate, CLIENT_PROTOCOL_41, CLIENT_SSL, errPacket, stripGreetingCapabilities } from './mysql-packets.js';

function packet(seq: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUIntLE(payload.length, 0, 3);
  header[3] = seq;
  return Buffer.concat([header, payload]);
}
const query = (sql: string) => packet(0, Buffer.concat([Buffer.from([0x03]), Buffer.from(sql)]));
const changeUser = packet(0, Buffer.concat([Buffer.from([0x11]), Buffer.from('root\0')]));

/** Feed `bytes` in pieces of `size`; what passed, and the refusal if any. */
function through(bytes: Buffer, size: number): { passed: Buffer; refused: string | null } {
  const gate = new ClientCommandGate();
  const passed: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) {
    const { pass, refusal } = gate.feed(bytes.subarray(i, i + size));
    passed.push(Buffer.from(pass));
    if (refusal) return { passed: Buffer.concat(passed), refused: refusal.message };
  }
  return { passed: Buffer.concat(passed), refused: null };
}

function login(user: string, caps = CLIENT_PROTOCOL_41 | 0x8000): Buffer {
  const head = Buffer.alloc(32);
  head.writeUInt32LE(caps, 0);
  return packet(1, Buffer.concat([head, Buffer.from(`${user}\0`), Buffer.from([0])]));
}

describe("the dataset socket's packet reader", () => {
  it('passes queries however they are split, and stops at COM_CHANGE_USER batched behind them, passing none of it', () => {
    const before = Buffer.concat([query('SELECT 1'), query('SELECT 2')]);
    for (const size of [1, 2, 3, 5, 7, 1000]) {
      const { passed, refused } = through(Buffer.concat([before, changeUser, query('SELECT 3')]), size);
      expect(passed.equals(before)).toBe(true);
      expect(refused).toMatch(/does not pass COM_CHANGE_USER: a run stays logged in as its own account/);
    }
  });

  it('follows a statement over 16 MiB as one command, even when its later packets start with 0x11', () => {
    const first = Buffer.alloc(0xffffff, 0x11);
    first[0] = 0x03;
    const stmt = Buffer.concat([packet(0, first), packet(1, Buffer.alloc(100, 0x11)), query('SELECT 1')]);
    const { passed, refused } = through(stmt, 64 * 1024 + 3);
    expect(refused).toBeNull();
    expect(passed.length).toBe(stmt.length);
  });

  it('refuses commands that are not a data client\'s, and an empty one', () => {
    expect(through(packet(0, Buffer.from([0x08])), 100).refused).toMatch(/COM_SHUTDOWN/);
    expect(through(packet(0, Buffer.from([0xfe, 0x03])), 100).refused).toMatch(/COM_MULTI/);
    expect(through(packet(0, Buffer.alloc(0)), 100).refused).toMatch(/an empty command/);
    expect(through(packet(0, Buffer.from([0x16, 0x41])), 100).refused).toBeNull();
  });

  it('admits only the run account by its exact name, and waits for the whole login packet', () => {
    const ok = login('secd_r1');
    expect(checkHandshake(ok.subarray(0, 20), 'secd_r1')).toEqual({ state: 'more' });
    expect(checkHandshake(ok, 'secd_r1')).toEqual({ state: 'ok', length: ok.length - 4, seq: 1 });
    for (const name of ['root', 'secd_r1 ', 'SECD_R1', 'secd_r12', 'secd_r']) {
      const r = checkHandshake(login(name), 'secd_r1');
      expect(r.state === 'refused' && r.refusal.code).toBe('wrong_user');
    }
    const tls = checkHandshake(login('secd_r1', CLIENT_PROTOCOL_41 | CLIENT_SSL).subarray(0, 8), 'secd_r1');
    expect(tls.state === 'refused' && tls.refusal.code).toBe('tls_refused');
    const old = checkHandshake(login('secd_r1', 0x8000), 'secd_r1');
    expect(old.state === 'refused' && old.refusal.code).toBe('old_protocol');
  });

  it("takes TLS and compression out of the server's greeting and leaves the rest as it was", () => {
    const body = Buffer.concat([Buffer.from([0x0a]), Buffer.from('10.11.19-MariaDB\0'), Buffer.alloc(4 + 8 + 1), Buffer.from([0xff, 0xff]), Buffer.from('rest')]);
    const g = packet(0, body);
    const copy = Buffer.from(g);
    expect(stripGreetingCapabilities(copy.subarray(0, 10))).toBe('more');
    expect(stripGreetingCapabilities(copy)).toBe('done');
    const capsAt = 4 + 1 + 17 + 13;
    expect(copy.readUInt16LE(capsAt)).toBe(0xffff & ~(CLIENT_SSL | 0x20));
    expect(copy.subarray(capsAt + 2).equals(g.subarray(capsAt + 2))).toBe(true);
    const notAGreeting = packet(0, Buffer.from([0xff, 0x10, 0x04]));
    expect(stripGreetingCapabilities(notAGreeting)).toBe('done');
  });

  it('tells a refused client why in a MySQL error packet', () => {
    const err = errPacket(2, { code: 'wrong_user', message: 'no' });
    expect(err.readUIntLE(0, 3)).toBe(err.length - 4);
    expect(err[3]).toBe(2);
    expect(err[4]).toBe(0xff);
    expect(err.readUInt16LE(5)).toBe(1045);
    expect(err.subarray(7).toString()).toBe('#28000secd: no');
  });
});
