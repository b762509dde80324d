//! Partitioned tables across sessions: a partition another session holds is purged by rows
//! instead of waited for; removed rows are counted from the statistics only when ANALYZE saw
//! them all; and a policy on a pg_partman parent removes expired children while pg_partman
//! keeps making new ones.

use std::time::{Duration, Instant};

use postgres::Client;
use serde_json::Value;

use pg_retention_it::{connect, count, reconnect, wait_for};

/// `name` range-partitioned on `at` (timestamptz) by year: 2019 and 2020 wholly expired (100
/// rows each), `later` from 2021 on (10 expired rows, 10 live), autovacuum off so that only
/// the test analyzes.
fn yearly_table(client: &mut Client, name: &str) {
    dropped_detached(client, name);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name};
             DELETE FROM retention.policies WHERE name = '{name}';
             CREATE TABLE {name} (id int, at timestamptz) PARTITION BY RANGE (at);
             CREATE TABLE {name}_2019 PARTITION OF {name} FOR VALUES FROM ('2019-01-01 00:00+00') TO ('2020-01-01 00:00+00') WITH (autovacuum_enabled = off);
             CREATE TABLE {name}_2020 PARTITION OF {name} FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2021-01-01 00:00+00') WITH (autovacuum_enabled = off);
             CREATE TABLE {name}_later PARTITION OF {name} FOR VALUES FROM ('2021-01-01 00:00+00') TO (MAXVALUE) WITH (autovacuum_enabled = off);
             CREATE INDEX ON {name} (at);
             INSERT INTO {name} SELECT g, '2019-01-01 00:00+00'::timestamptz + g * interval '1 day' FROM generate_series(1, 100) g;
             INSERT INTO {name} SELECT g, '2020-01-01 00:00+00'::timestamptz + g * interval '1 day' FROM generate_series(101, 200) g;
             INSERT INTO {name} SELECT g, now() - interval '1 day' + (g % 2) * interval '2 days' FROM generate_series(201, 220) g;
             SELECT retention.add_policy('{name}', '{name}', 'at', 'expires_at');"
        ))
        .unwrap();
}

/// Waits until the dropper has dropped every partition the policy's batched runs detached.
fn dropped_detached(client: &mut Client, policy: &str) {
    let left = format!("SELECT count(*) FROM retention.detached_partitions WHERE policy = '{policy}'");
    assert!(wait_for(Duration::from_secs(30), || count(client, &left) == 0), "the dropper dropped what {policy} detached");
}

