/**
 * `nvidia-smi -q -x`: runs it (no shell, with a timeout) and reads its XML report into GPU readings.
 * The only file that uses node-nvidia-smi.
 *
 * node-nvidia-smi 1.0 fits only half-way: its one function runs the fixed string
 * `nvidia-smi -q -x` through a shell, with no way to name the command (`nvidia_smi:` in node.yml),
 * no timeout, and it treats any stderr output as failure. So this module runs the command itself
 * (execFile, no shell, timeout) and parses the XML exactly as node-nvidia-smi does: with the xml2js
 * that node-nvidia-smi depends on (pinned to 0.6.2 by npm `overrides`), resolved from
 * node-nvidia-smi's own folder, with node-nvidia-smi's parser options. The JSON shape read below is
 * therefore node-nvidia-smi's output shape; a test feeds its CLI's output through the same mapping.
 *
 * A report costs a process spawn plus a 13-92 KB XML parse (figures in gpu-telemetry.ts), so the
 * supervisor asks for one only for the inventory and, in stream mode, the process lists.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { z } from 'zod';
import {
  bytesFromMiB,
  firstLine,
  integerOf,
  knownText,
  MIB,
  numberOf,
  troubleOf,
  type GpuProcess,
  type GpuReading,
  type GpuTrouble,
  type NvidiaSmiFailure,
} from './gpu-reading.js';

/** The outcome of reading one `-q -x` report. */
export type XmlReadResult = { ok: true; gpus: GpuReading[] } | NvidiaSmiFailure;

type ParseString = (
  xml: string,
  options: object,
  callback: (err: Error | null, result: unknown) => void,
) => void;

// The xml2js node-nvidia-smi itself requires (see the module comment), and its options verbatim.
const nodeNvidiaSmiEntry = createRequire(import.meta.url).resolve('node-nvidia-smi');
const { parseString } = createRequire(nodeNvidiaSmiEntry)('xml2js') as { parseString: ParseString };
const NODE_NVIDIA_SMI_XML_OPTIONS = { explicitArray: false, trim: true };

// xml2js with explicitArray:false gives an element's text as a string, an element with attributes
// as { _: text, $: attrs }, a repeated element as an array and an empty element as a string of
// whitespace ('' or the newline and tabs between its tags: trim does not apply to those).
const emptyElement = z.string().regex(/^\s*$/);
const xmlText = z
  .union([z.string(), z.object({ _: z.string().optional() }).transform((o) => o._ ?? '')])
  .optional();
const xmlGroup = <T extends z.ZodRawShape>(shape: T) =>
  z.union([z.object(shape), emptyElement.transform(() => undefined)]).optional();
const oneOrMany = <T extends z.ZodType>(item: T) =>
  z
    .union([z.array(item), item])
    .optional()
    .transform((v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]));

const processInfoXml = z.object({
  pid: xmlText,
  process_name: xmlText,
  used_memory: xmlText,
});

const powerXml = {
  power_draw: xmlText,
  average_power_draw: xmlText,
  instant_power_draw: xmlText,
};

// `<mig_devices>` holds `<mig_device>`s on a MIG-mode GPU, and "None" (or nothing) otherwise.
const migDeviceXml = z.object({ index: xmlText, fb_memory_usage: xmlGroup({ total: xmlText }) });
const migDevicesXml = z
  .union([z.string().transform(() => undefined), z.object({ mig_device: oneOrMany(migDeviceXml) })])
  .optional()
  .transform((m) => (m === undefined ? [] : m.mig_device));

const gpuXml = z.object({
  $: z.object({ id: z.string().optional() }).optional(),
  product_name: xmlText,
  uuid: z.string().min(1),
  mig_mode: xmlGroup({ current_mig: xmlText }),
  mig_devices: migDevicesXml,
  gpu_reset_status: xmlGroup({ reset_required: xmlText, drain_and_reset_recommended: xmlText }),
  minor_number: xmlText,
  fb_memory_usage: xmlGroup({ total: xmlText, used: xmlText }),
  utilization: xmlGroup({ gpu_util: xmlText }),
  temperature: xmlGroup({ gpu_temp: xmlText }),
  // DTD v10-v12: <power_readings>; v13: <gpu_power_readings> (plus memory/module readings we skip).
  power_readings: xmlGroup(powerXml),
  gpu_power_readings: xmlGroup(powerXml),
  processes: z
    .union([emptyElement.transform(() => undefined), z.object({ process_info: oneOrMany(processInfoXml) })])
    .optional()
    .transform((p) => (p === undefined ? [] : p.process_info)),
});

const nvidiaSmiLogXml = z.object({
  nvidia_smi_log: z.union([
    emptyElement.transform(() => ({ gpu: [] as z.infer<typeof gpuXml>[] })),
    z.object({ gpu: oneOrMany(gpuXml) }),
  ]),
});

type PowerXml = { power_draw?: string; average_power_draw?: string; instant_power_draw?: string } | undefined;

// A board's draw: `power_draw` on older drivers; on DTD v13 the one-second average, which is what
// `--query-gpu=power.draw` reports (the H100 capture shows power.draw == power.draw.average).
function powerOf(readings: PowerXml): number | null {
  if (!readings) return null;
  return numberOf(readings.power_draw) ?? numberOf(readings.average_power_draw) ?? numberOf(readings.instant_power_draw);
}

