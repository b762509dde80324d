-- pg_retention catalog: the policies, and the history of their runs.

COMMENT ON SCHEMA retention IS 'pg_retention: retention policies and their run history';

CREATE TABLE retention.policies (
    id                 integer GENERATED ALWAYS AS IDENTITY UNIQUE,
    name               text PRIMARY KEY,
    table_schema       text NOT NULL DEFAULT 'public',
    table_name         text NOT NULL,
    time_column        text NOT NULL,
    rule               text NOT NULL,
    retain             interval,
    action             text NOT NULL DEFAULT 'delete',
    soft_delete_column text,
    reason_column      text,
    deletion_reason    text NOT NULL DEFAULT 'retention_policy',
    batch_size         integer NOT NULL DEFAULT 10000,
    enabled            boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- twilio_recording: the column holding the recording SID, and a key column to page by.
    sid_column         text,
    id_column          text,
    -- Pacing: at most this many rows a second (NULL: as fast as it goes).
    max_rows_per_second integer,
    -- Partitioned tables: what a delete policy does with a partition whose bounds prove every
    -- row past the cutoff (drop, detach, rows), and where detach moves it (NULL: nowhere).
    expired_partitions text NOT NULL DEFAULT 'drop',
    archive_schema     text,
    -- Recordings: a row with no valid SID is skipped, or marked without a Twilio call.
    missing_sid        text NOT NULL DEFAULT 'skip',
    -- Recordings: the column holding each row's Twilio account SID (a subaccount's); NULL:
    -- every recording is the credentials' own account's.
    account_column     text,
    -- Recordings: each recording's transcriptions are listed and deleted at Twilio before it.
    transcriptions     boolean NOT NULL DEFAULT false,
    -- Recordings: the stores (retention.stores) of the Twilio recording and of its S3 copies,
    -- the columns holding each row's S3 keys, and what goes on a bucket that keeps versions.
    twilio_store       text NOT NULL DEFAULT 'twilio',
    s3_store           text,
    s3_key_columns     text[],
    s3_versions        text NOT NULL DEFAULT 'all',
    -- Rows past the cutoff hidden from ordinary queries by row-level security (src/policy/hiding.rs).
    hide_expired       boolean NOT NULL DEFAULT false,
    -- Backstops: the validation trigger reports these first, with clearer words.
    CONSTRAINT policies_rule_check CHECK (rule IN ('expires_at', 'older_than')),
    CONSTRAINT policies_action_check CHECK (action IN ('delete', 'soft_delete', 'twilio_recording')),
    CONSTRAINT policies_retain_check CHECK ((rule = 'older_than') = (retain IS NOT NULL)),
    CONSTRAINT policies_batch_size_check CHECK (batch_size BETWEEN 1 AND 1000000),
    CONSTRAINT policies_max_rows_per_second_check CHECK (max_rows_per_second > 0),
    CONSTRAINT policies_expired_partitions_check CHECK (expired_partitions IN ('drop', 'detach', 'rows')),
    CONSTRAINT policies_missing_sid_check CHECK (missing_sid IN ('skip', 'mark')),
    CONSTRAINT policies_s3_versions_check CHECK (s3_versions IN ('all', 'markers'))
);
COMMENT ON TABLE retention.policies IS 'One row per retention policy: which rows of which table expire, and what happens to them';

-- Partitions a batched run detached to drop, until the dropper (a short-lived background
-- worker started after the run's commit) or the next run drops them. Written by the extension
-- only (see src/engine/partitions/dropper.rs); normally empty within seconds.
CREATE TABLE retention.detached_partitions (
    relid       oid PRIMARY KEY,
    name        text NOT NULL, -- schema-qualified, quoted: dropped only while it still has this name
    policy      text NOT NULL,
    ready       boolean NOT NULL DEFAULT false, -- its rows counted by its run: the dropper may drop it
    detached_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    run_id      bigint, -- the run that detached it
    kept        boolean NOT NULL DEFAULT false -- expired_partitions = 'detach': counted, never dropped
);
COMMENT ON TABLE retention.detached_partitions IS 'Partitions detached by a batched run, to be dropped by the dropper';

CREATE TABLE retention.runs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    policy           text NOT NULL, -- no foreign key: history outlives a dropped policy
    trigger          text NOT NULL CHECK (trigger IN ('sql', 'pg_cron', 'worker')),
    mode             text NOT NULL CHECK (mode IN ('transaction', 'batched')),
    status           text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'interrupted', 'stopped')),
    started_at       timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at      timestamptz,
    cutoff           timestamptz,
    rows_deleted     bigint NOT NULL DEFAULT 0,
    batches          integer NOT NULL DEFAULT 0,
    error            text,
    pid              integer NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    username         text NOT NULL DEFAULT CURRENT_USER,
    application_name text,
    details          jsonb, -- recordings: checked, deleted, failed, skipped, and failures by kind
    target           text -- the table the run acted on, as its ledger entry names it
);
CREATE INDEX runs_policy_started_at_idx ON retention.runs (policy, started_at DESC);
CREATE INDEX runs_started_at_idx ON retention.runs (started_at);
COMMENT ON TABLE retention.runs IS 'One row per run of a policy, from any trigger; pruned after pg_retention.history_retention_days';

