/** The node's start-up warning: it notices when it runs on the leader's machine. */
import { describe, expect, it } from 'vitest';
import { leaderOnThisHost } from './node.js';

const here = () => ['127.0.0.1', '10.0.0.5', 'fe80::1', '::1'];
const dns = (table: Record<string, string[]>) => async (host: string) => {
  const found = table[host];
  if (!found) throw new Error(`ENOTFOUND ${host}`);
  return found;
};

describe("a node on the leader's machine", () => {
  it('is noticed when the leader URL names this machine by loopback, by its own address or by a name resolving to it', async () => {
    expect(await leaderOnThisHost('ws://127.0.0.1:8080/v1/nodes', dns({}), here)).toBe('127.0.0.1');
    expect(await leaderOnThisHost('wss://[::1]:8443/v1/nodes', dns({}), here)).toBe('::1');
    expect(await leaderOnThisHost('ws://localhost:8080/v1/nodes', dns({ localhost: ['::1', '127.0.0.1'] }), here)).toBe('::1');
    expect(await leaderOnThisHost('wss://leader.example.org/v1/nodes', dns({ 'leader.example.org': ['10.0.0.5'] }), here)).toBe('10.0.0.5');
  });

  it('is not reported for a leader elsewhere, or one whose name does not resolve', async () => {
    expect(await leaderOnThisHost('wss://leader.example.org/v1/nodes', dns({ 'leader.example.org': ['10.0.0.9'] }), here)).toBeNull();
    expect(await leaderOnThisHost('wss://gone.example.org/v1/nodes', dns({}), here)).toBeNull();
    expect(await leaderOnThisHost('not a url', dns({}), here)).toBeNull();
  });
});
