/**
 * /sdk/ through the real leader server (app.inject): the list pip's --find-links reads, the wheel
 * with its length and hash, nothing else from the folder or beyond it, and the same answers on a
 * private leader.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLog } from '../scheduler/common/log.js';
import type { RunLifecycle } from '../scheduler/lifecycle/run-lifecycle.js';
import { memoryStores } from '../test/support/scratch-state.js';
import { buildLeaderServer } from './leader-server.js';
import { defaultSdkDir, loadSdkFiles, SDK_WHEEL_NAME } from './sdk-files.js';

const WHEEL = 'secd-0.1.0-py3-none-any.whl';
const apps: FastifyInstance[] = [];
const dirs: string[] = [];
const opened: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  for (const s of opened.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A dist/sdk-like folder with the given files, and a leader serving it. */
async function leader(files: Record<string, Buffer | string>, readToken: string | null = null) {
  const dir = mkdtempSync(join(tmpdir(), 'secd-sdk-files-'));
  dirs.push(dir);
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), body);
  const stores = await memoryStores();
  opened.push(stores);
  const app = buildLeaderServer({
    store: stores.runs,
    lifecycle: {} as RunLifecycle,
    log: silentLog,
    intake: null,
    healthy: async () => true,
    nodes: async () => [],
    readToken,
    sdkDir: dir,
  });
  apps.push(app);
  return { app, dir };
}

const wheelBody = Buffer.from('PK\u0003\u0004 not really a zip, but bytes to serve\u0000\u00ff');
const sha = createHash('sha256').update(wheelBody).digest('hex');

describe('the leader serves the SDK at /sdk/', () => {
  it('lists the wheel as a link with its sha256 and shows the pip command for the address the reader used', async () => {
    const { app } = await leader({ [WHEEL]: wheelBody });
    const page = await app.inject({ url: '/sdk/', headers: { host: 'secd.cluster.example:8443' } });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body).toContain(`<a href="${WHEEL}#sha256=${sha}">${WHEEL}</a>`);
    expect(page.body).toContain(`pip install http://secd.cluster.example:8443/sdk/${WHEEL}`);
    expect(page.body).toContain('--find-links http://secd.cluster.example:8443/sdk/ secd');
    expect(page.body).toContain('./cache');
    // Without the slash the relative links would resolve against /, so /sdk redirects.
    const bare = await app.inject({ url: '/sdk' });
    expect(bare.statusCode).toBe(301);
    expect(bare.headers.location).toBe('/sdk/');
  });

  it('serves the wheel byte for byte with its length, and answers 304 to its ETag', async () => {
    const { app } = await leader({ [WHEEL]: wheelBody });
    const got = await app.inject({ url: `/sdk/${WHEEL}` });
    expect(got.statusCode).toBe(200);
    expect(got.headers['content-type']).toBe('application/octet-stream');
    expect(got.headers['content-length']).toBe(String(wheelBody.length));
    expect(got.rawPayload.equals(wheelBody)).toBe(true);
    expect(got.headers.etag).toBe(`"${sha}"`);
    const again = await app.inject({ url: `/sdk/${WHEEL}`, headers: { 'if-none-match': `"${sha}"` } });
    expect(again.statusCode).toBe(304);
    const head = await app.inject({ method: 'HEAD', url: `/sdk/${WHEEL}` });
    expect(head.statusCode).toBe(200);
    expect(head.headers['content-length']).toBe(String(wheelBody.length));
  });

  it('serves only the SDK wheels of its folder, never another file there or a path out of it', async () => {
    const { app, dir } = await leader({ [WHEEL]: wheelBody, 'notes.txt': 'private', 'other-1.0-py3-none-any.whl': 'x', '.secd-0.1.0-py3-none-any.whl.partial': 'x' });
    mkdirSync(join(dir, 'secd-9.9.9-py3-none-any.whl')); // a folder with a wheel's name is not a wheel
    const page = await app.inject({ url: '/sdk/' });
    expect(page.body.match(/<li>/g)).toHaveLength(1);
    for (const url of ['/sdk/notes.txt', '/sdk/other-1.0-py3-none-any.whl', '/sdk/..%2Fpackage.json', '/sdk/../package.json', '/sdk/%2e%2e/%2e%2e/package.json', '/sdk/secd-9.9.9-py3-none-any.whl']) {
      const got = await app.inject({ url });
      expect(got.statusCode, url).toBe(404);
      expect(got.body, url).not.toContain('private');
    }
    const missing = await app.inject({ url: '/sdk/secd-0.2.0-py3-none-any.whl' });
    expect(missing.body).toContain(`it serves: ${WHEEL}`);
  });

  it('is public on a leader with a read token: the SDK is secd\'s own code, not who pushed what', async () => {
    const { app } = await leader({ [WHEEL]: wheelBody }, 'read-token-0123456789abcdef');
    expect((await app.inject({ url: '/sdk/' })).body).toContain(WHEEL);
    expect((await app.inject({ url: `/sdk/${WHEEL}` })).rawPayload.equals(wheelBody)).toBe(true);
  });

  it('says how to get a wheel when the build made none', async () => {
    const { app, dir } = await leader({});
    const page = await app.inject({ url: '/sdk/' });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('built without it. <code>npm run build</code> writes it to');
    expect(page.body).toContain(dir);
    expect(loadSdkFiles(join(dir, 'absent'))).toEqual([]);
    expect(loadSdkFiles(null)).toEqual([]);
  });

  it('by default serves dist/sdk, where npm run build writes the wheel', () => {
    expect(defaultSdkDir()).toMatch(/\/dist\/sdk$/);
    for (const name of ['secd-0.1.0-py3-none-any.whl', 'secd-1.2.3rc1-py3-none-any.whl']) expect(name).toMatch(SDK_WHEEL_NAME);
    for (const name of ['secd-0.1.0-cp311-none-any.whl', 'secd-0.1.0-py3-none-any.whl.partial', 'secd-../x-py3-none-any.whl']) expect(name).not.toMatch(SDK_WHEEL_NAME);
  });
});
