/**
 * Names of a run's results: the UTC stamp, the results branch and the outputs folder (DESIGN §5).
 * The branch and the folder share one stamp so a researcher can match them at a glance.
 */
import { isRunId } from '../../scheduler/contract/run-id.js';

const STAMP = /^\d{4}-\d{2}-\d{2}_\d{2}\.\d{2}\.\d{2}$/;

/** The UTC `YYYY-MM-DD_HH.MM.SS` that names a run's results; sortable as text. */
export function resultsStamp(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new Error('resultsStamp: invalid date');
  const two = (n: number): string => String(n).padStart(2, '0');
  const year = String(date.getUTCFullYear()).padStart(4, '0');
  return (
    `${year}-${two(date.getUTCMonth() + 1)}-${two(date.getUTCDate())}_` +
    `${two(date.getUTCHours())}.${two(date.getUTCMinutes())}.${two(date.getUTCSeconds())}`
  );
}

/** The results branch `secd-<stamp>-<runId>` pushed back to the researcher's repository. */
export function resultsBranchName(stamp: string, runId: string): string {
  return `secd-${outputsFolderName(stamp, runId)}`;
}

/** The folder `<stamp>-<runId>` under `outputs/` that holds one run's results. */
export function outputsFolderName(stamp: string, runId: string): string {
  if (!STAMP.test(stamp)) throw new Error(`not a results stamp: ${JSON.stringify(stamp)}`);
  // A run id becomes a git ref component and a folder name: a malformed one fails here, loudly,
  // instead of as an odd git error at push time.
  if (!isRunId(runId)) throw new Error(`run id not usable in a branch name: ${JSON.stringify(runId)}`);
  return `${stamp}-${runId}`;
}
