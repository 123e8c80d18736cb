/**
 * The field types and the secret rule the leader's, the node's and `secd up`'s config files share
 * (DESIGN §4); each role's file (leader-config.ts, node-config.ts, up-config.ts) composes them.
 *
 * Choices the design leaves open, made here:
 * - Secrets (`gitlab.token`, `gitlab.webhook_secret`, `mysql.admin_password`, the node's `token`)
 *   come from exactly one source: inline, `<key>_file`, or `$CREDENTIALS_DIRECTORY/<credential>`,
 *   where the credential name is the dotted key with dots turned into underscores
 *   (`gitlab_token`, `gitlab_webhook_secret`, `mysql_admin_password`, `token`). Two sources for the
 *   same secret is an error: whichever we picked, an operator who rotated the other would be surprised.
 *   Trailing newlines of secret files are dropped (`echo secret > file` adds one).
 * - `listen` port 0 is allowed (the OS picks a free port): tests use it.
 * - Byte sizes take a whole number of bytes or a string like `"100 MiB"` (B, KiB, MiB, GiB, TiB).
 * - A file a key names (a CA, a certificate) is read by whoever opens connections, but checked here
 *   so that a wrong path names its key at startup.
 */
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { show } from '../../scheduler/common/describe-value.js';
import { errorCode, type LoadContext } from './config-file.js';

/** Bytes in a mebibyte, for defaults. */
export const MiB = 1024 * 1024;
/** Bytes in a gibibyte, for defaults. */
export const GiB = 1024 * MiB;

/** A non-empty path, made absolute against the config's folder. */
export function pathField(ctx: LoadContext) {
  return z
    .string()
    .min(1)
    .transform((p) => path.resolve(ctx.baseDir, p));
}

/** `host:port` or `[v6]:port`; the host part is kept without brackets, as `listen()` wants it. */
export function parseListenAddress(text: string): { host: string; port: number } | null {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const host = m[1]!;
  const port = Number(m[2]);
  if (port > 65535) return null;
  if (text.startsWith('[')) {
    if (isIP(host) !== 6) return null;
  } else if (/^[0-9.]+$/.test(host)) {
    if (isIP(host) !== 4) return null;
  } else if (!host.split('.').every((l) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l))) {
    return null;
  }
  return { host, port };
}

/** An address to listen on, as `{ host, port }`. */
// A bare port (`listen: 8080`) is a YAML number: take it too, so it gets the host:port hint.
export const listenField = z.union([z.string(), z.number()]).transform((value, zctx) => {
  const text = String(value);
  const parsed = parseListenAddress(text);
  if (parsed) return parsed;
  zctx.issues.push({
    code: 'custom',
    input: text,
    message: `must be host:port, e.g. 127.0.0.1:8080 or [::1]:8080 (got ${show(text)})`,
  });
  return z.NEVER;
});

/** A URL whose scheme is one of `schemes`; returned without a trailing slash. */
export function urlField(schemes: readonly string[]) {
  return z.string().transform((text, zctx) => {
    let url: URL | null = null;
    try {
      url = new URL(text);
    } catch {
      url = null;
    }
    if (!url || !schemes.includes(url.protocol.slice(0, -1))) {
      zctx.issues.push({
        code: 'custom',
        input: text,
        message: `must be a ${schemes.join(':// or ')}:// URL (got ${show(text)})`,
      });
      return z.NEVER;
    }
    return text.replace(/\/+$/, '');
  });
}

const BYTE_UNITS: Record<string, number> = { '': 1, B: 1, KiB: 1024, MiB: MiB, GiB: GiB, TiB: 1024 * GiB };

