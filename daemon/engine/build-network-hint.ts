/**
 * A RUN step that fails because the build has no network (DESIGN §12) says so: the engine's own
 * reason ("The command '/bin/sh -c pip install x' returned a non-zero code: 1") does not, and a
 * researcher who sees pip retry five times cannot tell "no network" from "no such package".
 *
 * The failing step's output is matched against what the usual tools print when a name does not
 * resolve or a connection is refused: pip (urllib3's NewConnectionError), apt, curl, wget (GNU and
 * busybox), git, npm and Python's own socket errors. Only the last step's lines are read, so a
 * network message an earlier step survived does not explain a later failure.
 */

const NETWORK_FAILURES: readonly RegExp[] = [
  /Failed to establish a new connection/i,
  /Temporary failure in name resolution/i,
  /Temporary failure resolving/i,
  /Could not resolve ['"]?[\w.-]+/i,
  /Could not resolve host/i,
  /Name or service not known/i,
  /Network is unreachable/i,
  /No address associated with hostname/i,
  /unable to resolve host address/i,
  /wget: bad address/i,
  /getaddrinfo (ENOTFOUND|EAI_AGAIN)/i,
  /curl: \((6|7)\)/,
  /Connection refused/i,
  /Failed to fetch https?:\/\//i,
];

/** The lines of the last build step (from its `Step N/M :` line on). */
export function lastStepLines(lines: readonly string[]): string[] {
  for (let i = lines.length - 1; i >= 0; i--) if (/^Step \d+\/\d+ : /.test(lines[i]!)) return lines.slice(i);
  return [...lines];
}

/** The line of a step's output that shows it needed the network, or null. */
export function networkFailureLine(stepLines: readonly string[]): string | null {
  for (const raw of stepLines) {
    // The engine colours a step's stderr (ESC[91m ... ESC[0m); the sentence is for people and logs.
    const line = raw.replace(/\x1b\[[0-9;]*m/g, '').trim();
    if (NETWORK_FAILURES.some((re) => re.test(line))) return line;
  }
  return null;
}

/**
 * The sentence added to a build failure that looks like a missing network: what builds get, and what
 * a sysadmin does about it. `network` is the build's network mode (`none`, or the site's network).
 */
export function networkFailureHint(stepLines: readonly string[], network: string): string | null {
  const line = networkFailureLine(stepLines);
  if (line === null) return null;
  const seen = line.length > 160 ? `${line.slice(0, 157)}...` : line;
  if (network === 'none') {
    return (
      `builds have no network, and this RUN step tried to reach one (${JSON.stringify(seen)}): ` +
      'install from files in the project, or ask the sysadmin to give builds a package mirror ' +
      '(node.yml `build: { network: <docker network>, env: { PIP_INDEX_URL: ... } }`, docs/sysadmin.md "Package mirrors for builds"; `secd run --build-network/--build-env` locally)'
    );
  }
  return (
    `builds reach only the site's mirrors (docker network ${network}), and this RUN step tried something else (${JSON.stringify(seen)}): ` +
    'use the mirror (its address is in the build.env variables) or ask the sysadmin to mirror what you need'
  );
}