CREATE TABLE retention.worker_state (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_slot        timestamp,   -- the last scheduled run_at (wall clock, pg_retention.timezone) run
    last_started_at  timestamptz,
    last_finished_at timestamptz,
    pid              integer
);
COMMENT ON TABLE retention.worker_state IS 'The background worker''s memory: which nightly slot it ran last';

-- Asks of retention.run_worker_now(): rows that the worker takes (and deletes) when it starts
-- the run they asked for. An insert, not an update of worker_state: a request left open in a
-- transaction locks nothing the worker needs.
CREATE TABLE retention.run_requests (
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    requested_by text NOT NULL DEFAULT CURRENT_USER
);
COMMENT ON TABLE retention.run_requests IS 'Requests of retention.run_worker_now(), until the worker starts the run they ask for';


-- One row per Twilio object (recording, transcription) a run touched (src/history/outcomes.rs): written in the transaction
-- that marks its batch; kept as long as the run history. Written by the extension only.
CREATE TABLE retention.recording_outcomes (
    run_id      bigint NOT NULL,
    policy      text NOT NULL,
    key         text NOT NULL,
    sid         text,
    outcome     text NOT NULL CHECK (outcome IN ('deleted', 'already_gone', 'failed', 'skipped')),
    http_status integer,
    request_id  text,
    reason      text,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    account     text, -- the Twilio account whose path the DELETE took (NULL: not sent)
    object      text NOT NULL DEFAULT 'recording' CHECK (object IN ('recording', 'transcription', 's3_object')),
    store       text, -- the store of an S3 object (retention.stores)
    version     text  -- the version of an S3 object deleted (NULL: a bucket that keeps none)
);
CREATE INDEX recording_outcomes_run_id_key_idx ON retention.recording_outcomes (run_id, key COLLATE "C");
CREATE INDEX recording_outcomes_at_idx ON retention.recording_outcomes (at);
COMMENT ON TABLE retention.recording_outcomes IS 'What each recordings run did with each external object of a row (its Twilio recording, its transcriptions, its S3 objects and their versions): deleted, already_gone, failed (with the HTTP status and reason), skipped; and under which Twilio account or store';

-- The external stores recordings policies delete from (src/store.rs), each named once by a
-- superuser: Twilio accounts and S3 buckets. The store 'twilio' is the pg_retention.twilio_*
-- settings. Secrets stay in files; a store names the file, never its content.
CREATE TABLE retention.stores (
    name        text PRIMARY KEY,
    kind        text NOT NULL,
    endpoint    text, -- twilio: base URL (NULL: the setting); s3: https://s3.REGION.amazonaws.com, or a loopback server
    region      text, -- s3
    bucket      text, -- s3
    addressing  text NOT NULL DEFAULT 'path', -- s3: https://host/bucket/key or https://bucket.host/key
    account_sid text, -- twilio (NULL: the setting)
    api_key_sid text, -- twilio (NULL: the setting)
    secret_file text, -- twilio: the auth token or API key secret (NULL: the setting); s3: AWS shared-credentials format
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT stores_kind_check CHECK (kind IN ('twilio', 's3')),
    CONSTRAINT stores_addressing_check CHECK (addressing IN ('path', 'virtual'))
);
COMMENT ON TABLE retention.stores IS 'External stores recordings policies delete from, named once by a superuser; the store twilio is the pg_retention.twilio_* settings';
-- Foreign keys also order pg_dump's data: the stores are restored before the policies naming them.
ALTER TABLE retention.policies
    ADD CONSTRAINT policies_twilio_store_fkey FOREIGN KEY (twilio_store) REFERENCES retention.stores (name),
    ADD CONSTRAINT policies_s3_store_fkey FOREIGN KEY (s3_store) REFERENCES retention.stores (name);

