/**
 * A tiny image for tests that need a shell but not Python: a static busybox on `scratch`, built once
 * per machine (no registry is reachable here).
 */
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerEngine } from '../../daemon/engine/container-engine.js';

/** The tag test projects start `FROM`. */
export const BUSYBOX_IMAGE = 'secd-test/busybox:1';

/** Build BUSYBOX_IMAGE unless it exists. Needs Debian's busybox-static at /bin/busybox. */
export async function ensureBusyboxImage(engine: ContainerEngine): Promise<void> {
  if (await engine.imageExists(BUSYBOX_IMAGE)) return;
  const dir = await mkdtemp(join(tmpdir(), 'secd-busybox-'));
  try {
    await copyFile('/bin/busybox', join(dir, 'busybox'));
    await writeFile(
      join(dir, 'Dockerfile'),
      'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["/bin/sh"]\n',
    );
    const lines: string[] = [];
    const built = await engine.buildImage({ contextDir: dir, tag: BUSYBOX_IMAGE, onLog: (l) => lines.push(l) });
    if (!built.ok) throw new Error(`could not build ${BUSYBOX_IMAGE}: ${built.reason}\n${lines.join('\n')}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
