/**
 * The websocket adapter: the only file that imports `ws`. The leader attaches the node endpoint to its
 * HTTP server's `upgrade` event (one port for the API, the status page and the nodes); the node opens
 * one client connection. Both ends see plain text frames through small interfaces, so the registry
 * and the node agent never touch the library.
 *
 * The leader's verdict on an upgrade may be async (the token is checked against the state
 * database): the upgrade waits for it. A request whose socket went away meanwhile is dropped; one
 * that arrives to an endpoint closed meanwhile is refused as shutting down; a verdict that fails (the
 * database is unreachable) is answered 503 and logged, never let in.
 */
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { errorText } from './errors.js';
import type { Log } from './log.js';
import { MAX_MESSAGE_BYTES } from '../contract/protocol.js';

/** One accepted node connection, as the leader's registry sees it. */
export interface ServerSocket {
  /** Who connected (address:port), for logs. */
  readonly remote: string;
  send(text: string): void;
  /** Close politely (the node will reconnect unless told otherwise). */
  close(code: number, reason: string): void;
  /** Drop the connection at once (a silent peer). */
  terminate(): void;
}

/** What the leader does with frames of one connection. */
export interface ServerSocketHandlers {
  message(text: string): void;
  close(code: number, reason: string): void;
}

/** The verdict on an upgrade request, before any websocket exists. */
export type UpgradeVerdict = { ok: true; nodeId: string } | { ok: false; status: 400 | 401 | 503; message: string };

/** What the node endpoint needs from the leader. */
export interface NodeEndpointOptions {
  path: string;
  log: Log;
  /** Check the request's credentials (headers as Node gives them); called once per upgrade. The upgrade waits for a promise. */
  authenticate(headers: IncomingMessage['headers'], remote: string): UpgradeVerdict | Promise<UpgradeVerdict>;
  /** A node was let in: return what to do with its frames. */
  accept(nodeId: string, socket: ServerSocket): ServerSocketHandlers;
}

/** The running endpoint. */
export interface NodeEndpoint {
  /** Close every node connection (going away) and stop accepting new ones. */
  close(): Promise<void>;
}

function remoteOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  const host = socket.remoteAddress ?? 'unknown';
  return `${host.includes(':') ? `[${host}]` : host}:${socket.remotePort ?? 0}`;
}

function textOf(data: WebSocket.RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

function refuse(socket: Duplex, status: 400 | 401 | 404 | 503, message: string): void {
  if (socket.destroyed) return;
  const text = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 503: 'Service Unavailable' }[status];
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  socket.destroy();
}

