/**
 * A node's old project images go only while no build runs on it. Docker's legacy builder shares
 * layers between projects by content, and removing an image also removes its untagged parent
 * layers: a build that was about to build on one of those fails with "unable to find image
 * sha256:…". So an image a build retired (its project's tag moved to the new build) waits until
 * the node's builds are all done, and a build that starts while old images are being removed waits
 * for that to finish. One per node (nodeExecutorDeps); builds by other processes on the same engine
 * are not seen, which run-build.ts's one retry covers.
 */

/** The node's builds and the old images they leave. */
export interface ImageJanitor {
  /** A build starts (after any removal in progress); call the returned function when it has ended. */
  begin(): Promise<() => void>;
  /** An image no tag of its project names any more: removed once no build runs. */
  retire(imageId: string): void;
  /** Resolves once the removals started so far are done (for shutdown and tests). */
  settled(): Promise<void>;
}

/** A janitor that removes with `remove` (never throws: a failed removal is left for the next one). */
export function imageJanitor(remove: (imageId: string) => Promise<unknown>): ImageJanitor {
  let active = 0;
  const pending = new Set<string>();
  let sweeping: Promise<void> = Promise.resolve();
  const sweep = () => {
    const ids = [...pending];
    pending.clear();
    sweeping = sweeping.then(async () => {
      for (const id of ids) await remove(id).catch(() => false);
    });
  };
  return {
    async begin() {
      // Counted before waiting, so a sweep cannot start between the wait and the build.
      active += 1;
      await sweeping;
      let ended = false;
      return () => {
        if (ended) return;
        ended = true;
        active -= 1;
        if (active === 0 && pending.size > 0) sweep();
      };
    },
    retire(imageId) {
      pending.add(imageId);
      if (active === 0) sweep();
    },
    settled: () => sweeping,
  };
}