/// The partitions entry of the policy's last run.
fn last_partitions(client: &mut Client, policy: &str) -> Vec<Value> {
    let details: String = client
        .query_one("SELECT details::text FROM retention.runs WHERE policy = $1 ORDER BY id DESC LIMIT 1", &[&policy])
        .unwrap()
        .get(0);
    let details: Value = serde_json::from_str(&details).unwrap();
    details["partitions"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_partition_another_session_holds_is_purged_by_rows_not_waited_for() {
    let mut setup = connect();
    yearly_table(&mut setup, "it_part_locked");
    // One session reads 2019 alone (a lock on it, not on the parent); another holds the parent
    // and with it every partition, as a long report over the whole table would.
    let mut reader = connect();
    reader.batch_execute("BEGIN; SELECT count(*) FROM it_part_locked_2019;").unwrap();

    let mut runner = connect();
    runner.batch_execute("SET pg_retention.partition_lock_timeout = '300ms'").unwrap();
    let started = Instant::now();
    runner.batch_execute("CALL retention.run_batched('it_part_locked')").unwrap();
    let took = started.elapsed();
    reader.batch_execute("COMMIT").unwrap();

    let partitions = last_partitions(&mut setup, "it_part_locked");
    assert_eq!(partitions.len(), 2, "{partitions:?}");
    let by_name = |name: &str| partitions.iter().find(|p| p["partition"] == name).cloned().unwrap_or_default();
    assert_eq!(by_name("public.it_part_locked_2019")["action"], "rows", "{partitions:?}");
    assert!(by_name("public.it_part_locked_2019")["reason"].as_str().unwrap_or("").contains("partition_lock_timeout"), "{partitions:?}");
    assert_eq!(by_name("public.it_part_locked_2020")["action"], "dropped", "{partitions:?}");
    assert!(took < Duration::from_secs(3), "the run waited {took:?} for a lock");
    assert_eq!(count(&mut setup, "SELECT count(*) FROM it_part_locked WHERE at < now()"), 0, "every expired row gone");
    assert_eq!(count(&mut setup, "SELECT count(*) FROM it_part_locked"), 10, "every live row kept");
    assert_eq!(count(&mut setup, "SELECT rows_deleted FROM retention.runs WHERE policy = 'it_part_locked' ORDER BY id DESC LIMIT 1"), 210);
    assert_eq!(count(&mut setup, "SELECT count(*) FROM pg_class WHERE relname = 'it_part_locked_2019'"), 1, "kept, emptied");
    dropped_detached(&mut setup, "it_part_locked");
    assert_eq!(count(&mut setup, "SELECT count(*) FROM pg_class WHERE relname = 'it_part_locked_2020'"), 0, "detached, then dropped");

    // The parent held (a long query over the whole table): nothing is dropped, nothing waits.
    yearly_table(&mut setup, "it_part_locked");
    reader.batch_execute("BEGIN; SELECT count(*) FROM it_part_locked;").unwrap();
    let started = Instant::now();
    runner.batch_execute("CALL retention.run_batched('it_part_locked')").unwrap();
    let took = started.elapsed();
    reader.batch_execute("COMMIT").unwrap();
    let partitions = last_partitions(&mut setup, "it_part_locked");
    assert!(partitions.iter().all(|p| p["action"] == "rows"), "{partitions:?}");
    assert!(took < Duration::from_secs(3), "the run waited {took:?} for a lock");
    assert_eq!(count(&mut setup, "SELECT count(*) FROM it_part_locked"), 10);
    dropped_detached(&mut setup, "it_part_locked");
    setup.batch_execute("DROP TABLE it_part_locked; SELECT retention.drop_policy('it_part_locked');").unwrap();
}

#[test]
fn removed_rows_are_counted_from_statistics_only_when_analyze_saw_every_row() {
    let mut setup = connect();
    yearly_table(&mut setup, "it_part_counted");
    // A session's table statistics reach the server when it ends: these inserts are then
    // counted before ANALYZE, which sees them all.
    drop(setup);
    let mut setup = connect();
    setup.batch_execute("ANALYZE it_part_counted_2019").unwrap();
    // Rows ANALYZE did not see: 2019's count would be short by them, so it is counted exactly.
    let mut writer = connect();
    writer.batch_execute("INSERT INTO it_part_counted VALUES (0, '2019-06-01 00:00+00')").unwrap();
    drop(writer);
    let analyzed_again = |c: &mut Client| count(c, "SELECT pg_stat_get_mod_since_analyze('it_part_counted_2019'::regclass)");
    assert!(wait_for(Duration::from_secs(10), || analyzed_again(&mut setup) == 1), "the insert reached the statistics");
    setup.batch_execute("CALL retention.run_batched('it_part_counted')").unwrap();
    let partitions = last_partitions(&mut setup, "it_part_counted");
    let by_name = |name: &str| partitions.iter().find(|p| p["partition"] == name).cloned().unwrap_or_default();
    assert_eq!(by_name("public.it_part_counted_2019")["rows"], 101, "{partitions:?}");
    assert_eq!(by_name("public.it_part_counted_2019")["counted"], "exact", "{partitions:?}");
    assert_eq!(by_name("public.it_part_counted_2020")["counted"], "exact", "never analyzed: {partitions:?}");

    // Analyzed after its last write: the statistics, exact here, and no read of the rows.
    yearly_table(&mut setup, "it_part_counted");
    drop(setup);
    let mut setup = connect();
    setup.batch_execute("ANALYZE it_part_counted_2019").unwrap();
    setup.batch_execute("CALL retention.run_batched('it_part_counted')").unwrap();
    let partitions = last_partitions(&mut setup, "it_part_counted");
    let by_name = |name: &str| partitions.iter().find(|p| p["partition"] == name).cloned().unwrap_or_default();
    assert_eq!(by_name("public.it_part_counted_2019")["rows"], 100, "{partitions:?}");
    assert_eq!(by_name("public.it_part_counted_2019")["counted"], "statistics", "{partitions:?}");
    assert_eq!(count(&mut setup, "SELECT rows_deleted FROM retention.runs WHERE policy = 'it_part_counted' ORDER BY id DESC LIMIT 1"), 210);
    dropped_detached(&mut setup, "it_part_counted");
    setup.batch_execute("DROP TABLE it_part_counted; SELECT retention.drop_policy('it_part_counted');").unwrap();
}

#[test]
fn a_policy_on_a_pg_partman_parent_drops_expired_children_and_partman_goes_on() {
    let mut client = connect();
    let available = count(&mut client, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'");
    assert_eq!(available, 1, "pg_partman is not installed: .ci/setup.sh installs postgresql-N-partman");
    client.batch_execute("CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman").unwrap();
    // Each major's Debian has its own pg_partman: 4.7 (bookworm) wants the partitioning kind
    // and reads 'daily'; 5.x (trixie, sid) knows only range/list and core interval values.
    let partman_4: bool = client.query_one("SELECT extversion LIKE '4.%' FROM pg_extension WHERE extname = 'pg_partman'", &[]).unwrap().get(0);
    let (kind, interval) = if partman_4 { ("p_type := 'native', ", "daily") } else { ("", "1 day") };
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS it_partman CASCADE;
             DELETE FROM retention.policies WHERE name = 'it_partman';
             DELETE FROM partman.part_config WHERE parent_table = 'public.it_partman';
             DROP TABLE IF EXISTS partman.template_public_it_partman;
             CREATE TABLE it_partman (id bigint, \"expiresAt\" timestamptz NOT NULL) PARTITION BY RANGE (\"expiresAt\");
             CREATE INDEX ON it_partman (\"expiresAt\");
             SELECT partman.create_parent(p_parent_table := 'public.it_partman', p_control := 'expiresAt', {kind}
                                          p_interval := '{interval}', p_premake := 3,
                                          p_start_partition := (now() - interval '10 days')::text);
             INSERT INTO it_partman SELECT g, now() - interval '9 days' + g * interval '1 hour' FROM generate_series(1, 240) g;",
        ))
        .unwrap();
    let children = |c: &mut Client| count(c, "SELECT count(*) FROM partman.show_partitions('public.it_partman')");
    let before = children(&mut client);
    let expired = count(&mut client, "SELECT count(*) FROM it_partman WHERE \"expiresAt\" < now()");
    let live = count(&mut client, "SELECT count(*) FROM it_partman WHERE \"expiresAt\" >= now()");
    client.batch_execute("SELECT retention.add_policy('it_partman', 'it_partman', 'expiresAt', 'expires_at')").unwrap();
    client.batch_execute("CALL retention.run_batched('it_partman')").unwrap();

    let partitions = last_partitions(&mut client, "it_partman");
    let dropped = partitions.iter().filter(|p| p["action"] == "dropped").count() as i64;
    assert!(dropped >= 9, "the wholly expired days go whole: {partitions:?}");
    assert_eq!(children(&mut client), before - dropped, "partman's view of the set follows");
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_partman WHERE \"expiresAt\" < now()"), 0);
    assert!(count(&mut client, "SELECT count(*) FROM it_partman") >= live, "every live row kept");
    assert!(
        count(&mut client, "SELECT rows_deleted FROM retention.runs WHERE policy = 'it_partman' ORDER BY id DESC LIMIT 1") >= expired,
        "rows_deleted counts every expired row"
    );

    // pg_partman's maintenance goes on: it keeps its premade days ahead, and new rows land.
    client
        .batch_execute(
            "UPDATE partman.part_config SET premake = 5 WHERE parent_table = 'public.it_partman';
             SELECT partman.run_maintenance('public.it_partman');
             INSERT INTO it_partman VALUES (-1, now() + interval '4 days');",
        )
        .unwrap();
    assert!(children(&mut client) >= before - dropped + 2, "more days premade after the run");
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_partman_default"), 0, "the new row found its day");
    dropped_detached(&mut client, "it_partman");
    client
        .batch_execute(
            "SELECT retention.drop_policy('it_partman');
             DROP TABLE it_partman CASCADE;
             DELETE FROM partman.part_config WHERE parent_table = 'public.it_partman';
             DROP TABLE IF EXISTS partman.template_public_it_partman;",
        )
        .unwrap();
}

#[test]
fn what_a_crash_left_detached_is_dropped_by_the_next_run_and_nothing_else_is() {
    let mut client = connect();
    // As crashes leave them: a partition detached by a run of it_any that died before counting
    // it (not ready); one counted, whose dropper never ran (ready); a ready one renamed since
    // (not dropped); and another policy's, not ready (its run may still be counting it).
    client
        .batch_execute(
            "DROP TABLE IF EXISTS it_uncounted, it_counted, it_renamed, it_kept_name, it_others, it_any;
             DELETE FROM retention.policies WHERE name = 'it_any';
             CREATE TABLE it_uncounted (id int);
             CREATE TABLE it_counted (id int);
             CREATE TABLE it_renamed (id int);
             CREATE TABLE it_others (id int);
             INSERT INTO retention.detached_partitions (relid, name, policy, ready)
             VALUES ('it_uncounted'::regclass, 'public.it_uncounted', 'it_any', false),
                    ('it_counted'::regclass, 'public.it_counted', 'gone', true),
                    ('it_renamed'::regclass, 'public.it_renamed', 'gone', true),
                    ('it_others'::regclass, 'public.it_others', 'someone_else', false);
             ALTER TABLE it_renamed RENAME TO it_kept_name;
             CREATE TABLE it_any (id int, at timestamptz);
             SELECT retention.add_policy('it_any', 'it_any', 'at', 'expires_at');",
        )
        .unwrap();
    client.batch_execute("SELECT retention.run_policy('it_any')").unwrap();
    let exists = |c: &mut Client, name: &str| count(c, &format!("SELECT count(*) FROM pg_class WHERE relname = '{name}'")) == 1;
    assert!(!exists(&mut client, "it_uncounted"), "the policy's own leftover dropped");
    assert!(!exists(&mut client, "it_counted"), "a counted leftover dropped");
    assert!(exists(&mut client, "it_kept_name"), "a renamed table kept");
    assert!(exists(&mut client, "it_others"), "another policy's uncounted partition left to it");
    let notes = "SELECT count(*) FROM retention.detached_partitions WHERE policy IN ('it_any', 'gone', 'someone_else')";
    assert_eq!(count(&mut client, notes), 1, "only that note left");

    // No ordinary role can add a note (and so have a table dropped).
    client
        .batch_execute("DROP ROLE IF EXISTS it_mallory; CREATE ROLE it_mallory; GRANT USAGE ON SCHEMA retention TO it_mallory;")
        .unwrap();
    let denied = client.batch_execute(
        "SET ROLE it_mallory; INSERT INTO retention.detached_partitions (relid, name, policy, ready) VALUES ('it_kept_name'::regclass, 'public.it_kept_name', 'x', true)",
    );
    assert!(denied.unwrap_err().as_db_error().is_some_and(|e| e.message().contains("permission denied")));
    client
        .batch_execute(
            "RESET ROLE; REVOKE USAGE ON SCHEMA retention FROM it_mallory; DROP ROLE it_mallory;
             DELETE FROM retention.detached_partitions WHERE policy = 'someone_else';
             SELECT retention.drop_policy('it_any'); DROP TABLE it_any, it_kept_name, it_others;",
        )
        .unwrap();
}

#[test]
fn the_dropper_starts_once_the_run_is_over_not_while_it_goes_on() {
    let mut setup = connect();
    yearly_table(&mut setup, "it_part_after");
    // 200 rows counted from the removed partitions, then the 10 expired rows of `later` one a
    // batch at 50 rows/s: the run paces itself for four seconds after it counted them.
    setup.batch_execute("SELECT retention.alter_policy('it_part_after', batch_size => 1, max_rows_per_second => 50)").unwrap();
    let runner = std::thread::spawn(|| connect().batch_execute("CALL retention.run_batched('it_part_after')").unwrap());

    let counted = "SELECT count(*) FROM retention.runs WHERE policy = 'it_part_after' AND status = 'running' AND rows_deleted >= 200";
    assert!(wait_for(Duration::from_secs(10), || count(&mut setup, counted) == 1), "the run detached and counted both partitions");
    std::thread::sleep(Duration::from_secs(1));
    let running = "SELECT count(*) FROM retention.runs WHERE policy = 'it_part_after' AND status = 'running'";
    assert_eq!(count(&mut setup, running), 1, "the run is still pacing its row batches");
    let detached = "SELECT count(*) FROM pg_class WHERE relname IN ('it_part_after_2019', 'it_part_after_2020')";
    assert_eq!(count(&mut setup, detached), 2, "nothing dropped while the run goes on");
    let ready = "SELECT count(*) FROM retention.detached_partitions WHERE policy = 'it_part_after' AND ready";
    assert_eq!(count(&mut setup, ready), 2, "both noted for the dropper, counted");
    assert_eq!(count(&mut setup, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_retention dropper'"), 0, "no dropper yet");

    runner.join().unwrap();
    dropped_detached(&mut setup, "it_part_after");
    assert_eq!(count(&mut setup, detached), 0, "dropped after the run");
    assert_eq!(count(&mut setup, "SELECT rows_deleted FROM retention.runs WHERE policy = 'it_part_after' ORDER BY id DESC LIMIT 1"), 210);
    assert_eq!(count(&mut setup, "SELECT count(*) FROM it_part_after"), 10, "every live row kept");
}

/// The pid of the session running a batched run of `policy`, once it waits for a lock.
fn run_waiting_for_a_lock(client: &mut Client, policy: &str) -> i32 {
    let waiting = format!(
        "SELECT r.pid FROM retention.runs r JOIN pg_stat_activity a ON a.pid = r.pid
          WHERE r.policy = '{policy}' AND r.status = 'running' AND a.wait_event_type = 'Lock'"
    );
    let mut pid = None;
    assert!(
        wait_for(Duration::from_secs(15), || {
            pid = client.query_opt(&waiting, &[]).unwrap().map(|row| row.get(0));
            pid.is_some()
        }),
        "the run of {policy} waits for a lock"
    );
    pid.unwrap()
}

/// Issue 22, item 3: a crash between the commit that detaches a run's expired partitions and
/// the one that counts their rows. The next run counts them as its own, so every removed row
/// is counted by a run and its ledger entry.
#[test]
fn rows_detached_by_a_run_that_crashed_before_counting_them_are_counted_by_the_next() {
    let mut setup = connect();
    yearly_table(&mut setup, "it_part_crash");
    // A reader holds 2019, so the run waits for its lock; a second session queues an ACCESS
    // EXCLUSIVE lock on it behind the run's, and gets it once the run has detached it and
    // committed: the run's count of 2019 then waits, and the server crashes there.
    let mut reader = connect();
    reader.batch_execute("BEGIN; SELECT count(*) FROM it_part_crash_2019;").unwrap();
    let runner = std::thread::spawn(|| {
        let mut client = connect();
        client.batch_execute("SET pg_retention.partition_lock_timeout = '60s'").unwrap();
        let _ = client.batch_execute("CALL retention.run_batched('it_part_crash')");
    });
    let run_pid = run_waiting_for_a_lock(&mut setup, "it_part_crash");
    let blocker = std::thread::spawn(|| {
        let mut client = connect();
        let _ = client.batch_execute("BEGIN; LOCK TABLE it_part_crash_2019 IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);");
    });
    let queued = "SELECT count(*) FROM pg_locks WHERE relation = 'it_part_crash_2019'::regclass AND mode = 'AccessExclusiveLock' AND NOT granted";
    assert!(wait_for(Duration::from_secs(10), || count(&mut setup, queued) == 2), "the run and the blocker both wait for 2019");
    reader.batch_execute("COMMIT").unwrap();
    let uncounted = "SELECT count(*) FROM retention.detached_partitions WHERE policy = 'it_part_crash' AND NOT ready";
    assert!(wait_for(Duration::from_secs(10), || count(&mut setup, uncounted) == 2), "both partitions detached, not yet counted");
    assert_eq!(run_waiting_for_a_lock(&mut setup, "it_part_crash"), run_pid, "the run waits to count 2019");
    assert!(std::process::Command::new("kill").args(["-9", &run_pid.to_string()]).status().unwrap().success());
    drop((setup, reader));
    let _ = (runner.join(), blocker.join());

    let mut client = reconnect();
    assert_eq!(count(&mut client, "SELECT count(*) FROM pg_class WHERE relname IN ('it_part_crash_2019', 'it_part_crash_2020')"), 2, "detached, kept by the crash");
    client.batch_execute("CALL retention.run_batched('it_part_crash')").unwrap();
    let runs: Vec<(String, i64)> = client
        .query("SELECT status, rows_deleted FROM retention.runs WHERE policy = 'it_part_crash' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(runs, vec![("interrupted".to_string(), 0), ("succeeded".to_string(), 210)], "the next run counts what the crashed one detached");
    let partitions = last_partitions(&mut client, "it_part_crash");
    let recovered: Vec<&Value> = partitions.iter().filter(|p| p["detached_by_run"].is_i64()).collect();
    assert_eq!(recovered.len(), 2, "{partitions:?}");
    assert!(recovered.iter().all(|p| p["rows"] == 100 && p["counted"] == "exact" && p["action"] == "dropped"), "{partitions:?}");
    client.batch_execute("SELECT retention.verify_ledger()").unwrap();
    let ledger_rows = "SELECT sum((entry->>'rows')::bigint)::bigint FROM retention.ledger WHERE entry->>'policy' = 'it_part_crash'";
    assert_eq!(count(&mut client, ledger_rows), 210, "the ledger counts every removed row once");
    dropped_detached(&mut client, "it_part_crash");
    assert_eq!(count(&mut client, "SELECT count(*) FROM pg_class WHERE relname IN ('it_part_crash_2019', 'it_part_crash_2020')"), 0);
    client.batch_execute("DROP TABLE it_part_crash; SELECT retention.drop_policy('it_part_crash');").unwrap();
}

/// Issue 22, item 12: an ON DELETE trigger created (and committed) on a partition while the run
/// waits for that partition's lock is seen under the lock: the partition's rows are deleted by
/// row, through the trigger, not dropped past it.
#[test]
fn an_on_delete_trigger_added_while_the_run_waits_for_the_lock_is_honoured() {
    let mut setup = connect();
    yearly_table(&mut setup, "it_part_trig");
    setup
        .batch_execute(
            "DROP TABLE IF EXISTS it_part_trig_saw; CREATE TABLE it_part_trig_saw (id int);
             CREATE OR REPLACE FUNCTION it_part_trig_audit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO public.it_part_trig_saw VALUES (OLD.id); RETURN OLD; END $$;",
        )
        .unwrap();
    let mut owner = connect();
    owner
        .batch_execute("BEGIN; CREATE TRIGGER audit BEFORE DELETE ON it_part_trig_2019 FOR EACH ROW EXECUTE FUNCTION it_part_trig_audit();")
        .unwrap();
    let runner = std::thread::spawn(|| {
        let mut client = connect();
        client.batch_execute("SET pg_retention.partition_lock_timeout = '60s'").unwrap();
        client.batch_execute("CALL retention.run_batched('it_part_trig')").unwrap();
    });
    run_waiting_for_a_lock(&mut setup, "it_part_trig");
    owner.batch_execute("COMMIT").unwrap();
    runner.join().unwrap();

    let partitions = last_partitions(&mut setup, "it_part_trig");
    let by_name = |name: &str| partitions.iter().find(|p| p["partition"] == name).cloned().unwrap_or_default();
    assert_eq!(by_name("public.it_part_trig_2019")["action"], "rows", "{partitions:?}");
    assert!(by_name("public.it_part_trig_2019")["reason"].as_str().unwrap_or("").contains("ON DELETE trigger"), "{partitions:?}");
    assert_eq!(count(&mut setup, "SELECT count(*) FROM it_part_trig_saw"), 100, "the trigger saw every row of 2019 go");
    assert_eq!(count(&mut setup, "SELECT count(*) FROM it_part_trig WHERE at < now()"), 0, "every expired row gone");
    dropped_detached(&mut setup, "it_part_trig");
    setup
        .batch_execute("DROP TABLE it_part_trig, it_part_trig_saw; DROP FUNCTION it_part_trig_audit(); SELECT retention.drop_policy('it_part_trig');")
        .unwrap();
}
