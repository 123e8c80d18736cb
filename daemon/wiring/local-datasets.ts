/**
 * `secd run --dataset NAME=DIR`: a researcher's own folders served to a local run where the cluster
 * serves file datasets — read-only at /datasets/NAME, named in SECD_DATASETS — so a project that
 * reads `dataset_path("digits")` runs locally unchanged. secd.yml's `datasets:` chooses among them as
 * it chooses among grants on the cluster; a name it asks for that no `--dataset` gives is said, not
 * silently dropped (MySQL datasets exist only on the cluster).
 */
import { realpath, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DATASETS_MOUNT, datasetNameProblem } from '../../storage/dataset-path.js';

/** A folder given with `--dataset`, resolved. */
export interface LocalDataset {
  name: string;
  dir: string;
}

/** Read `NAME=DIR` flags (DIR relative to `cwd`): each folder must exist; a name may come once. */
export async function parseLocalDatasets(flags: readonly string[], cwd: string): Promise<{ ok: true; datasets: LocalDataset[] } | { ok: false; reason: string }> {
  const datasets: LocalDataset[] = [];
  for (const flag of flags) {
    const i = flag.indexOf('=');
    if (i <= 0 || i === flag.length - 1) return { ok: false, reason: `--dataset ${JSON.stringify(flag)} must be NAME=DIR (e.g. --dataset digits=./data)` };
    const name = flag.slice(0, i);
    const problem = datasetNameProblem(name);
    if (problem) return { ok: false, reason: `--dataset ${JSON.stringify(flag)}: ${problem}` };
    if (datasets.some((d) => d.name === name)) return { ok: false, reason: `--dataset ${name} is given twice` };
    const typed = flag.slice(i + 1);
    const dir = await realpath(resolve(cwd, typed)).catch(() => null);
    if (dir === null || !(await stat(dir)).isDirectory()) return { ok: false, reason: `--dataset ${name}: ${typed} is not a folder` };
    datasets.push({ name, dir });
  }
  return { ok: true, datasets };
}

/** What the run gets: the datasets secd.yml asks for (all given, without the key), their SECD_DATASETS, and notes on the rest. */
export function chooseLocalDatasets(
  given: readonly LocalDataset[],
  requested: readonly string[] | null,
): { datasets: LocalDataset[]; env: Record<string, string>; notes: string[] } {
  const notes: string[] = [];
  const datasets = requested === null ? [...given] : given.filter((d) => requested.includes(d.name));
  if (requested !== null) {
    const missing = requested.filter((n) => !given.some((d) => d.name === n));
    if (missing.length > 0) {
      notes.push(
        `secd.yml asks for dataset${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, which this run does not have: ` +
          'give a folder with --dataset NAME=DIR (MySQL datasets are served only on the cluster)',
      );
    }
    const unused = given.filter((d) => !requested.includes(d.name)).map((d) => d.name);
    if (unused.length > 0) notes.push(`--dataset ${unused.join(', ')} not served: secd.yml's datasets: does not name ${unused.length > 1 ? 'them' : 'it'}`);
  }
  const env: Record<string, string> = {};
  if (datasets.length > 0) {
    const catalog = Object.fromEntries(datasets.map((d) => [d.name, { kind: 'path', path: `${DATASETS_MOUNT}/${d.name}` }]));
    env.SECD_DATASETS = JSON.stringify(catalog);
  }
  return { datasets, env, notes };
}
