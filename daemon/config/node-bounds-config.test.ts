/** node.yml's bounds on disk and builds: `disk_watermark_bytes` and `build.cgroup_parent`. */
import { describe, expect, it } from 'vitest';
import { configProblems } from './config-test-kit.js';
import { parseNodeConfig } from './node-config.js';
import { parseUpConfig } from './up-config.js';

const NODE = 'leader: wss://leader.internal/v1/nodes\ntoken: t\ncache_root: /c\nnode_id: gpu-01\n';

describe('disk_watermark_bytes and build.cgroup_parent in node.yml and up.yml', () => {
  it('reads sizes and cgroup parents; absent, neither appears (the executor defaults apply)', () => {
    const cfg = parseNodeConfig(`${NODE}disk_watermark_bytes: 5 GiB\nbuild:\n  cgroup_parent: /secd-build\n`, 'node.yml', {});
    expect(cfg.disk_watermark_bytes).toBe(5 * 2 ** 30);
    expect(cfg.build).toEqual({ network: null, env: {}, cgroup_parent: '/secd-build' });
    const bare = parseNodeConfig(NODE, 'node.yml', {});
    expect('disk_watermark_bytes' in bare).toBe(false);
    expect(parseNodeConfig(`${NODE}build:\n  network: none\n`, 'node.yml', {}).build).toEqual({ network: null, env: {} });
    const up = parseUpConfig('node:\n  build:\n    cgroup_parent: secd-build.slice\n', 'up.yml', {}, { baseDir: '/tmp' });
    expect(up.node.build).toEqual({ network: null, env: {}, cgroup_parent: 'secd-build.slice' });
  });

  it('refuses a cgroup parent that is no cgroup path or slice, one that climbs, and a watermark that is no size', () => {
    const problems = (yml: string) => configProblems(() => parseNodeConfig(`${NODE}${yml}`, 'node.yml', {}));
    const shape = 'must be a cgroup path like /secd-build or a systemd slice like secd-build.slice';
    expect(problems('build:\n  cgroup_parent: secd-build\n')).toEqual([`node.yml: build.cgroup_parent ${shape} (line 6)`]);
    expect(problems('build:\n  cgroup_parent: "/a b"\n')).toEqual([`node.yml: build.cgroup_parent ${shape} (line 6)`]);
    expect(problems('build:\n  cgroup_parent: /secd/../etc\n')).toEqual(['node.yml: build.cgroup_parent must not contain ".." (line 6)']);
    expect(problems('disk_watermark_bytes: lots\n')[0]).toMatch(/^node\.yml: disk_watermark_bytes /);
    expect(problems('disk_watermark_bytes: 0\n')[0]).toMatch(/^node\.yml: disk_watermark_bytes must be a positive number of bytes/);
  });
});
