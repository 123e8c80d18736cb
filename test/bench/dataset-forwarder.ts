/**
 * Benchmark: what does the per-run dataset socket cost a run that reads a lot of data?
 *
 * Side by side, on the same MariaDB and the same table, alternating rounds:
 *  (a) a large SELECT over a direct TCP connection to the server (what a networked client would do);
 *  (b) the same SELECT through the node's forwarder socket (what a run container does);
 * with two clients: mysql2 (Node) and PyMySQL (the SDK's client, when /usr/bin/python3 has it).
 * It also measures (c) the forwarder's ceiling: raw bytes from a TCP sender, direct and through the
 * socket, with no database or client parsing in the way.
 *
 * The forwarder runs in its own process, as it does in the node daemon, so it never shares an event
 * loop with the client being timed. It admits only one account (issue 13), so both sides log in as a
 * run account the benchmark creates; it reads the greeting and the client's packet headers, and
 * passes the server's bytes as they come.
 *
 * Run: npm run build && node dist/test/bench/dataset-forwarder.js [megabytes] [rounds]
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { ForwardedBytes } from '../../daemon/executor/dataset-forwarder.js';
import { connectMysql, createMysqlDatasetServer, type MysqlEndpoint, type MysqlLogin } from '../../scheduler/policy/mysql-grants.js';
import { cleanUp, MARIADB, MARIADB_ADMIN, seedDatabase, testTag } from '../support/mariadb.js';

const MEGABYTES = Number(process.argv[2] ?? 64);
const ROUNDS = Number(process.argv[3] ?? 5);
const ROW_BYTES = 1000;
const FORWARDER_MODULE = resolve(import.meta.dirname, '../../daemon/executor/dataset-forwarder.js');

/** A forwarder in a child process: its socket, and stop() returning the bytes it carried. */
async function forwarderProcess(dir: string, target: { host: string; port: number }, user: string): Promise<{ socketPath: string; stop(): Promise<ForwardedBytes> }> {
  const code = `
    const { startDatasetForwarder } = await import(${JSON.stringify(FORWARDER_MODULE)});
    const f = await startDatasetForwarder(${JSON.stringify(dir)}, ${JSON.stringify(target)}, { user: ${JSON.stringify(user)} });
    console.log(f.socketPath);
    process.stdin.once('data', async () => { console.log(JSON.stringify(await f.close())); process.exit(0); });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.done) throw new Error('the forwarder process did not start');
  return {
    socketPath: String(first.value),
    async stop() {
      child.stdin.write('stop\n');
      const last = await lines.next();
      return JSON.parse(String(last.value)) as ForwardedBytes;
    },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
const mbps = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(0);

// The socket admits only the run's own account, so both sides of the comparison use one (created below).
let runLogin: MysqlLogin = MARIADB_ADMIN;

async function timeSelect(endpoint: MysqlEndpoint, db: string): Promise<number> {
  const s = await connectMysql(endpoint, runLogin, db);
  const t0 = performance.now();
  const rows = await s.query('SELECT id, payload FROM big');
  const ms = performance.now() - t0;
  await s.close();
  if (rows.length === 0) throw new Error('empty result');
  return ms;
}

function timePyMysql(where: Record<string, string | number>, db: string): Promise<number | null> {
  const script = `
import json, sys, time, pymysql
args = json.loads(sys.argv[1])
c = pymysql.connect(user=args.pop("user"), password=args.pop("password"), database=args.pop("db"), **args)
t0 = time.perf_counter()
with c.cursor() as cur:
    cur.execute("SELECT id, payload FROM big")
    n = len(cur.fetchall())
print((time.perf_counter() - t0) * 1000)
`;
  const args = JSON.stringify({ ...where, user: runLogin.user, password: runLogin.password, db });
  return new Promise((done) => {
    const child = spawn('/usr/bin/python3', ['-c', script, args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', () => done(null));
    child.on('close', (status) => done(status === 0 ? Number(out.trim()) : null));
  });
}

/** Read `bytes` from a sender, over `connect`; returns ms. */
function timeRaw(connect: () => ReturnType<typeof createConnection>, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let got = 0;
    const s = connect();
    s.on('data', (c: Buffer) => {
      got += c.length;
    });
    s.on('end', () => (got >= bytes ? resolve(performance.now() - t0) : reject(new Error(`short read: ${got}`))));
    s.on('error', reject);
  });
}

async function main(): Promise<void> {
  const tag = testTag();
  const db = `secdb_${tag}_bench`;
  const scratch = await mkdtemp(join(tmpdir(), 'secd-bench-fwd-'));
  try {
    await measure(db, scratch, `secdb${tag}_run`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
    await cleanUp([db], `secdb${tag}_`);
  }
}

async function measure(db: string, scratch: string, user: string): Promise<void> {
  const rows = Math.round((MEGABYTES * 1e6) / ROW_BYTES);
  process.stdout.write(`seeding ${db}: ${rows} rows of ${ROW_BYTES} bytes (${MEGABYTES} MB)\n`);
  await seedDatabase(db, [
    'CREATE TABLE {db}.big (id INT PRIMARY KEY, payload VARCHAR(1000))',
    // MariaDB's SEQUENCE engine: seq_1_to_N is a virtual table of 1..N in any database.
    `INSERT INTO {db}.big SELECT seq, REPEAT(CHAR(97 + seq % 26), ${ROW_BYTES}) FROM {db}.seq_1_to_${rows}`,
  ]);
  const admin = createMysqlDatasetServer(MARIADB, MARIADB_ADMIN);
  runLogin = { user, password: `bench-${user}-0123456789` };
  await admin.createRunUser({ ...runLogin, databases: [db], maxConnections: 4 });
  await admin.close();
  const fwd = await forwarderProcess(join(scratch, 'db'), MARIADB, user);
  let forwardedSelects = 0;
  let resultBytes = 0;
  try {
    // mysql2
    await timeSelect(MARIADB, db);
    await timeSelect({ socketPath: fwd.socketPath }, db);
    forwardedSelects++;
    const direct: number[] = [];
    const forwarded: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      direct.push(await timeSelect(MARIADB, db));
      forwarded.push(await timeSelect({ socketPath: fwd.socketPath }, db));
      forwardedSelects++;
    }
    const report = (label: string, d: number[], f: number[]) => {
      const md = median(d);
      const mf = median(f);
      process.stdout.write(
        `${label.padEnd(28)} direct TCP ${md.toFixed(0).padStart(6)} ms (${mbps(resultBytes, md)} MB/s)   ` +
          `through the socket ${mf.toFixed(0).padStart(6)} ms (${mbps(resultBytes, mf)} MB/s)   ` +
          `cost ${(((mf - md) / md) * 100).toFixed(1)}%\n`,
      );
    };
    const results: Array<[string, number[], number[]]> = [['mysql2 (Node)', direct, forwarded]];

    // PyMySQL, the SDK's client.
    const pyDirect: number[] = [];
    const pyForwarded: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const d = await timePyMysql({ host: MARIADB.host, port: MARIADB.port }, db);
      const f = await timePyMysql({ unix_socket: fwd.socketPath }, db);
      if (d === null || f === null) break;
      pyDirect.push(d);
      pyForwarded.push(f);
      forwardedSelects++;
    }
    const carried = await fwd.stop();
    resultBytes = carried.fromServer / forwardedSelects;
    process.stdout.write(`\nlarge SELECT, ${(resultBytes / 1e6).toFixed(1)} MB on the wire, median of ${ROUNDS} alternating rounds:\n`);
    for (const [label, d, f] of results) report(label, d, f);
    if (pyDirect.length > 0) report('PyMySQL (secd.connect)', pyDirect, pyForwarded);
    else process.stdout.write('PyMySQL: skipped (/usr/bin/python3 without pymysql)\n');
  } catch (err) {
    await fwd.stop().catch(() => undefined);
    throw err;
  }

  // The forwarder's ceiling: raw bytes, no database, no parsing.
  const RAW = 1024 * 1024 * 1024;
  const chunk = Buffer.alloc(1024 * 1024, 120);
  const sender = createServer((s) => {
    let sent = 0;
    const pump = () => {
      while (sent < RAW) {
        sent += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  await new Promise<void>((r) => sender.listen(0, '127.0.0.1', () => r()));
  const port = (sender.address() as { port: number }).port;
  const raw = await forwarderProcess(join(scratch, 'raw'), { host: '127.0.0.1', port }, user);
  const rd: number[] = [];
  const rf: number[] = [];
  for (let i = 0; i < 3; i++) {
    rd.push(await timeRaw(() => createConnection({ host: '127.0.0.1', port }), RAW));
    rf.push(await timeRaw(() => createConnection({ path: raw.socketPath }), RAW));
  }
  process.stdout.write(
    `\nraw stream, 1 GiB, median of 3:   direct TCP ${mbps(RAW, median(rd))} MB/s   through the socket ${mbps(RAW, median(rf))} MB/s\n`,
  );
  await raw.stop();
  sender.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
