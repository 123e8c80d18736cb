/**
 * `secd check`'s look at the project's files: `secd.yml` through the leader's own policy
 * (resolveRunConfig, as scheduler/lifecycle/run-checks.ts calls it), the Dockerfile and the image it
 * builds FROM, and what is tracked that should not be (outputs/, big files). Pure: the command reads
 * the files and git's listings and hands them in.
 *
 * Choices made here:
 * - The files are checked as they are in the working tree (a researcher runs `secd check` before
 *   committing, too); a change not yet committed, or a file git does not track, is said in its own
 *   line, since a push sends the committed version.
 * - Offline the largest node's GPU count is unknown: `gpu:` is checked against the leader's limit,
 *   and a note says the nodes decide the rest (`--leader` reads them).
 * - The cluster has no registry: an image that is not secd's is a warning, not an error, since a
 *   sysadmin may have loaded it onto every node.
 */
import type { PlannedNode } from '../../scheduler/plan/plan-types.js';
import { resolveRunConfig, type PolicyLimits, type RunConfig } from '../../scheduler/policy/project-policy.js';
import { error, note, ok, warning, type Finding } from './check-findings.js';

/** The limits secd.yml is checked against; `largestNodeGpus` null when no leader was asked. */
export interface CheckLimits {
  maxRunforHours: number;
  maxGpusPerRun: number;
  largestNodeGpus: number | null;
  /** The nodes' GPUs (model and memory) from the leader, for a `gpu:` request of a kind; null offline. */
  gpuNodes: ReadonlyArray<Pick<PlannedNode, 'id' | 'gpus' | 'gpuDetails'>> | null;
  /** Where they came from, for the report ("the leader's defaults", "http://…"). */
  source: string;
}

/** One project file as the check sees it: its text in the working tree, and its standing in git. */
export interface ProjectFile {
  /** The working tree's content, or null when the file is not there. */
  text: string | null;
  /** In the HEAD commit's tree; null when there is no repository or no commit. */
  committed: boolean | null;
  /** Has changes git status reports (modified, staged, deleted). */
  changed: boolean;
}

/** Files over this size in the pushed tree get a warning: every build sends them as its context. */
export const BIG_FILE_BYTES = 10 * 1024 * 1024;

/** The images `secd base-image` builds, or DESIGN §12 names (tags compared without a digest). */
const SECD_IMAGES = ['secd/base', 'secd/base:latest', 'secd/base:torch', 'secd/base:torch-cuda'];

/** secd.yml through the leader's policy, plus whether the push would carry what was checked. */
export function checkSecdYml(file: ProjectFile, limits: CheckLimits): Finding[] {
  const out: Finding[] = [];
  const offline = limits.largestNodeGpus === null;
  const base: PolicyLimits = {
    maxRunforHours: limits.maxRunforHours,
    maxGpusPerRun: limits.maxGpusPerRun,
    largestNodeGpus: limits.largestNodeGpus ?? limits.maxGpusPerRun,
  };
  let result = resolveRunConfig(file.text, base);
  // A request for a model or memory is held to the nodes' GPUs when the leader named them; the API
  // does not say which MIG profiles a node has, so a MIG request is left to the leader.
  const request = result.ok ? result.config.gpuRequest : undefined;
  if (request && request.mig === undefined && limits.gpuNodes !== null) result = resolveRunConfig(file.text, { ...base, gpuNodes: limits.gpuNodes });
  if (!result.ok) {
    out.push(error('secd.yml', `${result.reason.replace(/^secd\.yml: /, '')} (checked against ${limits.source})`));
    return out;
  }
  const where = file.text === null ? 'no secd.yml: the defaults apply' : 'valid';
  out.push(ok('secd.yml', `${where}: ${describeConfig(result.config)} (limits: ${limits.maxRunforHours} h, ${limits.maxGpusPerRun} GPUs, from ${limits.source})`));
  for (const w of result.warnings) out.push(warning('secd.yml', `${w.replace(/^secd\.yml: /, '')}; the leader would keep this as a warning in run.json`));
  if (result.config.gpus > 0 && (offline || result.config.gpuRequest?.mig !== undefined)) {
    const what = `${gpus(result.config.gpus)}${result.config.gpuRequest ? ` ${describeRequest(result.config.gpuRequest)}` : ''}`;
    out.push(note('secd.yml', `whether a node has ${what} only the leader knows${offline ? ' (secd check --leader <url> asks it)' : ''}`));
  }
  if (result.config.datasets !== null && result.config.datasets.length > 0) {
    out.push(note('secd.yml', `the leader checks that you are granted ${result.config.datasets.join(', ')} (secd admin grants <you> lists them)`));
  }
  if (file.text !== null) out.push(...commitState('secd.yml', file, 'a push without it runs with the defaults', false));
  return out;
}

/** The Dockerfile: present, committed, and built FROM an image the nodes hold. */
export function checkDockerfile(file: ProjectFile): Finding[] {
  if (file.text === null) {
    return [error('Dockerfile', "no Dockerfile at the repository root: secd builds the repository's Dockerfile; add one (FROM secd/base, COPY your code, CMD how to run it) and commit it")];
  }
  const out: Finding[] = [];
  const bases = dockerfileBases(file.text);
  if (bases.length === 0) {
    out.push(error('Dockerfile', 'has no FROM line: docker cannot build it; start it with FROM secd/base'));
  }
  for (const b of bases) {
    if (b.image.includes('$')) {
      out.push(warning('Dockerfile', `line ${b.line}: FROM ${b.image} names its image through a build argument; secd passes none, so it must have a default the nodes hold`));
    } else if (b.image.toLowerCase() === 'scratch') {
      out.push(ok('Dockerfile', `line ${b.line}: FROM scratch`));
    } else if (isSecdImage(b.image)) {
      out.push(ok('Dockerfile', `line ${b.line}: FROM ${b.image}, a secd image`));
    } else {
      out.push(warning('Dockerfile', `line ${b.line}: FROM ${b.image} is not a secd image: the cluster has no registry, this must be built FROM an image the nodes hold (secd/base, secd/base:torch, secd/base:torch-cuda)`));
    }
  }
  out.push(...commitState('Dockerfile', file, 'a push without it is refused', true));
  return out;
}

