/**
 * A run's /outputs volume with a size cap that holds while the run writes (issue 13, finding 4), in
 * two ways the Docker `local` driver offers (node.yml `outputs_volume`):
 *
 * - `quota`: the driver's `size` option, an XFS project quota on the volume's folder. Needs Docker's
 *   root on XFS mounted with `pquota`; elsewhere Docker refuses at create ("quota size requested but
 *   no quota support"), which `probeOutputsQuota` reports at node start.
 * - `tmpfs`: a tmpfs of that size. Its pages are memory, charged to the run's container (so they
 *   count against its memory limit), and the local driver unmounts it (losing the files) when the
 *   last container using it stops — so a small holder container keeps it mounted from before the
 *   run starts until the node removes the volume, after its outputs were read back. A restarted node
 *   finds the holder still there and the files with it.
 *
 * Writes past the cap fail in the run with ENOSPC ("No space left on device"), as on a full disk.
 */
import type Docker from 'dockerode';
import { statusOf } from './engine-errors.js';

/** How a run's outputs volume is made: `disk` (a plain local volume, uncapped on disk), or capped by `quota` or `tmpfs`. */
export type OutputsVolumeMode = 'disk' | 'quota' | 'tmpfs';

/** The capped volume one run gets, made before its container. */
export interface OutputsVolumeRequest {
  /** The volume's name (container-profile.ts outputsVolumeName). */
  volume: string;
  runId: string;
  mode: Exclude<OutputsVolumeMode, 'disk'>;
  sizeBytes: number;
  /** `tmpfs`: the image the holder runs `sleep` from (secd/base: every node has it). */
  holderImage: string;
}

/** The label a holder carries: the name of the volume it holds (never `secd.run`: it is no run's container). */
export const HOLDER_LABEL = 'secd.holds';

type Call = <T>(op: string, ids: Record<string, unknown>, fn: () => Promise<T>, expected?: readonly number[]) => Promise<T>;

/** The holder's name: one per volume, so a repeated create finds the one already there. */
export function holderNameFor(volume: string): string {
  return `${volume}-holder`;
}

/**
 * Create the capped volume and, for `tmpfs`, start its holder. Repeatable: a volume or holder left by
 * an earlier try of the same run is reused as it is.
 */
export async function createOutputsVolume(docker: Docker, call: Call, req: OutputsVolumeRequest): Promise<void> {
  const size = Math.max(1, Math.floor(req.sizeBytes));
  const driverOpts: Record<string, string> =
    req.mode === 'quota' ? { size: String(size) } : { type: 'tmpfs', device: 'tmpfs', o: `size=${size},mode=1777` };
  // Creating a volume that exists with other options is a 409 or returns the old one: callers remove first.
  await call('volume.create', { volume: req.volume, mode: req.mode, size }, () =>
    docker.createVolume({ Name: req.volume, Driver: 'local', DriverOpts: driverOpts, Labels: { 'secd.run': req.runId } }),
  );
  if (req.mode !== 'tmpfs') return;
  const name = holderNameFor(req.volume);
  let container: Docker.Container;
  try {
    container = await call(
      'container.create',
      { name, volume: req.volume, role: 'outputs holder' },
      () =>
        docker.createContainer({
          name,
          Image: req.holderImage,
          Entrypoint: ['sleep'],
          Cmd: ['infinity'],
          Labels: { [HOLDER_LABEL]: req.volume },
          HostConfig: {
            NetworkMode: 'none',
            CapDrop: ['ALL'],
            SecurityOpt: ['no-new-privileges'],
            ReadonlyRootfs: true,
            PidsLimit: 8,
            Memory: 32 * 1024 * 1024,
            Init: true,
            RestartPolicy: { Name: 'no' },
            Mounts: [{ Type: 'volume', Source: req.volume, Target: '/held', ReadOnly: true }],
          },
        }),
      [409],
    );
  } catch (err) {
    if (statusOf(err) !== 409) throw err;
    container = docker.getContainer(name);
  }
  try {
    await call('container.start', { name }, () => container.start(), [304]);
  } catch (err) {
    if (statusOf(err) !== 304) throw err;
  }
}

/** Removes the holders of `volume` (at most one; none for `disk` and `quota` volumes) and says how many there were. */
export async function removeHolders(docker: Docker, call: Call, volume: string): Promise<number> {
  const holders = await call('container.list', { label: `${HOLDER_LABEL}=${volume}` }, () =>
    docker.listContainers({ all: true, filters: { label: [`${HOLDER_LABEL}=${volume}`] } }),
  );
  for (const h of holders) {
    try {
      await call('container.remove', { container: h.Id, role: 'outputs holder' }, () => docker.getContainer(h.Id).remove({ force: true }), [404]);
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }
  return holders.length;
}

/**
 * Whether this Docker can cap a volume by quota: null when it can, else Docker's own sentence. Made
 * by creating (and removing) a 1 MiB quota volume, which is how Docker itself finds out.
 */
export async function probeOutputsQuota(docker: Docker, call: Call): Promise<string | null> {
  const name = `secd-quota-probe-${process.pid}`;
  try {
    await call('volume.create', { volume: name, probe: 'quota' }, () => docker.createVolume({ Name: name, Driver: 'local', DriverOpts: { size: String(1 << 20) } }), [500]);
  } catch (err) {
    const e = err as { json?: { message?: string }; message?: string };
    return (e.json?.message ?? e.message ?? String(err)).trim();
  }
  await call('volume.remove', { volume: name }, () => docker.getVolume(name).remove(), [404]).catch(() => undefined);
  return null;
}
