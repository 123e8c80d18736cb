import { describe, expect, it } from 'vitest';
import { configProblems } from './config-test-kit.js';
import { parseNodeConfig } from './node-config.js';
import { parseUpConfig } from './up-config.js';

const NODE = 'leader: wss://leader.internal/v1/nodes\ntoken: t\ncache_root: /c\nnode_id: gpu-01\n';

describe('build: in node.yml and up.yml (DESIGN §12)', () => {
  it('names the network builds use and the variables every RUN step gets', () => {
    const cfg = parseNodeConfig(
      `${NODE}build:\n  network: secd-build\n  env: { PIP_INDEX_URL: "http://mirror.internal/simple", PIP_TRUSTED_HOST: mirror.internal }\n`,
      'node.yml',
      {},
    );
    expect(cfg.build).toEqual({ network: 'secd-build', env: { PIP_INDEX_URL: 'http://mirror.internal/simple', PIP_TRUSTED_HOST: 'mirror.internal' } });
  });

  it('is the same in up.yml\'s node section, and absent means no network and no variables', () => {
    expect(parseUpConfig('node:\n  build:\n    network: secd-build\n', 'up.yml', {}, { baseDir: '/tmp' }).node.build).toEqual({ network: 'secd-build', env: {} });
    expect(parseUpConfig('', 'up.yml', {}, { baseDir: '/tmp' }).node.build).toBeUndefined();
    expect(parseNodeConfig(`${NODE}build:\n  network: none\n`, 'node.yml', {}).build).toEqual({ network: null, env: {} });
  });

  it('refuses the host network, a name Docker would refuse, a variable that is no name and unknown keys, naming each', () => {
    const problems = (yml: string) => configProblems(() => parseNodeConfig(`${NODE}${yml}`, 'node.yml', {}));
    expect(problems('build:\n  network: host\n')).toEqual([
      "node.yml: build.network must not be host: that is this machine's whole network; name a network that reaches only the mirrors (line 6)",
    ]);
    expect(problems('build:\n  network: "my net"\n')).toEqual(['node.yml: build.network must be a Docker network name (letters, digits, "_", ".", "-") (line 6)']);
    expect(problems('build:\n  env: { "PIP INDEX": x }\n')[0]).toMatch(/^node\.yml: build\.env.* must be a variable name/);
    expect(problems('build:\n  mirrors: [x]\n')[0]).toBe(`node.yml: unknown key "build.mirrors" (line 6)`);
  });
});
