/**
 * The leader's HTTP surface: GitLab webhook, JSON API, health, and the run page that commit statuses
 * link to. `buildLeaderServer(deps)` returns an app that is not listening; only main calls listen,
 * tests call `app.inject()`. Every read of the leader's state is async (storage/state-stores.ts):
 * the routes await it, asking for a run's events and its release record side by side.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { RunReleaseRow } from '../storage/release-store.js';
import type { RunEvent, RunRow, RunStore } from '../storage/run-store.js';
import { assertNever, isTerminal, RUN_STATES, type RunState } from '../storage/run-states.js';
import { classifyDelivery } from '../scheduler/intake/intake.js';
import type { Log } from '../scheduler/common/log.js';
import type { GitLabCheckState } from '../scheduler/gitlab/gitlab-check.js';
import type { RunLifecycle } from '../scheduler/lifecycle/run-lifecycle.js';
import { toApiRun, toApiRunDetail, type ApiNode } from './api-schema.js';
import type { LeaderMetrics } from './metrics.js';
import { gpuModelsOf, renderRunMain, renderRunPage, renderStatusPage, type GpuLabel } from './pages.js';
import { loadStaticAssets } from './static-assets.js';
import { EventStreams } from './event-streams.js';
import { hideEventReasons, hideIdentity, hideReleaseRow, hideRowIdentity, READ_COOKIE, ReadAccess } from './read-access.js';
import { StatusFeed } from './status-feed.js';
import { defaultSdkDir, registerSdkRoutes } from './sdk-files.js';

/** What the server needs from the rest of the leader. */
export interface LeaderServerDeps {
  store: RunStore;
  lifecycle: RunLifecycle;
  log: Log;
  /** null when GitLab is not configured: the hook then answers 503 and says so. */
  intake: { webhookSecret: string; runBranch: string; reviewProject?: string } | null;
  /** Whether the state database accepts writes (storage/state-health.ts isStateWritable). */
  healthy(): Promise<boolean>;
  /**
   * This leader's role and epoch for /healthz (DESIGN §11: `{ "role": "active" | "standby", "epoch": N }`);
   * without it the server says `active`, epoch 0 (a server built alone, in tests).
   */
  role?: () => { role: 'active' | 'standby'; epoch: number };
  /** The GitLab token check's latest outcome for /healthz (scheduler/gitlab/gitlab-check.ts); null: not configured. */
  gitlabCheck?: () => GitLabCheckState | null;
  /** The nodes' view for /api/v1/nodes (web/api-nodes.ts: async, it reads the runs in flight). */
  nodes(): Promise<ApiNode[]>;
  /** PEM certificate and key: serve https (and wss for nodes) instead of http. */
  https?: { cert: string; key: string };
  /** The status page's live feed; without one the server makes its own from `nodes()` and `store`. */
  status?: StatusFeed;
  /** Prometheus metrics for /metrics and the webhook histogram; without them /metrics answers 404. */
  metrics?: LeaderMetrics;
  /** The live status streams and their limits; without them the defaults (200 in all, 20 per address, 1 MiB backlog). */
  eventStreams?: EventStreams;
  /**
   * leader.yml `api.read_token`: readers who do not present it see runs without project, user,
   * commit and reasons (web/read-access.ts). Absent or null: everything is public.
   */
  readToken?: string | null;
  /**
   * Output release records (storage/release-store.ts ReleaseStore): each run's policy, findings,
   * review and outcome for the API, the run page and the status page's held runs. Without them runs
   * show `release: null`.
   */
  releases?: ReleaseSource;
  /** The folder of SDK wheels /sdk/ serves (web/sdk-files.ts); default dist/sdk of this secd; null: none. */
  sdkDir?: string | null;
}

/** What the server reads of output release: one run's record, and every held run's. */
export interface ReleaseSource {
  get(runId: string): Promise<RunReleaseRow | undefined>;
  held(): Promise<RunReleaseRow[]>;
}