/** A whole number of bytes, or a string such as "100 MiB". */
export const bytesField = z
  .union([z.number(), z.string()], { error: 'must be a number of bytes or a size like "100 MiB"' })
  .transform((value, zctx) => {
    let bytes: number | null = null;
    if (typeof value === 'number') {
      bytes = Number.isSafeInteger(value) ? value : null;
    } else {
      const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?\s*$/.exec(value);
      if (m) bytes = Math.floor(Number(m[1]) * BYTE_UNITS[m[2] ?? '']!);
    }
    if (bytes === null || bytes <= 0) {
      zctx.issues.push({
        code: 'custom',
        input: value,
        message: `must be a positive number of bytes or a size like "100 MiB" (got ${show(value)})`,
      });
      return z.NEVER;
    }
    return bytes;
  });

/** A whole number above zero. */
export const positiveInt = z.number().int().gt(0);
/** A whole number, zero or more. */
export const nonNegativeInt = z.number().int().gte(0);

/** Adds "names a file that does not exist" under `key` unless `file` (already absolute) exists. */
export function checkFileExists(file: string | undefined, key: string, zctx: z.RefinementCtx): void {
  if (file !== undefined && !exists(file)) {
    zctx.issues.push({ code: 'custom', input: file, path: [key], message: `names a file that does not exist (${file})` });
  }
}

// ---------------------------------------------------------------------------------------------
// Secrets

/** One secret key of a section and where else it may come from. */
export interface SecretSpec {
  /** Key name inside its section, e.g. 'token'. */
  name: string;
  /** File name under $CREDENTIALS_DIRECTORY, e.g. 'gitlab_token'. */
  credential: string;
  /** An empty secret is a valid value (MySQL root without a password). */
  allowEmpty: boolean;
  /** Value when no source is given; undefined = required. */
  fallback?: string;
}

/** Drops the newline(s) an editor or `echo` leaves at the end of a secret file. */
function trimSecret(text: string): string {
  return text.replace(/[\r\n]+$/, '');
}

/**
 * Picks the one source of a secret. Issues use `{parent}` so the formatter can name the sibling
 * key with its full dotted path.
 */
export function resolveSecret(
  spec: SecretSpec,
  inline: string | undefined,
  file: string | undefined,
  ctx: LoadContext,
  zctx: z.RefinementCtx,
): string {
  const credDir = ctx.env.CREDENTIALS_DIRECTORY;
  const credPath = credDir ? path.join(credDir, spec.credential) : null;
  const credExists = credPath !== null && exists(credPath);
  const fail = (key: string, message: string): string => {
    zctx.issues.push({ code: 'custom', input: undefined, path: [key], message });
    return '';
  };
  if (inline !== undefined && file !== undefined) {
    return fail(spec.name, `and {parent}${spec.name}_file are both set; keep one`);
  }
  if ((inline !== undefined || file !== undefined) && credExists) {
    const key = inline !== undefined ? spec.name : `${spec.name}_file`;
    return fail(key, `is set, and so is $CREDENTIALS_DIRECTORY/${spec.credential}; keep one`);
  }
  let value: string;
  let key = spec.name;
  if (inline !== undefined) {
    value = inline;
  } else if (file !== undefined) {
    key = `${spec.name}_file`;
    const abs = path.resolve(ctx.baseDir, file);
    try {
      value = trimSecret(readFileSync(abs, 'utf8'));
    } catch (err) {
      return fail(key, `names a file that cannot be read (${abs}: ${errorCode(err)})`);
    }
  } else if (credExists && credPath) {
    try {
      value = trimSecret(readFileSync(credPath, 'utf8'));
    } catch (err) {
      return fail(spec.name, `cannot be read from $CREDENTIALS_DIRECTORY/${spec.credential} (${errorCode(err)})`);
    }
  } else if (spec.fallback !== undefined) {
    return spec.fallback;
  } else {
    return fail(
      spec.name,
      `is required: set {parent}${spec.name}, {parent}${spec.name}_file, or provide the systemd credential "${spec.credential}"`,
    );
  }
  if (!spec.allowEmpty && value.length === 0) return fail(key, 'is empty');
  return value;
}

function exists(p: string): boolean {
  try {
    accessSync(p, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}