-- What each table had before a policy's hide_expired turned row-level security on there, to
-- put back when it is turned off (src/policy/hiding.rs). Written by the extension only.
CREATE TABLE retention.hidden_tables (
    policy_id        integer NOT NULL,
    relid            regclass NOT NULL, -- the policy's table, or a member of its tree (by name in a dump)
    had_rls          boolean NOT NULL,
    had_force        boolean NOT NULL,
    PRIMARY KEY (policy_id, relid)
);
COMMENT ON TABLE retention.hidden_tables IS 'Row-level security a policy''s hide_expired turned on, and what the table had before';

-- Legal holds (see src/policy/holds.rs): rows of a table matching an active hold's condition
-- are kept by every run of every policy on that table. Every hold is kept, released ones too.
-- Written through retention.add_hold() and retention.release_hold() only.
CREATE TABLE retention.holds (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    policy      text NOT NULL, -- the policy it was added through
    name        text NOT NULL,
    condition   text NOT NULL, -- as written
    reason      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    released_by text,
    released_at timestamptz,
    target      regclass, -- the table whose rows it keeps (NULL: a 0.6.0 hold whose table was gone at the update)
    expression  text NOT NULL -- the condition as parsed when added, deparsed in fixed settings: what runs read
);
CREATE UNIQUE INDEX holds_active_target_name_idx ON retention.holds (target, name) WHERE released_at IS NULL;
COMMENT ON TABLE retention.holds IS 'Legal holds: rows matching an active hold are never touched by a run; every hold is kept';

-- The deletion ledger (see src/history/ledger.rs): one entry per finished run, written in
-- the run's own transaction into ledger_pending, then sealed into retention.ledger in run
-- order, each hash = hex(sha256(previous hash || entry::text)). Written by the extension only.
CREATE TABLE retention.ledger_pending (
    run_id bigint PRIMARY KEY,
    entry  jsonb NOT NULL
);
COMMENT ON TABLE retention.ledger_pending IS 'Ledger entries of finished runs, waiting to be chained into retention.ledger';
CREATE TABLE retention.ledger (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    entry     jsonb NOT NULL,
    prev_hash text, -- NULL for the first entry ever
    hash      text NOT NULL
);
CREATE INDEX ledger_run_id_idx ON retention.ledger (((entry OPERATOR(pg_catalog.->>) 'run_id')::pg_catalog.int8));
CREATE INDEX ledger_at_idx ON retention.ledger (at);
COMMENT ON TABLE retention.ledger IS 'Tamper-evident record of every finished run, hash-chained; kept pg_retention.ledger_retention_days; check with retention.verify_ledger()';

-- Presets removed (or renamed) here, so that a restore, whose CREATE EXTENSION makes every
-- preset again, removes them again. Written by the triggers on retention.policies.
CREATE TABLE retention.removed_presets (
    name       text PRIMARY KEY,
    removed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE retention.removed_presets IS 'Presets removed from retention.policies; carried by pg_dump so that a restore does not bring them back';

-- pg_dump and pg_restore (and pg_dumpall) carry the policies, the history and the removed
-- presets, with their identity sequences; the worker's state stays with its server.
SELECT pg_catalog.pg_extension_config_dump('retention.policies', '');
SELECT pg_catalog.pg_extension_config_dump('retention.policies_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('retention.runs', '');
SELECT pg_catalog.pg_extension_config_dump('retention.runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('retention.removed_presets', '');
SELECT pg_catalog.pg_extension_config_dump('retention.recording_outcomes', '');
SELECT pg_catalog.pg_extension_config_dump('retention.stores', 'WHERE name <> ''twilio''');
SELECT pg_catalog.pg_extension_config_dump('retention.holds', '');
SELECT pg_catalog.pg_extension_config_dump('retention.hidden_tables', '');
SELECT pg_catalog.pg_extension_config_dump('retention.holds_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('retention.ledger', '');
SELECT pg_catalog.pg_extension_config_dump('retention.ledger_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('retention.ledger_pending', '');
