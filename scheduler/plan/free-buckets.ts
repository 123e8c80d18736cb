/**
 * Free-count buckets: the index behind the planner's best-fit ("fewest free that still fit") and
 * most-free queries, so a placement costs O(distinct free counts), not a scan of every node.
 */
import { Heap } from './heap.js';

/**
 * Nodes bucketed by a free count (GPUs or CPU slots), each bucket a min-heap of node indexes so ties
 * go to the lowest id. Entries are checked lazily: a node whose count changed, or that closed, is
 * dropped when met. Within one plan counts only fall and closed nodes stay closed, so a node enters
 * each bucket at most once.
 */
export class FreeBuckets {
  private readonly buckets: Array<Heap<number> | undefined> = [];

  constructor(
    private readonly countOf: (node: number) => number,
    private readonly open: (node: number) => boolean,
  ) {}

  /** (Re-)file a node under its current count. */
  add(node: number): void {
    const k = this.countOf(node);
    if (k <= 0) return;
    let bucket = this.buckets[k];
    if (!bucket) this.buckets[k] = bucket = new Heap<number>((a, b) => a < b);
    bucket.push(node);
  }

  /** The lowest open node with exactly `k` free, or -1. */
  lowestWith(k: number): number {
    const bucket = this.buckets[k];
    if (!bucket) return -1;
    while (bucket.size > 0) {
      const node = bucket.peek();
      if (this.countOf(node) === k && this.open(node)) return node;
      bucket.pop();
    }
    return -1;
  }

  /** The smallest count >= `need` that some open node has, or -1. */
  tightest(need: number): number {
    for (let k = Math.max(1, need); k < this.buckets.length; k++) if (this.lowestWith(k) >= 0) return k;
    return -1;
  }

  /** The largest count any open node has (> 0), or -1. */
  loosest(): number {
    for (let k = this.buckets.length - 1; k >= 1; k--) if (this.lowestWith(k) >= 0) return k;
    return -1;
  }
}
