-- Stores (issue 24): Twilio accounts and S3 buckets named once by a superuser in
-- retention.stores, and recordings policies naming them. Every bad store or policy is refused
-- with what is wrong and nothing stored; an ordinary role may not name a store, whatever it
-- was granted (a store names a file the server reads). Runs alone.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP TABLE IF EXISTS store_calls CASCADE;
DO $$ BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'store_thief') THEN
    DROP OWNED BY store_thief;
    DROP ROLE store_thief;
  END IF; END $$;
RESET client_min_messages;
CREATE EXTENSION pg_retention;
-- The default store is the pg_retention.twilio_* settings; every policy names it.
SELECT name, kind, endpoint, account_sid, secret_file FROM retention.stores;
SELECT name, twilio_store, s3_store, s3_key_columns, s3_versions FROM retention.policies ORDER BY name;
-- Secret files in the AWS shared-credentials format. COPY writes them with mode 0644, which
-- the secret-file rules refuse: the runs' and previews' errors below say so. (The integration
-- tests, tests/integration/tests/s3.rs, run with files of mode 0600.)
COPY (SELECT '[default]' UNION ALL SELECT 'aws_access_key_id = AKIAREGRESS' UNION ALL SELECT 'aws_secret_access_key = regress-secret')
  TO '/tmp/pg_retention_regress_store.aws';
COPY (SELECT 'aws_access_key_id = AKIAREGRESS') TO '/tmp/pg_retention_regress_half.aws';
\set VERBOSITY terse
INSERT INTO retention.stores (name, kind) VALUES ('s3_nothing', 's3');
INSERT INTO retention.stores (name, kind, endpoint, region, bucket, secret_file)
VALUES ('s3_plain', 's3', 'http://s3.eu-west-1.amazonaws.com', 'eu-west-1', 'media', '/tmp/pg_retention_regress_store.aws');
INSERT INTO retention.stores (name, kind, endpoint, region, bucket, secret_file)
VALUES ('s3_noregion', 's3', 'https://s3.eu-west-1.amazonaws.com', NULL, 'media', '/tmp/pg_retention_regress_store.aws');
INSERT INTO retention.stores (name, kind, endpoint, region, bucket, secret_file)
VALUES ('s3_badbucket', 's3', 'https://s3.eu-west-1.amazonaws.com', 'eu-west-1', 'Media_Bucket', '/tmp/pg_retention_regress_store.aws');
INSERT INTO retention.stores (name, kind, endpoint, region, bucket)
VALUES ('s3_nofile', 's3', 'https://s3.eu-west-1.amazonaws.com', 'eu-west-1', 'media');
INSERT INTO retention.stores (name, kind, endpoint, region, bucket, secret_file, account_sid)
VALUES ('s3_mixed', 's3', 'https://s3.eu-west-1.amazonaws.com', 'eu-west-1', 'media', '/tmp/pg_retention_regress_store.aws', 'AC00000000000000000000000000000000');
INSERT INTO retention.stores (name, kind, account_sid) VALUES ('twilio_bad', 'twilio', 'AC123');
INSERT INTO retention.stores (name, kind, addressing) VALUES ('twilio_bad2', 'ftp', 'path');
UPDATE retention.stores SET account_sid = 'AC00000000000000000000000000000000' WHERE name = 'twilio';
DELETE FROM retention.stores WHERE name = 'twilio';
\set VERBOSITY default
SELECT count(*) AS refused_all FROM retention.stores;
INSERT INTO retention.stores (name, kind, endpoint, region, bucket, secret_file)
VALUES ('media', 's3', 'https://s3.eu-west-1.amazonaws.com', 'eu-west-1', 'call-media.example', '/tmp/pg_retention_regress_store.aws');
INSERT INTO retention.stores (name, kind, account_sid) VALUES ('tenant_twilio', 'twilio', 'AC00000000000000000000000000000001');
SELECT name, kind, endpoint, region, bucket, addressing FROM retention.stores ORDER BY name;

-- Policies name stores; each mistake refused.
CREATE TABLE store_calls (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, sid text, audio_key text, size integer, deleted_at timestamptz);
CREATE INDEX ON store_calls (created_at);
INSERT INTO store_calls VALUES (1, now() - interval '100 days', 'RE00000000000000000000000000000001', 'calls/1.wav', 1, NULL), (2, now() - interval '100 days', NULL, NULL, 2, NULL);
\set VERBOSITY terse
SELECT retention.add_policy('store_calls', 'store_calls', 'created_at', 'older_than', interval '90 days', action => 'twilio_recording',
       soft_delete_column => 'deleted_at', sid_column => 'sid', id_column => 'id', s3_store => 'nowhere', s3_key_columns => ARRAY['audio_key']);
