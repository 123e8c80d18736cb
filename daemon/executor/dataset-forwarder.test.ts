/**
 * The per-run dataset socket against the real MariaDB: it carries the run's own session (large
 * results included), and refuses every way of being someone else through it (issue 13): another
 * account's name, a TLS upgrade that would hide the name, and COM_CHANGE_USER after a valid login.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectMysql, createMysqlDatasetServer } from '../../scheduler/policy/mysql-grants.js';
import { adminSession, cleanUp, MARIADB, MARIADB_ADMIN, seedDatabase, testTag } from '../../test/support/mariadb.js';
import { startDatasetForwarder } from './dataset-forwarder.js';
import { CLIENT_PROTOCOL_41, CLIENT_SSL } from './mysql-packets.js';

const tag = testTag();
const prefix = `secdf${tag}_`;
const granted = `secdf_${tag}_sales`;
const secret = `secdf_${tag}_hr`;
const run = { user: `${prefix}run1`, password: `Run-${tag}-pw-0123456789`, databases: [granted], maxConnections: 4 };
// Another real account the node's address may use: what the attacker inside the run is after.
const other = { user: `${prefix}analyst`, password: `Known-${tag}-password` };

let root: string;
const server = createMysqlDatasetServer(MARIADB, MARIADB_ADMIN);
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'secd-fwd-'));
  await seedDatabase(granted, ['CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(10))', "INSERT INTO {db}.t VALUES (1, 'one')"]);
  await seedDatabase(secret, ['CREATE TABLE {db}.salaries (name VARCHAR(10), pay INT)', "INSERT INTO {db}.salaries VALUES ('ada', 99)"]);
  await server.createRunUser(run);
  const admin = await adminSession();
  try {
    await admin.query("CREATE USER ?@'%' IDENTIFIED BY ?", [other.user, other.password]);
    await admin.query(`GRANT SELECT ON \`${secret}\`.* TO ?@'%'`, [other.user]);
    await admin.query(`GRANT CREATE USER ON *.* TO ?@'%'`, [other.user]);
  } finally {
    await admin.close();
  }
});
afterAll(async () => {
  await server.close();
  await cleanUp([granted, secret], prefix);
  await rm(root, { recursive: true, force: true });
});

async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { code: e.code ?? 'none', message: e.message ?? String(err) };
  }
  return { code: 'it worked', message: '' };
}

/** A hand-made client: read the greeting, send `first` as the client's first packet, return what comes back. */
async function rawLogin(socketPath: string, first: (greeting: Buffer) => Buffer): Promise<{ reply: Buffer; closed: boolean }> {
  const sock: Socket = createConnection({ path: socketPath });
  let got = Buffer.alloc(0);
  let greeting: Buffer | null = null;
  return new Promise((resolve, reject) => {
    sock.on('error', reject);
    sock.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (greeting === null) {
        if (got.length < 4 || got.length < 4 + got.readUIntLE(0, 3)) return;
        greeting = got.subarray(0, 4 + got.readUIntLE(0, 3));
        got = got.subarray(greeting.length);
        sock.write(first(greeting));
      }
    });
    sock.on('close', () => resolve({ reply: got, closed: true }));
  });
}

function packet(seq: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUIntLE(payload.length, 0, 3);
  header[3] = seq;
  return Buffer.concat([header, payload]);
}

/** The salt of a protocol-10 greeting, for mysql_native_password. */
function scrambleOf(greeting: Buffer, password: string): Buffer {
  const p = greeting.subarray(4);
  const at = p.indexOf(0, 1) + 1 + 4;
  const salt = Buffer.concat([p.subarray(at, at + 8), p.subarray(at + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10, at + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10 + 12)]);
  const sha1 = (b: Buffer) => createHash('sha1').update(b).digest();
  const s1 = sha1(Buffer.from(password));
  const s3 = sha1(Buffer.concat([salt, sha1(s1)]));
  return Buffer.from(s1.map((b, i) => b ^ s3[i]!));
}

/** A HandshakeResponse41 for `user` with `extraCaps`, authenticating with mysql_native_password. */
function handshakeResponse(greeting: Buffer, user: string, password: string, extraCaps = 0): Buffer {
  const caps = CLIENT_PROTOCOL_41 | 0x8000 /* SECURE_CONNECTION */ | 0x80000 /* PLUGIN_AUTH */ | 0x1 | extraCaps;
  const head = Buffer.alloc(32);
  head.writeUInt32LE(caps >>> 0, 0);
  head.writeUInt32LE(16 * 1024 * 1024, 4);
  head[8] = 33;
  const auth = scrambleOf(greeting, password);
  return packet(1, Buffer.concat([head, Buffer.from(user + '\0'), Buffer.from([auth.length]), auth, Buffer.from('mysql_native_password\0')]));
}