/** Serve websocket upgrades at `opts.path` on `server` (checked credentials first, 401 otherwise). */
export function attachNodeEndpoint(server: HttpServer | HttpsServer, opts: NodeEndpointOptions): NodeEndpoint {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false });
  let closed = false;

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== opts.path) {
      // Another handler may serve this path (the status page's live updates); if none does, say so.
      if (server.listenerCount('upgrade') <= 1) refuse(socket, 404, `no websocket endpoint at ${path}`);
      return;
    }
    const remote = remoteOf(req.socket);
    if (closed) return refuse(socket, 400, 'the leader is shutting down');
    socket.on('error', () => undefined);
    void Promise.resolve()
      .then(() => opts.authenticate(req.headers, remote))
      .then(
        (verdict) => {
          // The peer gave up, or the endpoint closed, while the verdict was on its way.
          if (socket.destroyed) return;
          if (closed) return refuse(socket, 400, 'the leader is shutting down');
          upgrade(req, socket, head, remote, verdict);
        },
        (err: unknown) => {
          // 503, as a standby answers: the node tries again (or another leader) instead of stopping.
          opts.log.error({ err: errorText(err), remote }, "could not check a node's credentials");
          refuse(socket, 503, 'the leader could not check the node token; try again');
        },
      )
      .catch((err: unknown) => {
        opts.log.error({ err: errorText(err), remote }, 'could not upgrade a node connection');
        socket.destroy();
      });
  };

  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, remote: string, verdict: UpgradeVerdict) => {
    if (!verdict.ok) return refuse(socket, verdict.status, verdict.message);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const handle: ServerSocket = {
        remote,
        send(text) {
          if (ws.readyState === WebSocket.OPEN) ws.send(text);
        },
        close(code, reason) {
          ws.close(code, reason.slice(0, 120));
        },
        terminate() {
          ws.terminate();
        },
      };
      let handlers: ServerSocketHandlers;
      try {
        handlers = opts.accept(verdict.nodeId, handle);
      } catch (err) {
        opts.log.error({ err, node: verdict.nodeId, remote }, 'could not accept a node connection');
        ws.terminate();
        return;
      }
      ws.on('message', (data, isBinary) => {
        if (isBinary) {
          opts.log.warn({ node: verdict.nodeId, remote }, 'dropped a binary frame: the protocol is JSON text');
          return;
        }
        try {
          handlers.message(textOf(data));
        } catch (err) {
          // A bug handling one message must not take the leader down with every other node.
          opts.log.error({ err, node: verdict.nodeId, remote }, 'failed to handle a node message');
        }
      });
      ws.on('error', (err) => opts.log.warn({ node: verdict.nodeId, remote, err: err.message }, 'node connection error'));
      ws.on('close', (code, reason) => handlers.close(code, reason.toString('utf8')));
    });
  };
  server.on('upgrade', onUpgrade);

  return {
    async close() {
      closed = true;
      server.off('upgrade', onUpgrade);
      const done = [...wss.clients].map(
        (ws) =>
          new Promise<void>((resolve) => {
            ws.once('close', () => resolve());
            ws.close(1001, 'leader shutting down');
            // A peer that does not answer the close handshake is dropped.
            setTimeout(() => {
              ws.terminate();
              resolve();
            }, 1000).unref();
          }),
      );
      await Promise.all(done);
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/** A node's connection to the leader. */
export interface ClientSocket {
  send(text: string): void;
  close(code?: number, reason?: string): void;
}

/** What happens on a client connection; exactly one `closed` follows every connect. */
export interface ClientSocketHandlers {
  open(): void;
  message(text: string): void;
  /** The connection ended (or never opened): `why` says how, for the log. */
  closed(why: string): void;
}

/** How a node connects. */
export interface ClientOptions {
  url: string;
  headers: Record<string, string>;
  /** PEM certificates to trust for wss:// (all of them: pass the system's too to keep them). */
  ca?: string | string[];
  handshakeTimeoutMs?: number;
  /** Ping the leader this often; a leader that does not answer within the next period is dropped. */
  keepAliveMs?: number;
}

/** Open one connection to the leader; reconnecting is the caller's job. */
export function connectClient(opts: ClientOptions, handlers: ClientSocketHandlers): ClientSocket {
  const ws = new WebSocket(opts.url, {
    headers: opts.headers,
    handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
    maxPayload: MAX_MESSAGE_BYTES,
    perMessageDeflate: false,
    ...(opts.ca ? { ca: opts.ca } : {}),
  });
  let why = 'connection closed';
  let done = false;
  let alive = true;
  let keepAlive: NodeJS.Timeout | undefined;
  const finish = () => {
    if (done) return;
    done = true;
    clearInterval(keepAlive);
    handlers.closed(why);
  };
  ws.on('open', () => {
    if (opts.keepAliveMs) {
      keepAlive = setInterval(() => {
        if (!alive) {
          why = `the leader did not answer a ping within ${opts.keepAliveMs} ms`;
          ws.terminate();
          return;
        }
        alive = false;
        ws.ping();
      }, opts.keepAliveMs);
      keepAlive.unref();
    }
    handlers.open();
  });
  ws.on('pong', () => {
    alive = true;
  });
  ws.on('message', (data, isBinary) => {
    alive = true;
    if (isBinary) return;
    try {
      handlers.message(textOf(data));
    } catch (err) {
      // A bug handling one message must not stop the node's runs; the message is dropped.
      why = `failed to handle a message: ${errorText(err)}`;
      ws.terminate();
    }
  });
  ws.on('unexpected-response', (_req, res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      if (body.length < 500) body += chunk;
    });
    res.on('end', () => {
      why = `the leader answered ${res.statusCode}: ${body.trim() || res.statusMessage || ''}`;
      ws.terminate();
      finish();
    });
    res.on('error', () => finish());
  });
  ws.on('error', (err) => {
    why = err.message;
  });
  ws.on('close', (code, reason) => {
    if (why === 'connection closed') why = `connection closed (${code}${reason.length ? ` ${reason.toString('utf8')}` : ''})`;
    finish();
  });
  return {
    send(text) {
      if (ws.readyState === WebSocket.OPEN) ws.send(text);
    },
    close(code = 1000, reason = '') {
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(code, reason);
    },
  };
}
