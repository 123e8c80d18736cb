/** node.yml's `leader:` as one URL or a list of leaders sharing one state database (DESIGN §11). */
import { describe, expect, it } from 'vitest';
import { configProblems } from './config-test-kit.js';
import { parseNodeConfig } from './node-config.js';

const REST = 'token: t\ncache_root: /c\nnode_id: gpu-01\n';
const parse = (leader: string) => parseNodeConfig(`${leader}${REST}`, 'node.yml', {}, { hostname: 'h' });
const problems = (leader: string) => configProblems(() => parse(leader));

describe("node.yml's leader", () => {
  it('one URL reads as a list of one, its trailing "/" dropped', () => {
    expect(parse('leader: wss://leader.internal/v1/nodes/\n').leader).toEqual(['wss://leader.internal/v1/nodes']);
  });

  it('a list keeps the order written, which is the order the node tries them', () => {
    const cfg = parse('leader:\n  - wss://leader-b.internal:8443/v1/nodes\n  - wss://leader-a.internal:8443/v1/nodes\n  - ws://10.0.0.3:8080/v1/nodes\n');
    expect(cfg.leader).toEqual(['wss://leader-b.internal:8443/v1/nodes', 'wss://leader-a.internal:8443/v1/nodes', 'ws://10.0.0.3:8080/v1/nodes']);
  });

  it('a URL of the list that is not a websocket URL is named by its place and line', () => {
    expect(problems('leader:\n  - wss://a.internal/v1/nodes\n  - https://b.internal/v1/nodes\n  - 8080\n')).toEqual([
      'node.yml: leader[1] must be a ws:// or wss:// URL (got "https://b.internal/v1/nodes") (line 3)',
      'node.yml: leader[2] must be a ws:// or wss:// URL (got 8080) (line 4)',
    ]);
  });

  it('a leader listed twice is refused, naming both places, even written with another host case, default port or trailing "/"', () => {
    expect(problems('leader:\n  - wss://a.internal/v1/nodes\n  - wss://b.internal/v1/nodes\n  - wss://A.internal:443/v1/nodes/\n')).toEqual([
      'node.yml: leader[2] names the same leader as leader[0] ("wss://A.internal:443/v1/nodes"): list each leader once (line 4)',
    ]);
    // Another port or scheme is another leader.
    expect(parse('leader: [ws://a.internal:8080/v1/nodes, ws://a.internal:8081/v1/nodes, wss://a.internal:8080/v1/nodes]\n').leader).toHaveLength(3);
  });

  it('an empty list or a mapping is refused with what leader takes, and a missing leader is required', () => {
    expect(problems('leader: []\n')).toEqual(['node.yml: leader must name at least one leader URL (line 1)']);
    expect(problems('leader:\n  url: wss://a.internal/v1/nodes\n')).toEqual(['node.yml: leader must be a ws:// or wss:// URL or a list of them (got a mapping) (line 2)']);
    expect(problems('')).toEqual(['node.yml: leader is required']);
  });
});
