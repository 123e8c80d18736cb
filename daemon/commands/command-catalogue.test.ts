import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { COMMAND_CATALOGUE, registerCommands } from './command-catalogue.js';

describe('the command catalogue', () => {
  it.each(COMMAND_CATALOGUE.map((e) => [e.name, e] as const))('names %s as its module registers it', async (name, entry) => {
    const program = new Command();
    (await entry.load())(program);
    expect(program.commands.map((c) => c.name())).toEqual([name]);
    expect(program.commands[0]!.description()).toBe(entry.description);
  });

  it('loads only the command argv names; the others are names for help', async () => {
    const program = new Command();
    await registerCommands(program, ['node', 'secd', 'admin', 'dataset', 'list']);
    const admin = program.commands.find((c) => c.name() === 'admin')!;
    expect(admin.commands.map((c) => c.name())).toEqual(expect.arrayContaining(['dataset', 'release', 'node', 'state']));
    const run = program.commands.find((c) => c.name() === 'run')!;
    expect(run.options).toEqual([]);
    expect(program.commands.map((c) => c.name())).toEqual(COMMAND_CATALOGUE.map((e) => e.name));
  });

  it('`secd help run` loads run', async () => {
    const program = new Command();
    await registerCommands(program, ['node', 'secd', 'help', 'run']);
    expect(program.commands.find((c) => c.name() === 'run')!.options.length).toBeGreaterThan(0);
  });
});
