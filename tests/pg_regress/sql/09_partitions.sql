-- Partitioned tables: a partition whose bounds prove every row past the cutoff goes whole;
-- every other member is purged on its own, row by row. Runs alone.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_retention CASCADE;
DROP SCHEMA IF EXISTS part, archive CASCADE;
CREATE EXTENSION pg_retention;
RESET client_min_messages;
CREATE SCHEMA part;
-- What a run did, without its timings, and without how removed rows were counted (from the
-- statistics once autovacuum has analyzed a partition: the integration tests check that).
CREATE FUNCTION pg_temp.removed(partitions jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(e - 'counted') FROM jsonb_array_elements(partitions) e
$$;
CREATE FUNCTION pg_temp.outcome(result jsonb) RETURNS TABLE (rows_deleted bigint, partitions jsonb) LANGUAGE sql AS $$
    SELECT (result->>'rows_deleted')::bigint, pg_temp.removed(result->'partitions')
$$;
-- The tables of schema part whose name starts with this.
CREATE FUNCTION pg_temp.tables(prefix text) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(c.oid::regclass::text, ' ' ORDER BY c.oid::regclass::text)
      FROM pg_class c WHERE c.relnamespace = 'part'::regnamespace AND c.relkind IN ('r', 'p') AND c.relname LIKE prefix || '%'
$$;

-- timestamptz key. In one transaction now() is the cutoff of an expires_at run, so a
-- partition can end exactly at it: every row in it is before the cutoff, so it goes whole; the
-- next partition starts at it, so none of its rows is past it and it is not even read.
BEGIN;
CREATE TABLE part.events (id int, at timestamptz) PARTITION BY RANGE (at);
DO $$ BEGIN EXECUTE format('CREATE TABLE part.events_old PARTITION OF part.events FOR VALUES FROM (%L) TO (%L)', now() - interval '20 days', now() - interval '10 days'); END $$;
DO $$ BEGIN EXECUTE format('CREATE TABLE part.events_edge PARTITION OF part.events FOR VALUES FROM (%L) TO (%L)', now() - interval '10 days', now()); END $$;
DO $$ BEGIN EXECUTE format('CREATE TABLE part.events_live PARTITION OF part.events FOR VALUES FROM (%L) TO (%L)', now(), now() + interval '10 days'); END $$;
CREATE TABLE part.events_default PARTITION OF part.events DEFAULT;
CREATE INDEX ON part.events (at);
INSERT INTO part.events VALUES (1, now() - interval '15 days'), (2, now() - interval '11 days'),
    (3, now() - interval '1 second'), (4, now() - interval '1 microsecond'),
    (5, now()), (6, now() + interval '1 day'),
    (7, now() - interval '30 days'), (8, NULL), (9, now() + interval '30 days');
SELECT (retention.add_policy('events', 'events', 'at', 'expires_at', table_schema => 'part')).name AS added;
SELECT (p->>'rows')::int AS rows, p->'partitions' AS partitions, p->'rows_by_row' AS rows_by_row
  FROM retention.preview('events') p;
SELECT * FROM pg_temp.outcome(retention.run_policy('events'));
SELECT id FROM part.events ORDER BY id;
SELECT pg_temp.tables('events');
COMMIT;

-- timestamp (Prisma's "expiresAt", UTC) under a list partition by tenant: tenant a is
-- range-partitioned on time below it, tenant b is one table (its rows go row by row).
-- A sub-partitioned partition whose bound proves it expired goes whole with its leaves.
BEGIN;
CREATE TABLE part.traces (id int, tenant text, "expiresAt" timestamp(3)) PARTITION BY LIST (tenant);
CREATE TABLE part.traces_a PARTITION OF part.traces FOR VALUES IN ('a') PARTITION BY RANGE ("expiresAt");
DO $$ BEGIN EXECUTE format('CREATE TABLE part.traces_a_2025 PARTITION OF part.traces_a FOR VALUES FROM (MINVALUE) TO (%L) PARTITION BY RANGE ("expiresAt")', timezone('UTC', now()) - interval '10 days'); END $$;
DO $$ BEGIN EXECUTE format('CREATE TABLE part.traces_a_2025h1 PARTITION OF part.traces_a_2025 FOR VALUES FROM (MINVALUE) TO (%L)', timezone('UTC', now()) - interval '20 days'); END $$;
DO $$ BEGIN EXECUTE format('CREATE TABLE part.traces_a_2025h2 PARTITION OF part.traces_a_2025 FOR VALUES FROM (%L) TO (%L)', timezone('UTC', now()) - interval '20 days', timezone('UTC', now()) - interval '10 days'); END $$;
DO $$ BEGIN EXECUTE format('CREATE TABLE part.traces_a_now PARTITION OF part.traces_a FOR VALUES FROM (%L) TO (MAXVALUE)', timezone('UTC', now()) - interval '10 days'); END $$;
CREATE TABLE part.traces_b PARTITION OF part.traces FOR VALUES IN ('b');
INSERT INTO part.traces VALUES (1, 'a', timezone('UTC', now()) - interval '40 days'), (2, 'a', timezone('UTC', now()) - interval '15 days'),
    (3, 'a', timezone('UTC', now()) - interval '1 day'), (4, 'a', timezone('UTC', now()) + interval '1 day'),
    (5, 'b', timezone('UTC', now()) - interval '40 days'), (6, 'b', timezone('UTC', now()) + interval '1 day'), (7, 'b', NULL);
CREATE INDEX ON part.traces ("expiresAt");
SELECT (retention.add_policy('traces', 'traces', 'expiresAt', 'expires_at', table_schema => 'part')).name AS added;
SELECT * FROM pg_temp.outcome(retention.run_policy('traces'));
SELECT id, tenant FROM part.traces ORDER BY id;
SELECT pg_temp.tables('traces');
COMMIT;

-- date key: a month that ended by the cutoff's UTC date goes; the current one is purged by rows.
BEGIN;
CREATE TABLE part.usage (id int, day date) PARTITION BY RANGE (day);
DO $$ BEGIN EXECUTE format('CREATE TABLE part.usage_before PARTITION OF part.usage FOR VALUES FROM (%L) TO (%L)', (timezone('UTC', now()))::date - 60, (timezone('UTC', now()))::date - 30); END $$;
DO $$ BEGIN EXECUTE format('CREATE TABLE part.usage_recent PARTITION OF part.usage FOR VALUES FROM (%L) TO (%L)', (timezone('UTC', now()))::date - 30, (timezone('UTC', now()))::date + 30); END $$;
INSERT INTO part.usage VALUES (1, (timezone('UTC', now()))::date - 45), (2, (timezone('UTC', now()))::date - 10),
    (3, (timezone('UTC', now()))::date), (4, (timezone('UTC', now()))::date + 10);
CREATE INDEX ON part.usage (day);
SELECT (retention.add_policy('usage', 'usage', 'day', 'older_than', retain => interval '5 days', table_schema => 'part')).name AS added;
SELECT * FROM pg_temp.outcome(retention.run_policy('usage'));
SELECT id FROM part.usage ORDER BY id;
SELECT pg_temp.tables('usage');
COMMIT;

-- A partition keyed on another column proves nothing about time: every leaf by rows.
CREATE TABLE part.by_id (id int, at timestamptz) PARTITION BY RANGE (id);
CREATE TABLE part.by_id_1 PARTITION OF part.by_id FOR VALUES FROM (0) TO (100);
CREATE TABLE part.by_id_2 PARTITION OF part.by_id FOR VALUES FROM (100) TO (200);
INSERT INTO part.by_id VALUES (1, now() - interval '2 days'), (2, now() + interval '2 days'), (101, now() - interval '2 days'), (102, NULL);
CREATE INDEX ON part.by_id (at);
SELECT (retention.add_policy('by_id', 'by_id', 'at', 'expires_at', table_schema => 'part')).name AS added;
SELECT * FROM pg_temp.outcome(retention.run_policy('by_id'));
SELECT id FROM part.by_id ORDER BY id;

-- Legacy inheritance: the parent and each child purged on their own (ONLY each), by rows.
CREATE TABLE part.legacy (id int, at timestamptz);
CREATE TABLE part.legacy_2024 () INHERITS (part.legacy);
CREATE TABLE part.legacy_2025 (extra text) INHERITS (part.legacy);
CREATE TABLE part.legacy_2025_q4 () INHERITS (part.legacy_2025);
INSERT INTO part.legacy VALUES (1, now() - interval '2 days'), (2, now() + interval '2 days');
INSERT INTO part.legacy_2024 VALUES (3, now() - interval '300 days'), (4, NULL);
INSERT INTO part.legacy_2025 VALUES (5, now() - interval '30 days', 'x'), (6, now() + interval '1 day', 'y');
INSERT INTO part.legacy_2025_q4 VALUES (7, now() - interval '3 days', 'z');
CREATE INDEX ON part.legacy (at);
SELECT (retention.add_policy('legacy', 'legacy', 'at', 'expires_at', table_schema => 'part')).name AS added;
SELECT * FROM pg_temp.outcome(retention.run_policy('legacy'));
SELECT tableoid::regclass, id FROM part.legacy ORDER BY id;

-- detach: the expired partition leaves the table, rows and all, into the archive schema.
CREATE SCHEMA archive;
CREATE TABLE part.calls (id int, at timestamptz) PARTITION BY RANGE (at);
CREATE TABLE part.calls_2020 PARTITION OF part.calls FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2021-01-01 00:00+00');
CREATE TABLE part.calls_later PARTITION OF part.calls FOR VALUES FROM ('2021-01-01 00:00+00') TO (MAXVALUE);
INSERT INTO part.calls VALUES (1, '2020-06-01 00:00+00'), (2, '2020-07-01 00:00+00'), (3, '2022-01-01 00:00+00'), (4, now() + interval '1 day');
CREATE INDEX ON part.calls (at);
SELECT (retention.add_policy('calls', 'calls', 'at', 'expires_at', table_schema => 'part',
                            expired_partitions => 'detach', archive_schema => 'archive')).name AS added;
SELECT p->'partitions' AS partitions, p->'rows_by_row' AS rows_by_row FROM retention.preview('calls') p;
SELECT * FROM pg_temp.outcome(retention.run_policy('calls'));
SELECT id FROM part.calls ORDER BY id;
SELECT id FROM archive.calls_2020 ORDER BY id;
SELECT pg_temp.tables('calls');
SELECT relispartition FROM pg_class WHERE oid = 'archive.calls_2020'::regclass;

-- rows: the same table purged row by row; nothing removed.
CREATE TABLE part.calls_2019 PARTITION OF part.calls FOR VALUES FROM ('2019-01-01 00:00+00') TO ('2020-01-01 00:00+00');
INSERT INTO part.calls VALUES (10, '2019-03-01 00:00+00');
SELECT (retention.alter_policy('calls', expired_partitions => 'rows', archive_schema => '')).name AS altered;
SELECT expired_partitions, archive_schema FROM retention.policies WHERE name = 'calls';
SELECT p->'partitions' AS partitions, p->'rows_by_row' AS rows_by_row FROM retention.preview('calls') p;
SELECT * FROM pg_temp.outcome(retention.run_policy('calls'));
SELECT id FROM part.calls ORDER BY id;
SELECT pg_temp.tables('calls');

-- A DELETE trigger on the table (an audit log, say) would be skipped by a drop: the partition
-- goes row by row and the trigger sees every row.
CREATE TABLE part.audited (id int, at timestamptz) PARTITION BY RANGE (at);
CREATE TABLE part.audited_2020 PARTITION OF part.audited FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2021-01-01 00:00+00');
CREATE TABLE part.audited_later PARTITION OF part.audited FOR VALUES FROM ('2021-01-01 00:00+00') TO (MAXVALUE);
CREATE TABLE part.audit_log (id int);
CREATE FUNCTION part.log_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO part.audit_log VALUES (OLD.id); RETURN OLD; END $$;
CREATE TRIGGER audited_delete AFTER DELETE ON part.audited FOR EACH ROW EXECUTE FUNCTION part.log_delete();
INSERT INTO part.audited VALUES (1, '2020-06-01 00:00+00'), (2, '2020-07-01 00:00+00'), (3, now() + interval '1 day');
CREATE INDEX ON part.audited (at);
SELECT (retention.add_policy('audited', 'audited', 'at', 'expires_at', table_schema => 'part')).name AS added;
SELECT * FROM pg_temp.outcome(retention.run_policy('audited'));
SELECT id FROM part.audit_log ORDER BY id;
SELECT pg_temp.tables('audited');

-- soft_delete never removes a partition: it marks the rows.
CREATE TABLE part.marked (id int, at timestamptz, deleted_at timestamptz) PARTITION BY RANGE (at);
CREATE TABLE part.marked_2020 PARTITION OF part.marked FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2021-01-01 00:00+00');
CREATE TABLE part.marked_later PARTITION OF part.marked FOR VALUES FROM ('2021-01-01 00:00+00') TO (MAXVALUE);
INSERT INTO part.marked VALUES (1, '2020-06-01 00:00+00'), (2, now() + interval '1 day');
CREATE INDEX ON part.marked (at);
SELECT (retention.add_policy('marked', 'marked', 'at', 'expires_at', action => 'soft_delete', soft_delete_column => 'deleted_at',
                            table_schema => 'part')).name AS added;
SELECT * FROM pg_temp.outcome(retention.run_policy('marked'));
SELECT id, deleted_at IS NOT NULL AS marked FROM part.marked ORDER BY id;
SELECT pg_temp.tables('marked');

-- CALL: the same, one partition a transaction; the history records each partition.
CREATE TABLE part.batched (id int, at timestamptz) PARTITION BY RANGE (at);
CREATE TABLE part.batched_2019 PARTITION OF part.batched FOR VALUES FROM ('2019-01-01 00:00+00') TO ('2020-01-01 00:00+00');
CREATE TABLE part.batched_2020 PARTITION OF part.batched FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2021-01-01 00:00+00');
CREATE TABLE part.batched_later PARTITION OF part.batched FOR VALUES FROM ('2021-01-01 00:00+00') TO (MAXVALUE);
CREATE TABLE part.batched_default PARTITION OF part.batched DEFAULT;
INSERT INTO part.batched SELECT g, '2019-01-01 00:00+00'::timestamptz + g * interval '1 hour' FROM generate_series(1, 15000) g;
INSERT INTO part.batched SELECT g, now() - interval '1 day' + (g % 2) * interval '2 days' FROM generate_series(20001, 20050) g;
INSERT INTO part.batched VALUES (30000, NULL);
CREATE INDEX ON part.batched (at);
SELECT (retention.add_policy('batched', 'batched', 'at', 'expires_at', table_schema => 'part', batch_size => 10)).name AS added;
SELECT count(*) FILTER (WHERE at < now()) AS expired, count(*) AS total FROM part.batched;
SET client_min_messages = warning; -- its NOTICE counts batches, which follow the statistics
CALL retention.run_batched('batched');
RESET client_min_messages;
-- CALL detached the expired partitions; the dropper drops them just after (within seconds).
DO $$ BEGIN
    FOR i IN 1..300 LOOP EXIT WHEN NOT EXISTS (SELECT FROM retention.detached_partitions); PERFORM pg_sleep(0.1); END LOOP;
END $$;
SELECT count(*) AS left_to_drop FROM retention.detached_partitions;
SELECT status, rows_deleted, pg_temp.removed(details->'partitions') AS partitions FROM retention.runs WHERE policy = 'batched';
SELECT count(*) FILTER (WHERE at < now()) AS expired, count(*) FILTER (WHERE at IS NULL) AS null_kept, count(*) AS total FROM part.batched;
SELECT pg_temp.tables('batched');

-- Bad input is refused, naming the argument, and changes nothing.
SELECT retention.add_policy('bad', 'events', 'at', 'expires_at', table_schema => 'part', expired_partitions => 'truncate');
SELECT retention.add_policy('bad', 'events', 'at', 'expires_at', table_schema => 'part', archive_schema => 'no_such_schema');
SELECT retention.add_policy('bad', 'events', 'at', 'expires_at', table_schema => 'part', archive_schema => 'pg_catalog');
SELECT count(*) FROM retention.policies WHERE name = 'bad';

DROP SCHEMA part, archive CASCADE;
DROP EXTENSION pg_retention;
