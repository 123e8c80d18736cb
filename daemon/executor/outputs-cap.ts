/**
 * The run's /outputs volume capped while it runs (node.yml `outputs_volume`, issue 13 finding 4): made
 * before the run's container, at the outputs total cap, so a run that writes past it gets ENOSPC in
 * its own code instead of filling the node. `disk` (the default) makes nothing here: Docker creates a
 * plain volume with the container, capped only when the outputs are read back. See
 * daemon/engine/outputs-volume.ts for how `quota` and `tmpfs` hold.
 */
import { errorText } from '../../scheduler/common/errors.js';
import { variantSpec } from '../ops/base-image-variants.js';
import type { ExecutorDeps } from './executor-deps.js';
import { outputsVolumeName } from './container-profile.js';
import type { RunSpec } from '../../scheduler/contract/run-spec.js';

/** Make the capped volume (and a tmpfs volume's holder); null when done, else the run's reason. */
export async function prepareOutputsVolume(spec: RunSpec, deps: ExecutorDeps, onProgress: (line: string) => void): Promise<string | null> {
  const mode = deps.settings.outputsVolume ?? 'disk';
  if (mode === 'disk') return null;
  const holderImage = deps.settings.outputsHolderImage ?? variantSpec('base').image;
  try {
    // The holder sleeps in secd/base, which every node has or builds on first use.
    if (mode === 'tmpfs' && deps.settings.outputsHolderImage === undefined) await deps.ensureBaseImage(onProgress);
    await deps.engine.createOutputsVolume({
      volume: outputsVolumeName(spec.runId),
      runId: spec.runId,
      mode,
      sizeBytes: deps.settings.maxOutputTotalBytes,
      holderImage,
    });
    return null;
  } catch (err) {
    return `could not make the run's ${mode}-capped outputs volume (node ${deps.settings.nodeId}, outputs_volume: ${mode}): ${errorText(err)}`;
  }
}

/**
 * At a node's start: null when its `outputs_volume` can work here, else why not — `quota` needs
 * Docker's root on XFS mounted with `pquota`, which Docker itself is asked about.
 */
export async function outputsVolumeProblem(mode: ExecutorDeps['settings']['outputsVolume'], engine: ExecutorDeps['engine']): Promise<string | null> {
  if (mode !== 'quota') return null;
  const why = await engine.probeOutputsQuota();
  if (why === null) return null;
  return (
    `outputs_volume: quota, but Docker cannot cap volumes by quota here (Docker says: ${why}); ` +
    'put Docker\'s root (/var/lib/docker) on XFS mounted with pquota, or set outputs_volume: tmpfs (capped in memory) or disk (uncapped)'
  );
}