// What the report says of the GPU's health: a value printed as `[GPU is lost]` or `[Unknown Error]`
// where a reading belongs, or a reset the driver asks for (after an Xid such as 79 or 48).
function troubleOfGpu(g: z.infer<typeof gpuXml>): GpuTrouble | null {
  const said = [g.product_name, g.fb_memory_usage?.total, g.fb_memory_usage?.used, g.temperature?.gpu_temp, g.utilization?.gpu_util];
  for (const text of said) {
    const trouble = troubleOf(text);
    if (trouble) return trouble;
  }
  if (g.gpu_reset_status?.reset_required?.trim().toLowerCase() === 'yes') return { health: 'error', problem: 'nvidia-smi: the GPU requires a reset' };
  if (g.gpu_reset_status?.drain_and_reset_recommended?.trim().toLowerCase() === 'yes') {
    return { health: 'error', problem: 'nvidia-smi: drain and reset recommended' };
  }
  return null;
}

function migModeOf(text: string | undefined): boolean | null {
  const t = knownText(text)?.toLowerCase();
  return t === 'enabled' ? true : t === 'disabled' ? false : null;
}

function zodReason(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'unexpected structure';
  return `${issue.path.join('.') || '(root)'}: ${issue.message}`;
}

/** Maps node-nvidia-smi's JSON (xml2js, explicitArray false) to readings sorted by index. */
export function readingsFromNodeNvidiaSmiJson(json: unknown): XmlReadResult {
  const parsed = nvidiaSmiLogXml.safeParse(json);
  if (!parsed.success) {
    return { ok: false, code: 'invalid-output', reason: `nvidia-smi XML is not an nvidia_smi_log report (${zodReason(parsed.error)})` };
  }
  const gpus = parsed.data.nvidia_smi_log.gpu.map((g, position): GpuReading => {
    const trouble = troubleOfGpu(g);
    return {
      uuid: g.uuid,
      // A minor number of N/A (seen on some virtualised platforms) falls back to document order.
      index: integerOf(g.minor_number) ?? position,
      utilization_pct: numberOf(g.utilization?.gpu_util),
      memory_used_bytes: bytesFromMiB(g.fb_memory_usage?.used),
      memory_total_bytes: bytesFromMiB(g.fb_memory_usage?.total),
      temperature_c: numberOf(g.temperature?.gpu_temp),
      power_w: powerOf(g.power_readings ?? g.gpu_power_readings),
      processes: g.processes.flatMap((p): GpuProcess[] => {
        const pid = integerOf(p.pid);
        return pid === null ? [] : [{ pid, name: knownText(p.process_name) ?? '', used_memory_bytes: bytesFromMiB(p.used_memory) }];
      }),
      name: knownText(g.product_name) ?? 'unknown GPU',
      ...(trouble ? { health: trouble.health, problem: trouble.problem } : {}),
      mig_mode: migModeOf(g.mig_mode?.current_mig),
      // UUIDs and profiles are not in the XML: nvidia-smi -L fills them in (gpu-inventory.ts).
      mig_devices: g.mig_devices.flatMap((d) => {
        const index = integerOf(d.index);
        return index === null ? [] : [{ uuid: '', index, profile: '', memory_total_bytes: bytesFromMiB(d.fb_memory_usage?.total) }];
      }),
      pci_bus_id: knownText(g.$?.id) ?? null,
    };
  });
  gpus.sort((a, b) => a.index - b.index);
  return { ok: true, gpus };
}

/** Parses `nvidia-smi -q -x` output the way node-nvidia-smi does and maps it to readings. */
export function parseNvidiaSmiXml(xml: string): Promise<XmlReadResult> {
  return new Promise((resolve) => {
    parseString(xml, NODE_NVIDIA_SMI_XML_OPTIONS, (err, json) => {
      if (err) {
        const first = String(err.message).split('\n')[0];
        resolve({ ok: false, code: 'invalid-output', reason: `nvidia-smi -q -x printed something that is not XML (${first})` });
      } else if (json === null || json === undefined) {
        resolve({ ok: false, code: 'invalid-output', reason: 'nvidia-smi -q -x printed nothing' });
      } else {
        resolve(readingsFromNodeNvidiaSmiJson(json));
      }
    });
  });
}


/** Runs `<command> -q -x` once (no shell, with a timeout) and reads its report. */
export function queryNvidiaSmiXml(command: string, timeoutMs: number): Promise<XmlReadResult> {
  return new Promise((resolve) => {
    execFile(
      command,
      ['-q', '-x'],
      { timeout: timeoutMs, maxBuffer: 64 * MIB, encoding: 'utf8', windowsHide: true },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: unknown };
          if (e.code === 'ENOENT') {
            resolve({ ok: false, code: 'missing', reason: `${command} not found` });
          } else if (e.killed && e.signal) {
            resolve({ ok: false, code: 'timeout', reason: `${command} -q -x did not answer within ${timeoutMs} ms` });
          } else {
            // nvidia-smi prints its own failure ("couldn't communicate with the NVIDIA driver") on stdout.
            const said = firstLine(String(stdout)) || firstLine(String(stderr)) || e.message;
            const status = typeof e.code === 'number' ? `exit code ${e.code}` : String(e.code ?? e.signal ?? 'error');
            const output = `${String(stdout)}\n${String(stderr)}`.slice(0, 64 * 1024);
            resolve({ ok: false, code: 'failed', reason: `${command} -q -x failed (${status}): ${said}`, output });
          }
          return;
        }
        void parseNvidiaSmiXml(String(stdout)).then(resolve);
      },
    );
  });
}
