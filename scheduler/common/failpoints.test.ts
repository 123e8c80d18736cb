import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { armFailpoints, failpoint, parseFailpoints } from './failpoints.js';

describe('failpoints', () => {
  it('reads names and hit counts, and names a malformed entry', () => {
    const armed = parseFailpoints('delivery.after-push, intake.stored@3');
    expect([...armed.entries()]).toEqual([
      ['delivery.after-push', { hit: 1, seen: 0 }],
      ['intake.stored', { hit: 3, seen: 0 }],
    ]);
    expect(() => parseFailpoints('Delivery after push')).toThrow(/"Delivery after push" is not name or name@hit/);
    expect(() => parseFailpoints('a@0')).toThrow(/"a@0"/);
  });

  it('an in-process handler sees every point passed until disarmed', () => {
    const seen: string[] = [];
    const disarm = armFailpoints((name) => seen.push(name));
    failpoint('one');
    failpoint('two');
    disarm();
    failpoint('three');
    expect(seen).toEqual(['one', 'two']);
  });

  it('an armed point kills the process with SIGKILL at its hit, and not before', () => {
    // The built module in a process of its own (npm test builds first), as a daemon would load it.
    const built = resolve(import.meta.dirname, '../../dist/scheduler/common/failpoints.js');
    if (!existsSync(built)) throw new Error(`${built} is missing: run "npm run build" (npm test does it first)`);
    const script = [
      `import { failpoint } from ${JSON.stringify(built)};`,
      `for (let i = 1; i <= 3; i++) { process.stdout.write('pass ' + i + '\\n'); failpoint('step.x'); }`,
      `process.stdout.write('survived\\n');`,
    ].join('\n');
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, SECD_FAILPOINTS: 'step.x@2' },
      encoding: 'utf8',
    });
    expect(child.signal).toBe('SIGKILL');
    expect(child.stdout).toBe('pass 1\npass 2\n');
  });
});
