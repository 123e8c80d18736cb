/**
 * Byte and text helpers of the Docker adapter: the engine's JSON progress streams (build, import) and
 * the one-folder tar that opens a volume's mount point. Plain Node streams and buffers, no dockerode,
 * so the adapter keeps only the calls.
 */
import { StringDecoder } from 'node:string_decoder';

/** Calls `onObject` for each JSON line of an engine progress stream (build, import); resolves at its end. */
export function readJsonLines(
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

/**
 * A tar holding one folder entry `name/` with `mode`, owned by root: extracted at the folder's parent,
 * it changes the mode of what is there (a fresh volume's mount point) and nothing else.
 */
export function directoryTar(name: string, mode: number): Buffer {
  const header = Buffer.alloc(512);
  const field = (value: string, offset: number, length: number) => header.write(value, offset, length, 'ascii');
  const octal = (n: number, offset: number, length: number) => field(`${n.toString(8).padStart(length - 1, '0')}\0`, offset, length);
  if (Buffer.byteLength(`${name}/`) > 100) throw new Error(`mount point name too long: ${name}`);
  header.write(`${name}/`, 0, 100, 'utf8');
  octal(mode, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(0, 124, 12);
  octal(Math.floor(Date.now() / 1000), 136, 12);
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
