/**
 * The tables of nodes, datasets (grants and per-run access) and output releases as Kysely sees
 * them, and their MySQL DDL. SQLite's DDL stays in storage/migrations.ts (an existing leader's file
 * keeps its schema); the MySQL tables are the same columns in their final shape (after migration 7).
 *
 * Choices made for MySQL/MariaDB:
 * - InnoDB, utf8mb4 with the binary collation: names compare case- and byte-exact, as SQLite's
 *   default BINARY collation does (a case-insensitive lookup says so in its query: lower() on both
 *   sides). utf8mb4_bin pads: trailing spaces do not count in a comparison; no name secd accepts
 *   (datasets, nodes, GitLab usernames, run ids) can end in one.
 * - varchar for keys, indexed columns and times (ISO-8601 text, as on SQLite), TEXT for free text
 *   and JSON, MEDIUMTEXT for JSON that grows with a run (findings, approvals, what a run was given).
 *   Integers are BIGINT (SQLite's INTEGER is 64-bit; mysql2 reads them back as numbers).
 * - The same CHECKs (MariaDB ≥ 10.2 and MySQL ≥ 8.0.16 enforce them), indexes and foreign keys.
 *   Indexes are declared inside CREATE TABLE so that `IF NOT EXISTS` makes every statement
 *   idempotent (MySQL 8 has no CREATE INDEX IF NOT EXISTS).
 * - Columns MySQL has and SQLite does not, all kept out of these types (the stores never name them
 *   in an insert and never read them back):
 *   - dataset_grants.id: a primary key, because Galera replicates a table's rows by it (SQLite's
 *     table has only its rowid);
 *   - dataset_grants.unbound_user: `user` while the grant is name-only, else null (a STORED
 *     generated column). UNIQUE(unbound_user, dataset) is SQLite's partial index
 *     `(user, dataset) WHERE user_id IS NULL`: MySQL has no partial indexes, and a unique index
 *     lets any number of NULLs in, just as UNIQUE(user_id, dataset) stands for the other partial
 *     index;
 *   - run_releases.seq: insertion order (AUTO_INCREMENT), what SQLite's rowid gives the listings
 *     as their tie-break between records of the same millisecond.
 * - run_datasets and run_releases reference runs(id), created first (run-tables.ts) with the same
 *   character set and collation, which a MySQL foreign key requires.
 */
import { sql, type Generated, type Kysely } from 'kysely';
import { MYSQL_RUN_ID_TYPE } from './run-tables.js';

/** A cluster node: a hash of its token, the operator's switches, what its last hello said. */
export interface NodesTable {
  id: string;
  /** sha256 (hex) of the node's current token. */
  token_hash: string;
  token_issued_at: string;
  /** 0 or 1. */
  revoked: Generated<number>;
  /** 0 or 1. */
  draining: Generated<number>;
  hostname: string | null;
  last_seen: string | null;
  /** JSON: the last hello's inventory. */
  inventory: string | null;
  created_at: string;
}

/** A dataset: a MySQL database (`mysql_database`) or a folder (`path`), and its release policy. */
export interface DatasetsTable {
  name: string;
  /** `mysql` or `path`. */
  kind: string;
  mysql_database: string | null;
  path: string | null;
  created_at: string;
  /** `direct` or `review`; the column's default (`direct`) is for rows from before migration 5. */
  release: Generated<string>;
  /** Null: the leader's `release.approvals`. */
  approvals: number | null;
}

/** One account's (or, unbound, one name's) right to read one dataset. */
export interface DatasetGrantsTable {
  /** GitLab username when granted, for display. */
  user: string;
  /** GitLab user id; null: a grant from before migration 6, not yet bound. */
  user_id: number | null;
  dataset: string;
  granted_at: string;
  /** How user_id was learned: `gitlab`, `operator`, `migrate`; null exactly when user_id is. */
  bound: string | null;
  bound_at: string | null;
}

/** The audit record of what one run was given. */
export interface RunDatasetsTable {
  run_id: string;
  mysql_user: string | null;
  /** JSON: [{name, kind, mysql_database | path}] as granted. */
  datasets: string;
  granted_at: string;
  dropped_at: string | null;
  bytes_from_server: number | null;
  bytes_to_server: number | null;
}

/** A run's release record (DESIGN §10). */
export interface RunReleasesTable {
  run_id: string;
  /** `direct` or `review`. */
  policy: string;
  approvals_required: number;
  /** JSON: names of the datasets that set the policy. */
  datasets: Generated<string>;
  /** JSON: [{file, rule, detail}]. */
  findings: Generated<string>;
  review_project_id: number | null;
  review_branch: string | null;
  review_commit: string | null;
  review_path: string | null;
  node_end: string | null;
  node_reason: string | null;
  mr_iid: number | null;
  mr_url: string | null;
  /** JSON: [{user, user_id, at}]. */
  approvals: Generated<string>;
  /** `released`, `withheld` or null. */
  outcome: string | null;
  decided_by: string | null;
  decided_at: string | null;
  status_posted: string | null;
  created_at: string;
}

/** Nodes, datasets and releases. */
export interface ClusterTables {
  nodes: NodesTable;
  datasets: DatasetsTable;
  dataset_grants: DatasetGrantsTable;
  run_datasets: RunDatasetsTable;
  run_releases: RunReleasesTable;
}

