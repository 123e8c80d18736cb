/**
 * The leader's `state:` and `ha:` keys (DESIGN §11): where the leader keeps its state — the embedded
 * SQLite file (default, one leader) or a MariaDB/MySQL database shared by any number of leaders —
 * and how long the active leader's lease lasts. Spread into leader.yml's schema (leader-config.ts);
 * `secd up` always keeps its state in SQLite (one process, one machine).
 *
 * Choices the design leaves open, made here:
 * - `state.mysql.password` follows the secret rule of config-fields.ts (inline, `password_file`, or
 *   the systemd credential `state_mysql_password`); none given means an empty password, as for the
 *   dataset server's admin.
 * - `state.mysql.user` and `state.mysql.database` have no default: the state database is the one
 *   thing two leaders must agree on, so it is named, never guessed. The database must exist (secd
 *   creates its tables, not databases).
 * - `ha.lease_ms` is at least 1000: every renewal (a third of it) is a database round trip of every
 *   leader, and below a second a busy database would take leadership away from a healthy leader.
 *   At most 600000: a failover waits up to the lease and one renewal.
 */
import { z } from 'zod';
import { show } from '../../scheduler/common/describe-value.js';
import { mysqlDatabaseProblem } from '../../storage/dataset-path.js';
import type { LoadContext } from './config-file.js';
import { positiveInt, resolveSecret } from './config-fields.js';

/** The default lease (DESIGN §11): 10 s, renewed every 3.3 s. */
export const DEFAULT_LEASE_MS = 10_000;

function mysqlStateSchema(ctx: LoadContext) {
  return z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().gte(1).lte(65535).default(3306),
      user: z.string().min(1),
      password: z.string().optional(),
      password_file: z.string().min(1).optional(),
      database: z.string().superRefine((db, zctx) => {
        const problem = mysqlDatabaseProblem(db);
        if (problem) zctx.issues.push({ code: 'custom', input: db, message: `must be a database name: ${problem}` });
      }),
    })
    .transform((m, zctx) => ({
      engine: 'mysql' as const,
      host: m.host,
      port: m.port,
      user: m.user,
      database: m.database,
      password: resolveSecret(
        { name: 'password', credential: 'state_mysql_password', allowEmpty: true, fallback: '' },
        m.password,
        m.password_file,
        ctx,
        zctx,
      ),
    }));
}

const STATE_FORMS = 'sqlite or a mapping with mysql: {host, port, user, password_file, database}';

/** `state:`: the word `sqlite` (the default), or `{ mysql: {...} }`. */
export function stateSchema(ctx: LoadContext) {
  return z
    .preprocess(
      // The word is read as the mapping form of it, so both forms get the object's key checks.
      (value) => (value === 'sqlite' ? { sqlite: true } : value),
      z.strictObject(
        { sqlite: z.literal(true).optional(), mysql: mysqlStateSchema(ctx).optional() },
        { error: (iss) => (iss.code === 'invalid_type' ? `must be ${STATE_FORMS} (got ${show(iss.input)})` : undefined) },
      ),
    )
    .prefault('sqlite')
    .transform((s, zctx) => {
      if (s.mysql && s.sqlite) {
        zctx.issues.push({ code: 'custom', input: undefined, message: `must be ${STATE_FORMS}, not both` });
        return z.NEVER;
      }
      if (s.mysql) return s.mysql;
      // An unknown key was already reported (it does not stop zod): do not add a second sentence.
      if (zctx.issues.length > 0) return z.NEVER;
      if (!s.sqlite) {
        zctx.issues.push({ code: 'custom', input: undefined, message: `must be ${STATE_FORMS} (got an empty mapping)` });
        return z.NEVER;
      }
      return { engine: 'sqlite' as const };
    });
}

/** `ha:`: the lease. */
export const haSchema = z.strictObject({
  lease_ms: positiveInt
    .min(1000, { error: 'must be at least 1000 (a renewal is a database round trip every third of it)' })
    .max(600_000, { error: 'must be at most 600000 (a failover waits up to the lease and one renewal)' })
    .default(DEFAULT_LEASE_MS),
});

/** The keys `leaderShape` will take: spread them into it. */
export function stateShape(ctx: LoadContext) {
  return { state: stateSchema(ctx), ha: haSchema.prefault({}) };
}

/** Where the leader keeps its state, secrets read. */
export type StateConfig = z.output<ReturnType<typeof stateSchema>>;
/** The `ha:` section with defaults. */
export type HaConfig = z.output<typeof haSchema>;
