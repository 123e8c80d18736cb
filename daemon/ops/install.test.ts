import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hiddenFromService, installSecd, type InstallHost } from './install.js';
import { packagedUnitsDir, renderUnit } from './install-templates.js';

describe('renderUnit', () => {
  it('points ExecStart at the installed secd, quoting a path with a space and escaping % and $ for systemd', () => {
    const unit = '[Service]\nExecStart=/usr/local/bin/secd node --config /etc/secd/node.yml\n';
    expect(renderUnit(unit, ['/usr/bin/node', '/opt/secd 2/100%$x/cli.js'])).toBe(
      '[Service]\nExecStart=/usr/bin/node "/opt/secd 2/100%%$$x/cli.js" node --config /etc/secd/node.yml\n',
    );
  });
});

describe('installSecd on this machine (root = "/", with a host)', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'secd-install-host-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  // A real install refuses to run as anyone but root (`root` here is only where the files land).
  it.skipIf(process.getuid?.() !== 0)('applies the sysusers files, hands the node\'s folders to secd and reloads systemd, in that order', async () => {
    const calls: string[] = [];
    const host: InstallHost = {
      async applySysusers(files) {
        calls.push(`sysusers ${files.join(' ')}`);
      },
      async chownToServiceUser(dir) {
        calls.push(`chown ${dir}`);
        if (dir === '/mnt/secd-cache') throw new Error('Operation not permitted');
      },
      async reloadSystemd() {
        calls.push('daemon-reload');
        return true;
      },
    };
    const result = await installSecd(
      { role: 'node', root, staging: false, secdCommand: ['/usr/bin/secd'], unitsDir: packagedUnitsDir()!, hostname: 'gpu-01' },
      host,
    );
    expect(result.ok).toBe(true);
    expect(calls).toEqual([
      'sysusers /etc/sysusers.d/secd.conf /etc/sysusers.d/secd-node.conf',
      'chown /var/lib/secd-node',
      'chown /mnt/secd-cache',
      'daemon-reload',
    ]);
    if (!result.ok) return;
    // A cache root on an NFS export with root_squash cannot be chowned: a warning, not a failure.
    expect(result.steps).toContainEqual({
      action: 'warning',
      path: '/mnt/secd-cache',
      detail: 'could not hand it to secd (Operation not permitted); on an NFS export, set the owner on the server',
    });
    expect(await readFile(join(root, '/etc/systemd/system/secd-node.service'), 'utf8')).toContain('ExecStart=/usr/bin/secd node --config /etc/secd/node.yml');
  });
});

describe('a secd the units cannot see', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'secd-install-hidden-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it.each([
    ['/tmp/secd-1.4/bin/secd', 'PrivateTmp=yes'],
    ['/var/tmp/node/bin/node', 'PrivateTmp=yes'],
    ['/home/ada/secd/bin/secd', 'ProtectHome=yes'],
  ])('%s gets a warning naming %s', async (program, setting) => {
    const result = await installSecd({ role: 'leader', root, staging: true, secdCommand: [program], unitsDir: packagedUnitsDir()!, hostname: 'leader-01' }, null);
    expect(result.ok, JSON.stringify(result)).toBe(true);
    if (!result.ok) return;
    const warning = result.steps.find((s) => s.action === 'warning' && s.path === program);
    expect(warning?.detail).toContain(`the units run with ${setting}, so the service cannot see ${program}`);
  });

  it('a secd under /usr/local gets no such warning', async () => {
    const result = await installSecd({ role: 'leader', root, staging: true, secdCommand: ['/usr/local/bin/secd'], unitsDir: packagedUnitsDir()!, hostname: 'leader-01' }, null);
    expect(result.ok && result.steps.filter((s) => s.action === 'warning' && s.path === '/usr/local/bin/secd')).toEqual([]);
  });

  it('the hidden folders are read from the units, not assumed', () => {
    expect(hiddenFromService(['[Service]\nPrivateTmp=yes\n'])).toEqual([{ dirs: ['/tmp', '/var/tmp'], setting: 'PrivateTmp=yes' }]);
    expect(hiddenFromService(['[Service]\nPrivateTmp=no\n'])).toEqual([]);
  });
});
