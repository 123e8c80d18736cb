/**
 * Progress of an image build read from debootstrap's and apt's own output: packages fetched, bytes
 * so far of how many, packages set up. A torch image is hundreds of packages and half a gigabyte;
 * the person waiting should see it move, not one line a minute.
 *
 * What each tool says, and what is read from it:
 * - debootstrap: `I: Retrieving <pkg> <version>` per download, no size (the caller may measure the
 *   bytes that landed in the package cache, `bytesOnDisk`).
 * - apt-get: `Need to get 12.3 MB/420 MB of archives.` (to download / total; one figure when
 *   nothing is cached), `0 upgraded, 510 newly installed, ...`, `Get:12 <uri> <suite>/<component>
 *   <arch> <pkg> <arch> <version> [56.9 MB]` per download, `Unpacking <pkg> (<version>) ...` and
 *   `Setting up <pkg> (<version>) ...` per package installed.
 *   apt's units are decimal (kB = 1000 B) and its figures use `,` as a thousands separator.
 */

/** What has happened so far. */
export interface PackageProgressState {
  fetched: number;
  fetchedBytes: number;
  /** From apt's "Need to get": what this run downloads (null until apt says). */
  toFetchBytes: number | null;
  /** From apt's "N newly installed" (null until apt says). */
  toInstall: number | null;
  unpacked: number;
  setUp: number;
}

/** Reads lines; `observe` answers a summary line when one is due, else null. */
export interface PackageProgress {
  observe(line: string): string | null;
  state(): PackageProgressState;
}

const UNITS: Record<string, number> = { B: 1, kB: 1e3, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };

/** `56.9 MB`, `1,234 kB`, `512 B` in bytes; null when it is not an apt size. */
export function parseAptSize(text: string): number | null {
  const m = /^([\d,]+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB)$/.exec(text.trim());
  if (!m) return null;
  return Math.round(Number(m[1]!.replace(/,/g, '')) * UNITS[m[2]!]!);
}

/** Bytes as people read them: `312 MB`, `1.4 GB`. */
export function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  if (bytes >= 1e6) return `${Math.round(bytes / 1e6)} MB`;
  if (bytes >= 1e3) return `${Math.round(bytes / 1e3)} kB`;
  return `${bytes} B`;
}

/** A tracker that summarises every `every` packages fetched or set up, and once apt has fetched all. */
export function createPackageProgress(opts: { every?: number; bytesOnDisk?: () => number } = {}): PackageProgress {
  const every = opts.every ?? 20;
  const s: PackageProgressState = { fetched: 0, fetchedBytes: 0, toFetchBytes: null, toInstall: null, unpacked: 0, setUp: 0 };
  let measured = false;
  const fetchedLine = () => {
    const bytes = measured ? opts.bytesOnDisk?.() : s.fetchedBytes;
    if (bytes === undefined) return `I: ${s.fetched} packages fetched so far`;
    const of = s.toFetchBytes !== null ? ` of ${formatBytes(s.toFetchBytes)}` : '';
    return `I: ${s.fetched} packages fetched, ${formatBytes(bytes)}${of} so far`;
  };
  return {
    state: () => ({ ...s, fetchedBytes: measured ? (opts.bytesOnDisk?.() ?? 0) : s.fetchedBytes }),
    observe(line) {
      let m = /^I: Retrieving (\S+) /.exec(line);
      if (m) {
        measured = true;
        s.fetched += 1;
        return s.fetched % every === 0 ? fetchedLine() : null;
      }
      m = /^Get:\d+ \S+ \S+ \S+ (\S+) \S+ \S+ \[([^\]]+)\]/.exec(line);
      if (m) {
        s.fetched += 1;
        s.fetchedBytes += parseAptSize(m[2]!) ?? 0;
        return s.fetched % every === 0 ? fetchedLine() : null;
      }
      m = /^Need to get ([\d,.]+ [kMGT]?B)(?:\/([\d,.]+ [kMGT]?B))? of archives/.exec(line);
      if (m) {
        measured = false;
        s.fetched = 0;
        s.fetchedBytes = 0;
        s.toFetchBytes = parseAptSize(m[1]!);
        return null;
      }
      m = /^\d+ upgraded, (\d+) newly installed/.exec(line);
      if (m) {
        s.toInstall = Number(m[1]);
        return null;
      }
      // apt-get update says "Fetched" too, of package lists: only an install's counts.
      if (/^Fetched [\d,.]+ [kMGT]?B in /.test(line)) return s.toFetchBytes === null ? null : `I: fetched ${s.fetched} packages, ${formatBytes(s.fetchedBytes)}; unpacking`;
      const of = s.toInstall !== null ? ` of ${s.toInstall}` : '';
      if (/^Unpacking \S+ \(/.test(line)) {
        s.unpacked += 1;
        return s.unpacked % (every * 2) === 0 ? `I: ${s.unpacked}${of} packages unpacked` : null;
      }
      if (/^Setting up \S+ \(/.test(line)) {
        s.setUp += 1;
        return s.setUp % (every * 2) === 0 || s.setUp === s.toInstall ? `I: ${s.setUp}${of} packages set up` : null;
      }
      return null;
    },
  };
}