// The pages load nothing from anywhere but the leader: the browser enforces it too.
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** "gpu-01 #3 (NVIDIA H100 80GB HBM3)" for each GPU the nodes report. */
function gpuLabels(nodes: ApiNode[]): GpuLabel {
  const labels = new Map<string, string>();
  for (const n of nodes) for (const g of n.gpus) labels.set(g.uuid, `${n.id} #${g.index} (${g.name})`);
  return (uuid) => labels.get(uuid) ?? null;
}

/** Build the leader's HTTP app (not listening). */
export function buildLeaderServer(deps: LeaderServerDeps): FastifyInstance {
  // With `https` the same port serves https:// and the nodes' wss:// (the upgrade rides the TLS server).
  const app = Fastify({ logger: false, bodyLimit: 25 * 1024 * 1024, ...(deps.https ? { https: deps.https } : {}) }) as unknown as FastifyInstance;
  // The hook checks the token and parses JSON itself, so it needs the raw bytes whatever the content type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  const assets = loadStaticAssets();
  const access = new ReadAccess(deps.readToken ?? null);
  // With a read token, answers differ by who asks: no cache may hand one reader's answer to another.
  if (access.private) {
    app.addHook('onSend', async (_req, reply) => {
      reply.header('vary', 'Authorization, Cookie');
    });
    // A browser presents the token once as ?read_token=…; it is kept in a cookie and dropped from the URL.
    app.addHook('onRequest', async (req, reply) => {
      // A bearer token that is presented but wrong is an error, not an anonymous read: a script
      // (`secd status --read-token-file`) learns its token is wrong instead of seeing "(hidden)".
      if (access.presentsWrongBearer(req.headers) && req.url.startsWith('/api/')) {
        return reply.code(401).send({ error: "that is not this leader's read token (leader.yml api.read_token)" });
      }
      const url = new URL(req.url, 'http://leader');
      const given = url.searchParams.get('read_token');
      if (given === null || req.method !== 'GET') return;
      if (!access.matches(given)) {
        return reply.code(401).type('text/plain; charset=utf-8').send('that is not this leader\'s read token (leader.yml api.read_token)\n');
      }
      url.searchParams.delete('read_token');
      const cookie = `${READ_COOKIE}=${encodeURIComponent(given)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000${deps.https ? '; Secure' : ''}`;
      return reply.code(303).header('set-cookie', cookie).header('cache-control', 'no-store').header('location', `${url.pathname}${url.search}`).send();
    });
  }
  const status =
    deps.status ??
    new StatusFeed({ nodes: deps.nodes, store: deps.store, now: () => new Date(), log: deps.log, ...(deps.releases ? { releases: deps.releases } : {}) });
  const releaseOf = async (runId: string): Promise<RunReleaseRow | null> => (deps.releases ? ((await deps.releases.get(runId)) ?? null) : null);
  if (!deps.status) {
    status.start();
    app.addHook('onClose', async () => status.close());
  }

  app.post('/v1/hook', async (req, reply) => {
    const started = process.hrtime.bigint();
    const observe = (outcome: string) => deps.metrics?.observeWebhook(Number(process.hrtime.bigint() - started) / 1e9, outcome);
    if (!deps.intake) {
      observe('unconfigured');
      return reply.code(503).send({ error: 'GitLab is not configured on this leader (gitlab: section missing)' });
    }
    const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const decision = classifyDelivery({ headers: req.headers, rawBody }, deps.intake);
    const event = String(req.headers['x-gitlab-event'] ?? '');
    let body: Record<string, unknown>;
    // Each authorized delivery tells the lifecycle the hooks still come, so accepted pushes'
    // background work waits for a pause (scheduler/lifecycle/intake-gate.ts; acceptPush tells it
    // itself). A refused one does not: a stranger must not hold secd's work back. (`?.`: the route's
    // tests hand in partial lifecycles.)
    const hooksStillComing = () => deps.lifecycle.webhookArrived?.();
    switch (decision.kind) {
      case 'unauthorized':
        deps.log.warn({ event, remote: req.ip }, 'webhook refused: bad or missing X-Gitlab-Token');
        observe('unauthorized');
        return reply.code(401).send({ error: decision.message });
      case 'malformed':
        hooksStillComing();
        deps.log.info({ event, error: decision.message }, 'webhook refused: malformed body');
        observe('malformed');
        return reply.code(400).send({ error: decision.message });
      case 'ignored':
        hooksStillComing();
        body = { action: 'ignored', reason: decision.reason };
        break;
      case 'merge_request': {
        hooksStillComing();
        // Only which merge request is taken from the hook: the lifecycle's release desk reads the
        // review itself from GitLab, in the background (DESIGN §10).
        const looked = await deps.lifecycle.onMergeRequestEvent(decision.projectId, decision.iid);
        body =
          looked.run_id === null
            ? { action: 'ignored', reason: `merge request !${decision.iid} of project ${decision.projectId} reviews no held run` }
            : // `held_run`, not `run_id`: this answer starts no run (a push's answer names the run it started).
              { action: 'review_checked', held_run: looked.run_id, reason: 'the review is read again from GitLab' };
        if (decision.action !== null) body.mr_action = decision.action;
        break;
      }
      case 'accepted': {
        const accepted = await deps.lifecycle.acceptPush(decision.push, decision.deliveryKey, event);
        body = accepted.duplicate
          ? { action: 'duplicate', run_id: accepted.run_id, reason: 'this delivery was received before' }
          : { action: 'accepted', run_id: accepted.run_id };
        break;
      }
      default:
        return assertNever(decision);
    }
    deps.log.info({ event, ...body, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'webhook answered');
    observe(String(body.action));
    return reply.code(200).send(body);
  });

  app.get('/healthz', async (_req, reply) => {
    // A check that fails outright is a database that does not answer: unhealthy, never a 500.
    const ok = await deps.healthy().catch(() => false);
    // A GitLab that refuses the token is shown, not made a 503: the leader itself is fine, and a
    // supervisor restarting it would not fix the token. Monitoring reads `gitlab.state`.
    const gitlab = deps.gitlabCheck?.() ?? null;
    // Active and standby leaders are both healthy while the database takes writes (a load balancer
    // sends webhooks to either); `role` says which one plans.
    const { role, epoch } = deps.role?.() ?? { role: 'active' as const, epoch: 0 };
    return reply.code(ok ? 200 : 503).send({ ok, role, epoch, ...(gitlab ? { gitlab } : {}) });
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
    const runs = await deps.store.list({ ...(q.state ? { state: q.state as RunState } : {}), limit });
    const releases = await Promise.all(runs.map((r) => releaseOf(r.id)));
    const all = access.allows(req.headers);
    return { runs: runs.map((r, i) => (all ? toApiRun(r, releases[i] ?? null) : hideIdentity(toApiRun(r, releases[i] ?? null)))) };
  });

  app.get('/api/v1/runs/:id', async (req, reply) => {
    const { id } = req.params as { id: string };
    const run = await deps.store.get(id);
    if (!run) return reply.code(404).send({ error: `no run ${id}` });
    const [release, events] = await Promise.all([releaseOf(id), deps.store.events(id)]);
    if (!access.allows(req.headers)) return hideIdentity(toApiRunDetail(run, release, hideEventReasons(events)));
    return toApiRunDetail(run, release, events);
  });

  app.get('/api/v1/nodes', async () => ({ nodes: await deps.nodes() }));

  // A run, its audit trail and its release as this reader may see them.
  const visibleRun = async (headers: import('node:http').IncomingHttpHeaders, run: RunRow): Promise<[RunRow, RunEvent[], RunReleaseRow | null]> => {
    const [release, events] = await Promise.all([releaseOf(run.id), deps.store.events(run.id)]);
    if (access.allows(headers)) return [run, events, release];
    return [hideRowIdentity(run), hideEventReasons(events), release && hideReleaseRow(release)];
  };

  app.get('/runs/:id', async (req, reply) => {
    const { id } = req.params as { id: string };
    const run = await deps.store.get(id);
    reply.headers(PAGE_HEADERS).type('text/html; charset=utf-8');
    if (!run) return reply.code(404).send(renderRunPage(assets, null, []));
    const [[shown, events, release], nodes] = await Promise.all([visibleRun(req.headers, run), deps.nodes()]);
    return reply.send(renderRunPage(assets, shown, events, gpuLabels(nodes), release, { gpuModel: gpuModelsOf(nodes) }));
  });

  // What the run page's script swaps in while the run is unfinished.
  app.get('/runs/:id/main', async (req, reply) => {
    const { id } = req.params as { id: string };
    const run = await deps.store.get(id);
    if (!run) return reply.code(404).send({ error: `no run ${id}` });
    reply.header('cache-control', 'no-store');
    const [[shown, events, release], nodes] = await Promise.all([visibleRun(req.headers, run), deps.nodes()]);
    return { html: renderRunMain(shown, events, gpuLabels(nodes), release, { gpuModel: gpuModelsOf(nodes) }), live: !isTerminal(run.state) };
  });

  app.get('/', async (_req, reply) =>
    reply.headers(PAGE_HEADERS).type('text/html; charset=utf-8').send(renderStatusPage(assets)),
  );

  app.get('/assets/:name', async (req, reply) => {
    const { name } = req.params as { name: string };
    const { v } = req.query as { v?: string };
    const a = assets.get(name);
    if (!a) return reply.code(404).send({ error: `no asset ${name}` });
    const etag = `"${a.hash}"`;
    reply.header('etag', etag).header('x-content-type-options', 'nosniff');
    // A URL with the current hash never changes: cache it for good. Anything else revalidates.
    reply.header('cache-control', v === a.hash ? 'public, max-age=31536000, immutable' : 'no-cache');
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.type(a.contentType).send(a.body);
  });

  // The status page's live feed: one snapshot, then only changes (server-sent events), within the
  // streams' limits (a bounded backlog per stream, a cap in all and per address).
  const streams = deps.eventStreams ?? new EventStreams();
  deps.metrics?.watchEventStreams(() => streams.stats());
  let refusalLoggedAt = 0;
  app.get('/api/v1/events', (req, reply) => {
    const refused = streams.refusal(req.ip);
    if (refused) {
      // Once a minute at most: a flood of refused connections must not become a flood of log lines.
      if (Date.now() - refusalLoggedAt > 60_000) {
        refusalLoggedAt = Date.now();
        deps.log.warn({ remote: req.ip, status: refused.status, ...streams.stats() }, 'status stream refused: too many open');
      }
      return reply.code(refused.status).header('retry-after', '30').type('text/plain; charset=utf-8').send(refused.message);
    }
    reply.hijack();
    streams.serve(reply.raw, req.ip, (listener) => status.subscribe(listener), !access.allows(req.headers));
    return reply;
  });
  // Open streams would keep close() waiting for ever: end them first.
  app.addHook('preClose', async () => streams.endAll());

  // What the status page starts from, as JSON (also handy for scripts).
  app.get('/api/v1/status', async (req) => {
    const snapshot = await status.snapshot();
    if (access.allows(req.headers)) return snapshot;
    return { ...snapshot, queue: snapshot.queue.map(hideIdentity), held: snapshot.held.map(hideIdentity), recent: snapshot.recent.map(hideIdentity) };
  });

  // The Python SDK's wheel for researchers' own machines: public, like the SDK's source.
  registerSdkRoutes(app, deps.sdkDir === undefined ? defaultSdkDir() : deps.sdkDir);

  app.get('/metrics', async (_req, reply) => {
    if (!deps.metrics) return reply.code(404).send({ error: 'metrics are not enabled on this server' });
    const { contentType, body } = await deps.metrics.render();
    return reply.header('cache-control', 'no-store').type(contentType).send(body);
  });

  return app;
}
