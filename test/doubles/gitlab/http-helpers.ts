/**
 * The small HTTP and text helpers the GitLab double's parts share: an error that carries GitLab's
 * answer, reading a bounded request body and an API request's parameters, JSON and text answers,
 * one page of a list, a constant-time compare for tokens and passwords, and the URL, user and name
 * shapes GitLab derives from users and paths.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** An answer GitLab gives instead of the normal one: status and the JSON body it sends. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`HTTP ${status}`);
  }
}

/** The request body, or an HttpError 413 once it grows past `limit` bytes. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new HttpError(413, { message: '413 Request Entity Too Large' }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Answer `body` as JSON with an exact Content-Length. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

/** Answer plain text. */
export function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain' });
  res.end(text);
}

/** Compare two secrets in constant time, whatever their lengths. */
export function safeEqual(a: string, b: string): boolean {
  // Hash first so the comparison takes the same time whatever the lengths.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  let diff = 0;
  for (let i = 0; i < ha.length; i++) diff |= ha[i]! ^ hb[i]!;
  return diff === 0;
}

/** The Gravatar URL GitLab shows for an email. */
export function avatarUrl(email: string): string {
  const hash = createHash('sha256').update(email.trim().toLowerCase()).digest('hex');
  return `https://www.gravatar.com/avatar/${hash}?s=80&d=identicon`;
}

/** The last segment of a slash-separated path ("a/b/c" -> "c"). */
export function lastSegment(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** A user as GitLab's API shows one (Entities::UserBasic). */
export function apiUserJson(baseUrl: string, user: { id: number; username: string; name: string; email: string }) {
  return {
    id: user.id,
    username: user.username,
    name: user.name,
    state: 'active',
    locked: false,
    avatar_url: avatarUrl(user.email),
    web_url: `${baseUrl}/${user.username}`,
  };
}

/**
 * An API request's parameters as Grape reads them: the query, then a JSON or form body on top.
 * A JSON body that does not parse is GitLab's 400.
 */
export async function readParams(req: IncomingMessage, query: URLSearchParams, limit: number): Promise<Record<string, string>> {
  const params: Record<string, string> = Object.fromEntries(query.entries());
  const raw = await readBody(req, limit);
  if (raw.length === 0) return params;
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  if (!type.includes('json')) {
    for (const [k, v] of new URLSearchParams(raw.toString('utf8'))) params[k] = v;
    return params;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HttpError(400, { error: "The provided content-type 'application/json' is not valid JSON" });
  }
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
    for (const [k, v] of Object.entries(parsed)) if (v !== null && v !== undefined) params[k] = String(v);
  }
  return params;
}

/** One page of `items` as GitLab pages a list (`per_page` up to 100, `page` from 1), with its X-* headers. */
export function pageOf<T>(items: readonly T[], query: URLSearchParams): { slice: T[]; headers: Record<string, string> } {
  const perPageRaw = Number(query.get('per_page') ?? '20');
  const perPage = Number.isInteger(perPageRaw) && perPageRaw >= 1 ? Math.min(perPageRaw, 100) : 20;
  const pageRaw = Number(query.get('page') ?? '1');
  const page = Number.isInteger(pageRaw) && pageRaw >= 1 ? pageRaw : 1;
  const totalPages = Math.max(1, Math.ceil(items.length / perPage));
  return {
    slice: items.slice((page - 1) * perPage, page * perPage),
    headers: {
      'X-Page': String(page),
      'X-Per-Page': String(perPage),
      'X-Total': String(items.length),
      'X-Total-Pages': String(totalPages),
      'X-Next-Page': page < totalPages ? String(page + 1) : '',
      'X-Prev-Page': page > 1 ? String(page - 1) : '',
    },
  };
}
