/**
 * The one webhook URL GitLab knows when two leaders serve it (docs/sysadmin.md: DNS or a virtual IP
 * in front of them), for the leader failover tests: an HTTP forwarder on 127.0.0.1 that sends each
 * request to the leader it points at now. A leader that does not answer makes the delivery fail
 * (502), as GitLab would see a dead address: GitLab does not retry, the reconciler finds the push.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** The forwarder. */
export interface WebhookVip {
  /** `http://127.0.0.1:<port>`: give GitLab `${url}/v1/hook`. */
  readonly url: string;
  /** Send what comes from now on to `base` (a leader's `http://127.0.0.1:<port>`). */
  pointAt(base: string): void;
  /** Where it points now. */
  target(): string;
  close(): Promise<void>;
}

/** Start the forwarder pointing at `base`. */
export async function startWebhookVip(base: string): Promise<WebhookVip> {
  let target = base;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const to = new URL(req.url ?? '/', target);
      const out = http.request(to, { method: req.method, headers: { ...req.headers, host: to.host } }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      out.on('error', (err) => {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`the leader at ${target} did not answer: ${err.message}`);
      });
      out.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    pointAt: (b) => void (target = b),
    target: () => target,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