/** What the pushed tree holds that it should not: outputs/, files over BIG_FILE_BYTES; whether outputs/ is ignored. */
export function checkTrackedFiles(tree: ReadonlyMap<string, number> | null, untracked: readonly string[]): Finding[] {
  if (tree === null) return [];
  const out: Finding[] = [];
  const outputs = [...tree.keys()].filter((p) => p === 'outputs' || p.startsWith('outputs/'));
  if (outputs.length > 0) {
    out.push(
      warning(
        'files',
        `outputs/ is committed (${outputs.length} file${outputs.length === 1 ? '' : 's'}, e.g. ${outputs[0]}): results come back on secd-* branches, and outputs of a local secd run do not belong in the code; remove them (git rm -r --cached outputs; echo outputs/ >> .gitignore; git commit)`,
      ),
    );
  }
  for (const [p, size] of tree) {
    if (size > BIG_FILE_BYTES) {
      out.push(warning('files', `${p} is committed and ${(size / 1024 / 1024).toFixed(1)} MiB: every push and every build carries it; data belongs in a dataset or the cache (git rm --cached ${p})`));
    }
  }
  if (untracked.some((p) => p === 'outputs/' || p.startsWith('outputs/'))) {
    out.push(warning('files', 'outputs/ is neither committed nor ignored: a local secd run writes there; add it to .gitignore (echo outputs/ >> .gitignore) so it is never committed by mistake'));
  }
  if (out.length === 0) out.push(ok('files', `no outputs/ and nothing over ${BIG_FILE_BYTES / 1024 / 1024} MiB in the committed tree`));
  return out;
}

/** One FROM of a Dockerfile: its 1-based line and the image (stage references left out). */
export interface DockerfileBase {
  line: number;
  image: string;
}

/**
 * The images a Dockerfile builds FROM: instructions read across line continuations (the `escape`
 * parser directive honoured), comments skipped, `--platform=` flags passed over, and a FROM that
 * names an earlier stage (`FROM builder`) not counted as an image.
 */
export function dockerfileBases(text: string): DockerfileBase[] {
  const lines = text.split(/\r?\n/);
  const escape = /^#\s*escape\s*=\s*`\s*$/i.test(lines.find((l) => l.trim() !== '') ?? '') ? '`' : '\\';
  const stages = new Set<string>();
  const bases: DockerfileBase[] = [];
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let logical = lines[i]!;
    if (/^\s*#/.test(logical)) continue;
    while (logical.trimEnd().endsWith(escape) && i + 1 < lines.length) {
      logical = logical.trimEnd().slice(0, -1) + ' ' + lines[++i]!;
    }
    const m = /^\s*from\s+(.*)$/i.exec(logical);
    if (!m) continue;
    const words = m[1]!.trim().split(/\s+/).filter((w) => !w.startsWith('--'));
    const image = words[0];
    if (image === undefined) continue;
    const isStage = stages.has(image.toLowerCase());
    if (words[1]?.toLowerCase() === 'as' && words[2] !== undefined) stages.add(words[2].toLowerCase());
    if (isStage) continue;
    bases.push({ line: start + 1, image });
  }
  return bases;
}

/** secd/base with a known tag, with or without docker.io/ and a digest. */
function isSecdImage(image: string): boolean {
  const name = image.replace(/^docker\.io\//, '').replace(/@sha256:[0-9a-f]{64}$/, '');
  return SECD_IMAGES.includes(name);
}

/** Whether the push carries the file as checked. */
function commitState(topic: string, file: ProjectFile, without: string, required: boolean): Finding[] {
  if (file.committed === null) return [];
  if (!file.committed) {
    const text = `is not committed: ${without} (git add ${topic}; git commit)`;
    return [required ? error(topic, text) : warning(topic, text)];
  }
  if (file.changed) return [warning(topic, `has changes that are not committed: a push sends the committed version (git commit ${topic})`)];
  return [];
}

function gpus(n: number): string {
  return `${n} GPU${n === 1 ? '' : 's'}`;
}

/** "(model H100, 40 GB each)", "(MIG 3g.40gb)". */
function describeRequest(r: NonNullable<RunConfig['gpuRequest']>): string {
  const parts = [
    ...(r.mig !== undefined ? [`MIG ${r.mig}`] : []),
    ...(r.model !== undefined ? [`model ${r.model}`] : []),
    ...(r.memoryBytes !== undefined ? [`at least ${(r.memoryBytes / 1e9).toFixed(r.memoryBytes % 1e9 === 0 ? 0 : 1)} GB each`] : []),
  ];
  return `(${parts.join(', ')})`;
}

function describeConfig(c: RunConfig): string {
  const gpuText = c.gpus === 0 ? 'no GPU' : `${gpus(c.gpus)}${c.gpuRequest ? ` ${describeRequest(c.gpuRequest)}` : ''}`;
  const cache = c.cacheDir === null ? 'no cache' : `cache ${c.cacheDir} at ${c.mountPath}`;
  const datasets = c.datasets === null ? 'all your granted datasets' : c.datasets.length === 0 ? 'no datasets' : `datasets ${c.datasets.join(', ')}`;
  return `runfor ${c.runforHours} h, ${gpuText}, ${cache}, ${datasets}`;
}
