/**
 * Schema migrations, applied in order; a migration is never edited once released, only appended.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    project_id INTEGER NOT NULL,
    project TEXT NOT NULL,             -- path_with_namespace
    ref TEXT NOT NULL,
    before_sha TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    user TEXT NOT NULL,                -- GitLab username of the pusher
    user_id INTEGER,
    delivery_key TEXT,
    fetch_url TEXT NOT NULL,           -- the project's git URL (no credentials)
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    signer TEXT,                       -- fingerprint of the head commit's key
    config TEXT,                       -- resolved secd.yml (JSON)
    warnings TEXT NOT NULL DEFAULT '[]',
    node TEXT,
    gpus TEXT NOT NULL DEFAULT '[]',
    exit_code INTEGER,
    image_id TEXT,
    branch TEXT,
    status_posted TEXT,                -- last GitLab commit status state posted
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
  );
  CREATE INDEX runs_state ON runs(state);
  CREATE INDEX runs_project ON runs(project_id, created_at);
  CREATE INDEX runs_created ON runs(created_at);

  CREATE TABLE run_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
  );
  CREATE INDEX run_events_run ON run_events(run_id, seq);

  CREATE TABLE deliveries (
    key TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL              -- JSON answer given the first time
  );

  CREATE TABLE verified_commits (
    project_id INTEGER NOT NULL,
    sha TEXT NOT NULL,
    signer TEXT NOT NULL,
    verified_at TEXT NOT NULL,
    PRIMARY KEY (project_id, sha)
  ) WITHOUT ROWID;

  CREATE TABLE health_probe (id INTEGER PRIMARY KEY, at TEXT NOT NULL);
  `,
  // 2: cluster nodes (issue 3). Only a hash of each node's token is kept.
  `
  CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,          -- sha256 (hex) of the node's current token
    token_issued_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    draining INTEGER NOT NULL DEFAULT 0,
    hostname TEXT,
    last_seen TEXT,
    inventory TEXT,                    -- JSON: the last hello's GPUs, CPUs, memory, max_cpu_runs
    created_at TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 3: datasets, who may read them, and what each run was given (issue 4). Never a password.
  `
  CREATE TABLE datasets (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('mysql', 'path')),
    mysql_database TEXT,               -- kind mysql: the database on the dataset server
    path TEXT,                         -- kind path: folder relative to the nodes' dataset_root
    created_at TEXT NOT NULL,
    CHECK ((kind = 'mysql') = (mysql_database IS NOT NULL) AND (kind = 'path') = (path IS NOT NULL))
  ) WITHOUT ROWID;

  CREATE TABLE dataset_grants (
    user TEXT NOT NULL,                -- GitLab username
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    granted_at TEXT NOT NULL,
    PRIMARY KEY (user, dataset)
  ) WITHOUT ROWID;

  CREATE TABLE run_datasets (
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    mysql_user TEXT,                   -- the temporary account (null: no MySQL dataset)
    datasets TEXT NOT NULL,            -- JSON: [{name, kind, mysql_database | path}] as granted
    granted_at TEXT NOT NULL,
    dropped_at TEXT,                   -- when the temporary account was dropped
    bytes_from_server INTEGER,         -- counted by the node's dataset socket
    bytes_to_server INTEGER
  );
  CREATE INDEX run_datasets_open ON run_datasets(dropped_at);
  `,
  // 4: a push is looked up by what it moved (issue 13): the same (project, ref, before, after)
  // delivered again under a new Idempotency-Key is the same push, not a new run. Old rows already
  // hold these columns; only the index is new.
  `
  CREATE INDEX runs_push ON runs(project_id, ref, before_sha, commit_sha);
  `,
  // 5: output release (issue 9, DESIGN §10). Datasets that exist before it keep `direct`: a data
  // owner's earlier decision is not changed behind their back; `secd admin dataset add` makes new
  // ones `review` unless told otherwise. One row per run that reached a node: its policy, what the
  // disclosure checks found, and for a held run the review's merge request, the approvals counted and
  // how it ended. Approvals are also audit events of the run (run_events).
  `
  ALTER TABLE datasets ADD COLUMN release TEXT NOT NULL DEFAULT 'direct' CHECK (release IN ('direct', 'review'));
  ALTER TABLE datasets ADD COLUMN approvals INTEGER CHECK (approvals IS NULL OR approvals >= 1);

  CREATE TABLE run_releases (
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    policy TEXT NOT NULL CHECK (policy IN ('direct', 'review')),
    approvals_required INTEGER NOT NULL,
    datasets TEXT NOT NULL DEFAULT '[]',   -- JSON: the names of the datasets that set the policy
    findings TEXT NOT NULL DEFAULT '[]',   -- JSON: [{file, rule, detail}] from the disclosure checks
    review_project_id INTEGER,
    review_branch TEXT,
    review_commit TEXT,                    -- the results commit the node pushed for review
    review_path TEXT,                      -- the results folder in that commit
    node_end TEXT,                         -- how the node saw the run end (the state a release restores)
    node_reason TEXT,
    mr_iid INTEGER,
    mr_url TEXT,
    approvals TEXT NOT NULL DEFAULT '[]',  -- JSON: [{user, user_id, at}] counted towards the release
    outcome TEXT CHECK (outcome IN ('released', 'withheld')),
    decided_by TEXT,                       -- who released (the reviewers) or withheld it
    decided_at TEXT,
    status_posted TEXT,                    -- last state of the 'secd/release' commit status posted
    created_at TEXT NOT NULL
  );
  CREATE INDEX run_releases_open ON run_releases(outcome);
  `,
  // 6: grants belong to GitLab accounts, not names (issue 14, DESIGN §13): GitLab lets a name be
  // changed and then taken by another account, which must not inherit the first one's grants. The
  // table is rebuilt because its key was (user, dataset): the same name may now hold grants of two
  // accounts (the one who had it and the one who has it). Rows from before keep user_id null and are
  // honoured for no one until an operator binds them (secd admin grants migrate --bind, or a new
  // secd admin grant): nothing secd recorded proves which account a bare name meant.
  `
  CREATE TABLE dataset_grants_v6 (
    user TEXT NOT NULL,                -- GitLab username when granted (for display; never looked up for a run)
    user_id INTEGER,                   -- GitLab user id; null: a grant made before migration 6, not yet bound
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    granted_at TEXT NOT NULL,
    bound TEXT CHECK (bound IS NULL OR bound IN ('gitlab', 'operator', 'migrate')),  -- how user_id was learned
    bound_at TEXT,
    CHECK ((user_id IS NULL) = (bound IS NULL))
  );
  INSERT INTO dataset_grants_v6 (user, dataset, granted_at) SELECT user, dataset, granted_at FROM dataset_grants;
  DROP TABLE dataset_grants;
  ALTER TABLE dataset_grants_v6 RENAME TO dataset_grants;
  CREATE UNIQUE INDEX dataset_grants_account ON dataset_grants(user_id, dataset) WHERE user_id IS NOT NULL;
  CREATE UNIQUE INDEX dataset_grants_unbound ON dataset_grants(user, dataset) WHERE user_id IS NULL;
  CREATE INDEX dataset_grants_dataset ON dataset_grants(dataset);
  `,
  // 7: a failed build's last build.log lines, as a direct run's node sent them (the run page shows them).
  `
  ALTER TABLE runs ADD COLUMN build_log_tail TEXT;
  `,
];
