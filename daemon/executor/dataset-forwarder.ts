/**
 * The data path of one run (DESIGN §5): run containers have no network, so the node serves a unix
 * socket per run that forwards each connection to the dataset server's TCP port, and counts the
 * bytes. The socket's folder is bind-mounted read-only at /run/mysqld in the container; the socket
 * itself is mode 0666 so whatever user the image runs as can connect (only this run's container sees
 * it). It forwards to one address only, fixed by the leader: nothing else is reachable through it.
 */
import { chmod, mkdir, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

/** Bytes carried in each direction. */
export interface ForwardedBytes {
  fromServer: number;
  toServer: number;
}

/** A running forwarder. */
export interface DatasetForwarder {
  /** Folder holding the socket (bind it at /run/mysqld). */
  dir: string;
  /** The socket's path on the node. */
  socketPath: string;
  /** Bytes so far. */
  bytes(): ForwardedBytes;
  /** Stop accepting, cut open connections, remove the socket; returns the final count. */
  close(): Promise<ForwardedBytes>;
}

/** Name of the socket in its folder (so the container sees /run/mysqld/mysqld.sock). */
export const SOCKET_NAME = 'mysqld.sock';

// sun_path holds 108 bytes with its NUL.
const MAX_SOCKET_PATH = 107;

/** Serve `<dir>/mysqld.sock`, forwarding each connection to `target`. */
export async function startDatasetForwarder(dir: string, target: { host: string; port: number }): Promise<DatasetForwarder> {
  const socketPath = join(dir, SOCKET_NAME);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw new Error(`the dataset socket path ${socketPath} is longer than unix sockets allow: choose a shorter work_dir`);
  }
  // Keep the folder if it exists: a container adopted after a node restart still has it mounted, and
  // sees the new socket appear in it. Only a stale socket file goes.
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  await rm(socketPath, { force: true });

  const counted: ForwardedBytes = { fromServer: 0, toServer: 0 };
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
    client.on('data', (chunk: Buffer) => {
      counted.toServer += chunk.length;
    });
    upstream.on('data', (chunk: Buffer) => {
      counted.fromServer += chunk.length;
    });
    // Writes before the upstream connects are queued by the socket.
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
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
