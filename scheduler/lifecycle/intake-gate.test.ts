/**
 * The intake gate (intake-gate.ts): accepted pushes' background work waits for a pause in the
 * webhooks, never longer than maxWaitMs, and at most maxChecks checks run at once. Driven by fake
 * timers and the fake clock they move, so nothing here depends on how fast this machine is.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { IntakeGate } from './intake-gate.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

const clock = () => Date.now();

/** Start `n` pieces of work through the gate, recording when each started (fake ms since `t0`). */
function waitAll(gate: IntakeGate, n: number, started: number[], t0: number): void {
  for (let i = 0; i < n; i++) void gate.whenQuiet().then(() => started.push(Date.now() - t0));
}

describe('work after a push waits for the webhooks to pause', () => {
  it('a single push: its work starts once no other push came for quietMs', async () => {
    const gate = new IntakeGate({ quietMs: 10, maxWaitMs: 1000, maxChecks: 4 }, clock);
    const t0 = Date.now();
    const started: number[] = [];
    gate.arrived();
    waitAll(gate, 1, started, t0);
    await vi.advanceTimersByTimeAsync(9);
    expect(started).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(started).toEqual([10]);
  });

  it('a burst: nothing starts between its pushes, everything once it pauses, in order', async () => {
    const gate = new IntakeGate({ quietMs: 10, maxWaitMs: 1000, maxChecks: 4 }, clock);
    const t0 = Date.now();
    const order: number[] = [];
    for (let i = 0; i < 20; i++) {
      gate.arrived();
      void gate.whenQuiet().then(() => order.push(i));
      await vi.advanceTimersByTimeAsync(3);
    }
    expect(order).toEqual([]);
    // The last push came at 57 ms: quiet from 67 ms on, then a few per turn of the loop.
    await vi.advanceTimersByTimeAsync(10);
    await vi.runAllTimersAsync();
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(60 + 10);
  });

  it('a pause is let out a few at a time: a hook between two turns closes the gate again', async () => {
    const gate = new IntakeGate({ quietMs: 10, maxWaitMs: 1000, maxChecks: 4 }, clock);
    const t0 = Date.now();
    const started: number[] = [];
    gate.arrived();
    for (let i = 0; i < 12; i++) {
      void gate.whenQuiet().then(() => {
        started.push(Date.now() - t0);
        // A hook arrives while the first few are being let out.
        if (started.length === 1) gate.arrived();
      });
    }
    await vi.runAllTimersAsync();
    // The first turn let out four; the hook made the other eight wait for the next pause (20 ms on).
    expect(started.slice(0, 4)).toEqual([10, 10, 10, 10]);
    expect(started).toHaveLength(12);
    for (const at of started.slice(4)) expect(at).toBeGreaterThanOrEqual(20);
  });

  it('a steady stream of pushes does not starve the work: what waited maxWaitMs starts anyway, oldest first', async () => {
    const gate = new IntakeGate({ quietMs: 10, maxWaitMs: 100, maxChecks: 4 }, clock);
    const t0 = Date.now();
    const started: Array<[number, number]> = [];
    for (let i = 0; i < 60; i++) {
      gate.arrived();
      const queuedAt = Date.now() - t0;
      void gate.whenQuiet().then(() => started.push([queuedAt, Date.now() - t0]));
      await vi.advanceTimersByTimeAsync(5);
    }
    // Pushes every 5 ms never pause for 10 ms: each piece of work started maxWaitMs after it was queued.
    expect(started.length).toBeGreaterThan(30);
    for (const [queuedAt, at] of started) expect(at - queuedAt).toBe(100);
  });

  it('work that already waited maxWaitMs elsewhere (behind its project\'s earlier checks) does not wait again in a burst', async () => {
    const gate = new IntakeGate({ quietMs: 10, maxWaitMs: 100, maxChecks: 4 }, clock);
    const t0 = Date.now();
    const queuedAt = gate.now();
    await vi.advanceTimersByTimeAsync(150);
    const started: number[] = [];
    gate.arrived();
    void gate.whenQuiet(queuedAt).then(() => started.push(Date.now() - t0));
    void gate.whenQuiet().then(() => started.push(Date.now() - t0));
    for (let i = 0; i < 5; i++) {
      await vi.advanceTimersByTimeAsync(5);
      gate.arrived();
    }
    // The first started on the next turn; the second still waits for a pause.
    expect(started).toHaveLength(1);
    expect(started[0]).toBeLessThanOrEqual(151);
  });

  it('after open() (shutdown) waiting work starts at once and later work on the next turn', async () => {
    const gate = new IntakeGate({ quietMs: 10, maxWaitMs: 1000, maxChecks: 4 }, clock);
    const started: string[] = [];
    gate.arrived();
    void gate.whenQuiet().then(() => started.push('before'));
    gate.open();
    await vi.advanceTimersByTimeAsync(0);
    expect(started).toEqual(['before']);
    gate.arrived();
    void gate.whenQuiet().then(() => started.push('after'));
    await vi.advanceTimersByTimeAsync(0);
    expect(started).toEqual(['before', 'after']);
  });

  it('never starts work within the turn that queued it, even with quietMs 0', async () => {
    const gate = new IntakeGate({ quietMs: 0, maxWaitMs: 0, maxChecks: 1 }, clock);
    let started = false;
    void gate.whenQuiet().then(() => (started = true));
    await Promise.resolve();
    expect(started).toBe(false);
    await vi.advanceTimersByTimeAsync(0);
    expect(started).toBe(true);
  });
});

describe('checks run a few at a time', () => {
  it('at most maxChecks at once; the next starts as one ends, in the order they asked', async () => {
    const gate = new IntakeGate({ quietMs: 10, maxWaitMs: 1000, maxChecks: 2 }, clock);
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const done = Array.from({ length: 6 }, (_, i) =>
      gate.withSlot(async () => {
        running += 1;
        most = Math.max(most, running);
        order.push(i);
        await new Promise((r) => setTimeout(r, 10 + (i % 2) * 5));
        running -= 1;
        return i;
      }),
    );
    await vi.advanceTimersByTimeAsync(100);
    expect(await Promise.all(done)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(most).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('a check that throws frees its slot', async () => {
    const gate = new IntakeGate({ quietMs: 10, maxWaitMs: 1000, maxChecks: 1 }, clock);
    await expect(gate.withSlot(() => Promise.reject(new Error('fetch failed')))).rejects.toThrow('fetch failed');
    await expect(gate.withSlot(() => Promise.resolve('next'))).resolves.toBe('next');
  });

  it('bad settings are refused with the setting named', () => {
    expect(() => new IntakeGate({ maxChecks: 0 })).toThrow('maxChecks must be an integer of at least 1 (got 0)');
    expect(() => new IntakeGate({ quietMs: -1 })).toThrow('quietMs must be a number of ms ≥ 0 (got -1)');
  });
});
