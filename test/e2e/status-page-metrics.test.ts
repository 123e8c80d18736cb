/**
 * GET /metrics as Prometheus scrapes it, read back with a real text-format parser: node and GPU
 * gauges from the nodes' view, queue and finished-run figures from the run store, and the webhook and
 * scheduling latency histograms observed by a real leader while a signed push runs end to end.
 */
import parsePrometheusTextFormat, { type PrometheusFamily } from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../support/cluster-harness.js';
import { aGpu, aNode, aRun, startStatusServer, type StatusServer } from '../support/status-page-fixtures.js';
import { BUSYBOX_IMAGE } from '../support/test-images.js';

const GiB = 2 ** 30;

async function scrape(url: string): Promise<{ contentType: string; families: Map<string, PrometheusFamily> }> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  const families = parsePrometheusTextFormat(await res.text());
  return { contentType: res.headers.get('content-type') ?? '', families: new Map(families.map((f) => [f.name, f])) };
}

function sample(families: Map<string, PrometheusFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const family = families.get(name);
  const s = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return s?.value === undefined ? undefined : Number(s.value);
}

describe('/metrics with known nodes and runs', () => {
  let server: StatusServer;

  beforeAll(async () => {
    const nodes = [
      aNode('gpu-01', [
        aGpu('gpu-01', 0, { uuid: 'GPU-aaaa', utilization_pct: 37, memory_used_bytes: 12 * GiB, run_id: 'r1' }),
        aGpu('gpu-01', 1, { uuid: 'GPU-bbbb', utilization_pct: null, memory_used_bytes: null }),
      ]),
      aNode('gpu-02', 0, { state: 'down' }),
    ];
    server = await startStatusServer({ nodes: () => nodes, intake: { webhookSecret: 'sekrit', runBranch: 'default' } });
    await aRun(server.store, { state: 'queued' });
    await aRun(server.store, { state: 'queued' });
    await aRun(server.store, { state: 'succeeded' });
    await aRun(server.store, { state: 'failed' });
    await aRun(server.store, { state: 'running' });
    await aRun(server.store, { state: 'held' });
    await aRun(server.store, { state: 'held' });
    await aRun(server.store, { state: 'withheld' });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('reports each node up or down and each GPU\'s utilisation and memory, leaving N/A out', async () => {
    const { contentType, families } = await scrape(server.url);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sample(families, 'secd_node_up', { node: 'gpu-01' })).toBe(1);
    expect(sample(families, 'secd_node_up', { node: 'gpu-02' })).toBe(0);
    expect(sample(families, 'secd_gpu_utilization_ratio', { node: 'gpu-01', uuid: 'GPU-aaaa' })).toBeCloseTo(0.37);
    expect(sample(families, 'secd_gpu_memory_used_bytes', { node: 'gpu-01', uuid: 'GPU-aaaa' })).toBe(12 * GiB);
    expect(sample(families, 'secd_gpu_utilization_ratio', { uuid: 'GPU-bbbb' })).toBeUndefined();
    expect(sample(families, 'secd_gpu_memory_used_bytes', { uuid: 'GPU-bbbb' })).toBeUndefined();
    expect(sample(families, 'secd_gpu_assigned', { uuid: 'GPU-aaaa' })).toBe(1);
    expect(families.get('secd_gpu_utilization_ratio')?.type).toBe('GAUGE');
  });

  it('counts queued runs and finished runs by state', async () => {
    const { families } = await scrape(server.url);
    expect(sample(families, 'secd_runs_queued')).toBe(2);
    expect(sample(families, 'secd_runs_in_progress')).toBe(1);
    expect(families.get('secd_runs_finished_total')?.type).toBe('COUNTER');
    expect(sample(families, 'secd_runs_finished_total', { state: 'succeeded' })).toBe(1);
    expect(sample(families, 'secd_runs_finished_total', { state: 'failed' })).toBe(1);
    expect(sample(families, 'secd_runs_finished_total', { state: 'lost' })).toBe(0);
    await aRun(server.store, { state: 'succeeded' });
    expect(sample((await scrape(server.url)).families, 'secd_runs_finished_total', { state: 'succeeded' })).toBe(2);
  });

  it('counts runs held for output review, and withheld runs among the finished', async () => {
    const { families } = await scrape(server.url);
    expect(families.get('secd_runs_held')?.type).toBe('GAUGE');
    expect(sample(families, 'secd_runs_held')).toBe(2);
    expect(sample(families, 'secd_runs_finished_total', { state: 'withheld' })).toBe(1);
    expect(sample(families, 'secd_runs_finished_total', { state: 'held' })).toBeUndefined();
    // Held runs have left their node: they are not in progress.
    expect(sample(families, 'secd_runs_in_progress')).toBe(1);
  });

  it('times every webhook answer and counts them by outcome', async () => {
    await fetch(`${server.url}/v1/hook`, { method: 'POST', headers: { 'x-gitlab-token': 'wrong' }, body: '{}' });
    await fetch(`${server.url}/v1/hook`, { method: 'POST', headers: { 'x-gitlab-token': 'sekrit', 'x-gitlab-event': 'Push Hook' }, body: '{not json' });
    const { families } = await scrape(server.url);
    const hooks = families.get('secd_webhook_duration_seconds');
    expect(hooks?.type).toBe('HISTOGRAM');
    expect(Number(hooks?.metrics[0]?.count)).toBe(2);
    expect(Number(hooks?.metrics[0]?.buckets?.['+Inf'])).toBe(2);
    expect(sample(families, 'secd_webhook_deliveries_total', { outcome: 'unauthorized' })).toBe(1);
    expect(sample(families, 'secd_webhook_deliveries_total', { outcome: 'malformed' })).toBe(1);
  });
});

describe('/metrics of a real leader after a signed push ran', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it('observes the webhook and the queued → assigned latency, and counts the run as succeeded', async () => {
    const ada = await cluster.addResearcher({ username: 'ada', project: 'lab/metrics' });
    const pushed = await ada.pushRun({ Dockerfile: `FROM ${BUSYBOX_IMAGE}\nCMD ["true"]\n` }, { message: 'run' });
    const run = await cluster.waitForRun(pushed.id);
    expect(run.state, run.reason).toBe('succeeded');

    const { families } = await scrape(cluster.leader.url);
    // The push, and the results branch secd pushed back (a delivery it ignores).
    expect(cluster.gitlab.deliveries).toHaveLength(2);
    expect(Number(families.get('secd_webhook_duration_seconds')!.metrics[0]!.count)).toBe(2);
    expect(sample(families, 'secd_webhook_deliveries_total', { outcome: 'accepted' })).toBe(1);
    expect(sample(families, 'secd_webhook_deliveries_total', { outcome: 'ignored' })).toBe(1);
    const scheduling = families.get('secd_scheduling_latency_seconds')!.metrics[0]!;
    expect(Number(scheduling.count)).toBe(1);
    expect(Number(scheduling.sum)).toBeGreaterThanOrEqual(0);
    expect(sample(families, 'secd_runs_finished_total', { state: 'succeeded' })).toBe(1);
    expect(sample(families, 'secd_runs_queued')).toBe(0);
    expect(sample(families, 'secd_node_up', { node: 'e2e-node' })).toBe(1);
  });
});
