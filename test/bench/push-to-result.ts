/**
 * Benchmark: how much time does secd add to a run?
 *
 * On one project with a warm image cache it times, in one process:
 *  (a) secd: from the moment GitLab (the double) sends the push webhook to the moment the results
 *      branch exists in the repository, through a full `secd up` leader + in-process node;
 *  (b) the bare baseline: `docker build && docker run && git push` of the same outputs, by hand;
 * and prints both with the overhead. It also prints the webhook answer latency (p50/p99) of 200
 * distinct accepted pushes and 200 ignored ones, sent from a separate process as GitLab sends them,
 * to a leader whose GitLab double runs in a process of its own as a real GitLab would
 * (webhook-latency.ts `split`), with the route's own share and what held the leader's loop; the CLI's start (`secd --help`) and `secd run`
 * of the same folder against a bare `docker build -q && docker run --rm --network none`, medians of
 * 5 on a warm image (local-run-steps.ts, which also breaks a run down step by step).
 * Goals: overhead <= 0.5 s, webhook p99 < 5 ms, `secd --help` < 150 ms, `secd run` within 0.3 s of bare.
 *
 * Run: npm run build && node dist/test/bench/push-to-result.js [iterations]
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createDockerEngine } from '../../daemon/engine/docker-engine.js';
import { nodeExecutorDeps } from '../../daemon/executor/node-executor.js';
import { silentLog } from '../../scheduler/common/log.js';
import { startCluster } from '../support/cluster-harness.js';
import { bareDockerMs, cliStartMs, median as medianOf, secdRunMs } from './local-run-steps.js';
import { measureInFreshProcess, webhookLines } from './webhook-latency.js';

const run = promisify(execFile);
const ITERATIONS = Number(process.argv[2] ?? 7);
const EXAMPLE = resolve(import.meta.dirname, '../../../examples/small-docker');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
const ms = (x: number) => `${x.toFixed(0)} ms`;

async function waitForBranch(repoDir: string, known: Set<string>, timeoutMs = 120_000): Promise<string> {
  const dir = join(repoDir, 'refs', 'heads');
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    for (const name of await readdir(dir)) if (name.startsWith('secd-') && !known.has(name)) return name;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error('no results branch appeared');
}

async function main(): Promise<void> {
  if (!existsSync(join(EXAMPLE, 'Dockerfile'))) throw new Error(`missing ${EXAMPLE}`);
  const engine = createDockerEngine();
  const scratch = await mkdtemp(join(tmpdir(), 'secd-bench-'));
  // Make sure secd/base exists before timing anything (first build takes about a minute).
  const exec = nodeExecutorDeps(
    { node_id: 'bench', work_dir: join(scratch, 'w'), cache_root: join(scratch, 'c'), memory_limit_bytes: 2 ** 30, pids_limit: 4096, base_image_mirror: null },
    { max_output_file_bytes: 2 ** 20, max_output_total_bytes: 2 ** 24, max_log_bytes: 2 ** 20 },
    engine,
    silentLog,
    () => new Date(),
  );
  await exec.ensureBaseImage((line) => process.stderr.write(`${line}\n`));

  const cluster = await startCluster();
  try {
    const ada = await cluster.addResearcher({ username: 'ada', project: 'bench/small-docker' });
    const files: Record<string, string> = {};
    for (const f of ['Dockerfile', 'main.py', 'secd.yml']) files[f] = await readFile(join(EXAMPLE, f), 'utf8');
    const repoDir = cluster.gitlab.repoDir('bench/small-docker');
    const known = new Set<string>();

    // Warm-up: builds the project's image once, like a researcher's second push.
    const secdTimes: number[] = [];
    for (let i = 0; i <= ITERATIONS; i++) {
      const before = cluster.gitlab.deliveries.length;
      const { id: runId } = await ada.pushRun({ ...files, 'notes.txt': `${i}\n` }, { message: `iteration ${i}` });
      // The push's own delivery is the first after it (the previous run's results push was settled).
      const sentAt = Date.parse(cluster.gitlab.deliveries[before]!.at);
      const branch = await waitForBranch(repoDir, known);
      const took = Date.now() - sentAt;
      known.add(branch);
      await cluster.settle();
      const state = (await cluster.leader.store.get(runId))?.state;
      if (state !== 'succeeded') throw new Error(`run ${runId} ended ${state}: ${(await cluster.leader.store.get(runId))?.reason}`);
      if (i > 0) secdTimes.push(took);
      process.stderr.write(`secd iteration ${i}: ${ms(took)}${i === 0 ? ' (warm-up)' : ''}\n`);
    }

    // Baseline: the same build, run and push by hand, with the same image cache and the same remote.
    const work = join(scratch, 'baseline');
    await run('git', ['clone', '-q', cluster.gitlab.gitUrl('bench/small-docker'), work]);
    const env = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 'b', GIT_AUTHOR_EMAIL: 'b@x', GIT_COMMITTER_NAME: 'b', GIT_COMMITTER_EMAIL: 'b@x' };
    const baseTimes: number[] = [];
    for (let i = 0; i <= ITERATIONS; i++) {
      const out = join(scratch, `out-${i}`);
      await rm(out, { recursive: true, force: true });
      await import('node:fs/promises').then((fs) => fs.mkdir(out, { recursive: true, mode: 0o777 }));
      const t0 = performance.now();
      await run('docker', ['build', '-q', '-t', 'secd-bench/baseline', work]);
      await run('docker', ['run', '--rm', '--network', 'none', '-e', 'OUTPUT_PATH=/outputs', '-v', `${out}:/outputs`, 'secd-bench/baseline']);
      await run('git', ['-C', work, 'checkout', '-q', '-B', `baseline-${i}`, 'origin/main'], { env });
      await cp(out, join(work, 'outputs', `baseline-${i}`), { recursive: true });
      await run('git', ['-C', work, 'add', '-A'], { env });
      await run('git', ['-C', work, 'commit', '-q', '-m', `baseline ${i}`], { env });
      await run('git', ['-C', work, 'push', '-q', 'origin', `baseline-${i}`], { env });
      const took = performance.now() - t0;
      if (i > 0) baseTimes.push(took);
      process.stderr.write(`baseline iteration ${i}: ${ms(took)}${i === 0 ? ' (warm-up)' : ''}\n`);
    }
    await cluster.settle();

    // Webhook answer latency, sent from another process to a leader (in a fresh process) whose
    // GitLab double runs in a process of its own (webhook-latency.ts): this cluster's in-process
    // double would share its loop, and this process's garbage its GC.
    const hook = await measureInFreshProcess('split', 200);

    const secd = median(secdTimes);
    const base = median(baseTimes);
    // The local path: process start and `secd run` against bare docker, medians of 5 after one warm-up each.
    const help = medianOf(await cliStartMs(5));
    await secdRunMs(EXAMPLE, 1);
    await bareDockerMs(EXAMPLE, 1);
    const local = medianOf(await secdRunMs(EXAMPLE, 5));
    const bare = medianOf(await bareDockerMs(EXAMPLE, 5));
    const lines = [
      `push-to-result (${ITERATIONS} iterations each, medians; warm image cache; examples/small-docker)`,
      `  secd  webhook -> results branch : ${ms(secd)}   (min ${ms(Math.min(...secdTimes))}, max ${ms(Math.max(...secdTimes))})`,
      `  bare  build && run && git push  : ${ms(base)}   (min ${ms(Math.min(...baseTimes))}, max ${ms(Math.max(...baseTimes))})`,
      `  overhead                        : ${ms(secd - base)}   (goal <= 500 ms)`,
      ...webhookLines(hook, '  '),
      `  secd --help                     : ${ms(help)}   (median of 5; goal < 150 ms)`,
      `  secd run vs bare docker         : ${ms(local)} vs ${ms(bare)}, +${ms(local - bare)}   (medians of 5, warm; goal <= +300 ms)`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    await writeFile(join(scratch, 'result.txt'), lines.join('\n'));
  } finally {
    await cluster.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

await main();
