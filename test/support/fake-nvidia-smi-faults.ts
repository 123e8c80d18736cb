/**
 * Faults for the fake `nvidia-smi` (fake-nvidia-smi.ts) as real drivers show them: every call
 * failing the way one does after losing a GPU, and a GPU gone from every answer. No vitest imports.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { nvidiaSmiFixture } from './fake-nvidia-smi.js';

async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await fs.writeFile(tmp, text);
  await fs.rename(tmp, file);
}

/**
 * Makes every call of the fake in `dir` fail the way a driver that lost a GPU does: print `output`
 * (a fixture name such as `k80-gpu-lost_q-x.txt`, or the text) and exit with `exitCode` (nvidia-smi
 * exits 15 for "GPU is lost"); null answers again from the recorded outputs.
 */
export async function setFakeNvidiaSmiFailure(dir: string, failure: { output: string; exitCode?: number } | null): Promise<void> {
  const absolute = path.resolve(dir);
  if (failure === null) {
    await fs.rm(path.join(absolute, 'fail'), { force: true });
    return;
  }
  const named = /^[\w.-]+\.txt$/.test(failure.output) ? await fs.readFile(nvidiaSmiFixture(failure.output), 'utf8') : failure.output;
  await writeAtomically(path.join(absolute, 'fail.rc'), String(failure.exitCode ?? 15));
  await writeAtomically(path.join(absolute, 'fail'), named);
}

/** Removes a GPU from every answer of the fake in `dir` (it fell off the bus between two reports). */
export async function removeFakeGpu(dir: string, uuid: string): Promise<void> {
  const absolute = path.resolve(dir);
  const xmlFile = path.join(absolute, 'gpu.xml');
  const csvFile = path.join(absolute, 'gpu.csv');
  const listFile = path.join(absolute, 'gpu.list');
  const xml = await fs.readFile(xmlFile, 'utf8');
  const blockRe = new RegExp(`\\s*<gpu id="[^"]*">(?:(?!</gpu>)[\\s\\S])*?<uuid>${uuid}</uuid>[\\s\\S]*?</gpu>`);
  if (!blockRe.test(xml)) throw new Error(`removeFakeGpu: no GPU ${uuid} in the fake in ${dir}`);
  await writeAtomically(xmlFile, xml.replace(blockRe, ''));
  const csv = await fs.readFile(csvFile, 'utf8');
  await writeAtomically(csvFile, csv.split('\n').filter((l) => !l.includes(uuid)).join('\n'));
  const list = await fs.readFile(listFile, 'utf8').catch(() => '');
  await writeAtomically(listFile, list.split('\n').filter((l) => !l.includes(uuid)).join('\n'));
}
