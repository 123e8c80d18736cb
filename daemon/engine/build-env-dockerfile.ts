/**
 * How `build.env` (DESIGN §12) reaches every RUN step with Docker's legacy builder, which hands a
 * build arg only to a stage that declares it with `ARG`: the build is sent a generated copy of the
 * Dockerfile with `ARG <name>` after each `FROM`, and the values as build args. The researcher's
 * Dockerfile on disk is never touched, and a build with no `build.env` is sent exactly as written.
 *
 * Choices made here:
 * - The copy travels inside the build context under GENERATED_DOCKERFILE, and the context's
 *   `.dockerignore` (the researcher's, with one line added, or a new one that also lists itself)
 *   names it, so the engine drops it from the context after reading it: `COPY . /app` never sees it.
 * - An `ARG` only declares the name; a Dockerfile's own `ENV` of the same name still wins, as it
 *   would with an `ARG` the researcher wrote. Build args appear in `docker history`, so build.env is
 *   for mirror addresses, not secrets.
 * - Parser directives (`# escape=`) are honoured for continuation lines; heredocs are BuildKit-only
 *   and do not occur here.
 */

/** The name of the generated Dockerfile in the context; unlikely to clash with a project's own file. */
export const GENERATED_DOCKERFILE = '.secd-build-env.Dockerfile';

/** A build.env name Docker accepts as an ARG: a shell variable name. */
export const BUILD_ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The escape character of a Dockerfile: `\` unless an `# escape=` parser directive says otherwise. */
export function escapeCharOf(text: string): string {
  for (const line of text.split(/\r?\n/)) {
    const m = /^#\s*([A-Za-z]+)\s*=\s*(\S*)\s*$/.exec(line);
    if (!m) break;
    if (m[1]!.toLowerCase() === 'escape' && (m[2] === '`' || m[2] === '\\')) return m[2];
  }
  return '\\';
}

/** The Dockerfile with `ARG <name>` lines after every FROM instruction (its continuation lines included). */
export function dockerfileWithBuildEnv(text: string, names: readonly string[]): string {
  for (const n of names) if (!BUILD_ENV_NAME.test(n)) throw new Error(`build.env name ${JSON.stringify(n)} is not a variable name`);
  const escape = escapeCharOf(text);
  const lines = text.split(/\r?\n/);
  const out: string[] = [];
  let inFrom = false;
  let continued = false;
  for (const line of lines) {
    out.push(line);
    const starts = !continued;
    if (starts) {
      // Comments and blank lines between instructions are not instructions.
      if (/^\s*(#|$)/.test(line)) continue;
      inFrom = /^\s*from\s/i.test(line);
    } else if (/^\s*#/.test(line)) {
      continue; // a comment inside a continued instruction is skipped by the parser
    }
    continued = line.trimEnd().endsWith(escape);
    if (inFrom && !continued) {
      for (const n of names) out.push(`ARG ${n}`);
      inFrom = false;
    }
  }
  return out.join('\n');
}

/** The `.dockerignore` sent with a generated Dockerfile: the project's own plus the lines that drop secd's files. */
export function dockerignoreWithGenerated(own: string | null): string {
  if (own === null) return `.dockerignore\n${GENERATED_DOCKERFILE}\n`;
  return `${own}${own.endsWith('\n') || own === '' ? '' : '\n'}${GENERATED_DOCKERFILE}\n`;
}
