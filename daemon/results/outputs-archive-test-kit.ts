/**
 * What the outputs-archive tests share: tar streams built in memory, as the engine's archive endpoint
 * would send them, and the tree an extraction left, named with its modes. Plain code (no vitest, no
 * test/ imports), since it sits among the node's sources and is compiled with them.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pack } from 'tar-stream';

/** Caps roomy enough that no test entry meets them. */
export const roomy = { maxFileBytes: 1 << 20, maxTotalBytes: 1 << 20 };

/** One tar entry: a file (the default) with its body, or a folder, link or special file. */
export type Entry = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device'; mode?: number; body?: string; linkname?: string; size?: number };

/** A finished tar stream of `entries`, in order; files default to 0644 and everything else to 0755. */
export function archive(entries: Entry[]): Readable {
  const p = pack();
  for (const e of entries) {
    const { body, ...header } = e;
    if (e.type === undefined || e.type === 'file') p.entry({ ...header, type: 'file', mode: e.mode ?? 0o644 }, body ?? '');
    else p.entry({ ...header, mode: e.mode ?? 0o755 });
  }
  p.finalize();
  return p as unknown as Readable;
}

/** Every path under `dir`, sorted, as `name mode` (folders end in `/`), without following links. */
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(dir, r));
      out.push(`${r}${st.isDirectory() ? '/' : ''} ${(st.mode & 0o7777).toString(8)}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}
