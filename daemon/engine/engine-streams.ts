/**
 * Byte and text helpers of the Docker adapter: a container's multiplexed output into one log sink,
 * the engine's JSON progress streams (build, import) read into lines and findings, and the one-folder tar that opens a volume's mount point. Plain Node streams
 * and buffers, no dockerode, so the adapter keeps only the calls.
 */
import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/** The shape of dockerode's demuxer (`docker.modem.demuxStream`): frames to stdout or stderr by their header. */
export type Demuxer = (stream: NodeJS.ReadableStream, stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream) => void;

/**
 * Hands a container's multiplexed output (8-byte frame headers) to `onLog` through `demux`, stdout and
 * stderr into one sink in arrival order. Resolves when the stream ends, closes or fails (`onError`).
 */
export function demuxOutput(
  stream: NodeJS.ReadableStream,
  demux: Demuxer,
  onLog: (chunk: Buffer) => void,
  onError: (err: Error) => void,
): Promise<void> {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (chunk.length > 0) onLog(chunk);
      done();
    },
  });
  const ended = new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', (err: Error) => {
      onError(err);
      resolve();
    });
  });
  demux(stream, sink, sink);
  return ended;
}

/** Calls `onObject` for each JSON line of an engine progress stream (build, import); resolves at its end. */
function readJsonLines(
  stream: NodeJS.ReadableStream,
  onObject: (obj: Record<string, unknown>) => void,
  onText: (line: string) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const decoder = new StringDecoder('utf8');
    let buf = '';
    const handle = (line: string) => {
      const t = line.trim();
      if (!t) return;
      let obj: unknown;
      try {
        obj = JSON.parse(t);
      } catch {
        onText(t);
        return;
      }
      if (obj && typeof obj === 'object') onObject(obj as Record<string, unknown>);
    };
    stream.on('data', (chunk: Buffer | string) => {
      buf += typeof chunk === 'string' ? chunk : decoder.write(chunk);
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        handle(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    stream.on('error', reject);
    stream.on('end', () => {
      handle(buf + decoder.end());
      resolve();
    });
  });
}

/** What a build's progress stream said besides its lines. */
export interface BuildProgress {
  /** The built image's full id (`aux.ID`); older engines only print a short one. */
  imageId: string | null;
  /** From "Successfully built <short id>". */
  shortId: string | null;
  /** The last error the engine reported; the build failed when there is one. */
  lastError: string | null;
}

/**
 * Reads a build's progress stream to its end: every line of output goes to `onLog` without its newline,
 * in order, and each error as a line `ERROR: <sentence>` of its own. Rejects when the stream fails, after
 * handing over the part of a line that had arrived.
 */
export async function readBuildProgress(stream: NodeJS.ReadableStream, onLog: (line: string) => void): Promise<BuildProgress> {
  const found: BuildProgress = { imageId: null, shortId: null, lastError: null };
  let textBuf = '';
  const emitText = (text: string, final = false) => {
    textBuf += text;
    let i: number;
    while ((i = textBuf.indexOf('\n')) >= 0) {
      onLog(textBuf.slice(0, i).replace(/\r$/, ''));
      textBuf = textBuf.slice(i + 1);
    }
    if (final && textBuf) {
      onLog(textBuf);
      textBuf = '';
    }
  };
  try {
    await readJsonLines(
      stream,
      (obj) => {
        if (typeof obj.stream === 'string') {
          emitText(obj.stream);
          const m = /^Successfully built ([0-9a-f]+)\s*$/m.exec(obj.stream);
          if (m) found.shortId = m[1]!;
        }
        if (typeof obj.status === 'string') emitText(`${obj.status}${typeof obj.progress === 'string' ? ` ${obj.progress}` : ''}\n`);
        const aux = obj.aux as { ID?: unknown } | undefined;
        if (aux && typeof aux.ID === 'string') found.imageId = aux.ID;
        const error = errorIn(obj);
        if (error !== null) {
          emitText('', true);
          found.lastError = error.trim();
          onLog(`ERROR: ${found.lastError}`);
        }
      },
      (line) => emitText(`${line}\n`),
    );
  } finally {
    emitText('', true);
  }
  return found;
}

/** Reads an import's progress stream to its end: the last error, and the image id it reported. */
export async function readImportProgress(stream: NodeJS.ReadableStream): Promise<{ lastError: string | null; reported: string | null }> {
  const found: { lastError: string | null; reported: string | null } = { lastError: null, reported: null };
  await readJsonLines(
    stream,
    (obj) => {
      const error = errorIn(obj);
      if (error !== null) found.lastError = error;
      if (typeof obj.status === 'string' && /^sha256:[0-9a-f]{64}$/.test(obj.status.trim())) found.reported = obj.status.trim();
    },
    () => {},
  );
  return found;
}

// The engine's sentence of a progress object that reports an error: errorDetail first, `error` of old.
function errorIn(obj: Record<string, unknown>): string | null {
  const detail = obj.errorDetail as { message?: unknown } | undefined;
  if (typeof detail?.message === 'string') return detail.message;
  return typeof obj.error === 'string' ? obj.error : null;
}

/**
 * A tar holding one folder entry `name/` with `mode` and `mtime`, owned by root: extracted at the folder's parent,
 * it changes the mode of what is there (a fresh volume's mount point) and nothing else.
 */
export function directoryTar(name: string, mode: number, mtime: Date): Buffer {
  const header = Buffer.alloc(512);
  const field = (value: string, offset: number, length: number) => header.write(value, offset, length, 'ascii');
  const octal = (n: number, offset: number, length: number) => field(`${n.toString(8).padStart(length - 1, '0')}\0`, offset, length);
  if (Buffer.byteLength(`${name}/`) > 100) throw new Error(`mount point name too long: ${name}`);
  header.write(`${name}/`, 0, 100, 'utf8');
  octal(mode, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(0, 124, 12);
  octal(Math.floor(mtime.getTime() / 1000), 136, 12);
  field('        ', 148, 8);
  field('5', 156, 1);
  field('ustar\0', 257, 6);
  field('00', 263, 2);
  let sum = 0;
  for (const b of header) sum += b;
  field(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  // Two zero blocks end the archive.
  return Buffer.concat([header, Buffer.alloc(1024)]);
}