/** Log in with PyMySQL (the SDK's client; .ci/run installs python3-pymysql) and run `sql`: rows or "refused <errno>: <message>". */
function pymysql(socketPath: string, login: { user: string; password: string }, sql: string): Promise<string> {
  const script = `
import json, sys, pymysql
a = json.loads(sys.argv[1])
try:
    c = pymysql.connect(unix_socket=a["socket"], user=a["user"], password=a["password"])
    with c.cursor() as cur:
        cur.execute(a["sql"])
        print(json.dumps([[len(str(v)) for v in row] for row in cur.fetchall()]))
except pymysql.MySQLError as e:
    print("refused %d: %s" % (e.args[0], e.args[1] if len(e.args) > 1 else ""))
`;
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/python3', ['-c', script, JSON.stringify({ socket: socketPath, ...login, sql })], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (status) => (status === 0 ? resolve(out.trim()) : reject(new Error(`python3 failed (${status}): ${err}`))));
  });
}

const errorText = (reply: Buffer) => (reply.length > 13 && reply[4] === 0xff ? reply.subarray(13).toString('utf8') : `no ERR packet: ${reply.toString('hex')}`);

describe('the dataset socket', () => {
  it("carries the run's own session, a large result included, counts its bytes both ways, and is connectable by any user", async () => {
    const fwd = await startDatasetForwarder(join(root, 'a'), MARIADB, { user: run.user });
    expect(statSync(fwd.socketPath).mode & 0o777).toBe(0o666);
    const s = await connectMysql({ socketPath: fwd.socketPath }, run, granted);
    expect(await s.query('SELECT v FROM t')).toEqual([{ v: 'one' }]);
    const rows = (await s.query("SELECT REPEAT('x', 5000000) AS big, REPEAT('y', ?) AS more", [3_000_000])) as Array<{ big: string; more: string }>;
    expect(rows[0]!.big.length).toBe(5_000_000);
    expect(rows[0]!.more.length).toBe(3_000_000);
    // A long statement arrives in many chunks: the socket follows it as one command (mysql-packets.test.ts
    // splits one over 16 MiB into packets; this server's max_allowed_packet is 16 MiB).
    const long = (await s.query('SELECT LENGTH(?) AS n', ['z'.repeat(8 * 1024 * 1024)])) as Array<{ n: number }>;
    expect(Number(long[0]!.n)).toBe(8 * 1024 * 1024);
    expect(await s.query('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await s.close();
    const bytes = await fwd.close();
    expect(bytes.fromServer).toBeGreaterThan(8_000_000);
    expect(bytes.toServer).toBeGreaterThan(8 * 1024 * 1024);
    expect(fwd.refused()).toEqual([]);
  });

  it("serves PyMySQL (the SDK's client) as the run's account, a large result included, and refuses it as anyone else", async () => {
    const fwd = await startDatasetForwarder(join(root, 'py'), MARIADB, { user: run.user });
    expect(await pymysql(fwd.socketPath, run, "SELECT REPEAT('x', 4000000), v FROM " + `\`${granted}\`.t`)).toBe('[[4000000, 3]]');
    const refused = await pymysql(fwd.socketPath, other, `SELECT pay FROM \`${secret}\`.salaries`);
    expect(refused).toBe(`refused 1045: secd: this run's dataset socket logs in only as ${run.user} (DB_USER), not as "${other.user}"`);
    await fwd.close();
  });

  it("refuses to log in as another real account, whose password the attacker knows, and nothing of that account's is readable", async () => {
    // The account works from here over TCP: only the socket stands between the run and its data.
    const direct = await connectMysql(MARIADB, other);
    expect(await direct.query(`SELECT pay FROM \`${secret}\`.salaries`)).toEqual([{ pay: 99 }]);
    await direct.close();

    const fwd = await startDatasetForwarder(join(root, 'b'), MARIADB, { user: run.user });
    const refused = await failure(connectMysql({ socketPath: fwd.socketPath }, other, secret));
    expect(refused.code).toBe('ER_ACCESS_DENIED_ERROR');
    expect(refused.message).toContain(`secd: this run's dataset socket logs in only as ${run.user} (DB_USER)`);
    // The admin account (the example config's) and guesses at it are refused the same way, before the server sees them.
    for (const guess of ['', 'root', 'password']) {
      const r = await failure(connectMysql({ socketPath: fwd.socketPath }, { user: MARIADB_ADMIN.user, password: guess }));
      expect(r.message).toContain('secd: ');
    }
    expect(fwd.refused().map((r) => r.code)).toEqual(['wrong_user', 'wrong_user', 'wrong_user', 'wrong_user']);
    // The run's own account still cannot read the other account's database.
    const own = await connectMysql({ socketPath: fwd.socketPath }, run);
    expect((await failure(own.query(`SELECT pay FROM \`${secret}\`.salaries`))).code).toBe('ER_TABLEACCESS_DENIED_ERROR');
    await own.close();
    await fwd.close();
  });

  it('refuses an SSLRequest, and a full login that sets CLIENT_SSL to hide a second one, so the name stays readable', async () => {
    const fwd = await startDatasetForwarder(join(root, 'c'), MARIADB, { user: run.user });
    const sslRequest = await rawLogin(fwd.socketPath, () => {
      const body = Buffer.alloc(32);
      body.writeUInt32LE(CLIENT_PROTOCOL_41 | CLIENT_SSL | 0x8000 | 0x80000, 0);
      body.writeUInt32LE(16 * 1024 * 1024, 4);
      body[8] = 33;
      return packet(1, body);
    });
    expect(sslRequest.closed).toBe(true);
    expect(errorText(sslRequest.reply)).toContain('secd: TLS is not offered on the dataset socket');
    const disguised = await rawLogin(fwd.socketPath, (g) => handshakeResponse(g, run.user, run.password, CLIENT_SSL));
    expect(errorText(disguised.reply)).toContain('secd: TLS is not offered on the dataset socket');
    const compressed = await rawLogin(fwd.socketPath, (g) => handshakeResponse(g, run.user, run.password, 0x20));
    expect(errorText(compressed.reply)).toContain('secd: compression is not offered');
    // The same hand-made login without those flags gets in: the refusals are the flags, not the client.
    const plain = await rawLogin(fwd.socketPath, (g) => Buffer.concat([handshakeResponse(g, run.user, run.password), packet(0, Buffer.from([0x01]))]));
    expect(plain.reply[4]).toBe(0x00);
    await fwd.close();
  });

  it('refuses COM_CHANGE_USER to another account after a valid login, and ends the session', async () => {
    const fwd = await startDatasetForwarder(join(root, 'd'), MARIADB, { user: run.user });
    const s = await connectMysql({ socketPath: fwd.socketPath }, run);
    expect(await s.query('SELECT CURRENT_USER() AS me')).toEqual([{ me: `${run.user}@%` }]);
    const changed = await failure(s.changeUser(other));
    expect(changed.message).toContain('secd: the dataset socket does not pass COM_CHANGE_USER');
    expect((await failure(s.query(`SELECT pay FROM \`${secret}\`.salaries`))).code).not.toBe('it worked');
    await s.close();
    expect(fwd.refused().map((r) => r.code)).toEqual(['command_refused']);
    // Nobody logged in as the other account through the socket.
    const admin = await adminSession();
    try {
      expect(await admin.query('SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?', [other.user])).toEqual([]);
    } finally {
      await admin.close();
    }
    await fwd.close();
  });

  it('closing it ends open sessions and removes the socket', async () => {
    const fwd = await startDatasetForwarder(join(root, 'e'), MARIADB, { user: run.user });
    const s = await connectMysql({ socketPath: fwd.socketPath }, run);
    await fwd.close();
    await expect(s.query('SELECT 1')).rejects.toThrow();
    await s.close();
    expect(existsSync(fwd.socketPath)).toBe(false);
    await expect(connectMysql({ socketPath: fwd.socketPath }, run)).rejects.toThrow();
  });

  it('a dataset server that is down fails the session at once instead of hanging', async () => {
    const fwd = await startDatasetForwarder(join(root, 'f'), { host: '127.0.0.1', port: 1 }, { user: run.user });
    await expect(connectMysql({ socketPath: fwd.socketPath }, run)).rejects.toThrow();
    await fwd.close();
  });

  it('refuses a socket path longer than unix sockets allow', async () => {
    await expect(startDatasetForwarder(join(root, 'x'.repeat(120)), MARIADB, { user: run.user })).rejects.toThrow(/shorter work_dir/);
  });
});
