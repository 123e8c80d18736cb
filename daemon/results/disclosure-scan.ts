/**
 * The automated disclosure checks (DESIGN §10), run on every file of a run's outputs and on its logs
 * while they are read back: an extension outside the allowlist, a file over the size cap, a CSV/TSV
 * with more data rows than the cap, a forbidden column in a CSV/TSV header, and the small-cell rule (a
 * cell holding a positive integer below `minCellCount`).
 *
 * A finding names the file, the rule and a row, a column, a size or a header name — never a cell's
 * value — so it can go into run.json, a merge request or a log as it is.
 *
 * Streaming: a file is fed in chunks as they arrive (`file()` → `write()`… → `end()`), each byte looked
 * at once and nothing kept but the CSV parser's state (csv-scan.ts) and at most 64 KiB of a header: a
 * 1 GiB output costs the same memory as a 1 KiB one and is never read twice.
 *
 * Where they run: this class runs them on the calling thread (the logs, tests, small outputs);
 * ThreadedScanner (threaded-scanner.ts) runs the same rules (disclosure-rules.ts) in a worker thread
 * while a run's /outputs streams to disk, where the machine has a core to spare, so that the checks
 * overlap the read-back.
 *
 * Cost, measured (test/bench/disclosure-checks.ts, `npm run bench:disclosure`, a 2-vCPU VM shared
 * with other work at a load of 3-9, so figures moved by tens of percent between runs): the parser
 * reads the benchmark's 256 MB CSV at 350-480 MB/s (a bare two-compare byte loop: about 700). On the
 * event loop it slows an in-process read-back from about 600 to 265-335 MB/s (75-120 % slower) and
 * the engine's (dockerd) read-back from 125-145 to 95-120 MB/s (10-30 %). In a worker it costs the
 * event loop only the copy into the hand-off buffers (70-95 ms per 256 MB), but the read-back waits
 * for the parser wherever that is the slower side, and on two shared vCPUs the worker seldom has a
 * core of its own. In the same rounds, worker against event loop: at a load of 3, 346 against 325
 * MB/s in-process and 124 against 120 through dockerd (74 and 14 % slower than without checks); at a
 * load of 4.5, 232 against 266 and 99 against 120. Hence coreToSpare. The goal of under 10 % is not
 * met here; it needs a free core and, in-process, a parser faster than the read-back.
 */
import {
  disclosureChecksSchema,
  MAX_DISCLOSURE_FINDINGS,
  type DisclosureChecks,
} from '../../scheduler/contract/disclosure.js';
import { RuleScanner } from './disclosure-rules.js';

export { clipPath, extensionOf, MAX_FINDING_PATH, readsContent, type DisclosureFileScan, type OutputsScanner } from './disclosure-rules.js';

/** Runs the checks on any number of files and keeps the first MAX_DISCLOSURE_FINDINGS findings. */
export class DisclosureScanner extends RuleScanner {
  constructor(checks: DisclosureChecks) {
    const parsed = disclosureChecksSchema.safeParse(checks);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new Error(`DisclosureScanner: invalid checks: ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
    }
    super(parsed.data, MAX_DISCLOSURE_FINDINGS);
  }
}
