/**
 * The limits `secd check` holds secd.yml to. Offline they are the leader's defaults
 * (daemon/config/leader-config.ts DEFAULT_LIMITS), written here as two numbers because loading the
 * leader's config module (its schemas, built at import) costs a pre-push check more than the rest of
 * its policy; check-leader.test.ts holds them equal. With `--leader URL` the largest node's GPU count
 * is read from the leader's public `GET /api/v1/nodes` (the nodes that are not down, as the leader
 * counts them); the API does not publish `limits.max_runfor_hours` or `limits.max_gpus_per_run`, so
 * those stay the defaults and the report says so. An HTTPS leader is trusted with the system's CAs
 * plus git's `http.sslCAInfo`, the cluster CA a researcher already gave git.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { rootCertificates } from 'node:tls';
import { note, warning, type Finding } from './check-findings.js';
import type { CheckLimits } from './check-project.js';

/** DEFAULT_LIMITS.max_runfor_hours and .max_gpus_per_run of leader-config.ts. */
export const LEADER_DEFAULT_LIMITS = { maxRunforHours: 24, maxGpusPerRun: 8 } as const;

/** The leader's defaults, as an offline check uses them. */
export function defaultCheckLimits(): CheckLimits {
  return {
    ...LEADER_DEFAULT_LIMITS,
    largestNodeGpus: null,
    gpuNodes: null,
    source: "the leader's default limits",
  };
}

/** A `--leader` value as a base URL, or a sentence saying what is wrong with it. */
export function parseLeaderUrl(value: string): URL | string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `--leader must be the leader's URL, such as https://secd.example.org:8080 (got ${JSON.stringify(value)})`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `--leader must be an http:// or https:// URL (got ${JSON.stringify(value)})`;
  return url;
}

/** The limits with what the leader at `url` says about its nodes, and lines saying what came from where. */
export async function leaderCheckLimits(url: URL, caFile: string | null): Promise<{ limits: CheckLimits; findings: Finding[] }> {
  const limits = defaultCheckLimits();
  const unexposed = note(
    'leader',
    `the leader's API does not expose its limits (limits.max_runfor_hours, limits.max_gpus_per_run): secd.yml is checked against the defaults, ${limits.maxRunforHours} h and ${limits.maxGpusPerRun} GPUs`,
  );
  const nodesUrl = new URL('api/v1/nodes', url.href.endsWith('/') ? url.href : `${url.href}/`);
  let body: unknown;
  try {
    body = JSON.parse(await getText(nodesUrl, caFile));
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return { limits, findings: [warning('leader', `could not read ${nodesUrl.href}: ${why}; checked offline`), unexposed] };
  }
  const nodes = (body as { nodes?: unknown }).nodes;
  if (!Array.isArray(nodes)) {
    return { limits, findings: [warning('leader', `${nodesUrl.href} did not answer with a node list; checked offline`), unexposed] };
  }
  const up = nodes
    .filter((n): n is ApiNode => typeof n === 'object' && n !== null && Array.isArray((n as { gpus?: unknown }).gpus))
    .filter((n) => n.state !== 'down');
  const counts = up.map((n) => n.gpus.length);
  const largest = Math.max(0, ...counts);
  // What the planner knows of each GPU, as far as the API shows it: its name and memory.
  const gpuNodes = up.map((n, i) => {
    const gpus = n.gpus.map((g, j) => ({
      uuid: typeof g?.uuid === 'string' ? g.uuid : `gpu-${i}-${j}`,
      name: typeof g?.name === 'string' ? g.name : '',
      memoryBytes: typeof g?.memory_total_bytes === 'number' ? g.memory_total_bytes : null,
      mig: null,
    }));
    return { id: typeof n.id === 'string' ? n.id : `node-${i}`, gpus: gpus.map((g) => g.uuid), gpuDetails: gpus };
  });
  return {
    limits: { ...limits, largestNodeGpus: largest, gpuNodes, source: `the leader's default limits and ${url.origin}'s nodes` },
    findings: [note('leader', `${url.origin}: ${counts.length} node${counts.length === 1 ? '' : 's'} up, the largest with ${largest} GPU${largest === 1 ? '' : 's'}`), unexposed],
  };
}

/** A node of GET /api/v1/nodes, as far as the check reads it. */
interface ApiNode {
  id?: unknown;
  state?: unknown;
  gpus: Array<{ uuid?: unknown; name?: unknown; memory_total_bytes?: unknown } | null>;
}

/** GET `url` as text within 5 s; a status other than 200 is an error naming it. */
function getText(url: URL, caFile: string | null): Promise<string> {
  const ca = url.protocol === 'https:' && caFile !== null ? [...rootCertificates, readFileSync(caFile, 'utf8')] : undefined;
  const get = url.protocol === 'https:' ? https.get : http.get;
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: 5000, ...(ca ? { ca } : {}), headers: { accept: 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (text.length > 16 * 1024 * 1024) req.destroy(new Error('the answer is over 16 MiB'));
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', reject);
  });
}