/** What every table here ends with on MySQL. */
const TABLE_OPTIONS = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin';

/** The DDL, in the order the foreign keys need (runs comes before, from run-tables.ts). */
const MYSQL_TABLES: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS nodes (
    id varchar(255) NOT NULL,
    token_hash varchar(128) NOT NULL,
    token_issued_at varchar(40) NOT NULL,
    revoked bigint NOT NULL DEFAULT 0,
    draining bigint NOT NULL DEFAULT 0,
    hostname text NULL,
    last_seen varchar(40) NULL,
    inventory mediumtext NULL,
    created_at varchar(40) NOT NULL,
    PRIMARY KEY (id)
  ) ${TABLE_OPTIONS}`,
  `CREATE TABLE IF NOT EXISTS datasets (
    name varchar(255) NOT NULL,
    kind varchar(16) NOT NULL,
    mysql_database varchar(255) NULL,
    path text NULL,
    created_at varchar(40) NOT NULL,
    \`release\` varchar(16) NOT NULL DEFAULT 'direct',
    approvals bigint NULL,
    PRIMARY KEY (name),
    CONSTRAINT datasets_kind CHECK (kind IN ('mysql', 'path')),
    CONSTRAINT datasets_source CHECK ((kind = 'mysql') = (mysql_database IS NOT NULL) AND (kind = 'path') = (path IS NOT NULL)),
    CONSTRAINT datasets_release CHECK (\`release\` IN ('direct', 'review')),
    CONSTRAINT datasets_approvals CHECK (approvals IS NULL OR approvals >= 1)
  ) ${TABLE_OPTIONS}`,
  `CREATE TABLE IF NOT EXISTS dataset_grants (
    id bigint NOT NULL AUTO_INCREMENT,
    \`user\` varchar(255) NOT NULL,
    user_id bigint NULL,
    dataset varchar(255) NOT NULL,
    granted_at varchar(40) NOT NULL,
    bound varchar(16) NULL,
    bound_at varchar(40) NULL,
    unbound_user varchar(255) AS (IF(user_id IS NULL, \`user\`, NULL)) STORED,
    PRIMARY KEY (id),
    UNIQUE KEY dataset_grants_account (user_id, dataset),
    UNIQUE KEY dataset_grants_unbound (unbound_user, dataset),
    KEY dataset_grants_dataset (dataset),
    CONSTRAINT dataset_grants_bound CHECK (bound IS NULL OR bound IN ('gitlab', 'operator', 'migrate')),
    CONSTRAINT dataset_grants_binding CHECK ((user_id IS NULL) = (bound IS NULL)),
    CONSTRAINT dataset_grants_of_dataset FOREIGN KEY (dataset) REFERENCES datasets (name) ON DELETE CASCADE
  ) ${TABLE_OPTIONS}`,
  `CREATE TABLE IF NOT EXISTS run_datasets (
    run_id ${MYSQL_RUN_ID_TYPE} NOT NULL,
    mysql_user varchar(255) NULL,
    datasets mediumtext NOT NULL,
    granted_at varchar(40) NOT NULL,
    dropped_at varchar(40) NULL,
    bytes_from_server bigint NULL,
    bytes_to_server bigint NULL,
    PRIMARY KEY (run_id),
    KEY run_datasets_open (dropped_at),
    CONSTRAINT run_datasets_of_run FOREIGN KEY (run_id) REFERENCES runs (id)
  ) ${TABLE_OPTIONS}`,
  `CREATE TABLE IF NOT EXISTS run_releases (
    run_id ${MYSQL_RUN_ID_TYPE} NOT NULL,
    seq bigint NOT NULL AUTO_INCREMENT,
    policy varchar(16) NOT NULL,
    approvals_required bigint NOT NULL,
    datasets mediumtext NOT NULL DEFAULT ('[]'),
    findings mediumtext NOT NULL DEFAULT ('[]'),
    review_project_id bigint NULL,
    review_branch text NULL,
    review_commit varchar(255) NULL,
    review_path text NULL,
    node_end varchar(64) NULL,
    node_reason text NULL,
    mr_iid bigint NULL,
    mr_url text NULL,
    approvals mediumtext NOT NULL DEFAULT ('[]'),
    outcome varchar(16) NULL,
    decided_by text NULL,
    decided_at varchar(40) NULL,
    status_posted varchar(64) NULL,
    created_at varchar(40) NOT NULL,
    PRIMARY KEY (run_id),
    UNIQUE KEY run_releases_seq (seq),
    KEY run_releases_open (outcome),
    CONSTRAINT run_releases_policy CHECK (policy IN ('direct', 'review')),
    CONSTRAINT run_releases_outcome CHECK (outcome IN ('released', 'withheld')),
    CONSTRAINT run_releases_of_run FOREIGN KEY (run_id) REFERENCES runs (id)
  ) ${TABLE_OPTIONS}`,
];

/** Create these tables on MySQL (idempotent); the runs table must exist already. */
export async function createClusterTablesMysql(db: Kysely<any>): Promise<void> {
  for (const ddl of MYSQL_TABLES) await sql.raw(ddl).execute(db);
}
