/**
 * How docker-modem reports an Engine API error: the HTTP status the adapter turns into results (304
 * already stopped, 404 gone, 409 in use) and the engine's own sentence, without the HTTP noise around it.
 */

interface EngineError {
  statusCode?: number;
  json?: { message?: string } | null;
  message?: string;
  reason?: string;
}

/** The HTTP status of an Engine API error; undefined for anything else (a bug, a broken socket). */
export function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null ? (err as EngineError).statusCode : undefined;
}

/** The engine's sentence: docker-modem puts it in `json.message`; its `message` adds HTTP noise. */
export function messageOf(err: unknown): string {
  if (typeof err !== 'object' || err === null) return String(err);
  const e = err as EngineError;
  const fromJson = e.json && typeof e.json === 'object' ? e.json.message : undefined;
  return (fromJson ?? e.message ?? String(err)).trim();
}