SELECT retention.add_policy('store_calls', 'store_calls', 'created_at', 'older_than', interval '90 days', action => 'twilio_recording',
       soft_delete_column => 'deleted_at', sid_column => 'sid', id_column => 'id', s3_store => 'tenant_twilio', s3_key_columns => ARRAY['audio_key']);
SELECT retention.add_policy('store_calls', 'store_calls', 'created_at', 'older_than', interval '90 days', action => 'twilio_recording',
       soft_delete_column => 'deleted_at', sid_column => 'sid', id_column => 'id', s3_store => 'media');
SELECT retention.add_policy('store_calls', 'store_calls', 'created_at', 'older_than', interval '90 days', action => 'twilio_recording',
       soft_delete_column => 'deleted_at', sid_column => 'sid', id_column => 'id', s3_store => 'media', s3_key_columns => ARRAY['size']);
SELECT retention.add_policy('store_calls', 'store_calls', 'created_at', 'older_than', interval '90 days', action => 'twilio_recording',
       soft_delete_column => 'deleted_at', sid_column => 'sid', id_column => 'id', twilio_store => 'media');
SELECT retention.add_policy('store_calls', 'store_calls', 'created_at', 'older_than', interval '90 days', action => 'twilio_recording',
       soft_delete_column => 'deleted_at', sid_column => 'sid', id_column => 'id', s3_store => 'media', s3_key_columns => ARRAY['audio_key'],
       s3_versions => 'some');
SELECT retention.add_policy('store_plain', 'store_calls', 'created_at', 'older_than', interval '90 days', s3_store => 'media', s3_key_columns => ARRAY['audio_key']);
\set VERBOSITY default
SELECT count(*) AS none_added FROM retention.policies WHERE name LIKE 'store_%';
SELECT name, twilio_store, s3_store, s3_key_columns, s3_versions
  FROM retention.add_policy('store_calls', 'store_calls', 'created_at', 'older_than', interval '90 days', action => 'twilio_recording',
       soft_delete_column => 'deleted_at', sid_column => 'sid', id_column => 'id', twilio_store => 'tenant_twilio',
       s3_store => 'media', s3_key_columns => ARRAY['audio_key'], s3_versions => 'markers');
-- A store a policy names is neither removed nor renamed.
\set VERBOSITY terse
DELETE FROM retention.stores WHERE name = 'media';
UPDATE retention.stores SET name = 'media2' WHERE name = 'media';
\set VERBOSITY default
-- Its endpoint may change; a preview reads the secret file as a run would, and refuses one
-- others may read.
UPDATE retention.stores SET endpoint = 'https://s3.eu-central-1.amazonaws.com', region = 'eu-central-1' WHERE name = 'media';
SELECT retention.preview('store_calls') - 'cutoff' AS preview;
SELECT (retention.alter_policy('store_calls', s3_store => '')).s3_key_columns AS cleared;
DELETE FROM retention.stores WHERE name = 'media';
-- The secret file is read by each run and preview, not when the store is written (a restore
-- onto a host without the file yet must not fail): a missing one is found by the preview.
INSERT INTO retention.stores (name, kind, endpoint, region, bucket, secret_file)
VALUES ('media_half', 's3', 'https://s3.eu-west-1.amazonaws.com', 'eu-west-1', 'media', '/tmp/pg_retention_regress_half.aws'),
       ('media_none', 's3', 'https://s3.eu-west-1.amazonaws.com', 'eu-west-1', 'media', '/tmp/pg_retention_regress_none.aws');
\set VERBOSITY terse
SELECT retention.preview((retention.alter_policy('store_calls', s3_store => 'media_half', s3_key_columns => ARRAY['audio_key'])).name);
SELECT retention.preview((retention.alter_policy('store_calls', s3_store => 'media_none', s3_key_columns => ARRAY['audio_key'])).name);
\set VERBOSITY default
SELECT (retention.alter_policy('store_calls', s3_store => '')).s3_store AS cleared_again;
DELETE FROM retention.stores WHERE name IN ('media_half', 'media_none');

-- An ordinary role granted every right on the table still may not name a store: a store is a
-- file the server would read for it.
CREATE ROLE store_thief;
GRANT USAGE ON SCHEMA retention TO store_thief;
GRANT ALL ON retention.stores TO store_thief;
SET ROLE store_thief;
\set VERBOSITY terse
INSERT INTO retention.stores (name, kind, secret_file) VALUES ('loot', 'twilio', '/etc/ssl/private/ssl-cert-snakeoil.key');
UPDATE retention.stores SET secret_file = '/tmp/pg_retention_regress_store.aws' WHERE name = 'tenant_twilio';
DELETE FROM retention.stores WHERE name = 'tenant_twilio';
\set VERBOSITY default
RESET ROLE;
SELECT name, secret_file FROM retention.stores ORDER BY name;
SELECT retention.drop_policy('store_calls');
DROP TABLE store_calls;
DROP OWNED BY store_thief;
DROP ROLE store_thief;
DROP EXTENSION pg_retention;
