import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLog, type Log } from '../common/log.js';
import { createGitLabClient } from './gitlab-client.js';
import { explainGitLabFailure, GitLabTokenCheck, HookDeliveryWatch } from './gitlab-check.js';
import { GitLabAnswerError, GitLabError, type GitLabUser } from './gitlab-port.js';

const URL_ = 'https://gitlab.example.org';
const bot: GitLabUser = { id: 7, username: 'secd-bot', name: 'secd', state: 'active' };

function recordingLog(): Log & { lines: Array<{ level: string; msg: string }> } {
  const lines: Array<{ level: string; msg: string }> = [];
  const at = (level: string) => (_o: object, msg?: string) => void lines.push({ level, msg: msg ?? '' });
  const log = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log, lines };
  return log;
}

describe('explainGitLabFailure', () => {
  it('a 401 says the token is wrong or expired', () => {
    const e = explainGitLabFailure(new GitLabError(401, '/user', '{"message":"401 Unauthorized"}'), URL_);
    expect(e.problem).toBe('token_refused');
    expect(e.message).toContain('wrong, revoked or expired');
    expect(e.message).toContain(URL_);
  });

  it('a 403 says the token lacks the api scope', () => {
    const e = explainGitLabFailure(new GitLabError(403, '/user', '{"error":"insufficient_scope"}'), URL_);
    expect(e.problem).toBe('missing_scope');
    expect(e.message).toContain('api scope');
  });

  it('an untrusted certificate points at gitlab.ca_file', () => {
    const err = Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    const e = explainGitLabFailure(err, URL_);
    expect(e.problem).toBe('certificate');
    expect(e.message).toContain('gitlab.ca_file');
  });

  it('a refused connection says GitLab cannot be reached and names the URL setting', () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' });
    const e = explainGitLabFailure(err, URL_);
    expect(e.problem).toBe('unreachable');
    expect(e.message).toContain('ECONNREFUSED');
    expect(e.message).toContain('gitlab.url');
  });

  it('an answer that is not a user asks whether gitlab.url is GitLab', () => {
    const e = explainGitLabFailure(new GitLabAnswerError(200, '/user', '<html>', 'username', 'Required'), URL_);
    expect(e.problem).toBe('bad_answer');
    expect(e.message).toContain('is gitlab.url the address of GitLab itself');
  });
});

describe('GitLabTokenCheck', () => {
  afterEach(() => vi.useRealTimers());

  it('a wrong token is said once on stderr and in the log, re-checked, and its fix is said too', async () => {
    vi.useFakeTimers();
    let answer: () => Promise<GitLabUser> = () => Promise.reject(new GitLabError(401, '/user', 'Unauthorized'));
    const said: string[] = [];
    const log = recordingLog();
    const check = new GitLabTokenCheck({ currentUser: () => answer(), gitlabUrl: URL_, log, say: (l) => said.push(l), now: () => new Date(0), retryMs: 1000 });

    const first = await check.start();
    expect(first).toMatchObject({ state: 'failing', problem: 'token_refused' });
    expect(said).toHaveLength(1);
    expect(said[0]).toContain('refused gitlab.token (401)');
    expect(log.lines.filter((l) => l.level === 'error')).toHaveLength(1);

    // The same failure a minute later is not said again.
    await vi.advanceTimersByTimeAsync(1000);
    expect(said).toHaveLength(1);

    answer = () => Promise.resolve(bot);
    await vi.advanceTimersByTimeAsync(1000);
    expect(check.current()).toMatchObject({ state: 'ok', user: 'secd-bot' });
    expect(said[1]).toContain('accepts the token now');

    // Once it works the leader stops asking.
    let calls = 0;
    answer = () => ((calls += 1), Promise.resolve(bot));
    await vi.advanceTimersByTimeAsync(5000);
    expect(calls).toBe(0);
    check.close();
  });

  it('a working token says nothing on stderr', async () => {
    const said: string[] = [];
    const check = new GitLabTokenCheck({ currentUser: async () => bot, gitlabUrl: URL_, log: silentLog, say: (l) => said.push(l), now: () => new Date(0), retryMs: 1000 });
    expect(await check.start()).toMatchObject({ state: 'ok', user: 'secd-bot' });
    expect(said).toEqual([]);
    check.close();
  });

  describe('against a GitLab over HTTP', () => {
    let server: Server | null = null;
    afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

    it('GitLab answering 401 to the real client gives token_refused', async () => {
      server = createServer((req, res) => {
        const ok = req.url === '/api/v4/user' && req.headers['private-token'] === 'right';
        res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
        res.end(ok ? JSON.stringify(bot) : '{"message":"401 Unauthorized"}');
      });
      await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const checkWith = (token: string) =>
        new GitLabTokenCheck({ currentUser: () => createGitLabClient({ url, token }).getCurrentUser(), gitlabUrl: url, log: silentLog, say: () => {}, now: () => new Date(0), retryMs: 1000 }).check();
      expect(await checkWith('wrong')).toMatchObject({ state: 'failing', problem: 'token_refused' });
      expect(await checkWith('right')).toMatchObject({ state: 'ok', user: 'secd-bot' });
    });
  });
});

describe('HookDeliveryWatch', () => {
  afterEach(() => vi.useRealTimers());
  const hookUrl = 'https://secd.example.org/v1/hook';

  it('names the hook URL at start and warns when nothing arrived in time', () => {
    vi.useFakeTimers();
    const said: string[] = [];
    const log = recordingLog();
    const watch = new HookDeliveryWatch({ hookUrl, log, say: (l) => said.push(l), warnAfterMs: 10 * 60_000, now: () => new Date() });
    watch.start();
    expect(log.lines[0]!.msg).toContain(hookUrl);
    vi.advanceTimersByTime(10 * 60_000 - 1);
    expect(said).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(said).toHaveLength(1);
    expect(said[0]).toContain(`no GitLab webhook delivery has reached ${hookUrl} in the 10 min`);
    watch.close();
  });

  it('stays quiet when a delivery arrived', () => {
    vi.useFakeTimers();
    const said: string[] = [];
    const watch = new HookDeliveryWatch({ hookUrl, log: silentLog, say: (l) => said.push(l), warnAfterMs: 1000, now: () => new Date(5) });
    watch.start();
    watch.delivered();
    vi.advanceTimersByTime(2000);
    expect(said).toEqual([]);
    expect(watch.lastDelivery()).toEqual(new Date(5));
    watch.close();
  });
});
