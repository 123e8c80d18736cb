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
 * Run: npm run build && node dist/test/bench/dataset-forwarder.js [megabytes] [rounds]
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDatasetForwarder } from '../../daemon/dataset-forwarder.js';
import { connectMysql, type MysqlEndpoint } from '../../scheduler/mysql-grants.js';
import { cleanUp, MARIADB, MARIADB_ADMIN, seedDatabase, testTag } from '../support/mariadb.js';

const MEGABYTES = Number(process.argv[2] ?? 64);
const ROUNDS = Number(process.argv[3] ?? 5);
const ROW_BYTES = 1000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
const mbps = (bytes: number, ms: number) => (bytes / 1e6 / (ms / 1000)).toFixed(0);

async function timeSelect(endpoint: MysqlEndpoint, db: string): Promise<number> {
  const s = await connectMysql(endpoint, MARIADB_ADMIN, db);
  const t0 = performance.now();
  const rows = await s.query('SELECT id, payload FROM big');
  const ms = performance.now() - t0;
  await s.close();
  if (rows.length === 0) throw new Error('empty result');
  return ms;
}

function timePyMysql(where: Record<string, string | number>, db: string): number | null {
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
  const args = JSON.stringify({ ...where, user: MARIADB_ADMIN.user, password: MARIADB_ADMIN.password, db });
  const run = spawnSync('/usr/bin/python3', ['-c', script, args], { encoding: 'utf8' });
  if (run.status !== 0) return null;
  return Number(run.stdout.trim());
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
  const db = `secdb_${testTag()}_bench`;
  const rows = Math.round((MEGABYTES * 1e6) / ROW_BYTES);
  process.stdout.write(`seeding ${db}: ${rows} rows of ${ROW_BYTES} bytes (${MEGABYTES} MB)\n`);
  await seedDatabase(db, [
    'CREATE TABLE {db}.big (id INT PRIMARY KEY, payload VARCHAR(1000))',
    // MariaDB's SEQUENCE engine: seq_1_to_N is a virtual table of 1..N in any database.
    `INSERT INTO {db}.big SELECT seq, REPEAT(CHAR(97 + seq % 26), ${ROW_BYTES}) FROM {db}.seq_1_to_${rows}`,
  ]);
  const scratch = await mkdtemp(join(tmpdir(), 'secd-bench-fwd-'));
  const fwd = await startDatasetForwarder(join(scratch, 'db'), MARIADB);
  try {
    // mysql2
    await timeSelect(MARIADB, db);
    await timeSelect({ socketPath: fwd.socketPath }, db);
    const direct: number[] = [];
    const forwarded: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      direct.push(await timeSelect(MARIADB, db));
      forwarded.push(await timeSelect({ socketPath: fwd.socketPath }, db));
    }
    const before = fwd.bytes().fromServer;
    await timeSelect({ socketPath: fwd.socketPath }, db);
    const resultBytes = fwd.bytes().fromServer - before;
    const report = (label: string, d: number[], f: number[]) => {
      const md = median(d);
      const mf = median(f);
      process.stdout.write(
        `${label.padEnd(28)} direct TCP ${md.toFixed(0).padStart(6)} ms (${mbps(resultBytes, md)} MB/s)   ` +
          `through the socket ${mf.toFixed(0).padStart(6)} ms (${mbps(resultBytes, mf)} MB/s)   ` +
          `cost ${(((mf - md) / md) * 100).toFixed(1)}%\n`,
      );
    };
    process.stdout.write(`\nlarge SELECT, ${(resultBytes / 1e6).toFixed(1)} MB on the wire, median of ${ROUNDS} alternating rounds:\n`);
    report('mysql2 (Node)', direct, forwarded);

    // PyMySQL, the SDK's client.
    const pyDirect: number[] = [];
    const pyForwarded: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const d = timePyMysql({ host: MARIADB.host, port: MARIADB.port }, db);
      const f = timePyMysql({ unix_socket: fwd.socketPath }, db);
      if (d === null || f === null) break;
      pyDirect.push(d);
      pyForwarded.push(f);
    }
    if (pyDirect.length > 0) report('PyMySQL (secd.connect)', pyDirect, pyForwarded);
    else process.stdout.write('PyMySQL: skipped (/usr/bin/python3 without pymysql)\n');
  } finally {
    await fwd.close();
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
  const raw = await startDatasetForwarder(join(scratch, 'raw'), { host: '127.0.0.1', port });
  const rd: number[] = [];
  const rf: number[] = [];
  for (let i = 0; i < 3; i++) {
    rd.push(await timeRaw(() => createConnection({ host: '127.0.0.1', port }), RAW));
    rf.push(await timeRaw(() => createConnection({ path: raw.socketPath }), RAW));
  }
  process.stdout.write(
    `\nraw stream, 1 GiB, median of 3:   direct TCP ${mbps(RAW, median(rd))} MB/s   through the socket ${mbps(RAW, median(rf))} MB/s\n`,
  );
  await raw.close();
  sender.close();
  await rm(scratch, { recursive: true, force: true });
  await cleanUp([db]);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
