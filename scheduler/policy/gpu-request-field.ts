/**
 * secd.yml's `gpu:` key (DESIGN §5): `true`/`false`, a number of whole GPUs, or an object asking
 * for what each GPU must be:
 *
 *   gpu: 2                                   # two whole GPUs, any model (as always)
 *   gpu: { count: 2, model: H100, memory: 40GB }
 *   gpu: { count: 1, mig: 3g.40gb }          # one MIG device of that profile, by its MIG UUID
 *
 * `model` is a case-insensitive substring of the GPU's name as nvidia-smi prints it; `memory` the
 * least memory per GPU (per MIG device), as a number of bytes or a size: `GB`/`MB`/`TB` are powers
 * of ten like the figures in GPU names ("H100 80GB" has 79.6 GiB, and `memory: 80GB` must take it),
 * `GiB`/`MiB`/`TiB` powers of two. `count` defaults to 1. An unknown key in the object is an error
 * naming the key: a misspelt `modle: H100` must not run on any GPU.
 *
 * Whether any node can meet the request is decided by scheduler/plan/gpu-eligibility.ts, the
 * planner's own rule, when the caller knows the nodes' GPUs.
 */
import { z } from 'zod';
import { show } from '../common/describe-value.js';
import type { GpuRequest } from '../plan/plan-types.js';

/** What `gpu:` asks for: how many, and of what (absent: any whole GPU). */
export interface GpuAsk {
  count: number;
  request?: GpuRequest;
}

const GPU_OBJECT_KEYS = ['count', 'model', 'memory', 'mig'] as const;

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** A MIG profile as nvidia-smi names them: `1g.10gb`, `3g.40gb`, `1g.10gb+me`, `4g.94gb`. */
const MIG_PROFILE = /^[1-8]g\.\d{1,4}gb(\+[a-z]{1,8})?$/i;

/** "40GB", "40 GiB", "512MiB" or a whole number of bytes → bytes; null when it is none of those. */
export function gpuMemoryBytes(value: unknown): number | null {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : null;
  if (typeof value !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(value);
  if (!m) return null;
  const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[(m[2] ?? '').toLowerCase()]!);
  return bytes > 0 ? bytes : null;
}

/** Reads `gpu:`'s value into a count and a request, or a sentence saying what is wrong (and where). */
export function readGpuAsk(value: unknown): { ok: true; ask: GpuAsk } | { ok: false; path: string[]; message: string } {
  const bad = (message: string, path: string[] = []) => ({ ok: false as const, path, message });
  if (value === true) return { ok: true, ask: { count: 1 } };
  if (value === false) return { ok: true, ask: { count: 0 } };
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0) return bad(`must be true, false or a whole number of GPUs (got ${show(value)})`);
    return { ok: true, ask: { count: value } };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return bad(`must be true, false, a number of GPUs or { count, model, memory, mig } (got ${show(value)})`);
  }
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!(GPU_OBJECT_KEYS as readonly string[]).includes(key)) {
      return bad(`has an unknown key ${show(key)} (known: ${GPU_OBJECT_KEYS.join(', ')})`);
    }
  }
  const count = o['count'] ?? 1;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1) {
    return bad(`must be a whole number of GPUs, at least 1 (got ${show(count)}; for none, write gpu: false)`, ['count']);
  }
  const request: GpuRequest = {};
  if (o['model'] !== undefined) {
    const model = o['model'];
    if (typeof model !== 'string' && typeof model !== 'number') return bad(`must be part of a GPU name such as H100 (got ${show(model)})`, ['model']);
    const text = String(model).trim();
    if (text === '' || text.length > 64) return bad(`must be part of a GPU name such as H100, 1 to 64 characters (got ${show(model)})`, ['model']);
    request.model = text;
  }
  if (o['memory'] !== undefined) {
    const bytes = gpuMemoryBytes(o['memory']);
    if (bytes === null) return bad(`must be a size such as 40GB or 40GiB, or a number of bytes (got ${show(o['memory'])})`, ['memory']);
    request.memoryBytes = bytes;
  }
  if (o['mig'] !== undefined) {
    const mig = o['mig'];
    if (typeof mig !== 'string' || !MIG_PROFILE.test(mig.trim())) return bad(`must be a MIG profile such as 3g.40gb (got ${show(mig)})`, ['mig']);
    request.mig = mig.trim().toLowerCase();
  }
  return { ok: true, ask: Object.keys(request).length > 0 ? { count, request } : { count } };
}
