-- Runs alone: it starts from a fresh extension and none of the application tables.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS "ConversationTrace", "AgentUsage", voice_recordings, sessions CASCADE;
DROP ROLE IF EXISTS app_reader;
RESET client_min_messages;
-- Twilio settings: checked before any row is read, the secret hidden from non-superusers,
-- plain http only to loopback.
CREATE EXTENSION pg_retention;
CREATE TABLE voice_recordings (
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    twilio_recording_sid text,
    deleted_at timestamptz,
    deletion_reason text
);
CREATE INDEX ON voice_recordings (created_at);
INSERT INTO voice_recordings VALUES (1, now() - interval '100 days', 'RE0123456789abcdef0123456789abcdef', NULL, NULL);

-- No credentials: a clear error naming the setting, nothing read or sent.
SELECT cleanup_old_recordings();
SET pg_retention.twilio_account_sid = 'AC0123456789abcdef0123456789abcdef';
SELECT cleanup_old_recordings();
SET pg_retention.twilio_account_sid = 'not-a-sid';
SELECT cleanup_old_recordings();
SET pg_retention.twilio_account_sid = 'AC0123456789abcdef0123456789abcdef';
SET pg_retention.twilio_api_key_sid = 'SK0123456789abcdef0123456789abcdef';
SELECT cleanup_old_recordings();
RESET pg_retention.twilio_api_key_sid;
SELECT cleanup_old_recordings(0);
SELECT count(*) FILTER (WHERE deleted_at IS NULL) AS unmarked FROM voice_recordings;

-- The base URL: https anywhere, http only to loopback.
SET pg_retention.twilio_base_url = 'http://api.twilio.com';
SET pg_retention.twilio_base_url = 'http://10.1.2.3:8080';
SET pg_retention.twilio_base_url = 'ftp://127.0.0.1';
SET pg_retention.twilio_base_url = 'http://127.0.0.1:9';
SHOW pg_retention.twilio_base_url;
RESET pg_retention.twilio_base_url;
SHOW pg_retention.twilio_base_url;

-- The secret is read from a file, never a setting: the retired settings refuse any value, by
-- any route, with an error that points at the file and never repeats the value.
SET pg_retention.twilio_auth_token = 'the-secret-token';
SET pg_retention.twilio_api_key_secret = 'the-key-secret';
ALTER SYSTEM SET pg_retention.twilio_auth_token = 'the-secret-token';
ALTER ROLE CURRENT_USER SET pg_retention.twilio_auth_token = 'the-secret-token';
ALTER DATABASE pg_retention_regress SET pg_retention.twilio_api_key_secret = 'the-key-secret';
SELECT count(*) AS stored_anywhere FROM pg_db_role_setting WHERE setconfig::text LIKE '%secret%';
SHOW pg_retention.twilio_auth_token;
-- The secret file: not set, missing, named in the error with what to do.
SET pg_retention.twilio_account_sid = 'AC0123456789abcdef0123456789abcdef';
SELECT cleanup_old_recordings();
SET pg_retention.twilio_secret_file = '/nonexistent/twilio.secret';
SELECT cleanup_old_recordings();
SELECT count(*) FILTER (WHERE deleted_at IS NULL) AS unmarked FROM voice_recordings;
RESET pg_retention.twilio_secret_file;
RESET pg_retention.twilio_account_sid;
-- The retired settings stay hidden and superuser-only.
SELECT count(*) AS listed_in_pg_settings FROM pg_settings WHERE name = 'pg_retention.twilio_auth_token';
CREATE ROLE app_reader LOGIN;
GRANT pg_read_all_stats TO app_reader;
SET ROLE app_reader;
SHOW pg_retention.twilio_auth_token;
SELECT current_setting('pg_retention.twilio_auth_token');
SELECT count(*) AS visible FROM pg_settings WHERE name LIKE 'pg_retention.twilio%' AND setting LIKE '%secret%';
SELECT name FROM pg_settings WHERE name LIKE 'pg_retention.%' ORDER BY name;
SET pg_retention.twilio_auth_token = 'stolen';
RESET ROLE;
DROP ROLE app_reader;

-- A recording policy is validated like any other.
SELECT retention.add_policy('recs', 'voice_recordings', 'created_at', 'older_than', interval '1 day',
                            action => 'twilio_recording', soft_delete_column => 'deleted_at');
SELECT retention.add_policy('recs', 'voice_recordings', 'created_at', 'older_than', interval '1 day',
                            action => 'twilio_recording', soft_delete_column => 'deleted_at',
                            sid_column => 'created_at', id_column => 'id');
SELECT name, action, sid_column, id_column
  FROM retention.add_policy('recs', 'voice_recordings', 'created_at', 'older_than', interval '1 day',
                            action => 'twilio_recording', soft_delete_column => 'deleted_at',
                            sid_column => 'twilio_recording_sid', id_column => 'id');
SELECT p->'rows' AS would_send FROM retention.preview('old_recordings') p;
DROP EXTENSION pg_retention;
DROP TABLE voice_recordings;
