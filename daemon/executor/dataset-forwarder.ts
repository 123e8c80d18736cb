/**
 * The data path of one run (DESIGN §5): run containers have no network, so the node serves a unix
 * socket per run that forwards each connection to the dataset server's TCP port, and counts the
 * bytes. The socket's folder is bind-mounted read-only at /run/mysqld in the container; the socket
 * itself is mode 0666 so whatever user the image runs as can connect (only this run's container sees
 * it). It forwards to one address only, fixed by the leader: nothing else is reachable through it.
 *
 * It is not a plain byte pipe (issue 13): the dataset server sees the node's address, from which
 * other accounts may be allowed to log in. So each session must log in as the run's own account
 * (DB_USER) and stay it; mysql-packets.ts holds the rules. A refused client gets a MySQL error
 * saying why, and the connection closes before anything of the refused packet reaches the server.
 * Cost: the server's greeting is read once; afterwards server->client bytes (large SELECTs) are
 * passed as they come, and client->server bytes are read only at packet headers
 * (test/bench/dataset-forwarder.ts measures both).
 */
import { chmod, mkdir, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { checkHandshake, ClientCommandGate, errPacket, stripGreetingCapabilities, type Refusal } from './mysql-packets.js';

/** Bytes carried in each direction. */
export interface ForwardedBytes {
  fromServer: number;
  toServer: number;
}

/** A session the socket closed, for the node's log: which rule refused it. */
export interface RefusedSession {
  code: Refusal['code'];
  message: string;
}

/** A running forwarder. */
export interface DatasetForwarder {
  /** Folder holding the socket (bind it at /run/mysqld). */
  dir: string;
  /** The socket's path on the node. */
  socketPath: string;
  /** Bytes so far. */
  bytes(): ForwardedBytes;
  /** Sessions refused so far (most recent last, at most 100 kept). */
  refused(): RefusedSession[];
  /** Stop accepting, cut open connections, remove the socket; returns the final count. */
  close(): Promise<ForwardedBytes>;
}

/** Who may log in through the socket. */
export interface ForwarderAccess {
  /** The run's own MySQL account (DB_USER): the only name a session may log in with. */
  user: string;
}

/** Name of the socket in its folder (so the container sees /run/mysqld/mysqld.sock). */
export const SOCKET_NAME = 'mysqld.sock';

// sun_path holds 108 bytes with its NUL.
const MAX_SOCKET_PATH = 107;
const KEEP_REFUSED = 100;

/** Serve `<dir>/mysqld.sock`, forwarding each session that logs in as `access.user` to `target`. */
export async function startDatasetForwarder(
  dir: string,
  target: { host: string; port: number },
  access: ForwarderAccess,
): Promise<DatasetForwarder> {
  const socketPath = join(dir, SOCKET_NAME);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw new Error(`the dataset socket path ${socketPath} is longer than unix sockets allow: choose a shorter work_dir`);
  }
  if (access.user.length === 0) throw new Error('the dataset socket needs the run account (DB_USER) it admits');
  // Keep the folder if it exists: a container adopted after a node restart still has it mounted, and
  // sees the new socket appear in it. Only a stale socket file goes.
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  await rm(socketPath, { force: true });

  const counted: ForwardedBytes = { fromServer: 0, toServer: 0 };
  const refusals: RefusedSession[] = [];
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    open.add(client);
    const upstream = createConnection({ host: target.host, port: target.port });
    open.add(upstream);
    upstream.setNoDelay(true);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    const refuse = (seq: number, refusal: Refusal) => {
      refusals.push({ code: refusal.code, message: refusal.message });
      if (refusals.length > KEEP_REFUSED) refusals.shift();
      upstream.destroy();
      client.removeAllListeners('data');
      client.pause();
      client.end(errPacket(seq, refusal), () => client.destroy());
    };
    const toServer = (bytes: Buffer) => {
      if (bytes.length === 0) return;
      counted.toServer += bytes.length;
      if (!upstream.write(bytes)) client.pause();
    };
    const toClient = (bytes: Buffer) => {
      if (bytes.length > 0 && !client.write(bytes)) upstream.pause();
    };
    upstream.on('drain', () => client.resume());
    client.on('drain', () => upstream.resume());

    // Client -> server: the login packet is checked whole, then commands at their headers.
    let login: Buffer | null = Buffer.alloc(0);
    let gate: ClientCommandGate | null = null;
    client.on('data', (chunk: Buffer) => {
      if (gate !== null) {
        const { pass, refusal } = gate.feed(chunk);
        toServer(pass);
        if (refusal) refuse(1, refusal);
        return;
      }
      login = Buffer.concat([login!, chunk]);
      const check = checkHandshake(login, access.user);
      if (check.state === 'more') return;
      if (check.state === 'refused') return refuse(check.seq + 1, check.refusal);
      const rest = login.subarray(4 + check.length);
      toServer(login.subarray(0, 4 + check.length));
      login = null;
      gate = new ClientCommandGate();
      const { pass, refusal } = gate.feed(rest);
      toServer(pass);
      if (refusal) refuse(1, refusal);
    });

    // Server -> client: the greeting loses TLS and compression, then everything passes as it comes.
    let greeting: Buffer | null = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      counted.fromServer += chunk.length;
      if (greeting === null) return toClient(chunk);
      greeting = Buffer.concat([greeting, chunk]);
      if (stripGreetingCapabilities(greeting) === 'more') return;
      toClient(greeting);
      greeting = null;
    });

    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('end', () => upstream.end());
    upstream.on('end', () => {
      if (greeting !== null && greeting.length > 0) toClient(greeting);
      client.end();
    });
    client.on('close', () => {
      open.delete(client);
      upstream.end();
    });
    upstream.on('close', () => {
      open.delete(upstream);
      client.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Whatever uid the image runs as must be able to connect; only this run's container sees the folder.
  await chmod(socketPath, 0o666);

  let closing: Promise<ForwardedBytes> | null = null;
  return {
    dir,
    socketPath,
    bytes: () => ({ ...counted }),
    refused: () => [...refusals],
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of open) s.destroy();
        await stopped;
        await rm(dir, { recursive: true, force: true });
        return { ...counted };
      })();
      return closing;
    },
  };
}
