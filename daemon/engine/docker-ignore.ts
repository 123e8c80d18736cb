/**
 * The build context's `.dockerignore`, read the way the Docker CLI reads it (moby/patternmatcher), so
 * that a project builds the same under secd as under `docker build`: what it ignores never leaves the
 * node's disk. Pure apart from reading the file (and, with `!` exceptions, looking at folders).
 */
import fs from 'node:fs';
import path from 'node:path';

interface IgnoreRule {
  re: RegExp;
  exception: boolean;
}

// One .dockerignore pattern as the Docker CLI reads it (moby/patternmatcher): `*` and `?` stay within
// a path segment, `**` spans any number of them, and a pattern that matches a folder covers its content.
function compileIgnorePattern(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i]!;
    if (ch === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') i++;
        re += i + 1 >= pattern.length ? '.*' : '(.*/)?';
      } else {
        re += '[^/]*';
      }
    } else if (ch === '?') {
      re += '[^/]';
    } else if (ch === '\\' && i + 1 < pattern.length) {
      i++;
      re += pattern[i]!.replace(/[.+^${}()|[\]\\*?]/g, '\\$&');
    } else if (ch === '[' || ch === ']') {
      re += ch;
    } else {
      re += ch.replace(/[.+^${}()|\\]/g, '\\$&');
    }
  }
  try {
    return new RegExp(`^${re}(/.*)?$`);
  } catch {
    // A pattern Go would reject makes the CLI fail; matching it literally is the kinder reading.
    return new RegExp(`^${pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(/.*)?$`);
  }
}

/** Reads the context's .dockerignore into tar-fs's `ignore(absolutePath)` form. */
export async function contextIgnore(contextDir: string, dockerfile: string): Promise<(abs: string) => boolean> {
  let text = '';
  try {
    text = await fs.promises.readFile(path.join(contextDir, '.dockerignore'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const rules: IgnoreRule[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    let line = rawLine.trim();
    if (!line || line.startsWith('#')) continue;
    const exception = line.startsWith('!');
    if (exception) line = line.slice(1).trim();
    line = path.posix.normalize(line.replace(/^\/+/, ''));
    if (!line || line === '.') continue;
    rules.push({ re: compileIgnorePattern(line), exception });
  }
  const hasExceptions = rules.some((r) => r.exception);
  const keepAlways = new Set([path.posix.normalize(dockerfile), '.dockerignore']);
  return (abs) => {
    if (rules.length === 0) return false;
    const rel = path.relative(contextDir, abs).split(path.sep).join('/');
    if (keepAlways.has(rel)) return false;
    let excluded = false;
    for (const r of rules) if (r.re.test(rel)) excluded = !r.exception;
    if (!excluded) return false;
    // An exception may re-include something inside an excluded folder, so walk into folders then.
    if (hasExceptions) {
      try {
        if (fs.lstatSync(abs).isDirectory()) return false;
      } catch {
        return true;
      }
    }
    return true;
  };
}
