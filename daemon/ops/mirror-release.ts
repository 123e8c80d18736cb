/**
 * Before debootstrap spends a minute (or apt half an hour), ask the mirror whether it has what the
 * variant needs: its suite (`dists/<suite>/InRelease` or `Release`) and the components that file
 * lists. A site mirror often carries only `main`, or only stable; debootstrap's own message for that
 * ("Failed getting release file", or a missing package much later) does not say which is missing.
 *
 * Only http(s) and file mirrors are checked; for others (ftp) the check passes and debootstrap judges.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { VariantSpec } from './base-image-variants.js';

/** What the mirror lacks, or that it could not be asked. */
export type MirrorCheckFailure =
  | { ok: false; code: 'suite_missing'; reason: string }
  | { ok: false; code: 'component_missing'; reason: string }
  | { ok: false; code: 'mirror_unreachable'; reason: string };

/** The mirror has the suite and components, or a failure naming what is missing. */
export type MirrorCheck = { ok: true } | MirrorCheckFailure;

/** Fetches a URL's text: null for "not there" (404, a missing file); throws when the mirror cannot be reached. */
export type FetchText = (url: string) => Promise<string | null>;

/** The real fetch: http(s) with a timeout, file:// from disk. */
export async function fetchMirrorText(url: string, timeoutMs = 20_000): Promise<string | null> {
  if (url.startsWith('file://')) return fs.promises.readFile(fileURLToPath(url), 'utf8').catch(() => null);
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (res.status === 404 || res.status === 410) return null;
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}`);
  return res.text();
}

/** The `Components:` of a Release or InRelease file (the signature around InRelease's text is ignored). */
export function releaseComponents(text: string): string[] {
  const m = /^Components:[ \t]*(.*)$/m.exec(text);
  return m ? m[1]!.split(/\s+/).filter(Boolean) : [];
}

/** Checks that `mirror` carries `spec.suite` with `spec.components`. */
export async function checkMirrorRelease(mirror: string, spec: VariantSpec, fetchText: FetchText = (u) => fetchMirrorText(u)): Promise<MirrorCheck> {
  if (!/^(https?|file):\/\//.test(mirror)) return { ok: true };
  const base = `${mirror.replace(/\/+$/, '')}/dists/${spec.suite}`;
  let text: string | null = null;
  try {
    text = (await fetchText(`${base}/InRelease`)) ?? (await fetchText(`${base}/Release`));
  } catch (err) {
    const why = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
    return { ok: false, code: 'mirror_unreachable', reason: `the Debian mirror ${mirror} could not be reached (${why}): give one with --mirror or node.yml base_image_mirror` };
  }
  const image = spec.image;
  if (text === null) {
    return {
      ok: false,
      code: 'suite_missing',
      reason: `the Debian mirror ${mirror} has no suite ${spec.suite} (no ${base}/InRelease or Release), which ${image} is built from: add ${spec.suite} to the mirror, or give another with --mirror`,
    };
  }
  const have = releaseComponents(text);
  const missing = spec.components.filter((c) => !have.includes(c));
  if (missing.length > 0) {
    return {
      ok: false,
      code: 'component_missing',
      reason: `the Debian mirror ${mirror} carries ${spec.suite} with components ${have.join(', ') || '(none listed)'}, but ${image} needs ${missing.join(', ')}: add ${missing.length > 1 ? 'them' : 'it'} to the mirror, or give another with --mirror`,
    };
  }
  return { ok: true };
}
