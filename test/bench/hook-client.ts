/**
 * The webhook sender of the benchmarks, run as its own process as GitLab's webhook worker is: the
 * leader's answer time is then measured without the sender sharing the leader's event loop.
 *
 * Input (stdin, JSON): { url, headers, bodies: string[], keyPrefix }. Sends the bodies one after
 * another (GitLab delivers a project's hooks in order), each with `Idempotency-Key: <prefix><i>`,
 * over one keep-alive connection, and prints { statuses, ms } as JSON on stdout.
 */
import { Agent, request } from 'node:http';

interface Job {
  url: string;
  headers: Record<string, string>;
  bodies: string[];
  keyPrefix: string;
}

function post(agent: Agent, url: URL, headers: Record<string, string>, body: string): Promise<{ status: number; ms: number }> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(body, 'utf8');
    const started = performance.now();
    const req = request(url, { method: 'POST', agent, headers: { ...headers, 'Content-Length': String(payload.length) } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const job = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Job;
  if (typeof job.url !== 'string' || !Array.isArray(job.bodies)) throw new Error('hook-client: stdin must be {url, headers, bodies, keyPrefix}');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const url = new URL(job.url);
  const statuses: number[] = [];
  const ms: number[] = [];
  for (const [i, body] of job.bodies.entries()) {
    const answer = await post(agent, url, { ...job.headers, 'Idempotency-Key': `${job.keyPrefix}${i}` }, body);
    statuses.push(answer.status);
    ms.push(answer.ms);
  }
  agent.destroy();
  process.stdout.write(JSON.stringify({ statuses, ms }));
}

await main();
