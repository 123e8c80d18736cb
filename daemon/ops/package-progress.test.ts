import { describe, expect, it } from 'vitest';
import { createPackageProgress, formatBytes, parseAptSize } from './package-progress.js';

describe('build progress from apt and debootstrap output', () => {
  it('reads apt sizes in decimal units with thousands separators', () => {
    expect(parseAptSize('56.9 MB')).toBe(56_900_000);
    expect(parseAptSize('1,234 kB')).toBe(1_234_000);
    expect(parseAptSize('512 B')).toBe(512);
    expect(parseAptSize('lots')).toBeNull();
    expect(formatBytes(420_000_000)).toBe('420 MB');
    expect(formatBytes(2_515_190_000)).toBe('2.5 GB');
  });

  it('counts apt downloads and their bytes against what apt said it needs', () => {
    const p = createPackageProgress({ every: 1 });
    const said = [
      'Fetched 9974 kB in 2s (5660 kB/s)',
      'Reading package lists...',
      '0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.',
      'Need to get 12.3 MB/420 MB of archives.',
      'Get:1 http://deb.debian.org/debian bookworm/main amd64 libgomp1 amd64 12.2.0-14 [116 kB]',
      'Get:2 http://deb.debian.org/debian bookworm/main amd64 python3-torch amd64 1.13.1+dfsg-4 [12.1 MB]',
      'Get:3 http://deb.debian.org/debian bookworm/main amd64 python3-six all 1.16.0-4 [17.5 kB]',
      'Fetched 12.3 MB in 2s (6,150 kB/s)',
      'Unpacking libgomp1:amd64 (12.2.0-14) ...',
      'Unpacking python3-six (1.16.0-4) ...',
      'Setting up libgomp1:amd64 (12.2.0-14) ...',
      'Setting up python3-six (1.16.0-4) ...',
      'Setting up python3-torch (1.13.1+dfsg-4) ...',
    ].map((l) => p.observe(l));
    expect(said.filter(Boolean)).toEqual([
      'I: 1 packages fetched, 116 kB of 12 MB so far',
      'I: 2 packages fetched, 12 MB of 12 MB so far',
      'I: 3 packages fetched, 12 MB of 12 MB so far',
      'I: fetched 3 packages, 12 MB; unpacking',
      'I: 2 of 3 packages unpacked',
      'I: 2 of 3 packages set up',
      'I: 3 of 3 packages set up',
    ]);
    expect(p.state()).toEqual({ fetched: 3, fetchedBytes: 116_000 + 12_100_000 + 17_500, toFetchBytes: 12_300_000, toInstall: 3, unpacked: 2, setUp: 3 });
  });

  it("counts debootstrap's downloads and takes their size from what landed in the cache", () => {
    let onDisk = 0;
    const p = createPackageProgress({ every: 2, bytesOnDisk: () => onDisk });
    expect(p.observe('I: Retrieving libacl1 2.3.1-3')).toBeNull();
    onDisk = 3_000_000;
    expect(p.observe('I: Retrieving libc6 2.36-9+deb12u10')).toBe('I: 2 packages fetched, 3 MB so far');
    expect(p.observe('I: Validating libc6 2.36-9+deb12u10')).toBeNull();
    expect(p.state()).toMatchObject({ fetched: 2, fetchedBytes: 3_000_000 });
  });

  it('says nothing for lines it does not know', () => {
    const p = createPackageProgress({ every: 1 });
    for (const l of ['I: Base system installed successfully.', 'Unpacking python3-torch ...', 'W: something', '']) expect(p.observe(l)).toBeNull();
  });
});
