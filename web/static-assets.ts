/**
 * The status page's files, served by the leader itself: the cluster has no internet, so no CDN and
 * no outside font. Our own files live in web/assets/; uPlot comes from node_modules. They are read
 * once when the server is built and served from memory with a content hash in their URL, so a
 * browser caches them for good and fetches a new version the moment it changes.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One file ready to serve. */
export interface StaticAsset {
  body: Buffer;
  contentType: string;
  /** Short content hash: the `?v=` of its URL and its ETag. */
  hash: string;
}

/** Served names → assets. */
export type AssetTable = ReadonlyMap<string, StaticAsset>;

// Tests run web/*.ts from the source tree; the built leader runs dist/web/*.js: both find web/assets.
function ownAssetsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const dir of [join(here, 'assets'), join(here, '..', '..', 'web', 'assets')]) {
    if (existsSync(join(dir, 'status.js'))) return dir;
  }
  throw new Error(`the status page's files (web/assets/) are missing next to ${here}`);
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

function asset(path: string): StaticAsset {
  const body = readFileSync(path);
  const ext = path.slice(path.lastIndexOf('.'));
  return {
    body,
    contentType: TYPES[ext] ?? 'application/octet-stream',
    hash: createHash('sha256').update(body).digest('hex').slice(0, 12),
  };
}

/** The status page's script and the modules it imports (web/assets/status*.js). */
const STATUS_MODULES = ['status.js', 'status-dom.js', 'status-charts.js', 'status-nodes.js', 'status-runs.js'];

/** Read every file the pages use. */
export function loadStaticAssets(): AssetTable {
  const own = ownAssetsDir();
  const require = createRequire(import.meta.url);
  const uplotDir = dirname(require.resolve('uplot/package.json'));
  return new Map<string, StaticAsset>([
    // status.js is an ES module that imports its parts by relative URL (/assets/status-dom.js …):
    // they are served without `?v=`, so revalidated by ETag, and always the version status.js expects.
    ...STATUS_MODULES.map((name) => [name, asset(join(own, name))] as const),
    ['run.js', asset(join(own, 'run.js'))],
    ['secd.css', asset(join(own, 'secd.css'))],
    ['favicon.svg', asset(join(own, 'favicon.svg'))],
    ['uplot.js', asset(join(uplotDir, 'dist', 'uPlot.iife.min.js'))],
    ['uplot.css', asset(join(uplotDir, 'dist', 'uPlot.min.css'))],
  ]);
}

/** The URL of a served file, with its content hash. */
export function assetUrl(assets: AssetTable, name: string): string {
  const a = assets.get(name);
  if (!a) throw new Error(`no static asset ${name}`);
  return `/assets/${name}?v=${a.hash}`;
}
