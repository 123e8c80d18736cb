/**
 * Which Debian mirror `secd base-image` debootstraps from when none is given: the one this machine's
 * apt already uses (in a closed cluster, typically its local mirror). Reads both apt formats: deb822
 * `.sources` stanzas and one-line `sources.list` entries.
 *
 * Choices made here:
 * - Only enabled binary (`deb`) sources count; security archives are skipped (debootstrap needs the
 *   main archive), and a source must carry a Debian suite, so an Ubuntu host's archive is never chosen.
 * - Unreadable or missing files are no sources, not an error: the caller falls back to a default.
 */
import fs from 'node:fs';
import path from 'node:path';

/** One entry of an apt sources file, as far as choosing a mirror needs it. */
export interface AptSource {
  types: string[];
  uris: string[];
  suites: string[];
  enabled: boolean;
}

const DEBIAN_SUITES = new Set([
  'buster', 'bullseye', 'bookworm', 'trixie', 'forky', 'duke', 'sid',
  'oldoldstable', 'oldstable', 'stable', 'testing', 'unstable',
]);

/** Parses a deb822 `.sources` file (stanzas of `Key: value`, continuation lines indented). */
export function parseDeb822Sources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const stanza of text.split(/\n[ \t]*\n/)) {
    const fields = new Map<string, string>();
    let last: string | null = null;
    for (const line of stanza.split('\n')) {
      if (/^\s*#/.test(line)) continue;
      if (/^[ \t]/.test(line)) {
        if (last !== null) fields.set(last, `${fields.get(last) ?? ''}\n${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (!m) continue;
      last = m[1]!.toLowerCase();
      fields.set(last, m[2]!.trim());
    }
    if (!fields.has('uris')) continue;
    const words = (key: string) => (fields.get(key) ?? '').split(/\s+/).filter(Boolean);
    out.push({
      types: words('types'),
      uris: words('uris'),
      suites: words('suites'),
      enabled: !/^(no|false|0)$/i.test(fields.get('enabled') ?? 'yes'),
    });
  }
  return out;
}

/** Parses one-line-style `sources.list` entries (`deb [options] uri suite components...`). */
export function parseOneLineSources(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    const m = /^(deb|deb-src)\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
    if (!m) continue;
    out.push({ types: [m[1]!], uris: [m[2]!], suites: [m[3]!], enabled: true });
  }
  return out;
}

/**
 * The mirror debootstrap should use for `suite`: the first binary source that carries the suite, else
 * the first that carries any Debian release (so an Ubuntu host's archive is never chosen).
 */
export function pickDebianMirror(sources: AptSource[], suite: string): string | null {
  const usable = sources.filter((s) => s.enabled && s.types.includes('deb'));
  const plainUri = (u: string) => /^(https?|ftp|file):\/\//.test(u) && !/debian-security|\/security\b/.test(u);
  const pick = (match: (suiteName: string) => boolean): string | null => {
    for (const s of usable) {
      if (!s.suites.some(match)) continue;
      const uri = s.uris.find(plainUri);
      if (uri) return uri.replace(/\/+$/, '');
    }
    return null;
  };
  return pick((x) => x === suite) ?? pick((x) => DEBIAN_SUITES.has(x));
}

/** Reads the machine's apt sources (`sources.list.d/*.sources`, `*.list`, then `sources.list`) and picks a mirror. */
export async function detectAptMirror(suite: string, root = '/'): Promise<string | null> {
  const etc = path.join(root, 'etc/apt');
  const sources: AptSource[] = [];
  let names: string[] = [];
  try {
    names = (await fs.promises.readdir(path.join(etc, 'sources.list.d'))).sort();
  } catch {
    // No sources.list.d: only sources.list then.
  }
  const read = async (p: string) => fs.promises.readFile(p, 'utf8').catch(() => '');
  for (const n of names.filter((x) => x.endsWith('.sources'))) sources.push(...parseDeb822Sources(await read(path.join(etc, 'sources.list.d', n))));
  for (const n of names.filter((x) => x.endsWith('.list'))) sources.push(...parseOneLineSources(await read(path.join(etc, 'sources.list.d', n))));
  sources.push(...parseOneLineSources(await read(path.join(etc, 'sources.list'))));
  return pickDebianMirror(sources, suite);
}
