import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from './config-file.js';
import { loadUpConfig, setsListen, withPublicUrl } from './up-config.js';

let dir = '';
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function upYml(text: string | null) {
  dir = mkdtempSync(join(tmpdir(), 'secd-up-url-'));
  if (text === null) return { config: loadUpConfig(null, dir, {}), listenSet: setsListen(null, dir) };
  writeFileSync(join(dir, 'up.yml'), text);
  return { config: loadUpConfig('up.yml', dir, {}), listenSet: setsListen('up.yml', dir) };
}

describe('secd up --public-url', () => {
  it('with no listen in the config, listen follows the URL (all interfaces, its port) and says so', () => {
    const { config, listenSet } = upYml(null);
    expect(listenSet).toBe(false);
    const r = withPublicUrl(config, 'http://10.0.0.5:9090/', listenSet);
    expect(r.config.public_url).toBe('http://10.0.0.5:9090');
    expect(r.config.listen).toEqual({ host: '0.0.0.0', port: 9090 });
    expect(r.notes).toEqual(['listen set to 0.0.0.0:9090 so that http://10.0.0.5:9090 reaches the leader (set listen in up.yml to choose another)']);
  });

  it('a loopback URL keeps the loopback listen, on the URL\'s port', () => {
    const { config, listenSet } = upYml('node:\n  node_id: up-01\n');
    expect(withPublicUrl(config, 'http://localhost:8181', listenSet).config.listen).toEqual({ host: '127.0.0.1', port: 8181 });
  });

  it('a listen the config sets is kept, and a loopback one unreachable at the URL is said', () => {
    const { config, listenSet } = upYml('listen: 127.0.0.1:8080\n');
    expect(listenSet).toBe(true);
    const r = withPublicUrl(config, 'http://10.0.0.5:8080', listenSet);
    expect(r.config.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(r.notes[0]).toContain('listen stays 127.0.0.1:8080 (from the config), which only this machine can reach');
  });

  it('a kept listen on every interface but another port is said too; the same port says nothing', () => {
    const { config, listenSet } = upYml('listen: 0.0.0.0:8080\npublic_url: http://10.0.0.5:8080\n');
    expect(withPublicUrl(config, 'http://secd.lab:9000', listenSet).notes[0]).toContain('not port 9000');
    expect(withPublicUrl(config, 'http://secd.lab:8080', listenSet).notes).toEqual([]);
  });

  it('an https URL in front of a plain-http leader leaves listen alone and names the proxy', () => {
    const { config, listenSet } = upYml(null);
    const r = withPublicUrl(config, 'https://secd.example.org', listenSet);
    expect(r.config.listen).toEqual(config.listen);
    expect(r.notes[0]).toBe('listen stays 127.0.0.1:8080: the leader serves http and https://secd.example.org is https, so a proxy at https://secd.example.org must forward to 127.0.0.1:8080');
  });

  it('a URL that is not http(s) is refused naming the flag', () => {
    const { config } = upYml(null);
    expect(() => withPublicUrl(config, 'secd.lab:8080', false)).toThrow(ConfigError);
    expect(() => withPublicUrl(config, 'ftp://secd.lab', false)).toThrow('--public-url must be an http(s) URL (got "ftp://secd.lab")');
  });
});
