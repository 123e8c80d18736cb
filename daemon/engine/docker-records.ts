/**
 * The Docker Engine's answers read into secd's terms, apart from the adapter that asks for them
 * (docker-engine.ts). The shapes below are the few fields secd reads of the Engine API's JSON, so this
 * file needs no dockerode: the adapter's typed answers fit them as they are.
 */
import type { ContainerRecord } from './container-supervisor.js';

/** The part of a container inspect answer (`GET /containers/:id/json`) that secd reads. */
export interface ContainerInspectAnswer {
  State?: { Status?: string; Running?: boolean; StartedAt?: string; FinishedAt?: string; OOMKilled?: boolean; ExitCode?: number };
  Config?: { Labels?: Record<string, string> | null };
}

/** An engine time as ISO-8601, or null for its "never" (`0001-01-01…`) and anything unreadable. */
function isoOrNull(t: string | undefined): string | null {
  if (!t || t.startsWith('0001-01-01')) return null;
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** `repo[:tag]` split as the engine's image API wants it (a registry port's colon is not a tag). */
export function splitRepoTag(ref: string): { repo: string; tag: string } {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) } : { repo: ref, tag: 'latest' };
}

/** The engine's inspect answer in secd's terms. */
export function recordOf(info: ContainerInspectAnswer): ContainerRecord {
  return {
    status: info.State?.Status ?? 'unknown',
    running: info.State?.Running === true,
    startedAt: isoOrNull(info.State?.StartedAt),
    finishedAt: isoOrNull(info.State?.FinishedAt),
    oomKilled: info.State?.OOMKilled === true,
    exitCode: typeof info.State?.ExitCode === 'number' ? info.State.ExitCode : null,
    labels: info.Config?.Labels ?? {},
  };
}
