/**
 * `secd status [--leader URL]`: the status page in a terminal — nodes, GPUs, the queue and recent
 * runs as aligned tables, read from the leader's JSON API (validated here with the API's own schemas,
 * web/api-schema.ts: it is a boundary).
 *
 * Every cell is made inert before it is printed: project names, usernames, reasons and the dataset
 * names quoted in them come from researchers, and a raw ESC in one retitled the operator's terminal,
 * erased lines and faked rows (issue 13). Runs of whitespace (tab, newline) become one space; every
 * other C0 control, DEL, C1 control (U+0080–U+009F), bidi override or isolate (U+202A–U+202E,
 * U+2066–U+2069), bidi mark (U+200E, U+200F, U+061C) and line/paragraph separator (U+2028, U+2029)
 * is shown as its escape, as text: ESC prints as the four characters `\x1b`, U+202E as `\u202e`.
 * The operator sees that something odd was there and what it was; the terminal sees only text.
 */
import type { Command } from 'commander';
import { errorText } from '../../scheduler/common/errors.js';
import { apiNodesAnswerSchema, apiRunsAnswerSchema, type ApiNode, type ApiRun } from '../../web/api-schema.js';

/** Expected failures of `secd status`, each with a one-line reason. */
export type StatusFetchResult =
  | { ok: true; nodes: ApiNode[]; runs: ApiRun[]; queued: number }
  | { ok: false; code: 'unreachable' | 'bad_answer'; reason: string };

/** Characters a terminal acts on or reorders by; see the header. */
const NOT_INERT = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` safe to print in a terminal cell: whitespace runs become a space, controls their escape as text. */
export function inertCell(text: string): string {
  return text.replace(/[\t\n\r\v\f ]+/g, ' ').replace(NOT_INERT, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** Lay out rows as columns two spaces apart (every cell made inert); `right` names the columns aligned right (numbers). */
export function formatTable(header: string[], rawRows: string[][], right: ReadonlySet<number> = new Set()): string {
  const rows = rawRows.map((r) => r.map(inertCell));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 && !right.has(i) ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

const gib = (bytes: number | null) => (bytes === null ? 'N/A' : `${(bytes / 2 ** 30).toFixed(1)}`);
const na = (v: number | null, unit: string, digits = 0) => (v === null ? 'N/A' : `${v.toFixed(digits)}${unit}`);

function ago(iso: string | null, now: Date): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now.getTime() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

// A blank line, the section's title, then its table (or what to say when there is nothing to show).
function section(title: string, empty: string, any: boolean, table: () => string): string[] {
  return ['', title, any ? table() : empty];
}

function clock(iso: string | null): string {
  return iso ? iso.replace('T', ' ').replace(/(\.\d+)?Z$/, '') : '-';
}

/** The whole `secd status` text for this data (UTC times). */
export function renderStatusTables(nodes: ApiNode[], runs: ApiRun[], queued: number, now: Date): string {
  const gpus = nodes.flatMap((n) => n.gpus.map((g) => ({ node: n.id, down: n.state === 'down', ...g })));
  const busy = gpus.filter((g) => g.run_id !== null).length;
  const up = nodes.filter((n) => n.state !== 'down').length;
  const where = new Map(gpus.map((g) => [g.uuid, `${g.node}#${g.index}`]));
  const out: string[] = [];
  out.push(`Nodes up ${up}/${nodes.length} · GPUs busy ${busy}/${gpus.length} · runs queued ${queued >= 1000 ? '1000+' : queued}`);
  out.push(
    ...section('NODES', '(no node has reported)', nodes.length > 0, () =>
      formatTable(
        ['NODE', 'STATE', 'LAST SEEN', 'LOAD', 'MEMORY', 'CPUS', 'GPUS BUSY', 'RUNS'],
        nodes.map((n) => [
          n.id,
          n.state,
          ago(n.last_seen, now),
          na(n.load, '', 2),
          n.memory_bytes ? `${gib(n.memory_bytes)} GiB` : '-',
          n.cpus ? String(n.cpus) : '-',
          `${n.gpus.filter((g) => g.run_id !== null).length}/${n.gpus.length}`,
          String(n.runs.length),
        ]),
        new Set([3, 4, 5, 6, 7]),
      ),
    ),
  );
  out.push(
    ...section('GPUS', '(no GPUs)', gpus.length > 0, () =>
      formatTable(
        ['NODE', '#', 'NAME', 'UTIL', 'MEMORY (GiB)', 'TEMP', 'POWER', 'RUN'],
        gpus.map((g) => [
          g.node,
          String(g.index),
          g.name,
          na(g.utilization_pct, '%'),
          g.memory_used_bytes === null && g.memory_total_bytes === null ? 'N/A' : `${gib(g.memory_used_bytes)}/${gib(g.memory_total_bytes)}`,
          na(g.temperature_c, 'C'),
          na(g.power_w, 'W'),
          g.run_id ?? '-',
        ]),
        new Set([1, 3, 4, 5, 6]),
      ),
    ),
  );
  out.push(
    ...section('RUNS (newest first)', '(no runs)', runs.length > 0, () =>
      formatTable(
        ['RUN', 'PROJECT', 'USER', 'STATE', 'NODE', 'GPUS', 'PUSHED (UTC)', 'FINISHED (UTC)', 'REASON'],
        runs.map((r) => [
          r.id,
          r.project,
          r.user,
          r.state,
          r.node ?? '-',
          r.gpus.length ? r.gpus.map((u) => where.get(u) ?? u.slice(0, 12)).join(',') : '-',
          clock(r.created_at),
          clock(r.finished_at),
          r.reason,
        ]),
      ),
    ),
  );
  return `${out.join('\n')}\n`;
}

