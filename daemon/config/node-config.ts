/**
 * node.yml (DESIGN §4): a GPU machine's daemon. `secd up`'s `node:` section (up-config.ts) takes the
 * same keys through `nodeShape` and `finishNode`, less `leader` and `token`.
 *
 * Choices the design leaves open, made here:
 * - `node_id` defaults to the hostname, checked like a configured one (node ids appear in URLs,
 *   database rows and tokens).
 * - `nvidia_smi` is a command: a bare name is looked up in PATH, a name with a slash is a path.
 * - A node's `cache_root` has no default in node.yml: caches must follow a researcher across nodes
 *   (an NFS mount in production), and a silent node-local default would hide that mistake.
 * - `build` (DESIGN §12) is left out of the result when absent (builds get no network, no variables);
 *   its `network` may not be `host`, which would give builds this machine's whole network.
 * - `build.cgroup_parent` names the cgroup every build container is made under: the only bound on a
 *   build's processes the legacy builder honours (RLIMIT_NPROC does not hold root). The sysadmin gives
 *   that cgroup its pids limit (docs/sysadmin.md §13); absent, builds are not bounded in processes.
 * - `disk_watermark_bytes` has no default here (run-delivery.ts's DEFAULT_DISK_WATERMARK_BYTES applies),
 *   so a node.yml without it reads as before.
 * - `outputs_volume` (absent: `disk`, uncapped while the run writes, as before): `quota` caps each
 *   run's /outputs at the outputs total cap with an XFS project quota (the node refuses to start where
 *   Docker has no quota support); `tmpfs` caps it in memory, counted against the run's memory limit.
 * - `leader` (DESIGN §11) is one ws(s):// URL or a list of them (leaders sharing one state database,
 *   of which one is active); parsed, it is always a list in the order written, which is the order the
 *   node tries them. Two entries naming the same URL (host case, default port and trailing "/" aside)
 *   are refused: a repeated leader would only be tried twice per sweep.
 */
import path from 'node:path';
import { z } from 'zod';
import { show } from '../../scheduler/common/describe-value.js';
import { configParser, readConfigText, type ConfigEnv, type LoadContext, type ParseOptions } from './config-file.js';
import { BUILD_ENV_NAME } from '../engine/build-env-dockerfile.js';
import { bytesField, checkFileExists, GiB, nonNegativeInt, pathField, positiveInt, resolveSecret, urlField } from './config-fields.js';

/** `build:` of node.yml and up.yml's node section: the network and variables of image builds (DESIGN §12). */
export const buildSection = z
  .strictObject({
    network: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, { error: 'must be a Docker network name (letters, digits, "_", ".", "-")' })
      .refine((n) => n !== 'host', { error: "must not be host: that is this machine's whole network; name a network that reaches only the mirrors" })
      .optional(),
    env: z
      .record(z.string(), z.string())
      .default({})
      .superRefine((env, zctx) => {
        for (const name of Object.keys(env)) {
          if (BUILD_ENV_NAME.test(name)) continue;
          zctx.issues.push({ code: 'custom', input: name, path: [name], message: `${show(name)} must be a variable name (letters, digits, "_", not starting with a digit)` });
        }
      }),
    // A cgroupfs path (`/secd-build`) or, with dockerd's systemd cgroup driver, a slice (`secd-build.slice`).
    cgroup_parent: z
      .string()
      .regex(/^(\/[A-Za-z0-9_.-]+)+$|^[A-Za-z0-9_.-]+\.slice$/, { error: 'must be a cgroup path like /secd-build or a systemd slice like secd-build.slice' })
      .refine((p) => !p.split('/').includes('..'), { error: 'must not contain ".."' })
      .optional(),
  })
  .transform((b) => ({
    network: b.network === undefined || b.network === 'none' ? null : b.network,
    env: b.env,
    ...(b.cgroup_parent !== undefined ? { cgroup_parent: b.cgroup_parent } : {}),
  }));

/** The build settings with defaults: `network` null is no network. */
export type BuildSettings = z.output<typeof buildSection>;

const leaderUrl = urlField(['ws', 'wss']);

