import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from './config-file.js';
import { parseListenAddress } from './config-fields.js';
import { loadLeaderConfig, parseLeaderConfig } from './leader-config.js';
import { loadNodeConfig, parseNodeConfig } from './node-config.js';
import { EMBEDDED_DEFAULTS, loadUpConfig, parseUpConfig } from './up-config.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'secd-config-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const noEnv = {};
const MiB = 1024 * 1024;

/** A minimal valid leader.yml. */
const LEADER = `
gitlab:
  url: https://gitlab.example.org/
  token: glpat-abc
  webhook_secret: hook-secret
`;

/** The ConfigError a parse throws, so tests can assert on what an operator reads. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('leader.yml', () => {
  it('a minimal file takes the documented defaults', () => {
    const cfg = parseLeaderConfig(LEADER, path.join(dir, 'leader.yml'), noEnv);
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(cfg.public_url).toBe('http://127.0.0.1:8080');
    expect(cfg.data_dir).toBe('/var/lib/secd');
    expect(cfg.gitlab).toEqual({
      url: 'https://gitlab.example.org',
      token: 'glpat-abc',
      webhook_secret: 'hook-secret',
      run_branch: 'default',
      ca_file: null,
    });
    expect(cfg.mysql).toBeNull();
    expect(cfg.limits).toEqual({
      max_runfor_hours: 24,
      max_gpus_per_run: 8,
      max_output_file_bytes: 100 * MiB,
      max_output_total_bytes: 1024 * MiB,
      max_log_bytes: 2 * MiB,
      fair_share_half_life_hours: 168,
    });
    expect(cfg.node_timeout_ms).toBe(20_000);
    expect(cfg.lost_after_ms).toBe(600_000);
  });

  it('a full file is read as written, relative paths against the file’s folder', () => {
    writeFileSync(path.join(dir, 'ca.pem'), 'PEM');
    const cfg = parseLeaderConfig(
      `
listen: "[::1]:9000"
public_url: https://secd.example.org/
data_dir: data
gitlab:
  url: https://gitlab.example.org
  token: t
  webhook_secret: w
  run_branch: main
  ca_file: ca.pem
mysql:
  host: db.internal
  admin_password: ""
limits:
  max_runfor_hours: 0.5
  max_gpus_per_run: 2
  max_output_file_bytes: 10 MiB
  max_log_bytes: 4096
node_timeout_ms: 5000
`,
      path.join(dir, 'leader.yml'),
      noEnv,
    );
    expect(cfg.listen).toEqual({ host: '::1', port: 9000 });
    expect(cfg.public_url).toBe('https://secd.example.org');
    expect(cfg.data_dir).toBe(path.join(dir, 'data'));
    expect(cfg.gitlab.run_branch).toBe('main');
    expect(cfg.gitlab.ca_file).toBe(path.join(dir, 'ca.pem'));
    expect(cfg.mysql).toEqual({
      host: 'db.internal',
      port: 3306,
      admin_user: 'root',
      admin_password: '',
      user_prefix: 'secd_',
      max_connections_per_run: 8,
    });
    expect(cfg.limits.max_runfor_hours).toBe(0.5);
    expect(cfg.limits.max_output_file_bytes).toBe(10 * MiB);
    expect(cfg.limits.max_log_bytes).toBe(4096);
    expect(cfg.node_timeout_ms).toBe(5000);
  });

  it('a misspelt key stops the leader and names the key with its path and line', () => {
    const err = configError(() =>
      parseLeaderConfig(LEADER + '  tokn: oops\n', 'leader.yml', noEnv, { baseDir: dir }),
    );
    expect(err.key).toBe('gitlab.tokn');
    expect(err.message).toBe('leader.yml: unknown key "gitlab.tokn" (line 6)');
  });

  it('every problem is listed, one line each, naming the file', () => {
    const err = configError(() =>
      parseLeaderConfig('listen: 8080\nlimits:\n  max_runfor_hours: -1\nextra: 1\n', 'leader.yml', noEnv, {
        baseDir: dir,
      }),
    );
    const lines = err.message.split('\n');
    expect(lines).toContain('leader.yml: listen must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (got "8080") (line 1)');
    expect(lines).toContain('leader.yml: limits.max_runfor_hours must be greater than 0 (got -1) (line 3)');
    expect(lines).toContain('leader.yml: gitlab is required');
    expect(lines).toContain('leader.yml: unknown key "extra" (line 4)');
  });

  it.each([
    ['8080', 'no host'],
    ['localhost', 'no port'],
    ['127.0.0.1:99999', 'port out of range'],
    ['300.1.1.1:80', 'not an IPv4 address'],
    ['::1:8080', 'IPv6 without brackets'],
    ['[::1]', 'IPv6 without port'],
    ['http://127.0.0.1:8080', 'a URL'],
  ])('a bad listen address (%s: %s) is refused', (listen) => {
    const err = configError(() => parseLeaderConfig(`listen: "${listen}"\n${LEADER}`, 'leader.yml', noEnv, { baseDir: dir }));
    expect(err.key).toBe('listen');
    expect(err.message).toContain(`listen must be host:port`);
  });

  it('listen addresses that are fine', () => {
    expect(parseListenAddress('0.0.0.0:80')).toEqual({ host: '0.0.0.0', port: 80 });
    expect(parseListenAddress('secd-leader.internal:8080')).toEqual({ host: 'secd-leader.internal', port: 8080 });
    expect(parseListenAddress('[::]:0')).toEqual({ host: '::', port: 0 });
  });

  it('a wildcard listen address needs an explicit public_url', () => {
    const err = configError(() => parseLeaderConfig(`listen: 0.0.0.0:8080\n${LEADER}`, 'leader.yml', noEnv, { baseDir: dir }));
    expect(err.key).toBe('public_url');
    expect(err.message).toContain('public_url is required when listen is 0.0.0.0:8080');
  });

  it('run_branch cannot be one of secd’s results branches', () => {
    const err = configError(() =>
      parseLeaderConfig(LEADER + '  run_branch: secd-results\n', 'leader.yml', noEnv, { baseDir: dir }),
    );
    expect(err.key).toBe('gitlab.run_branch');
  });

  it('a YAML syntax error gives the line and column', () => {
    const err = configError(() => parseLeaderConfig('gitlab:\n  url: [1,\n', 'leader.yml', noEnv, { baseDir: dir }));
    expect(err.message).toMatch(/^leader\.yml: not valid YAML at line \d+, column \d+: /);
    expect(err.message.split('\n')).toHaveLength(1);
  });

  it('a file that is a list, not a mapping, is refused', () => {
    const err = configError(() => parseLeaderConfig('- a\n- b\n', 'leader.yml', noEnv));
    expect(err.message).toContain('leader.yml: the file must be a mapping');
  });

  it('a missing file is an error naming it', () => {
    const file = path.join(dir, 'nope.yml');
    const err = configError(() => loadLeaderConfig(file, noEnv));
    expect(err.message).toBe(`${file}: cannot be read (ENOENT)`);
  });
});

describe('secrets', () => {
  it('are read from *_file paths, relative to the config file, without the trailing newline', () => {
    mkdirSync(path.join(dir, 'secrets'));
    writeFileSync(path.join(dir, 'secrets', 'token'), 'glpat-from-file\n');
    writeFileSync(path.join(dir, 'secrets', 'hook'), 'hook-from-file\r\n');
    const file = path.join(dir, 'leader.yml');
    writeFileSync(
      file,
      'gitlab:\n  url: https://gitlab.example.org\n  token_file: secrets/token\n  webhook_secret_file: secrets/hook\n',
    );
    const cfg = loadLeaderConfig(file, noEnv);
    expect(cfg.gitlab.token).toBe('glpat-from-file');
    expect(cfg.gitlab.webhook_secret).toBe('hook-from-file');
  });

  it('are read from $CREDENTIALS_DIRECTORY under the dotted key with underscores', () => {
    const creds = path.join(dir, 'creds');
    mkdirSync(creds);
    writeFileSync(path.join(creds, 'gitlab_token'), 'glpat-cred\n');
    writeFileSync(path.join(creds, 'gitlab_webhook_secret'), 'hook-cred');
    writeFileSync(path.join(creds, 'mysql_admin_password'), 'dbpw');
    const cfg = parseLeaderConfig('gitlab:\n  url: https://gitlab.example.org\nmysql: {}\n', 'leader.yml', {
      CREDENTIALS_DIRECTORY: creds,
    }, { baseDir: dir });
    expect(cfg.gitlab.token).toBe('glpat-cred');
    expect(cfg.gitlab.webhook_secret).toBe('hook-cred');
    expect(cfg.mysql?.admin_password).toBe('dbpw');
  });

  it('the node token comes from $CREDENTIALS_DIRECTORY/token', () => {
    const creds = path.join(dir, 'creds');
    mkdirSync(creds);
    writeFileSync(path.join(creds, 'token'), 'node-token\n');
    const cfg = parseNodeConfig('leader: ws://10.0.0.1:8080/v1/nodes\ncache_root: /mnt/cache\n', 'node.yml', {
      CREDENTIALS_DIRECTORY: creds,
    }, { hostname: 'gpu-01' });
    expect(cfg.token).toBe('node-token');
  });

  it('inline and *_file together are refused, naming both keys', () => {
    const err = configError(() =>
      parseLeaderConfig(LEADER + '  token_file: /etc/secd/token\n', 'leader.yml', noEnv, { baseDir: dir }),
    );
    expect(err.key).toBe('gitlab.token');
    expect(err.message).toContain('leader.yml: gitlab.token and gitlab.token_file are both set; keep one');
  });

  it('a config value and a systemd credential for the same secret are refused', () => {
    const creds = path.join(dir, 'creds');
    mkdirSync(creds);
    writeFileSync(path.join(creds, 'gitlab_webhook_secret'), 'x');
    const err = configError(() =>
      parseLeaderConfig(LEADER, 'leader.yml', { CREDENTIALS_DIRECTORY: creds }, { baseDir: dir }),
    );
    expect(err.key).toBe('gitlab.webhook_secret');
    expect(err.message).toContain('$CREDENTIALS_DIRECTORY/gitlab_webhook_secret');
  });

  it('a missing secret names every way to give it', () => {
    const err = configError(() =>
      parseLeaderConfig('gitlab:\n  url: https://g.example\n  token: t\n', 'leader.yml', noEnv, { baseDir: dir }),
    );
    expect(err.message).toBe(
      'leader.yml: gitlab.webhook_secret is required: set gitlab.webhook_secret, gitlab.webhook_secret_file, ' +
        'or provide the systemd credential "gitlab_webhook_secret"',
    );
  });

  it('an unreadable or empty secret file is refused', () => {
    writeFileSync(path.join(dir, 'empty'), '\n');
    const missing = configError(() =>
      parseLeaderConfig(LEADER.replace('token: glpat-abc', 'token_file: nope'), 'leader.yml', noEnv, { baseDir: dir }),
    );
    expect(missing.key).toBe('gitlab.token_file');
    expect(missing.message).toContain(`(${path.join(dir, 'nope')}: ENOENT)`);
    const empty = configError(() =>
      parseLeaderConfig(LEADER.replace('token: glpat-abc', 'token_file: empty'), 'leader.yml', noEnv, { baseDir: dir }),
    );
    expect(empty.message).toContain('gitlab.token_file is empty');
  });
});

describe('node.yml', () => {
  it('defaults node_id to the hostname and fills the documented defaults', () => {
    const cfg = parseNodeConfig(
      'leader: wss://leader.internal/v1/nodes\ntoken: t\ncache_root: ../cache\n',
      path.join(dir, 'node.yml'),
      noEnv,
      { hostname: 'gpu-01.cluster' },
    );
    expect(cfg).toEqual({
      leader: ['wss://leader.internal/v1/nodes'],
      token: 't',
      node_id: 'gpu-01.cluster',
      work_dir: '/var/lib/secd-node',
      cache_root: path.resolve(dir, '../cache'),
      dataset_root: null,
      nvidia_smi: 'nvidia-smi',
      report_interval_ms: 2000,
      max_cpu_runs: 2,
      memory_limit_bytes: 16 * 1024 * MiB,
      pids_limit: 4096,
      base_image_mirror: null,
      ca_file: null,
    });
  });

  it('an nvidia_smi path resolves against the config folder; a bare command is left for PATH', () => {
    const base = 'leader: ws://l:1/v1/nodes\ntoken: t\ncache_root: /c\n';
    expect(parseNodeConfig(base + 'nvidia_smi: ./fake-smi\n', path.join(dir, 'node.yml'), noEnv).nvidia_smi).toBe(
      path.join(dir, 'fake-smi'),
    );
    expect(parseNodeConfig(base + 'nvidia_smi: my-smi\n', path.join(dir, 'node.yml'), noEnv).nvidia_smi).toBe('my-smi');
  });

  it('the leader must be a websocket URL', () => {
    const err = configError(() =>
      parseNodeConfig('leader: http://l:8080/v1/nodes\ntoken: t\ncache_root: /c\n', 'node.yml', noEnv, { hostname: 'h' }),
    );
    expect(err.message).toBe('node.yml: leader must be a ws:// or wss:// URL (got "http://l:8080/v1/nodes") (line 1)');
  });

  it('the token and cache_root are required', () => {
    // Field checks come first; the token (a cross-source check) is reported once they pass.
    const noCache = configError(() => parseNodeConfig('leader: ws://l:1/v1/nodes\n', 'node.yml', noEnv, { hostname: 'h' }));
    expect(noCache.message).toBe('node.yml: cache_root is required');
    const noToken = configError(() =>
      parseNodeConfig('leader: ws://l:1/v1/nodes\ncache_root: /c\n', 'node.yml', noEnv, { hostname: 'h' }),
    );
    expect(noToken.message).toContain('node.yml: token is required: set token, token_file, or provide the systemd credential "token"');
  });

  it('a bad node_id and a bad size are named', () => {
    const err = configError(() =>
      parseNodeConfig(
        'leader: ws://l:1/v1/nodes\ntoken: t\ncache_root: /c\nnode_id: "gpu 01"\nmemory_limit_bytes: 16 GB\n',
        'node.yml',
        noEnv,
      ),
    );
    expect(err.key).toBe('node_id');
    expect(err.message).toContain('node.yml: memory_limit_bytes must be a positive number of bytes');
  });

  it('loads from disk', () => {
    const file = path.join(dir, 'node.yml');
    writeFileSync(file, 'leader: ws://l:1/v1/nodes\ntoken: t\ncache_root: cache\nnode_id: gpu-02\n');
    const cfg = loadNodeConfig(file, noEnv);
    expect(cfg.node_id).toBe('gpu-02');
    expect(cfg.cache_root).toBe(path.join(dir, 'cache'));
  });
});

describe('secd up', () => {
  it('with no config file runs on embedded defaults under ./.secd of the current directory', () => {
    const cfg = loadUpConfig(null, dir, noEnv, { hostname: 'workstation' });
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(cfg.public_url).toBe('http://127.0.0.1:8080');
    expect(cfg.data_dir).toBe(path.join(dir, '.secd', 'data'));
    expect(cfg.gitlab).toBeNull();
    expect(cfg.mysql).toBeNull();
    expect(cfg.limits.max_runfor_hours).toBe(24);
    expect(cfg.node).toMatchObject({
      node_id: 'workstation',
      work_dir: path.join(dir, '.secd', 'work'),
      cache_root: path.join(dir, '.secd', 'cache'),
      nvidia_smi: 'nvidia-smi',
      max_cpu_runs: 2,
    });
  });

  it('a config file adds GitLab and node settings; unset paths default under the file’s folder', () => {
    const file = path.join(dir, 'etc', 'up.yml');
    mkdirSync(path.dirname(file));
    writeFileSync(file, `${LEADER}node:\n  max_cpu_runs: 4\n  dataset_root: /mnt/datasets\n`);
    const cfg = loadUpConfig('etc/up.yml', dir, noEnv, { hostname: 'h' });
    expect(cfg.gitlab?.webhook_secret).toBe('hook-secret');
    expect(cfg.data_dir).toBe(path.join(dir, 'etc', '.secd', 'data'));
    expect(cfg.node.work_dir).toBe(path.join(dir, 'etc', '.secd', 'work'));
    expect(cfg.node.max_cpu_runs).toBe(4);
    expect(cfg.node.dataset_root).toBe('/mnt/datasets');
  });

  it('the node section takes neither leader nor token', () => {
    const err = configError(() =>
      parseUpConfig('node:\n  leader: ws://x/v1/nodes\n  token: t\n', 'up.yml', noEnv, { baseDir: dir, hostname: 'h' }),
    );
    expect(err.message.split('\n')).toEqual([
      'up.yml: unknown key "node.leader" (line 2)',
      'up.yml: unknown key "node.token" (line 3)',
    ]);
  });

  it('embedded defaults are named as such in errors', () => {
    const err = configError(() => loadUpConfig(null, dir, noEnv, { hostname: 'not a valid id' }));
    expect(err.file).toBe(EMBEDDED_DEFAULTS);
    expect(err.message).toContain(`${EMBEDDED_DEFAULTS}: node.node_id is required: the hostname "not a valid id"`);
  });
});
