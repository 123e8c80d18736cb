/**
 * A TCP port nothing listens on right now, for configs that need a fixed one before the process that
 * binds it starts (a leader's `listen:`, as in production). Another process could take it in between;
 * on one test machine that has not happened in practice.
 */
import { createServer } from 'node:net';

/** A port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}
