/**
 * The open `/api/v1/events` streams (the status page's server-sent events), with the limits that keep
 * anyone on the network from growing the leader: a stream whose client stops reading is closed once
 * more than `maxBufferedBytes` wait in its socket (the page reconnects and starts from a snapshot),
 * and at most `maxStreams` streams in all and `maxPerAddress` from one remote address are open at
 * once; the rest are answered 503 / 429 with a sentence and a Retry-After. Without these, 100 idle
 * clients held ~16 MiB each (issue 13, finding 6).
 *
 * What it counted is in `stats()` (and in /metrics as secd_event_streams_*), so an operator sees
 * slow or refused pages without reading the leader's memory.
 */
import type { ServerResponse } from 'node:http';
import type { FeedListener } from './status-feed.js';

/** How many streams may be open and how much each may hold back. */
export interface EventStreamLimits {
  /** Open streams in all. */
  maxStreams: number;
  /** Open streams from one remote address. */
  maxPerAddress: number;
  /** Bytes waiting in one stream's response and socket beyond which the stream is closed. */
  maxBufferedBytes: number;
}

/** 200 streams, 20 per address, 1 MiB each: a busy lab's pages, and never more than ~200 MiB held. */
export const DEFAULT_EVENT_STREAM_LIMITS: EventStreamLimits = { maxStreams: 200, maxPerAddress: 20, maxBufferedBytes: 1024 * 1024 };

/** What the streams counted since the server started. */
export interface EventStreamStats {
  /** Streams open now. */
  open: number;
  /** Bytes waiting in the open streams' responses and sockets now. */
  buffered_bytes: number;
  /** Streams closed because their client fell more than the limit behind. */
  dropped_slow: number;
  /** Streams refused because `maxStreams` were open (503). */
  refused_full: number;
  /** Streams refused because `maxPerAddress` were open from that address (429). */
  refused_address: number;
}

/** Why a new stream is refused: the status code and the sentence the client gets. */
export interface StreamRefusal {
  status: 429 | 503;
  message: string;
}

/** Where a stream's messages come from: the status feed's subscribe. */
export type StreamSource = (listener: FeedListener) => () => void;

const KEEP_ALIVE_MS = 25_000;

/** The leader's open event streams and their limits. */
export class EventStreams {
  readonly limits: EventStreamLimits;
  private readonly open = new Set<ServerResponse>();
  private readonly perAddress = new Map<string, number>();
  private droppedSlow = 0;
  private refusedFull = 0;
  private refusedAddress = 0;

  constructor(limits: Partial<EventStreamLimits> = {}) {
    this.limits = { ...DEFAULT_EVENT_STREAM_LIMITS, ...limits };
  }

  /** Whether a stream from `address` may open now; a refusal is counted. */
  refusal(address: string): StreamRefusal | null {
    if (this.open.size >= this.limits.maxStreams) {
      this.refusedFull++;
      return { status: 503, message: `the leader already serves ${this.limits.maxStreams} live status streams; try again shortly\n` };
    }
    if ((this.perAddress.get(address) ?? 0) >= this.limits.maxPerAddress) {
      this.refusedAddress++;
      return { status: 429, message: `${this.limits.maxPerAddress} live status streams are already open from ${address}; close some pages and try again\n` };
    }
    return null;
  }

  /**
   * Serve one admitted stream on a hijacked response until either side closes it; `hidden`: the
   * reader is shown runs without who pushed what (web/read-access.ts).
   */
  serve(res: ServerResponse, address: string, subscribe: StreamSource, hidden = false): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    this.open.add(res);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.open.delete(res);
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left > 0) this.perAddress.set(address, left);
      else this.perAddress.delete(address);
    };
    // A client that stopped reading is dropped before it holds more than the limit; its browser
    // reconnects and starts from a snapshot.
    const write = (text: string): void => {
      if (released) return;
      if (res.writableLength > this.limits.maxBufferedBytes) {
        this.droppedSlow++;
        release();
        res.destroy();
        return;
      }
      res.write(text);
    };
    write('retry: 2000\n\n');
    const unsubscribe = subscribe({
      send: (event, data) => write(`event: ${event}\ndata: ${data}\n\n`),
      end: () => res.end(),
      hidden,
    });
    // Comment lines keep idle proxies and browsers from timing the stream out.
    const keepAlive = setInterval(() => write(': keep-alive\n\n'), KEEP_ALIVE_MS);
    keepAlive.unref();
    res.on('close', () => {
      clearInterval(keepAlive);
      unsubscribe();
      release();
    });
  }

  /** What the streams hold and counted. */
  stats(): EventStreamStats {
    let buffered = 0;
    for (const res of this.open) buffered += res.writableLength;
    return {
      open: this.open.size,
      buffered_bytes: buffered,
      dropped_slow: this.droppedSlow,
      refused_full: this.refusedFull,
      refused_address: this.refusedAddress,
    };
  }

  /** End every open stream (the server is closing; open streams would keep it waiting for ever). */
  endAll(): void {
    for (const res of this.open) res.end();
  }
}
