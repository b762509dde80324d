-- Runs alone: it starts from a fresh extension and none of the application tables.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS "ConversationTrace", "AgentUsage", voice_recordings, sessions, "Robert'); DROP TABLE sessions;--" CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_retention;
-- Policies for any table: validated when written, whether through the functions or plain SQL.
CREATE TABLE sessions (id int, last_seen timestamptz, note text);
CREATE INDEX ON sessions (last_seen);
INSERT INTO sessions SELECT g, now() - interval '1 day' * g, 'n' FROM generate_series(1, 10) g;

SELECT name, table_name, rule, retain, batch_size
  FROM retention.add_policy('stale_sessions', 'sessions', 'last_seen', 'older_than', interval '5 days 12 hours', batch_size => 3);
SELECT p->'rows' AS would_delete FROM retention.preview('stale_sessions') p;
SELECT p->'rows_deleted' AS deleted, p->'batches' AS batches, p->>'status' AS status
  FROM retention.run_policy('stale_sessions') p;
SELECT count(*) FROM sessions;

-- Mistakes a user can make, each named.
SELECT retention.add_policy('bad', 'no_such_table', 'at', 'expires_at');
SELECT retention.add_policy('bad', 'sessions', 'no_such_column', 'expires_at');
SELECT retention.add_policy('bad', 'sessions', 'note', 'expires_at');
SELECT retention.add_policy('bad', 'sessions', 'last_seen', 'older_than');
SELECT retention.add_policy('bad', 'sessions', 'last_seen', 'older_than', interval '-1 day');
SELECT retention.add_policy('bad', 'sessions', 'last_seen', 'expires_at', interval '1 day');
SELECT retention.add_policy('bad', 'sessions', 'last_seen', 'expires_at', batch_size => 0);
SELECT retention.add_policy('bad', 'sessions', 'last_seen', 'sometimes');
SELECT retention.add_policy('bad', 'sessions', 'last_seen', 'expires_at', action => 'truncate');
SELECT retention.add_policy('bad', 'sessions', 'last_seen', 'expires_at', action => 'soft_delete');
SELECT retention.add_policy('stale_sessions', 'sessions', 'last_seen', 'expires_at');
UPDATE retention.policies SET time_column = 'note' WHERE name = 'stale_sessions';
SELECT retention.alter_policy('no_such_policy', batch_size => 10);
SELECT retention.run_policy('no_such_policy');
SELECT retention.run_policy(NULL);
SELECT retention.run_policy('stale_sessions', interval '0 days');
SELECT count(*) AS policies FROM retention.policies;

-- An injection-shaped name is a name. (Its table has no index: adding the policy and each run warn.)
CREATE TABLE "Robert'); DROP TABLE sessions;--" ("at" timestamptz);
INSERT INTO "Robert'); DROP TABLE sessions;--" VALUES (now() - interval '1 day'), (now() + interval '1 day');
SELECT name FROM retention.add_policy('bobby', 'Robert''); DROP TABLE sessions;--', 'at', 'expires_at');
SELECT p->'rows_deleted' AS deleted FROM retention.run_policy('bobby') p;
SELECT count(*) FROM "Robert'); DROP TABLE sessions;--";
SELECT count(*) FROM sessions;

-- alter, disable, drop.
SELECT name, rule, retain FROM retention.alter_policy('bobby', rule => 'older_than', retain => interval '2 days');
SELECT name, rule, retain FROM retention.alter_policy('bobby', rule => 'expires_at');
SELECT name, enabled FROM retention.alter_policy('bobby', enabled => false);
-- A disabled policy is skipped by every trigger, with a notice.
SELECT p->>'status' AS status FROM retention.run_policy('bobby') p;
SELECT retention.drop_policy('bobby');
SELECT retention.drop_policy('bobby');

-- A pace limit is a positive number of rows a second; 0 in alter_policy lifts it.
SELECT (retention.alter_policy('expired_traces', max_rows_per_second => 5000)).name AS paced;
SELECT max_rows_per_second FROM retention.policies WHERE name = 'expired_traces';
UPDATE retention.policies SET max_rows_per_second = -1 WHERE name = 'expired_traces';
SELECT (retention.alter_policy('expired_traces', max_rows_per_second => 0)).name AS lifted;
SELECT max_rows_per_second FROM retention.policies WHERE name = 'expired_traces';

-- missing_sid (0.6.0): what a recordings policy does with a row that has no valid SID.
\set VERBOSITY terse
SELECT retention.alter_policy('old_recordings', missing_sid => 'delete');
SELECT retention.alter_policy('expired_traces', missing_sid => 'mark');
\set VERBOSITY default
SELECT name, missing_sid FROM retention.policies ORDER BY name;

-- account_column (0.8.0): the column holding each recording's Twilio account; text or varchar,
-- recordings policies only; '' in alter_policy clears it.
CREATE TABLE tenant_recordings (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, sid text, account text,
                                account_no integer, deleted_at timestamptz);
CREATE INDEX ON tenant_recordings (created_at);
SELECT (retention.add_policy('tenant_recordings', 'tenant_recordings', 'created_at', 'older_than', interval '90 days',
        action => 'twilio_recording', soft_delete_column => 'deleted_at', sid_column => 'sid', id_column => 'id',
        account_column => 'account')).account_column;
\set VERBOSITY terse
SELECT retention.alter_policy('tenant_recordings', account_column => 'account_no');
SELECT retention.alter_policy('tenant_recordings', account_column => 'no_such_column');
SELECT retention.alter_policy('expired_traces', account_column => 'account');
\set VERBOSITY default
SELECT (retention.alter_policy('tenant_recordings', batch_size => 500)).account_column AS kept;
SELECT (retention.alter_policy('tenant_recordings', account_column => '')).account_column AS cleared;
-- transcriptions (0.9.0): each recording's transcriptions deleted at Twilio first; recordings
-- policies only; off unless asked for, NULL in alter_policy keeps it.
SELECT transcriptions AS off_by_default FROM retention.policies WHERE name = 'tenant_recordings';
SELECT (retention.alter_policy('tenant_recordings', transcriptions => true)).transcriptions AS turned_on;
SELECT (retention.alter_policy('tenant_recordings', batch_size => 400)).transcriptions AS kept;
\set VERBOSITY terse
SELECT retention.alter_policy('expired_traces', transcriptions => true);
\set VERBOSITY default
SELECT retention.preview('tenant_recordings') ->> 'transcriptions' AS preview_says;
SELECT retention.drop_policy('tenant_recordings');
DROP TABLE tenant_recordings;
