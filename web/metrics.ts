/**
 * The leader's Prometheus metrics (GET /metrics). The only file that imports prom-client. Each leader
 * gets its own registry (never prom-client's global one): tests run several leaders in one process.
 * Node, GPU and run figures are read from their sources at scrape time, so they are never stale and
 * cost nothing between scrapes; the two latency histograms are observed as things happen. Output
 * release shows as secd_runs_held (waiting for review) and secd_runs_finished_total{state="withheld"}.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RunEvent } from '../storage/run-store.js';
import { isTerminal, RUN_STATES, type RunState } from '../storage/run-states.js';
import type { ApiGpu, ApiNode } from './api-schema.js';
import type { EventStreamStats } from './event-streams.js';

/** Where the scrape-time figures come from. */
export interface MetricsSources {
  /** Every node as the API shows it (web/api-nodes.ts). */
  nodes(): Promise<ApiNode[]>;
  /** Runs per state (every state present), read from the state database (storage/run-counts.ts). */
  runCounts(): Promise<Record<RunState, number>>;
  /** This leader's role and epoch (DESIGN §11); absent: a leader built alone, reported active at epoch 0. */
  role?(): { role: 'active' | 'standby'; epoch: number };
}

/** What the rest of the leader records, and what /metrics serves. */
export interface LeaderMetrics {
  /** One webhook delivery answered (`outcome`: accepted, duplicate, review_checked, ignored, unauthorized, malformed, unconfigured). */
  observeWebhook(seconds: number, outcome: string): void;
  /** A queued run was assigned to a node `seconds` after it was queued. */
  observeScheduling(seconds: number): void;
  /** Report the status page's event streams (open, buffered, dropped, refused) from `stats` at each scrape. */
  watchEventStreams(stats: () => EventStreamStats): void;
  /** The exposition: content type and body. */
  render(): Promise<{ contentType: string; body: string }>;
}

const FINISHED_STATES = RUN_STATES.filter(isTerminal);

/** Seconds from a run's (last) entry into `queued` to its (last) `assigned`, from its audit trail; null when it never went through both. */
export function queuedToAssignedSeconds(events: readonly RunEvent[]): number | null {
  let assigned: string | null = null;
  let queued: string | null = null;
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i]!;
    if (assigned === null && e.to === 'assigned') assigned = e.at;
    else if (assigned !== null && e.to === 'queued') {
      queued = e.at;
      break;
    }
  }
  if (assigned === null || queued === null) return null;
  return Math.max(0, (Date.parse(assigned) - Date.parse(queued)) / 1000);
}