/**
 * Read nodes and the newest `limit` runs from the leader at `leader`; with `readToken` (leader.yml
 * `api.read_token`) as a bearer token, so a private leader shows who pushed what.
 */
export async function fetchStatus(leader: string, limit: number, readToken: string | null = null): Promise<StatusFetchResult> {
  const base = leader.replace(/\/+$/, '');
  const headers: Record<string, string> = readToken ? { Authorization: `Bearer ${readToken}` } : {};
  const get = async (path: string): Promise<unknown> => {
    const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(10_000), headers });
    if (res.status === 401 && readToken) throw new BadAnswer(`${path} answered HTTP 401: the leader refused the read token`);
    if (!res.ok) throw new BadAnswer(`${path} answered HTTP ${res.status}`);
    return res.json();
  };
  try {
    const [nodes, runs, queued] = await Promise.all([
      get('/api/v1/nodes'),
      get(`/api/v1/runs?limit=${limit}`),
      get('/api/v1/runs?state=queued&limit=1000'),
    ]);
    const n = apiNodesAnswerSchema.safeParse(nodes);
    const r = apiRunsAnswerSchema.safeParse(runs);
    const q = apiRunsAnswerSchema.safeParse(queued);
    if (!n.success) return { ok: false, code: 'bad_answer', reason: `unexpected /api/v1/nodes answer: ${n.error.issues[0]?.path.join('.')} ${n.error.issues[0]?.message}` };
    if (!r.success) return { ok: false, code: 'bad_answer', reason: `unexpected /api/v1/runs answer: ${r.error.issues[0]?.path.join('.')} ${r.error.issues[0]?.message}` };
    return { ok: true, nodes: n.data.nodes, runs: r.data.runs, queued: q.success ? q.data.runs.length : 0 };
  } catch (err) {
    if (err instanceof BadAnswer) return { ok: false, code: 'bad_answer', reason: err.message };
    const cause = errorText(err instanceof Error && err.cause instanceof Error ? err.cause : err);
    return { ok: false, code: 'unreachable', reason: `cannot reach the leader at ${base} (${cause})` };
  }
}

class BadAnswer extends Error {}

/** Add `secd status` to the program. */
export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description("nodes, GPUs and runs as tables, from the leader's API")
    .option('--leader <url>', 'the leader (default: the config\'s public_url, else http://127.0.0.1:8080)')
    .option('--config <file>', "a leader.yml or up.yml: its public_url and api.read_token (read on the leader's machine)")
    .option('--read-token-file <file>', "a file holding the leader's api.read_token (a private leader hides who pushed what without it)")
    .option('--runs <n>', 'how many recent runs to list', '20')
    .action(async (options: { leader?: string; config?: string; readTokenFile?: string; runs: string }) => {
      const target = await statusTarget(options);
      if (!target.ok) {
        process.stderr.write(`secd status: ${target.reason}\n`);
        process.exitCode = 2;
        return;
      }
      const limit = Number(options.runs);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        process.stderr.write(`secd status: --runs must be an integer from 1 to 1000 (got "${options.runs}")\n`);
        process.exitCode = 2;
        return;
      }
      const status = await fetchStatus(target.leader, limit, target.readToken);
      if (!status.ok) {
        process.stderr.write(`secd status: ${inertCell(status.reason)}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(renderStatusTables(status.nodes, status.runs, status.queued, new Date()));
    });
}

/** Where `secd status` reads from and with which token: flags first, then the config file's keys. */
async function statusTarget(options: { leader?: string; config?: string; readTokenFile?: string }): Promise<
  { ok: true; leader: string; readToken: string | null } | { ok: false; reason: string }
> {
  let leader = options.leader ?? null;
  let readToken: string | null = null;
  if (options.config !== undefined) {
    // Loaded only when asked: the config modules are not needed for a plain `secd status`.
    const { loadAdminConfig } = await import('./admin-command.js');
    try {
      const config = loadAdminConfig(options.config);
      leader ??= config.public_url;
      readToken = config.api.read_token;
    } catch (err) {
      return { ok: false, reason: errorText(err) };
    }
  }
  if (options.readTokenFile !== undefined) {
    const { readFileSync } = await import('node:fs');
    try {
      readToken = readFileSync(options.readTokenFile, 'utf8').trim();
    } catch (err) {
      return { ok: false, reason: `--read-token-file: cannot read ${options.readTokenFile} (${errorText(err)})` };
    }
    if (readToken === '') return { ok: false, reason: `--read-token-file: ${options.readTokenFile} is empty` };
  }
  return { ok: true, leader: leader ?? 'http://127.0.0.1:8080', readToken };
}
