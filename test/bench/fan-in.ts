/**
 * Benchmark: what 1,000 nodes reporting every 2 s cost the leader.
 *
 * Starts a real `secd leader` process (dist/daemon/cli.js), issues 1,000 node tokens in its
 * database, and connects 1,000 simulated nodes from this process over real websockets (the same
 * client `secd node` uses): each says hello with 8 GPUs, then sends a status with 8 GPU samples and
 * host figures every 2 s, spread evenly over the period. Once every node is up, it measures the
 * leader process's CPU time (utime + stime from /proc) and RSS over a window, and the time of
 * GET /api/v1/nodes (what `secd status` and the status page read). Goal: < 25 % of a core, < 300 MB.
 *
 * Run: npm run build && node dist/test/bench/fan-in.js [nodes] [window seconds] [interval ms]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connectClient, type ClientSocket } from '../../scheduler/common/websocket.js';
import { encodeMessage, PROTOCOL_VERSION, type StatusMessage } from '../../scheduler/contract/protocol.js';
import { freePort } from '../support/free-port.js';
import { withStateFile } from '../support/state-file.js';

const NODES = Number(process.argv[2] ?? 1000);
const WINDOW_S = Number(process.argv[3] ?? 30);
const INTERVAL_MS = Number(process.argv[4] ?? 2000);
const GPUS = 8;
const CLI = resolve(import.meta.dirname, '../../daemon/cli.js');
const CLOCK_TICKS = 100; // USER_HZ on Linux

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => done({ status: res.statusCode ?? 0, body }));
      })
      .on('error', fail);
  });
}

/** CPU seconds (user + system) and RSS bytes of a process, from /proc. */
function usage(pid: number): { cpuS: number; rssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuS = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return { cpuS, rssBytes: rssKb * 1024 };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'secd-fan-in-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const leaderYml = join(root, 'leader.yml');
  await writeFile(
    leaderYml,
    [`listen: 127.0.0.1:${port}`, `data_dir: ${join(root, 'data')}`, 'gitlab:', '  url: http://127.0.0.1:9', '  token: x', '  webhook_secret: y'].join('\n'),
  );
  // Tokens straight into the database (what `secd admin node-token` does, 1,000 times).
  const tokens = Array.from({ length: NODES }, (_, i) => ({ id: `node-${String(i).padStart(4, '0')}`, token: '' }));
  await withStateFile(join(root, 'data', 'secd.db'), (stores) =>
    stores.transaction(async (s) => {
      for (const t of tokens) t.token = await s.nodes.issueToken(t.id);
    }),
  );

  const leader = spawn(process.execPath, [CLI, 'leader', '--config', leaderYml], {
    env: { ...process.env, SECD_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const pid = leader.pid!;
  try {
    for (let i = 0; ; i++) {
      if ((await get(`${url}/healthz`).catch(() => null))?.status === 200) break;
      if (i > 100) throw new Error('the leader did not start');
      await sleep(100);
    }
    const idle = usage(pid);
    console.log(`leader pid ${pid}: idle RSS ${(idle.rssBytes / 2 ** 20).toFixed(1)} MiB`);

    let statusesSent = 0;
    const sockets: ClientSocket[] = [];
    const timers: NodeJS.Timeout[] = [];
    let welcomed = 0;
    let stopping = false;
    let unexpectedCloses = 0;
    const connectOne = (t: { id: string; token: string }, n: number) => {
      const gpus = Array.from({ length: GPUS }, (_, g) => ({ uuid: `GPU-${t.id}-${g}`, index: g }));
      let socket: ClientSocket | null = null;
      const status = (): StatusMessage => ({
        type: 'status',
        at: new Date().toISOString(),
        gpus: gpus.map((g) => ({
          ...g,
          utilization_pct: Math.round(Math.random() * 100),
          memory_used_bytes: Math.round(Math.random() * 80 * 2 ** 30),
          memory_total_bytes: 80 * 2 ** 30,
          temperature_c: 30 + Math.round(Math.random() * 50),
          power_w: Math.round(Math.random() * 70000) / 100,
          processes: Math.random() < 0.5 ? 1 : 0,
          foreign_busy: false,
        })),
        host: { load: Math.random() * 32, cpus: 64, memory_total_bytes: 2 ** 39, memory_free_bytes: 2 ** 38, disk_total_bytes: 2 ** 42, disk_free_bytes: 2 ** 41 },
      });
      socket = connectClient(
        { url: `${url.replace('http', 'ws')}/v1/nodes`, headers: { authorization: `Bearer ${t.token}`, 'x-secd-node': t.id } },
        {
          open: () =>
            socket!.send(
              encodeMessage({
                type: 'hello',
                protocol: PROTOCOL_VERSION,
                node_id: t.id,
                hostname: `${t.id}.cluster`,
                inventory: { gpus: gpus.map((g) => ({ ...g, name: 'NVIDIA H100 80GB HBM3', memory_total_bytes: 80 * 2 ** 30 })), cpus: 64, memory_bytes: 2 ** 39 },
                max_cpu_runs: 2,
                runs: [],
              }),
            ),
          message: (text) => {
            if (!text.includes('"welcome"')) return;
            welcomed++;
            // Each node reports on its own phase of the period, as independent daemons would.
            const offset = (n * INTERVAL_MS) / NODES;
            timers.push(
              setTimeout(() => {
                const tick = () => {
                  socket!.send(encodeMessage(status()));
                  statusesSent++;
                };
                tick();
                timers.push(setInterval(tick, INTERVAL_MS));
              }, offset),
            );
          },
          closed: (why) => {
            if (!stopping) {
              unexpectedCloses++;
              if (unexpectedCloses <= 5) console.error(`${t.id} closed: ${why}`);
            }
          },
        },
      );
      sockets.push(socket);
    };
    const t0 = Date.now();
    for (const [n, t] of tokens.entries()) {
      connectOne(t, n);
      if (n % 50 === 49) await sleep(20);
    }
    while (welcomed < NODES) {
      if (Date.now() - t0 > 60_000) throw new Error(`only ${welcomed} of ${NODES} nodes were welcomed`);
      await sleep(100);
    }
    console.log(`${NODES} nodes connected and welcomed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    // Let every node reach its reporting rhythm before measuring.
    await sleep(INTERVAL_MS * 2);

    const before = usage(pid);
    const sentBefore = statusesSent;
    const w0 = Date.now();
    let maxRss = before.rssBytes;
    while (Date.now() - w0 < WINDOW_S * 1000) {
      await sleep(1000);
      maxRss = Math.max(maxRss, usage(pid).rssBytes);
    }
    const after = usage(pid);
    const wallS = (Date.now() - w0) / 1000;
    const cpuPct = ((after.cpuS - before.cpuS) / wallS) * 100;
    const rate = (statusesSent - sentBefore) / wallS;

    const apiTimes: number[] = [];
    let nodesListed = 0;
    let up = 0;
    for (let i = 0; i < 5; i++) {
      const a0 = process.hrtime.bigint();
      const res = await get(`${url}/api/v1/nodes`);
      apiTimes.push(Number(process.hrtime.bigint() - a0) / 1e6);
      const list = (JSON.parse(res.body) as { nodes: Array<{ state: string }> }).nodes;
      nodesListed = list.length;
      up = list.filter((n) => n.state === 'up').length;
    }
    apiTimes.sort((a, b) => a - b);

    console.log('');
    console.log(`fan-in: ${NODES} nodes x ${GPUS} GPUs, one status every ${INTERVAL_MS} ms each`);
    console.log(`  status messages delivered: ${rate.toFixed(0)}/s (expected ${((NODES * 1000) / INTERVAL_MS).toFixed(0)}/s)`);
    console.log(`  leader CPU over ${wallS.toFixed(0)} s: ${cpuPct.toFixed(1)} % of one core   (goal < 25 %)`);
    console.log(`  leader RSS: ${(after.rssBytes / 2 ** 20).toFixed(1)} MiB at the end, ${(maxRss / 2 ** 20).toFixed(1)} MiB at most   (goal < 300 MB)`);
    console.log(`  GET /api/v1/nodes (${nodesListed} nodes, ${up} up): median ${apiTimes[2]!.toFixed(1)} ms, max ${apiTimes[4]!.toFixed(1)} ms`);

    console.log(`  connections closed unexpectedly: ${unexpectedCloses}`);
    stopping = true;
    for (const t of timers) clearTimeout(t);
    for (const s of sockets) s.close();
  } finally {
    leader.kill('SIGKILL');
    await new Promise((r) => leader.once('exit', r));
    await rm(root, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