/** `leader:` one ws(s):// URL or a non-empty list of them, parsed to a list with no URL twice (see the header). */
export const leaderUrlsField = z
  .union([z.string(), z.array(z.unknown())], {
    error: (iss) => (iss.input === undefined ? 'is required' : `must be a ws:// or wss:// URL or a list of them (got ${show(iss.input)})`),
  })
  .transform((value, zctx) => {
    const list = typeof value === 'string' ? [value] : value;
    if (list.length === 0) {
      zctx.issues.push({ code: 'custom', input: value, message: 'must name at least one leader URL' });
      return z.NEVER;
    }
    const urls: string[] = [];
    const seen = new Map<string, number>();
    list.forEach((item, i) => {
      const at = typeof value === 'string' ? [] : [i];
      const checked = leaderUrl.safeParse(item);
      if (!checked.success) {
        const message = typeof item === 'string' ? (checked.error.issues[0]?.message ?? 'must be a ws:// or wss:// URL') : `must be a ws:// or wss:// URL (got ${show(item)})`;
        zctx.issues.push({ code: 'custom', input: item, path: at, message });
        return;
      }
      const same = sameUrlKey(checked.data);
      const first = seen.get(same);
      if (first !== undefined) {
        zctx.issues.push({ code: 'custom', input: item, path: at, message: `names the same leader as leader[${first}] (${show(checked.data)}): list each leader once` });
        return;
      }
      seen.set(same, i);
      urls.push(checked.data);
    });
    return urls;
  });

/** What makes two leader URLs the same: WHATWG normal form (host case, default port) less trailing "/". */
function sameUrlKey(url: string): string {
  return new URL(url).href.replace(/\/+$/, '');
}

/** Node ids appear in URLs, database rows and tokens: keep them to hostname-like characters. */
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Node keys shared by node.yml and `secd up`'s `node:` section (paths are added by each). */
export function nodeShape(ctx: LoadContext) {
  return {
    node_id: z
      .string()
      .regex(NODE_ID, { error: 'must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit' })
      .optional(),
    dataset_root: pathField(ctx).optional(),
    nvidia_smi: z
      .string()
      .min(1)
      .default('nvidia-smi')
      .transform((cmd) => (cmd.includes('/') ? path.resolve(ctx.baseDir, cmd) : cmd)),
    report_interval_ms: z.number().int().gte(100).default(2000),
    max_cpu_runs: nonNegativeInt.default(2),
    memory_limit_bytes: bytesField.default(16 * GiB),
    pids_limit: positiveInt.default(4096),
    // Free bytes work_dir's filesystem must keep, or runs fail (see the header).
    disk_watermark_bytes: bytesField.optional(),
    // How /outputs is capped on disk while a run writes (daemon/engine/outputs-volume.ts); absent: disk.
    outputs_volume: z.enum(['disk', 'quota', 'tmpfs'], { error: 'must be disk, quota or tmpfs' }).optional(),
    base_image_mirror: urlField(['http', 'https']).optional(),
    build: buildSection.optional(),
  };
}

/** Defaults node_id to the hostname, checked like a configured one. */
export function finishNode<T extends { node_id?: string | undefined; dataset_root?: string | undefined; base_image_mirror?: string | undefined }>(
  n: T,
  ctx: LoadContext,
  zctx: z.RefinementCtx,
) {
  let nodeId = n.node_id;
  if (nodeId === undefined) {
    nodeId = ctx.hostname;
    if (!NODE_ID.test(nodeId)) {
      zctx.issues.push({
        code: 'custom',
        input: undefined,
        path: ['node_id'],
        message: `is required: the hostname ${show(nodeId)} is not a valid node id`,
      });
    }
  }
  return { ...n, node_id: nodeId, dataset_root: n.dataset_root ?? null, base_image_mirror: n.base_image_mirror ?? null };
}

function nodeSchema(ctx: LoadContext) {
  return z
    .strictObject({
      leader: leaderUrlsField,
      token: z.string().optional(),
      token_file: z.string().min(1).optional(),
      ...nodeShape(ctx),
      work_dir: pathField(ctx).default('/var/lib/secd-node'),
      cache_root: pathField(ctx),
      // The CA that signed the leader's certificate, trusted for wss:// (the system CAs still apply).
      ca_file: pathField(ctx).optional(),
    })
    .transform((n, zctx) => {
      const { token: inline, token_file: file, ca_file: caFile, ...rest } = n;
      const token = resolveSecret({ name: 'token', credential: 'token', allowEmpty: false }, inline, file, ctx, zctx);
      checkFileExists(caFile, 'ca_file', zctx);
      return { ...finishNode(rest, ctx, zctx), token, ca_file: caFile ?? null };
    });
}

/** A node daemon's configuration with defaults applied, paths absolute and the token read. */
export type NodeConfig = z.output<ReturnType<typeof nodeSchema>>;

/** Parses node.yml text; see parseLeaderConfig. */
export const parseNodeConfig = configParser(nodeSchema);

/** Reads and checks node.yml; throws ConfigError naming the file and key. */
export function loadNodeConfig(file: string, env: ConfigEnv = process.env, opts: ParseOptions = {}): NodeConfig {
  return parseNodeConfig(readConfigText(file), file, env, opts);
}