/** Create one leader's metrics on a registry of its own. */
export function createLeaderMetrics(sources: MetricsSources): LeaderMetrics {
  const registry = new Registry();
  const registers = [registry];

  // The node and GPU gauges share one read of the nodes per scrape (render() clears it): the first collect reads.
  let scrapedNodes: Promise<ApiNode[]> | null = null;
  const scrapeNodes = (): Promise<ApiNode[]> => (scrapedNodes ??= sources.nodes());
  const gpus = async (): Promise<Array<{ node: string; g: ApiGpu }>> =>
    (await scrapeNodes()).flatMap((n) => n.gpus.map((g) => ({ node: n.id, g })));

  new Gauge({
    name: 'secd_node_up',
    help: '1 while the node is connected (state up or draining), 0 when it is down.',
    labelNames: ['node'] as const,
    registers,
    async collect() {
      const nodes = await scrapeNodes();
      this.reset();
      for (const n of nodes) this.set({ node: n.id }, n.state === 'down' ? 0 : 1);
    },
  });

  const gpuGauge = (name: string, help: string, value: (g: ApiGpu) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ['node', 'uuid'] as const,
      registers,
      async collect() {
        const all = await gpus();
        this.reset();
        // N/A from the hardware is left out (absent), never reported as 0.
        for (const { node, g } of all) {
          const v = value(g);
          if (v !== null) this.set({ node, uuid: g.uuid }, v);
        }
      },
    });
  gpuGauge('secd_gpu_utilization_ratio', 'GPU utilisation, 0 to 1, from the node\'s last status report.', (g) =>
    g.utilization_pct === null ? null : g.utilization_pct / 100,
  );
  gpuGauge('secd_gpu_memory_used_bytes', 'GPU memory in use, bytes.', (g) => g.memory_used_bytes);
  gpuGauge('secd_gpu_memory_total_bytes', 'GPU memory, bytes.', (g) => g.memory_total_bytes);
  gpuGauge('secd_gpu_temperature_celsius', 'GPU temperature, degrees Celsius.', (g) => g.temperature_c);
  gpuGauge('secd_gpu_power_watts', 'GPU power draw, watts.', (g) => g.power_w);
  gpuGauge('secd_gpu_assigned', '1 while a secd run holds the GPU.', (g) => (g.run_id === null ? 0 : 1));

  // Several leaders (DESIGN §11): alert when no leader of a site reports 1 (or two do).
  new Gauge({
    name: 'secd_leader_active',
    help: 'Whether this leader is the active one (1) or a standby (0).',
    registers,
    collect() {
      this.set((sources.role?.().role ?? 'active') === 'active' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'secd_leader_epoch',
    help: 'The lease epoch this leader leads (active), or the newest it has seen (standby).',
    registers,
    collect() {
      this.set(sources.role?.().epoch ?? 0);
    },
  });
  // Run counts share one query per scrape too (its promise; prom-client awaits async collects).
  let counts: Promise<Record<RunState, number>> | null = null;
  const runCounts = (): Promise<Record<RunState, number>> => (counts ??= sources.runCounts());
  new Gauge({
    name: 'secd_runs_queued',
    help: 'Runs waiting for a node (state queued).',
    registers,
    async collect() {
      this.set((await runCounts()).queued);
    },
  });
  new Gauge({
    name: 'secd_runs_in_progress',
    help: 'Runs assigned to a node and not finished (assigned, building, running, uploading).',
    registers,
    async collect() {
      const c = await runCounts();
      this.set(c.assigned + c.building + c.running + c.uploading);
    },
  });
  // Held is neither in progress (the node let go of it) nor finished: output checkers have it.
  new Gauge({
    name: 'secd_runs_held',
    help: 'Runs whose outputs wait for output checkers (state held, DESIGN §10).',
    registers,
    async collect() {
      this.set((await runCounts()).held);
    },
  });
  // Counted from the runs table, so the totals survive restarts and never double-count a run;
  // withheld runs are here as state="withheld", beside the other terminal states.
  new Counter({
    name: 'secd_runs_finished_total',
    help: 'Runs that reached a terminal state, by state.',
    labelNames: ['state'] as const,
    registers,
    async collect() {
      const c = await runCounts();
      this.reset();
      for (const state of FINISHED_STATES) this.inc({ state }, c[state]);
    },
  });

  // Latency in one histogram and outcomes in a counter: Prometheus' usual split, and cheaper than a
  // histogram per outcome.
  const webhook = new Histogram({
    name: 'secd_webhook_duration_seconds',
    help: 'Time to answer a GitLab webhook delivery.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers,
  });
  const deliveries = new Counter({
    name: 'secd_webhook_deliveries_total',
    help: 'GitLab webhook deliveries answered, by outcome (accepted, duplicate, review_checked, ignored, unauthorized, malformed, unconfigured).',
    labelNames: ['outcome'] as const,
    registers,
  });
  const scheduling = new Histogram({
    name: 'secd_scheduling_latency_seconds',
    help: 'Time from a run being queued to its assignment to a node.',
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400],
    registers,
  });

  // The status page's streams: what they hold now and what the limits turned away (web/event-streams.ts).
  let streamStats: (() => EventStreamStats) | null = null;
  let scrapedStreams: EventStreamStats | null = null;
  const streamsNow = (): EventStreamStats | null => (scrapedStreams ??= streamStats?.() ?? null);
  const streamGauge = (name: string, help: string, value: (s: EventStreamStats) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const s = streamsNow();
        if (s) this.set(value(s));
      },
    });
  streamGauge('secd_event_streams_open', 'Status page event streams open now.', (s) => s.open);
  streamGauge('secd_event_streams_buffered_bytes', 'Bytes waiting in the open status streams (each is closed past 1 MiB by default).', (s) => s.buffered_bytes);
  new Counter({
    name: 'secd_event_streams_closed_total',
    help: 'Status streams the leader closed or refused, by reason (slow: the client stopped reading; full: the cap in all; address: the cap per remote address).',
    labelNames: ['reason'] as const,
    registers,
    collect() {
      this.reset();
      const s = streamsNow();
      if (!s) return;
      this.inc({ reason: 'slow' }, s.dropped_slow);
      this.inc({ reason: 'full' }, s.refused_full);
      this.inc({ reason: 'address' }, s.refused_address);
    },
  });

  return {
    watchEventStreams(stats) {
      streamStats = stats;
    },
    observeWebhook(seconds, outcome) {
      webhook.observe(seconds);
      deliveries.inc({ outcome });
    },
    observeScheduling(seconds) {
      scheduling.observe(seconds);
    },
    async render() {
      scrapedNodes = null;
      counts = null;
      scrapedStreams = null;
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
