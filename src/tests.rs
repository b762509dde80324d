//! In-backend tests. Each runs in a transaction that is rolled back, so `now()` is fixed
//! within a test: the cutoff of an `expires_at` run equals `now()` exactly.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::JsonB;

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql).unwrap().unwrap()
    }

    /// The Prisma-shaped trace table with: 3 expired, 2 NULL expiry, 2 in the future,
    /// and one row exactly at now() (which must stay).
    fn traces() {
        Spi::run(
            r#"CREATE TABLE "ConversationTrace" (id text PRIMARY KEY, "expiresAt" timestamp(6));
               INSERT INTO "ConversationTrace" VALUES
                 ('past1', timezone('UTC', now()) - interval '1 day'),
                 ('past2', timezone('UTC', now()) - interval '1 microsecond'),
                 ('past3', timezone('UTC', now()) - interval '3 years'),
                 ('never1', NULL), ('never2', NULL),
                 ('future1', timezone('UTC', now()) + interval '1 microsecond'),
                 ('future2', timezone('UTC', now()) + interval '1 day'),
                 ('boundary', timezone('UTC', now()))"#,
        )
        .unwrap();
    }

    #[pg_test]
    fn expired_traces_deleted_null_and_boundary_kept() {
        traces();
        assert_eq!(Spi::get_one::<i64>("SELECT cleanup_expired_traces()").unwrap(), Some(3));
        let left = Spi::get_one::<String>(r#"SELECT string_agg(id, ',' ORDER BY id) FROM "ConversationTrace""#).unwrap();
        assert_eq!(left.as_deref(), Some("boundary,future1,future2,never1,never2"));
    }

    #[pg_test]
    fn result_does_not_depend_on_session_timezone() {
        traces();
        Spi::run("SET LOCAL TimeZone = 'Pacific/Kiritimati'").unwrap(); // UTC+14
        let preview = Spi::get_one::<JsonB>("SELECT retention.preview('expired_traces')").unwrap().unwrap();
        assert_eq!(preview.0["rows"], 3);
        Spi::run("SET LOCAL TimeZone = 'Pacific/Pago_Pago'").unwrap(); // UTC-11
        assert_eq!(Spi::get_one::<i64>("SELECT cleanup_expired_traces()").unwrap(), Some(3));
    }

    #[pg_test]
    fn older_than_counts_days_in_utc_and_keeps_the_boundary() {
        Spi::run(
            r#"CREATE TABLE "AgentUsage" (id int PRIMARY KEY, "timestamp" timestamp(6));
               INSERT INTO "AgentUsage" VALUES
                 (1, timezone('UTC', now()) - interval '30 days' - interval '1 microsecond'),
                 (2, timezone('UTC', now()) - interval '30 days'),
                 (3, timezone('UTC', now()) - interval '29 days'),
                 (4, NULL)"#,
        )
        .unwrap();
        Spi::run("SET LOCAL TimeZone = 'America/New_York'").unwrap();
        assert_eq!(Spi::get_one::<i64>("SELECT cleanup_old_agent_usage(30)").unwrap(), Some(1));
        assert_eq!(count(r#"SELECT count(*) FROM "AgentUsage""#), 3);
        assert_eq!(Spi::get_one::<i64>("SELECT cleanup_old_agent_usage()").unwrap(), Some(0));
    }

    #[pg_test]
    fn timestamptz_and_date_columns() {
        Spi::run(
            "CREATE TABLE events (id int, at timestamptz, day date);
             INSERT INTO events VALUES (1, now() - interval '11 days', (timezone('UTC', now()) - interval '11 days')::date),
                                       (2, now() - interval '9 days', timezone('UTC', now())::date);
             SELECT retention.add_policy('events_at', 'events', 'at', 'older_than', interval '10 days');
             SELECT retention.add_policy('events_day', 'events', 'day', 'older_than', interval '10 days')",
        )
        .unwrap();
        let preview = Spi::get_one::<JsonB>("SELECT retention.preview('events_day')").unwrap().unwrap();
        assert_eq!(preview.0["rows"], 1);
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('events_at')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 1);
        assert_eq!(run.0["status"], "succeeded");
        assert_eq!(count("SELECT count(*) FROM events"), 1);
    }

    #[pg_test]
    fn preview_changes_nothing_and_matches_the_run() {
        traces();
        let preview = Spi::get_one::<JsonB>("SELECT retention.preview('expired_traces')").unwrap().unwrap();
        assert_eq!(preview.0["rows"], 3);
        assert_eq!(preview.0["table"], "public.ConversationTrace");
        assert_eq!(count(r#"SELECT count(*) FROM "ConversationTrace""#), 8);
        // Other tests' failed runs are committed out of band; this test's transaction holds no run.
        assert_eq!(count("SELECT count(*) FROM retention.runs WHERE status <> 'failed'"), 0);
        assert_eq!(Spi::get_one::<i64>("SELECT cleanup_expired_traces()").unwrap(), Some(3));
    }

    #[pg_test]
    fn small_batches_use_one_cutoff_and_record_the_run() {
        traces();
        Spi::run("SELECT retention.alter_policy('expired_traces', batch_size => 1)").unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('expired_traces')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 3);
        let (status, cutoff_is_now) = Spi::get_two::<String, bool>(
            "SELECT status, cutoff = now() FROM retention.runs WHERE policy = 'expired_traces' AND status <> 'failed'",
        )
        .unwrap();
        assert_eq!(status.as_deref(), Some("succeeded"));
        assert_eq!(cutoff_is_now, Some(true));
    }

    #[pg_test]
    fn indexed_batches_are_time_ranges_that_split_ties_and_keep_the_boundary() {
        Spi::run(
            r#"CREATE TABLE "ConversationTrace" (id int PRIMARY KEY, "expiresAt" timestamp(6));
               CREATE INDEX ON "ConversationTrace" ("expiresAt");
               INSERT INTO "ConversationTrace"
               SELECT g, timezone('UTC', now()) - interval '2 days' FROM generate_series(1, 5) g;   -- five ties
               INSERT INTO "ConversationTrace"
               SELECT g, timezone('UTC', now()) - interval '1 day' FROM generate_series(6, 8) g;    -- three ties
               INSERT INTO "ConversationTrace" VALUES (9, timezone('UTC', now())), (10, NULL),
                                                      (11, timezone('UTC', now()) + interval '1 day');
               -- Mostly live rows, so that the run walks the index rather than the blocks.
               INSERT INTO "ConversationTrace"
               SELECT g, timezone('UTC', now()) + interval '1 hour' FROM generate_series(100, 199) g;
               SELECT retention.alter_policy('expired_traces', batch_size => 2);"#,
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('expired_traces')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 8);
        // Five ties at one time and three at another, batches of two: 2+2+1 and 2+1, each
        // preceded by the (empty) range before the ties, then the empty rest: 8 batches.
        assert_eq!(run.0["batches"], 8);
        let left = Spi::get_one::<String>(r#"SELECT string_agg(id::text, ',' ORDER BY id) FROM "ConversationTrace" WHERE id < 100"#).unwrap();
        assert_eq!(left.as_deref(), Some("9,10,11"));
    }

    #[pg_test]
    fn many_rows_with_one_timestamp_still_go_a_batch_at_a_time() {
        Spi::run(
            r#"CREATE TABLE "ConversationTrace" (id int PRIMARY KEY, "expiresAt" timestamp(3));
               CREATE INDEX ON "ConversationTrace" ("expiresAt");
               INSERT INTO "ConversationTrace" SELECT g, timezone('UTC', now()) - interval '1 day' FROM generate_series(1, 50) g;
               INSERT INTO "ConversationTrace" SELECT g, timezone('UTC', now()) - interval '2 days' FROM generate_series(51, 53) g;
               INSERT INTO "ConversationTrace" SELECT g, timezone('UTC', now()) + interval '1 day' FROM generate_series(100, 600) g;
               ANALYZE "ConversationTrace";
               SELECT retention.alter_policy('expired_traces', batch_size => 10);"#,
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('expired_traces')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 53);
        assert!(run.0["batches"].as_i64().unwrap() >= 6, "50 ties in batches of 10: {}", run.0);
        assert_eq!(count(r#"SELECT count(*) FROM "ConversationTrace""#), 501);
    }

    #[pg_test]
    fn large_backlogs_go_block_by_block_and_stay_inside_the_predicate() {
        Spi::run(
            r#"CREATE TABLE "ConversationTrace" (id int PRIMARY KEY, payload text, "expiresAt" timestamp(3));
               INSERT INTO "ConversationTrace"
               SELECT g, repeat('x', 200),
                      CASE WHEN g % 3 = 0 THEN NULL
                           WHEN g % 3 = 1 THEN timezone('UTC', now()) - g * interval '1 second'
                           ELSE timezone('UTC', now()) + interval '1 day' END
                 FROM generate_series(1, 3000) g;
               ANALYZE "ConversationTrace";
               SELECT retention.alter_policy('expired_traces', batch_size => 100);"#,
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('expired_traces')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 1000);
        assert!(run.0["batches"].as_i64().unwrap() >= 5, "{}", run.0);
        assert_eq!(count(r#"SELECT count(*) FROM "ConversationTrace" WHERE "expiresAt" IS NULL"#), 1000);
        assert_eq!(count(r#"SELECT count(*) FROM "ConversationTrace" WHERE "expiresAt" > timezone('UTC', now())"#), 1000);
        assert_eq!(count(r#"SELECT count(*) FROM "ConversationTrace""#), 2000);
    }

    /// Issue 10, item 2: a legacy inheritance parent has few blocks of its own; its children's
    /// rows lie in their own files. Block ranges sized from the parent left them behind.
    #[pg_test]
    fn inheritance_children_are_purged_with_their_parent() {
        Spi::run(
            r#"CREATE TABLE "AgentUsage" (id int, "timestamp" timestamp(6));
               CREATE TABLE "AgentUsage_2024" () INHERITS ("AgentUsage");
               INSERT INTO "AgentUsage" SELECT g, timezone('UTC', now()) - interval '200 days' FROM generate_series(1, 100) g;
               INSERT INTO "AgentUsage_2024" SELECT g, timezone('UTC', now()) - interval '300 days' FROM generate_series(1, 5000) g;
               INSERT INTO "AgentUsage_2024" SELECT g, timezone('UTC', now()) FROM generate_series(1, 10) g;
               ANALYZE "AgentUsage"; ANALYZE "AgentUsage_2024";
               SELECT retention.alter_policy('old_agent_usage', batch_size => 50);"#,
        )
        .unwrap();
        let preview = Spi::get_one::<JsonB>("SELECT retention.preview('old_agent_usage')").unwrap().unwrap();
        assert_eq!(preview.0["rows"], 5100);
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('old_agent_usage')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 5100, "{}", run.0);
        assert_eq!(count(r#"SELECT count(*) FROM "AgentUsage""#), 10);
    }

    /// Issue 11: a partition's bounds, printed by Postgres and read back to prove expiry, mean
    /// the same whatever the session's DateStyle and TimeZone. In a `SQL, DMY` session in
    /// Kolkata a timestamptz prints with the abbreviation IST, which Postgres reads back as
    /// Israel's +02 (3.5 hours off): bounds are printed in ISO for that. The partition that
    /// ended an hour before the cutoff goes whole, the next is purged by rows, and the rows at
    /// the cutoff and after it stay.
    #[pg_test]
    fn partition_bounds_prove_expiry_in_any_datestyle_and_time_zone() {
        Spi::run(
            r#"SET DateStyle = 'ISO, YMD'; SET TimeZone = 'Asia/Kolkata';
               CREATE TABLE "ConversationTrace" (id text, "expiresAt" timestamptz) PARTITION BY RANGE ("expiresAt");
               DO $$ BEGIN
                   EXECUTE format('CREATE TABLE trace_old PARTITION OF "ConversationTrace" FOR VALUES FROM (MINVALUE) TO (%L)',
                                  now() - interval '1 hour');
                   EXECUTE format('CREATE TABLE trace_now PARTITION OF "ConversationTrace" FOR VALUES FROM (%L) TO (MAXVALUE)',
                                  now() - interval '1 hour');
               END $$;
               INSERT INTO "ConversationTrace" VALUES ('a', now() - interval '2 days'), ('b', now() - interval '30 minutes'),
                   ('c', now()), ('d', now() + interval '1 day');
               SET DateStyle = 'SQL, DMY';"#,
        )
        .unwrap();
        let printed = Spi::get_one::<String>("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'trace_old'").unwrap().unwrap();
        assert!(printed.contains("IST"), "the session prints the abbreviation: {printed}");
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('expired_traces')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 2, "{}", run.0);
        assert_eq!(run.0["partitions"][0]["partition"], "public.trace_old", "{}", run.0);
        assert_eq!(run.0["partitions"][0]["action"], "dropped", "{}", run.0);
        assert_eq!(count("SELECT count(*) FROM pg_class WHERE relname = 'trace_old'"), 0);
        assert_eq!(count(r#"SELECT count(*) FROM "ConversationTrace""#), 2, "the rows at and after the cutoff stay");
    }

    /// Issue 10, item 16: a policy's max_rows_per_second spreads a run over time. Each batch
    /// starts only once the rows before it would have taken that long at that pace, so 3000
    /// rows at 3000 a second take at least what the batches before the last one hold (a
    /// batch is at most twice batch_size here: more than 0.7 s).
    #[pg_test]
    fn a_pace_limit_spreads_a_run_over_time() {
        Spi::run(
            r#"CREATE TABLE "AgentUsage" (id int, "timestamp" timestamp(6));
               INSERT INTO "AgentUsage" SELECT g, timezone('UTC', now()) - interval '200 days' FROM generate_series(1, 3000) g;
               SELECT retention.alter_policy('old_agent_usage', batch_size => 300, max_rows_per_second => 3000);"#,
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('old_agent_usage')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 3000);
        let took = run.0["duration_ms"].as_f64().unwrap();
        assert!(took >= 700.0, "3000 rows at 3000 a second took {took} ms: {}", run.0);
        let lifted = Spi::get_one::<bool>("SELECT (retention.alter_policy('old_agent_usage', max_rows_per_second => 0)).max_rows_per_second IS NULL");
        assert_eq!(lifted.unwrap(), Some(true));
    }

    /// Issue 10, item 17: oldest_age is how far past the cutoff the oldest row is, as
    /// documented: a row 100 days old under a 90-day policy is 10 days past it.
    #[pg_test]
    fn oldest_age_is_measured_from_the_cutoff() {
        Spi::run(
            r#"CREATE TABLE "AgentUsage" (id int, "timestamp" timestamp(6));
               INSERT INTO "AgentUsage" VALUES (1, timezone('UTC', now()) - interval '100 days'), (2, timezone('UTC', now()) - interval '95 days');"#,
        )
        .unwrap();
        let age = Spi::get_one::<String>("SELECT (retention.preview('old_agent_usage') ->> 'oldest_age')::interval::text").unwrap();
        assert_eq!(age.as_deref(), Some("10 days"));
        let backlog = Spi::get_one::<String>("SELECT oldest_backlog_age::text FROM retention.status WHERE policy = 'old_agent_usage'").unwrap();
        assert_eq!(backlog.as_deref(), Some("10 days"));
    }

    /// Issue 10, item 17: next_worker_run() is when the worker runs, which is the first instant
    /// the zone's wall clock reads run_at or later: on a night that skips 02:30 that is the
    /// change itself, and on a night that has 02:30 twice, the first.
    #[pg_test]
    fn a_slot_falls_when_the_worker_runs_it_across_daylight_saving_changes() {
        let utc = |slot: &str, zone: &str| -> String {
            let slot = chrono::NaiveDateTime::parse_from_str(slot, "%Y-%m-%d %H:%M").unwrap();
            let instant = crate::worker::slot_instant(slot, zone).unwrap();
            Spi::get_one_with_args::<String>("SELECT to_char(timezone('UTC', $1), 'YYYY-MM-DD HH24:MI')", &[instant.into()]).unwrap().unwrap()
        };
        assert_eq!(utc("2026-06-01 03:00", "Europe/Paris"), "2026-06-01 01:00");
        assert_eq!(utc("2026-03-29 02:30", "Europe/Paris"), "2026-03-29 01:00", "02:30 skipped: at 03:00 CEST");
        assert_eq!(utc("2026-10-25 02:30", "Europe/Paris"), "2026-10-25 00:30", "02:30 twice: the first, CEST");
        assert_eq!(utc("2026-10-04 02:15", "Australia/Lord_Howe"), "2026-10-03 15:30", "a 30-minute change");
    }

    /// Issue 10, item 12: a resumed run starts over blocks its earlier run emptied. Empty
    /// ranges must not grow the step until one range holds many batches' worth of rows.
    #[pg_test]
    fn block_batches_stay_near_batch_size_after_a_resume() {
        Spi::run(
            r#"CREATE TABLE "ConversationTrace" (id int PRIMARY KEY, payload text, "expiresAt" timestamp(3));
               INSERT INTO "ConversationTrace"
               SELECT g, repeat('x', 200), timezone('UTC', now()) - interval '1 day' FROM generate_series(1, 6000) g;
               -- What an interrupted earlier run deleted: the first two thirds of the table.
               DELETE FROM "ConversationTrace" WHERE id <= 4000;
               CREATE TABLE batch_sizes (n bigint);
               CREATE FUNCTION record_batch() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN INSERT INTO public.batch_sizes SELECT count(*) FROM gone; RETURN NULL; END $$;
               CREATE TRIGGER record_batch AFTER DELETE ON "ConversationTrace" REFERENCING OLD TABLE AS gone
                 FOR EACH STATEMENT EXECUTE FUNCTION record_batch();
               SELECT retention.alter_policy('expired_traces', batch_size => 100);"#,
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('expired_traces')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 2000);
        let largest = count("SELECT max(n) FROM batch_sizes");
        assert!(largest <= 150, "batches of about 100 rows, but one deleted {largest}");
    }

    #[pg_test]
    fn indexed_soft_delete_marks_each_row_once() {
        Spi::run(
            "CREATE TABLE recs (id int, created_at timestamptz, deleted_at timestamptz, deletion_reason text);
             CREATE INDEX ON recs (created_at);
             INSERT INTO recs SELECT g, now() - interval '100 days' - g * interval '1 second', NULL, NULL FROM generate_series(1, 7) g;
             INSERT INTO recs VALUES (8, now() - interval '200 days', '2020-01-01', 'manual'), (9, now(), NULL, NULL);
             INSERT INTO recs SELECT g, now(), NULL, NULL FROM generate_series(100, 199) g;
             SELECT retention.add_policy('recs', 'recs', 'created_at', 'older_than', interval '90 days', batch_size => 3,
                                         action => 'soft_delete', soft_delete_column => 'deleted_at',
                                         reason_column => 'deletion_reason')",
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('recs')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 7);
        assert_eq!(count("SELECT count(*) FROM recs WHERE deletion_reason = 'retention_policy' AND deleted_at = now()"), 7);
        assert_eq!(count("SELECT count(*) FROM recs WHERE deletion_reason = 'manual'"), 1);
        assert_eq!(count("SELECT count(*) FROM recs WHERE deleted_at IS NULL"), 101);
    }

    /// `retention_rls.run_sees_all()` is this backend's answer: in a parallel worker it is false,
    /// so a run's read split across workers would miss what `hide_expired` hides. Runs pin
    /// `max_parallel_workers_per_gather = 0`; this guards it with every parallel knob forced on
    /// the caller's side (a recordings fetch is the run's one plain SELECT without a limit).
    /// It passed before the pin too: no run read could be made to go parallel here.
    #[pg_test]
    fn a_run_on_a_hidden_table_sees_every_row_when_parallel_query_is_forced() {
        // Rows without a SID are marked with no request; the store must still be complete.
        let secret = std::env::temp_dir().join("pg_retention_parallel_test.secret");
        std::fs::write(&secret, "not-a-real-token").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        Spi::run_with_args(
            "INSERT INTO retention.stores (name, kind, endpoint, account_sid, secret_file)
             VALUES ('parallel', 'twilio', 'http://127.0.0.1:9', 'AC' || repeat('0', 32), $1)",
            &[secret.to_str().unwrap().into()],
        )
        .unwrap();
        // PostgreSQL 16 renamed force_parallel_mode to debug_parallel_query.
        Spi::run(
            "CREATE TABLE recs (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, sid text, deleted_at timestamptz);
             INSERT INTO recs SELECT g, now() - interval '100 days', NULL, NULL FROM generate_series(1, 40) g;
             INSERT INTO recs SELECT g, now(), NULL, NULL FROM generate_series(41, 50) g;
             SELECT retention.add_policy('recs', 'recs', 'created_at', 'older_than', interval '90 days',
                    action => 'twilio_recording', soft_delete_column => 'deleted_at', sid_column => 'sid',
                    id_column => 'id', missing_sid => 'mark', hide_expired => true, twilio_store => 'parallel');
             SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0;
             SET LOCAL min_parallel_table_scan_size = 0; SET LOCAL max_parallel_workers_per_gather = 2;
             SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
                                    THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END, 'on', true)",
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('recs')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 40, "{}", run.0);
    }

    #[pg_test]
    fn soft_delete_marks_rows_once() {
        Spi::run(
            "CREATE TABLE recs (id int, created_at timestamptz, deleted_at timestamptz, deletion_reason text);
             INSERT INTO recs VALUES (1, now() - interval '100 days', NULL, NULL),
                                     (2, now() - interval '10 days', NULL, NULL),
                                     (3, now() - interval '200 days', '2020-01-01', 'manual');
             SELECT retention.add_policy('recs', 'recs', 'created_at', 'older_than', interval '90 days',
                                         action => 'soft_delete', soft_delete_column => 'deleted_at',
                                         reason_column => 'deletion_reason')",
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('recs')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 1);
        assert_eq!(count("SELECT count(*) FROM recs"), 3);
        assert_eq!(
            count("SELECT count(*) FROM recs WHERE id = 1 AND deleted_at = now() AND deletion_reason = 'retention_policy'"),
            1
        );
        assert_eq!(count("SELECT count(*) FROM recs WHERE id = 3 AND deletion_reason = 'manual'"), 1);
    }

    /// Issue 10, item 1: a `timestamp without time zone` marker holds UTC, whatever the
    /// session's TimeZone (a psycopg session in Asia/Kolkata wrote local time).
    #[pg_test]
    fn a_naive_marker_column_gets_utc_in_any_session_time_zone() {
        Spi::run(
            "SET LOCAL TimeZone = 'Asia/Kolkata';
             CREATE TABLE recs (id int, created_at timestamptz, deleted_at timestamp, deletion_reason text);
             INSERT INTO recs VALUES (1, now() - interval '100 days', NULL, NULL);
             SELECT retention.add_policy('recs', 'recs', 'created_at', 'older_than', interval '90 days',
                                         action => 'soft_delete', soft_delete_column => 'deleted_at',
                                         reason_column => 'deletion_reason')",
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('recs')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 1);
        assert_eq!(count("SELECT count(*) FROM recs WHERE deleted_at = timezone('UTC', now())"), 1);
    }

    /// Issue 10, item 17: the cutoff is given in UTC with six fraction digits, whatever the
    /// session's TimeZone, so that Python 3.10's `datetime.fromisoformat` reads it.
    #[pg_test]
    fn the_cutoff_is_utc_with_six_fraction_digits() {
        traces();
        Spi::run("SET LOCAL TimeZone = 'Asia/Kolkata'").unwrap();
        for sql in ["SELECT retention.run_policy('expired_traces')", "SELECT retention.preview('expired_traces')"] {
            let result = Spi::get_one::<JsonB>(sql).unwrap().unwrap();
            let cutoff = result.0["cutoff"].as_str().unwrap().to_string();
            let shape = Spi::get_one_with_args::<bool>(
                "SELECT $1 ~ '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{6}\\+00:00$' AND $1::timestamptz = now()",
                &[cutoff.as_str().into()],
            )
            .unwrap();
            assert_eq!(shape, Some(true), "{sql}: {cutoff}");
        }
    }

    #[pg_test]
    fn injection_shaped_names_are_names() {
        Spi::run(
            r#"CREATE TABLE x (id int);
               INSERT INTO x VALUES (1);
               CREATE TABLE "Robert'); DROP TABLE x;--" ("at; DROP TABLE x" timestamptz);
               INSERT INTO "Robert'); DROP TABLE x;--" VALUES (now() - interval '2 days'), (now());
               SELECT retention.add_policy('bobby', 'Robert''); DROP TABLE x;--', 'at; DROP TABLE x',
                                           'older_than', interval '1 day')"#,
        )
        .unwrap();
        let run = Spi::get_one::<JsonB>("SELECT retention.run_policy('bobby')").unwrap().unwrap();
        assert_eq!(run.0["rows_deleted"], 1);
        assert_eq!(count("SELECT count(*) FROM x"), 1);
        assert_eq!(count(r#"SELECT count(*) FROM "Robert'); DROP TABLE x;--""#), 1);
    }

    #[pg_test]
    fn a_policy_can_be_pointed_at_another_table_with_plain_sql() {
        Spi::run(
            r#"CREATE SCHEMA app;
               CREATE TABLE app.traces (id int, expires timestamp(3));
               INSERT INTO app.traces VALUES (1, timezone('UTC', now()) - interval '1 hour'), (2, NULL);
               UPDATE retention.policies SET table_schema = 'app', table_name = 'traces', time_column = 'expires'
                WHERE name = 'expired_traces'"#,
        )
        .unwrap();
        assert_eq!(Spi::get_one::<i64>("SELECT cleanup_expired_traces()").unwrap(), Some(1));
    }

    #[pg_test]
    fn history_is_pruned_by_age_setting() {
        traces();
        Spi::run(
            "SET LOCAL pg_retention.history_retention_days = 10;
             INSERT INTO retention.runs (policy, trigger, mode, status, started_at)
             VALUES ('old', 'sql', 'transaction', 'succeeded', now() - interval '11 days'),
                    ('recent', 'sql', 'transaction', 'succeeded', now() - interval '9 days')",
        )
        .unwrap();
        Spi::run("SELECT cleanup_expired_traces()").unwrap();
        assert_eq!(count("SELECT count(*) FROM retention.runs WHERE policy = 'old'"), 0);
        assert_eq!(count("SELECT count(*) FROM retention.runs WHERE policy = 'recent'"), 1);
    }

    #[pg_test(error = "days must be between 1 and 36500, got 0")]
    fn zero_days_rejected() {
        Spi::run("SELECT cleanup_old_agent_usage(0)").unwrap();
    }

    #[pg_test(error = "days must be between 1 and 36500, got -1")]
    fn negative_days_rejected() {
        Spi::run("SELECT cleanup_old_agent_usage(-1)").unwrap();
    }

    #[pg_test(error = "days must be between 1 and 36500, got 2147483647")]
    fn overflowing_days_rejected() {
        Spi::run("SELECT cleanup_old_agent_usage(2147483647)").unwrap();
    }

    #[pg_test(error = "days must not be NULL; it must be a whole number of days between 1 and 36500")]
    fn null_days_rejected() {
        Spi::run("SELECT cleanup_old_agent_usage(NULL)").unwrap();
    }

    // A policy of its own: another test running expired_traces at the same time holds that
    // policy's lock, and a run that finds it held is skipped before it looks for the table.
    #[pg_test(error = "retention policy \"vanished\": table public.\"Vanished\" does not exist")]
    fn missing_table_named() {
        Spi::run(
            r#"CREATE TABLE "Vanished" (at timestamptz);
               SELECT retention.add_policy('vanished', 'Vanished', 'at', 'older_than', interval '1 day');
               DROP TABLE "Vanished";"#,
        )
        .unwrap();
        Spi::run("SELECT retention.run_policy('vanished')").unwrap();
    }

    #[pg_test(error = "retention policy \"t\": column \"gone\" does not exist in table public.t")]
    fn missing_column_named() {
        Spi::run("CREATE TABLE t (at timestamptz); SELECT retention.add_policy('t', 't', 'gone', 'expires_at')").unwrap();
    }

    #[pg_test(error = "retention policy \"t\": column \"at\" of table public.t has type text, but a time column must be timestamp, timestamptz or date")]
    fn wrong_column_type_named() {
        Spi::run("CREATE TABLE t (at text); SELECT retention.add_policy('t', 't', 'at', 'expires_at')").unwrap();
    }

    #[pg_test(error = "retention policy \"t\": retain must be a positive interval of at most 36500 days, got '00:00:00'")]
    fn zero_interval_rejected() {
        Spi::run("CREATE TABLE t (at timestamptz); SELECT retention.add_policy('t', 't', 'at', 'older_than', interval '0')").unwrap();
    }

    /// Issue 10, item 3: `interval '-1 year 361 days' > '0'` is true, yet now() minus
    /// it is in the future; a run with it must refuse, not delete rows of the coming hours.
    /// A policy of its own, as in `missing_table_named`: a preset's run is skipped while another
    /// test holds that policy's lock.
    #[pg_test(error = "retention policy \"future\": retain must put the cutoff before now, but now minus '-1 years +361 days' is in the future")]
    fn an_interval_that_reaches_into_the_future_is_refused() {
        Spi::run(
            r#"CREATE TABLE "Future" (id int, "timestamp" timestamp(3));
               INSERT INTO "Future" VALUES (1, timezone('UTC', now()) + interval '12 hours');
               SELECT retention.add_policy('future', 'Future', 'timestamp', 'older_than', interval '90 days');"#,
        )
        .unwrap();
        Spi::run("SELECT retention.run_policy('future', interval '-1 year 361 days')").unwrap();
    }

    #[pg_test(error = "retention policy \"t\": retain must put the cutoff before now, but now minus '-1 years +361 days' is in the future")]
    fn a_policy_whose_interval_reaches_into_the_future_is_refused() {
        Spi::run(
            "CREATE TABLE t (at timestamptz);
             SELECT retention.add_policy('t', 't', 'at', 'older_than', interval '-1 year 361 days')",
        )
        .unwrap();
    }

    /// Issue 10, item 4: one NULL key made every recordings run fail after its DELETEs were
    /// sent. A key column that can be NULL is refused when the policy is written (and at runs).
    #[pg_test(error = "retention policy \"recs\": id_column \"id\" of table public.recs can be NULL, but the key of a recordings policy must be NOT NULL")]
    fn a_nullable_recordings_key_is_refused() {
        Spi::run(
            "CREATE TABLE recs (id bigint, created_at timestamptz, sid text, deleted_at timestamptz);
             SELECT retention.add_policy('recs', 'recs', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at',
                                         sid_column => 'sid', id_column => 'id')",
        )
        .unwrap();
    }

    #[pg_test(error = "retention policy \"t\": batch_size must be between 1 and 1000000, got -5")]
    fn negative_batch_size_rejected() {
        Spi::run("CREATE TABLE t (at timestamptz); SELECT retention.add_policy('t', 't', 'at', 'expires_at', batch_size => -5)").unwrap();
    }

    #[pg_test(error = "retention policy \"nope\" does not exist")]
    fn unknown_policy_named() {
        Spi::run("SELECT retention.run_policy('nope')").unwrap();
    }

    #[pg_test(error = "retention policy \"v\": public.v is not a table")]
    fn a_view_is_refused() {
        Spi::run("CREATE VIEW v AS SELECT now() AS at; SELECT retention.add_policy('v', 'v', 'at', 'expires_at')").unwrap();
    }

    #[pg_test(error = "retention policy \"expired_traces\" uses rule expires_at, which takes no retain interval")]
    fn retain_on_expires_at_refused() {
        traces();
        Spi::run("SELECT retention.run_policy('expired_traces', interval '1 day')").unwrap();
    }
}
