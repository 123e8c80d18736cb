/**
 * The leader's HTTP surface: GitLab webhook, JSON API, health, and the run page that commit statuses
 * link to. `buildLeaderServer(deps)` returns an app that is not listening; only main calls listen,
 * tests call `app.inject()`.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { RunEvent, RunRow, RunStore } from '../storage/run-store.js';
import { assertNever, RUN_STATES, type RunState } from '../storage/run-states.js';
import { classifyDelivery } from '../scheduler/intake.js';
import type { Log } from '../scheduler/log.js';
import type { RunLifecycle } from '../scheduler/run-lifecycle.js';
import { renderRunPage, renderStatusPage } from './pages.js';

/** What the server needs from the rest of the leader. */
export interface LeaderServerDeps {
  store: RunStore;
  lifecycle: RunLifecycle;
  log: Log;
  /** null when GitLab is not configured: the hook then answers 503 and says so. */
  intake: { webhookSecret: string; runBranch: string } | null;
  /** Whether the database accepts writes. */
  healthy(): boolean;
  /** The nodes' view for /api/v1/nodes. */
  nodes(): ApiNode[];
}

/** A node as the API shows it (DESIGN §8). */
export interface ApiNode {
  id: string;
  hostname: string;
  state: 'up' | 'down' | 'draining';
  last_seen: string | null;
  cpus: number;
  memory_bytes: number;
  load: number | null;
  runs: string[];
  gpus: Array<{
    uuid: string;
    index: number;
    name: string;
    memory_total_bytes: number | null;
    memory_used_bytes: number | null;
    utilization_pct: number | null;
    temperature_c: number | null;
    power_w: number | null;
    run_id: string | null;
  }>;
}

/** A run as the API shows it (DESIGN §8). */
export function apiRun(run: RunRow): Record<string, unknown> {
  return {
    id: run.id,
    project: run.project,
    commit: run.commit,
    user: run.user,
    state: run.state,
    reason: run.reason,
    node: run.node,
    gpus: run.gpus,
    created_at: run.createdAt,
    started_at: run.startedAt,
    finished_at: run.finishedAt,
    branch: run.branch,
  };
}

function apiEvent(e: RunEvent): Record<string, unknown> {
  return { at: e.at, from: e.from, to: e.to, reason: e.reason };
}

/** Build the leader's HTTP app (not listening). */
export function buildLeaderServer(deps: LeaderServerDeps): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 25 * 1024 * 1024 });
  // The hook checks the token and parses JSON itself, so it needs the raw bytes whatever the content type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.post('/v1/hook', async (req, reply) => {
    const started = process.hrtime.bigint();
    if (!deps.intake) {
      return reply.code(503).send({ error: 'GitLab is not configured on this leader (gitlab: section missing)' });
    }
    const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const decision = classifyDelivery({ headers: req.headers, rawBody }, deps.intake);
    const event = String(req.headers['x-gitlab-event'] ?? '');
    let body: Record<string, unknown>;
    switch (decision.kind) {
      case 'unauthorized':
        deps.log.warn({ event, remote: req.ip }, 'webhook refused: bad or missing X-Gitlab-Token');
        return reply.code(401).send({ error: decision.message });
      case 'malformed':
        deps.log.info({ event, error: decision.message }, 'webhook refused: malformed body');
        return reply.code(400).send({ error: decision.message });
      case 'ignored':
        body = { action: 'ignored', reason: decision.reason };
        break;
      case 'accepted': {
        const accepted = deps.lifecycle.acceptPush(decision.push, decision.deliveryKey, event);
        body = accepted.duplicate
          ? { action: 'duplicate', run_id: accepted.run_id, reason: 'this delivery was received before' }
          : { action: 'accepted', run_id: accepted.run_id };
        break;
      }
      default:
        return assertNever(decision);
    }
    deps.log.info({ event, ...body, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'webhook answered');
    return reply.code(200).send(body);
  });

  app.get('/healthz', async (_req, reply) => {
    const ok = deps.healthy();
    return reply.code(ok ? 200 : 503).send({ ok });
  });

  app.get('/api/v1/runs', async (req, reply) => {
    const q = req.query as { state?: string; limit?: string };
    if (q.state !== undefined && !(RUN_STATES as readonly string[]).includes(q.state)) {
      return reply.code(400).send({ error: `state must be one of ${RUN_STATES.join(', ')} (got "${q.state}")` });
    }
    const limit = q.limit === undefined ? 100 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      return reply.code(400).send({ error: `limit must be an integer from 1 to 1000 (got "${q.limit}")` });
    }
    const runs = deps.store.list({ ...(q.state ? { state: q.state as RunState } : {}), limit });
    return { runs: runs.map(apiRun) };
  });

  app.get('/api/v1/runs/:id', async (req, reply) => {
    const { id } = req.params as { id: string };
    const run = deps.store.get(id);
    if (!run) return reply.code(404).send({ error: `no run ${id}` });
    return { ...apiRun(run), events: deps.store.events(id).map(apiEvent) };
  });

  app.get('/api/v1/nodes', async () => ({ nodes: deps.nodes() }));

  app.get('/runs/:id', async (req, reply) => {
    const { id } = req.params as { id: string };
    const run = deps.store.get(id);
    if (!run) return reply.code(404).type('text/html').send(renderRunPage(null, []));
    return reply.type('text/html; charset=utf-8').send(renderRunPage(run, deps.store.events(id)));
  });

  app.get('/', async (_req, reply) =>
    reply.type('text/html; charset=utf-8').send(renderStatusPage(deps.nodes(), deps.store.list({ limit: 50 }))),
  );

  return app;
}
