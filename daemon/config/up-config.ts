/**
 * up.yml (DESIGN §4): `secd up` is a leader plus a `node:` section for its in-process node, and
 * `secd run` reads the same file for its node settings and limits. With no file, the embedded
 * defaults put everything under `<cwd>/.secd`.
 *
 * `gitlab` is optional here: without it the leader still serves the status page and API, nodes may
 * join and `secd run` works, but no push can start a run, so the hook route answers 503 "gitlab not
 * configured" (GitLab retries, and the operator sees why in GitLab's webhook log) instead of
 * accepting pushes it cannot clone or report on.
 */
import path from 'node:path';
import { z } from 'zod';
import { ConfigError, configParser, readConfigText, type ConfigEnv, type LoadContext, type ParseOptions } from './config-file.js';
import { pathField } from './config-fields.js';
import { finishLeader, gitlabSchema, leaderShape } from './leader-config.js';
import { finishNode, nodeShape } from './node-config.js';

/** up.yml's schema (exported for the config reference test, test/docs-config-reference.test.ts). */
export function upSchema(ctx: LoadContext) {
  const nodeSection = z
    .strictObject({
      ...nodeShape(ctx),
      work_dir: pathField(ctx).default(path.resolve(ctx.baseDir, '.secd/work')),
      cache_root: pathField(ctx).default(path.resolve(ctx.baseDir, '.secd/cache')),
    })
    .transform((n, zctx) => finishNode(n, ctx, zctx));
  return z
    .strictObject({
      ...leaderShape(ctx, { dataDir: '.secd/data' }),
      gitlab: gitlabSchema(ctx).optional(),
      node: nodeSection.prefault({}),
    })
    .transform((c, zctx) => {
      const done = finishLeader(c, zctx);
      return { ...done, gitlab: done.gitlab ?? null };
    });
}

/** `secd up`: a leader (GitLab optional) plus the in-process node's settings. */
export type UpConfig = z.output<ReturnType<typeof upSchema>>;
/** The in-process node of `secd up`: node keys without `leader` and `token`. */
export type LocalNodeConfig = UpConfig['node'];

/** Parses up.yml text; see parseLeaderConfig. */
export const parseUpConfig = configParser(upSchema);

/** Name used in messages when `secd up` runs without a config file. */
export const EMBEDDED_DEFAULTS = '<embedded defaults>';

/** Reads up.yml, or with `file` null the embedded defaults (everything under `<cwd>/.secd`). */
export function loadUpConfig(
  file: string | null,
  cwd: string,
  env: ConfigEnv = process.env,
  opts: ParseOptions = {},
): UpConfig {
  if (file === null) return parseUpConfig('', EMBEDDED_DEFAULTS, env, { ...opts, baseDir: cwd });
  return parseUpConfig(readConfigText(path.resolve(cwd, file)), file, env, {
    ...opts,
    baseDir: path.dirname(path.resolve(cwd, file)),
  });
}

/** What `--public-url` did to an up.yml: the config to start with and one line per thing to say. */
export interface PublicUrlOverride {
  config: UpConfig;
  notes: string[];
}

const LOOPBACK = /^(localhost|127(\.\d+){3}|::1)$/i;

/**
 * `secd up --public-url URL`: the URL GitLab and nodes use. A listen address the config does not
 * set follows it (the URL's port; every interface unless the URL is a loopback one), so the URL
 * given actually reaches the leader; a listen the config does set is kept, and a note says so when
 * it cannot be reached at the URL (loopback only, or another port). An https URL without `tls:`
 * means a proxy in front: listen is then left alone and the note says the proxy must forward to it.
 */
export function withPublicUrl(config: UpConfig, url: string, listenSet: boolean): PublicUrlOverride {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError('--public-url', 'public_url', [`--public-url must be an http(s) URL such as http://10.0.0.5:8080 (got "${url}")`]);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConfigError('--public-url', 'public_url', [`--public-url must be an http(s) URL (got "${url}")`]);
  }
  const publicUrl = url.replace(/\/+$/, '');
  const urlHost = parsed.hostname.replace(/^\[|\]$/g, '');
  const urlPort = parsed.port ? Number(parsed.port) : parsed.protocol === 'https:' ? 443 : 80;
  const served = config.tls ? 'https:' : 'http:';
  const { host, port } = config.listen;
  const listenText = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (parsed.protocol !== served) {
    return {
      config: { ...config, public_url: publicUrl },
      notes: [`listen stays ${listenText}: the leader serves ${served.slice(0, -1)} and ${publicUrl} is ${parsed.protocol.slice(0, -1)}, so a proxy at ${publicUrl} must forward to ${listenText}`],
    };
  }
  if (!listenSet) {
    const listen = { host: LOOPBACK.test(urlHost) ? host : '0.0.0.0', port: urlPort };
    const text = `${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`;
    return { config: { ...config, public_url: publicUrl, listen }, notes: [`listen set to ${text} so that ${publicUrl} reaches the leader (set listen in up.yml to choose another)`] };
  }
  const notes: string[] = [];
  if (LOOPBACK.test(host) && !LOOPBACK.test(urlHost)) {
    notes.push(`listen stays ${listenText} (from the config), which only this machine can reach: GitLab and nodes cannot use ${publicUrl} unless a proxy forwards it; set listen to 0.0.0.0:${urlPort} for direct access`);
  } else if (port !== urlPort) {
    notes.push(`listen stays ${listenText} (from the config), not port ${urlPort} of ${publicUrl}: a proxy or port forward must connect them`);
  }
  return { config: { ...config, public_url: publicUrl }, notes };
}

/** Whether an up.yml sets `listen` itself (a top-level key), as opposed to taking the default. */
export function setsListen(file: string | null, cwd: string): boolean {
  if (file === null) return false;
  return /^listen\s*:/m.test(readConfigText(path.resolve(cwd, file)));
}
