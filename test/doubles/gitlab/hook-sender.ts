/**
 * Webhooks sent the way GitLab's webhook worker sends them: one delivery per matching hook, one at a
 * time in order, with GitLab's headers (a fresh Idempotency-Key per delivery, the event UUID shared
 * by all hooks of one event, the secret in X-Gitlab-Token), a 10 s timeout, and every attempt kept in
 * `deliveries` as GitLab's "Recent events" shows it. Re-sends keep the original headers, so the
 * receiver sees the same Idempotency-Key; raw sends let tests post malformed input.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { randomUUID } from 'node:crypto';
import type { DoubleProject, DoubleState, DoubleWebhook } from './double-state.js';
import type { PushEvent } from './push-events.js';

/** The GitLab version the double claims in `User-Agent` (as in the recorded delivery). */
export const GITLAB_VERSION = '17.1.0';

const HOOK_TIMEOUT_MS = 10_000; // GitLab's default webhook timeout
const MAX_RESPONSE_BODY = 16 * 1024;

/** One webhook delivery attempt (or a raw send), as GitLab's "Recent events" would show it. */
export interface RecordedDelivery {
  /** position in `deliveries` */
  index: number;
  /** the hook it was sent for; null for a raw send to an unregistered URL */
  hookId: number | null;
  url: string;
  /** X-Gitlab-Event, e.g. "Push Hook" */
  event: string;
  /** the request headers exactly as sent (besides Host, Content-Length, Connection) */
  headers: Record<string, string>;
  /** the request body exactly as sent */
  body: string;
  /** HTTP status of the answer; null when no answer came (refused, timeout) */
  status: number | null;
  /** the answer's body (first 16 KiB) */
  responseBody: string;
  /** why no answer came, if none did */
  error: string | null;
  durationMs: number;
  at: string;
  /** index of the delivery this one re-sent, if any */
  redeliveryOf: number | null;
  /** true for sendRaw() */
  raw: boolean;
}

/** What sendRaw() sends. */
export interface RawSend {
  /** the hook URL; default: the first registered hook's */
  url?: string;
  body: string;
  /**
   * Headers on top of the standard set for that hook (Content-Type, User-Agent, X-Gitlab-Event:
   * Push Hook, X-Gitlab-Token, fresh UUIDs); `null` removes a standard header.
   */
  headers?: Record<string, string | null>;
}

/** Sends, re-sends and records webhook deliveries. */
export class HookSender {
  /** every webhook delivery, redelivery and raw send, in order */
  readonly deliveries: RecordedDelivery[] = [];
  private deliveryChain: Promise<void> = Promise.resolve();

  constructor(private readonly state: DoubleState) {}

  /** Queue one delivery per matching hook; deliveries go out one at a time, in order. */
  send(project: DoubleProject, event: PushEvent): void {
    this.sendEvent(project, event.object_kind === 'tag_push' ? 'Tag Push Hook' : 'Push Hook', event);
  }

  /**
   * The same for any event of `project`: project hooks get `projectEvent` (e.g. "Merge Request
   * Hook") as X-Gitlab-Event, system hooks "System Hook", all with the same body and event UUID.
   * Every hook gets every event, as if each had all its event kinds switched on.
   */
  sendEvent(project: DoubleProject, projectEvent: string, event: object): void {
    const eventUuid = randomUUID();
    const body = JSON.stringify(event);
    for (const hook of this.state.hooks) {
      if (hook.kind === 'project' && hook.projectId !== undefined && hook.projectId !== project.id) continue;
      const name = hook.kind === 'system' ? 'System Hook' : projectEvent;
      const headers = this.hookHeaders(hook, name, eventUuid);
      this.enqueue(() => this.deliver({ hookId: hook.id, url: hook.url, event: name, headers, body, redeliveryOf: null, raw: false }));
    }
  }

  private hookHeaders(hook: DoubleWebhook, event: string, eventUuid: string): Record<string, string> {
    return {
      'Content-Type': 'application/json',
      'User-Agent': `GitLab/${GITLAB_VERSION}`,
      'Idempotency-Key': randomUUID(),
      'X-Gitlab-Event': event,
      'X-Gitlab-Webhook-UUID': hook.uuid,
      'X-Gitlab-Instance': this.state.url,
      'X-Gitlab-Event-UUID': eventUuid,
      'X-Gitlab-Token': hook.secret,
    };
  }

