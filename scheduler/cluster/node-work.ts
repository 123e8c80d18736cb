/**
 * The registry's background work (node-registry.ts): the store writes a node's frames cause and the
 * reports they make to the lifecycle, now that both are async while a websocket frame is handled
 * synchronously.
 *
 * Choices made here:
 * - Work is chained per key (a node's writes; a node's reports), so it happens in the order the
 *   frames came, one step at a time, as when every step ran to completion: a result is never
 *   reported before the hello or the phase that came ahead of it, and an older `last_seen` never
 *   overwrites a newer one.
 * - Nothing here rejects: a step that fails is logged with what it was and the chain goes on.
 * - Everything started is tracked, so `idle()` (tests, and the registry's close) can wait for it.
 */
import { errorText } from '../common/errors.js';
import type { Log } from '../common/log.js';

/** Chained, tracked, logged background steps. */
export class NodeWork {
  private readonly chains = new Map<string, Promise<boolean>>();
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly log: Log) {}

  /**
   * Run `fn` after the work already chained on `key`. Resolves true once it finished, false when it
   * failed (logged as `what`, with `context`); never rejects.
   */
  after(key: string, what: string, context: Record<string, unknown>, fn: () => unknown): Promise<boolean> {
    const previous = this.chains.get(key) ?? Promise.resolve(true);
    const next = previous.then(async () => {
      try {
        await fn();
        return true;
      } catch (err) {
        this.log.warn({ ...context, err: errorText(err) }, what);
        return false;
      }
    });
    this.chains.set(key, next);
    void next.then(() => {
      if (this.chains.get(key) === next) this.chains.delete(key);
    });
    return this.track(next);
  }

  /** Keep `p` until it settles; returns it (its rejection is the caller's to handle). */
  track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    void p.then(
      () => this.inFlight.delete(p),
      () => this.inFlight.delete(p),
    );
    return p;
  }

  /** Wait until every step started, and every step those started, has settled. */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }
}
