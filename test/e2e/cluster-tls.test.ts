/**
 * The leader serving https:// and wss:// with a certificate from the cluster's own CA (made here with
 * the openssl CLI): a node that trusts the CA (`ca_file`) connects and reports over wss://; a node
 * that does not is refused by its own TLS check and never shows up.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, startProcessCluster, type ProcessCluster } from '../support/process-cluster.js';

const run = promisify(execFile);
const RTX2080 = 'openpai_2x-rtx-2080ti_drv410.73.xml';

/** A CA and a certificate for 127.0.0.1 signed by it, made with the openssl CLI. */
async function makeCertificates(dir: string): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const f = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=secd test cluster CA']);
  await run('openssl', ['req', ...ec, '-keyout', f('leader.key'), '-out', f('leader.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(f('san.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await run('openssl', [
    'x509', '-req', '-in', f('leader.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('leader.pem'), '-days', '2', '-extfile', f('san.ext'),
  ]);
  return { caFile: f('ca.pem'), certFile: f('leader.pem'), keyFile: f('leader.key') };
}

describe('a leader with TLS', () => {
  let certs: string;
  let cluster: ProcessCluster;

  beforeAll(async () => {
    certs = await mkdtemp(join(tmpdir(), 'secd-certs-'));
    const tls = await makeCertificates(certs);
    cluster = await startProcessCluster({
      nodes: [
        { id: 'trusting', gpus: RTX2080 },
        { id: 'untrusting', gpus: null, noCa: true },
      ],
      tls,
      startNodes: false,
    });
    await cluster.nodes.get('trusting')!.start();
  });
  afterAll(async () => {
    await cluster?.close();
    if (certs) await rm(certs, { recursive: true, force: true });
  });

  it('serves the API over https and a node that trusts the CA reports over wss', async () => {
    expect(cluster.leaderUrl).toMatch(/^https:\/\//);
    const nodes = await cluster.waitFor('telemetry over wss', async () => {
      const list = await cluster.apiNodes();
      return list.find((n) => n.id === 'trusting' && n.state === 'up' && n.gpus[1]?.power_w === 19.11) ? list : undefined;
    });
    expect(nodes.find((n) => n.id === 'trusting')!.gpus.map((g) => g.name)).toEqual(['GeForce RTX 2080 Ti', 'GeForce RTX 2080 Ti']);
    // Without the CA, https to the leader is refused by the client's own certificate check.
    await expect(request(`${cluster.leaderUrl}/healthz`)).rejects.toThrow(/self[- ]signed|unable to verify|certificate/i);
  });

  it('a node without the CA does not connect, and says why', async () => {
    const node = cluster.nodes.get('untrusting')!;
    await node.start();
    const why = await cluster.waitFor('the TLS refusal in the node log', async () => {
      const log = await readFile(join(cluster.root, 'node-untrusting.log'), 'utf8').catch(() => '');
      return log.split('\n').find((l) => l.includes('could not reach the leader'));
    });
    expect(JSON.parse(why).why).toMatch(/self[- ]signed|unable to verify|certificate/i);
    expect((await cluster.apiNodes()).find((n) => n.id === 'untrusting')?.state).toBe('down');
    await node.kill();
  });
});
