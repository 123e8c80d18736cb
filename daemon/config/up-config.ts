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
import { configParser, readConfigText, type ConfigEnv, type LoadContext, type ParseOptions } from './config-file.js';
import { pathField } from './config-fields.js';
import { finishLeader, gitlabSchema, leaderShape } from './leader-config.js';
import { finishNode, nodeShape } from './node-config.js';

function upSchema(ctx: LoadContext) {
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