  /** Re-send delivery `i` with exactly the same headers (same Idempotency-Key) and body. */
  redeliver(i: number): Promise<RecordedDelivery> {
    const original = this.deliveries[i];
    if (!original) return Promise.reject(new Error(`redeliver: no delivery ${i}`));
    return this.enqueue(() =>
      this.deliver({
        hookId: original.hookId,
        url: original.url,
        event: original.event,
        headers: { ...original.headers },
        body: original.body,
        redeliveryOf: i,
        raw: original.raw,
      }),
    );
  }

  /** Send an arbitrary body/headers to a hook URL (malformed-input tests). */
  sendRaw(r: RawSend): Promise<RecordedDelivery> {
    const url = r.url ?? this.state.hooks[0]?.url;
    if (!url) return Promise.reject(new Error('sendRaw: no url and no webhook registered'));
    const hook = this.state.hooks.find((h) => h.url === url);
    const headers: Record<string, string> = hook
      ? this.hookHeaders(hook, hook.kind === 'system' ? 'System Hook' : 'Push Hook', randomUUID())
      : { 'Content-Type': 'application/json', 'User-Agent': `GitLab/${GITLAB_VERSION}` };
    for (const [k, v] of Object.entries(r.headers ?? {})) {
      for (const existing of Object.keys(headers)) if (existing.toLowerCase() === k.toLowerCase()) delete headers[existing];
      if (v !== null) headers[k] = v;
    }
    const body = r.body;
    return this.enqueue(() =>
      this.deliver({
        hookId: hook?.id ?? null,
        url,
        event: headers['X-Gitlab-Event'] ?? '',
        headers,
        body,
        redeliveryOf: null,
        raw: true,
      }),
    );
  }

  /** Resolve once at least `n` deliveries are recorded; reject after `timeoutMs`. */
  async waitForDeliveries(n: number, timeoutMs: number): Promise<RecordedDelivery[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.deliveries.length < n) {
      if (Date.now() > deadline) {
        throw new Error(`waitForDeliveries: ${this.deliveries.length} of ${n} deliveries after ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.deliveries;
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const result = this.deliveryChain.then(job);
    this.deliveryChain = result.then(
      () => undefined,
      () => undefined,
    );
    return this.state.track(() => result);
  }

  private async deliver(d: Omit<RecordedDelivery, 'index' | 'status' | 'responseBody' | 'error' | 'durationMs' | 'at'>): Promise<RecordedDelivery> {
    const at = new Date().toISOString();
    const started = performance.now();
    const answer = await postOnce(d.url, d.headers, d.body);
    const delivery: RecordedDelivery = {
      index: this.deliveries.length,
      ...d,
      status: answer.status,
      responseBody: answer.body,
      error: answer.error,
      durationMs: performance.now() - started,
      at,
    };
    this.deliveries.push(delivery);
    return delivery;
  }
}

/** One POST as GitLab's webhook worker sends it: fixed headers, Content-Length, 10 s timeout. */
function postOnce(url: string, headers: Record<string, string>, body: string): Promise<{ status: number | null; body: string; error: string | null }> {
  return new Promise((resolve) => {
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      resolve({ status: null, body: '', error: `invalid URL ${url}` });
      return;
    }
    const payload = Buffer.from(body, 'utf8');
    const sent: Record<string, string> = { ...headers };
    if (!Object.keys(sent).some((k) => k.toLowerCase() === 'content-length')) sent['Content-Length'] = String(payload.length);
    const request = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = request(target, { method: 'POST', headers: sent, timeout: HOOK_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size < MAX_RESPONSE_BODY) chunks.push(c);
        size += c.length;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? null, body: Buffer.concat(chunks).subarray(0, MAX_RESPONSE_BODY).toString('utf8'), error: null }),
      );
      res.on('error', (err) => resolve({ status: res.statusCode ?? null, body: '', error: String(err) }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${HOOK_TIMEOUT_MS} ms`)));
    req.on('error', (err) => resolve({ status: null, body: '', error: err.message }));
    req.end(payload);
  });
}
