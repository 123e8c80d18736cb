/**
 * The Python SDK's wheel, served by the leader at /sdk/ so that a researcher can `pip install` on
 * their own machine the SDK their runs have in secd/base: the cluster has no package index, and the
 * guide secd replaces said `pip install secd`.
 *
 * Only what this secd's build made is served: the wheels `npm run build` wrote to dist/sdk/
 * (sdk/python/build_backend/secd_wheel.py), read once when the server is built and answered from
 * memory, so a name in the URL is only ever a key into that list and cannot reach another file. The
 * listing is plain HTML links with `#sha256=` fragments, which is what `pip --find-links` reads.
 *
 * The SDK is public code: /sdk/ answers every reader, also on a leader with a read token
 * (web/read-access.ts), which guards who pushed what, not secd's own source.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { escapeHtml } from './html-text.js';

/** One wheel ready to serve. */
export interface SdkFile {
  name: string;
  body: Buffer;
  /** Hex sha256 of the body: its ETag and the listing's `#sha256=` for pip. */
  sha256: string;
}

/** The file names secd_wheel.py gives the SDK's wheel; nothing else in the folder is served. */
export const SDK_WHEEL_NAME = /^secd-\d+(?:\.\d+)*(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?-py3-none-any\.whl$/;

const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** dist/sdk of this secd: beside dist/web when built, under dist/ when the sources run (tests). */
export function defaultSdkDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return import.meta.url.endsWith('.js') ? join(here, '..', 'sdk') : join(here, '..', 'dist', 'sdk');
}

/** The SDK wheels in `dir`, by name (none when the folder is missing or `dir` is null). */
export function loadSdkFiles(dir: string | null): SdkFile[] {
  if (dir === null) return [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names
    .filter((n) => SDK_WHEEL_NAME.test(n) && statSync(join(dir, n)).isFile())
    .sort()
    .map((name) => {
      const body = readFileSync(join(dir, name));
      return { name, body, sha256: createHash('sha256').update(body).digest('hex') };
    });
}

function kib(bytes: number): string {
  return `${Math.max(1, Math.round(bytes / 1024))} KiB`;
}

/** The /sdk/ page: the wheels as links pip can follow, and the commands to use them from `origin`. */
export function renderSdkIndex(files: readonly SdkFile[], origin: string, dir: string | null): string {
  const base = `${origin}/sdk/`;
  const items = files.map((f) => `<li><a href="${escapeHtml(f.name)}#sha256=${f.sha256}">${escapeHtml(f.name)}</a> (${kib(f.body.length)})</li>`);
  const newest = files.at(-1);
  const how = newest
    ? `<p>On your own machine, from inside the cluster's network:</p>
<pre>pip install ${escapeHtml(base + newest.name)}</pre>
<p>or, letting pip pick from this list: <code>pip install --no-index --find-links ${escapeHtml(base)} secd</code>.
With a leader on https signed by the cluster's own CA, add <code>--cert cluster-ca.pem</code>.
Outside a run <code>get_output_path()</code> is <code>./output</code> and <code>@cache</code> keeps results in <code>./cache</code>.</p>`
    : `<p>This leader has no SDK wheel to offer: its secd was built without it. <code>npm run build</code> writes it to ${escapeHtml(dir ?? 'dist/sdk')}; restart the leader after.</p>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>secd Python SDK</title></head>
<body>
<h1>secd Python SDK</h1>
${how}
<ul>
${items.join('\n')}
</ul>
</body></html>
`;
}

/**
 * GET /sdk/ (the list) and GET /sdk/<wheel> (the file, with its length and ETag); /sdk redirects to
 * /sdk/ so that the list's relative links resolve. `dir` null: nothing is served but the list saying so.
 */
export function registerSdkRoutes(app: FastifyInstance, dir: string | null): void {
  const files = loadSdkFiles(dir);
  const byName = new Map(files.map((f) => [f.name, f]));

  app.get('/sdk', async (_req, reply) => reply.code(301).header('location', '/sdk/').send());

  app.get('/sdk/', async (req, reply) => {
    // The reader's own address for the commands shown: the one that reached this leader.
    const origin = `${req.protocol}://${req.host}`;
    return reply.headers(PAGE_HEADERS).header('cache-control', 'no-cache').type('text/html; charset=utf-8').send(renderSdkIndex(files, origin, dir));
  });

  app.get('/sdk/:name', async (req, reply) => {
    const { name } = req.params as { name: string };
    const file = byName.get(name);
    if (!file) {
      const offered = files.map((f) => f.name).join(', ') || 'none';
      return reply.code(404).type('text/plain; charset=utf-8').send(`no SDK file ${JSON.stringify(name)} on this leader (it serves: ${offered}; see /sdk/)\n`);
    }
    const etag = `"${file.sha256}"`;
    reply
      .header('etag', etag)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-disposition', `attachment; filename="${file.name}"`);
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.type('application/octet-stream').header('content-length', file.body.length).send(file.body);
  });
}
