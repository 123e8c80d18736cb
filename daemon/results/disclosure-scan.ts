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
 * while a run's /outputs streams to disk, so that the checks overlap the read-back.
 *
 * Cost, measured (test/bench/disclosure-checks.ts, `npm run bench:disclosure`, a 2-vCPU VM): the
 * parser reads the benchmark's 256 MB CSV at 420-480 MB/s on an idle core (a bare two-compare byte
 * loop: about 700). On the event loop it slows an in-process read-back from about 600 to 330 MB/s and
 * the engine's (dockerd) read-back from 125-145 to 95-105 MB/s. In a worker it costs the event loop
 * only the copy into the hand-off buffers (90-120 ms per 256 MB), but the read-back still waits for
 * the parser whenever that is the slower side, and with the two vCPUs shared among dockerd, the node
 * and (while these figures were taken) other work at a load of 5-9, the worker gained little or lost:
 * 360 vs 330 MB/s in-process and 120 vs 105 through dockerd at a load of about 3, 190 vs 265 and 74
 * vs 86 at a load of 8. The goal of under 10 % is not met on this machine: it needs the parser
 * faster than the read-back on a core of its own.
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
