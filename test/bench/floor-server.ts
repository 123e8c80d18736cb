/**
 * The floor under the webhook benchmark: a bare node:http server in its own process that reads each
 * POST's body, parses it as JSON and answers 200 with a small JSON body, nothing else. The same
 * sender (hook-client.ts) timing it at the same moment says what answering costs on this machine
 * under its present load (process scheduling on shared cores, loopback, the sender's own loop):
 * the part of the leader's figure that is not secd's.
 *
 * Prints `{"url": ...}` on stdout once listening; serves until SIGTERM or its stdin closes.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let answer: string;
    try {
      JSON.parse(Buffer.concat(chunks).toString('utf8'));
      answer = '{"action":"ignored","reason":"floor server"}';
    } catch {
      answer = '{"error":"malformed"}';
    }
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(answer) });
    res.end(answer);
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/hook` })}\n`);
});
const stop = () => {
  server.close();
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
