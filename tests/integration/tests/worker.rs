//! The background worker against a real server: run now, run at `run_at`, settings reloaded
//! on SIGHUP, prompt exit on SIGTERM mid-run, restart after a crash, one failing policy not
//! stopping the others, and a standby that runs nothing. Issue 26: between runs only the
//! launcher holds a background worker slot; a database's worker is started for a pass (due,
//! or asked for by `run_worker_now()`, which returns its pid) and exits after it.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use fake_twilio::FakeTwilio;
use pg_retention_it::{as_server_owner, connect, count, server_log, OtherCluster, pg_bin, drop_owned_table, owned_by_ordinary_role_with_witness, secret_file, table_with_policy, wait_event_named, wait_for};
use postgres::Client;

use pg_retention_it::server_processes;

/// ALTER SYSTEM each setting, reload, and wait until this session sees the change.
fn set_system(client: &mut Client, settings: &[(&str, &str)]) {
    for (name, value) in settings {
        client.batch_execute(&format!("ALTER SYSTEM SET {name} = '{value}'")).unwrap();
    }
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    for (name, value) in settings {
        assert!(wait_for(Duration::from_secs(10), || {
            let mut fresh = connect();
            fresh.query_one(&format!("SELECT current_setting('{name}')"), &[]).unwrap().get::<_, String>(0) == *value
        }));
    }
    thread::sleep(Duration::from_millis(300)); // the worker reloads on its own latch
}

fn reset_system(client: &mut Client) {
    for name in [
        "pg_retention.worker_enabled", "pg_retention.run_at", "pg_retention.twilio_account_sid",
        "pg_retention.twilio_secret_file", "pg_retention.twilio_base_url", "pg_retention.twilio_concurrency",
        "pg_retention.worker_lock_timeout", "pg_retention.database",
    ] {
        client.batch_execute(&format!("ALTER SYSTEM RESET {name}")).unwrap();
    }
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
}

fn worker_pid(client: &mut Client) -> Option<i32> {
    client
        .query_opt("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_retention worker'", &[])
        .unwrap()
        .map(|r| r.get(0))
}

/// The passes the launcher has started in `database` so far, as the server log says.
fn passes(database: &str) -> usize {
    server_log().matches(&format!("pg_retention worker: started for database \"{database}\"")).count()
}

fn current_database(client: &mut Client) -> String {
    client.query_one("SELECT current_database()::text", &[]).unwrap().get(0)
}

/// The pg_retention processes (launcher and workers) that hold a background worker slot now.
fn retention_processes(client: &mut Client) -> i64 {
    count(client, "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('pg_retention launcher', 'pg_retention worker')")
}

/// Issue 26: with the worker on for two databases, between runs only the launcher holds a
/// background worker slot, waiting as `RetentionLauncherMain` on 17 and later (where an
/// extension names its own wait events), as the shared `Extension` on 15 and 16; each database's
/// pass came and went. Issue 23 for the name of the wait.
#[test]
fn between_runs_only_the_launcher_holds_a_slot() {
    let mut client = connect();
    let here = current_database(&mut client);
    let mut other = pg_retention_it::fresh_database("it_slots_between");
    other.batch_execute("CREATE EXTENSION pg_retention").unwrap();
    let before = (passes(&here), passes("it_slots_between"));
    set_system(
        &mut client,
        &[("pg_retention.database", &format!("{here}, it_slots_between")), ("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")],
    );
    // Each database's first pass (a baseline, nothing due) starts and ends.
    assert!(wait_for(Duration::from_secs(15), || passes(&here) > before.0 && passes("it_slots_between") > before.1), "a pass in each database");
    assert!(
        wait_for(Duration::from_secs(15), || {
            (0..10).all(|_| {
                thread::sleep(Duration::from_millis(100));
                retention_processes(&mut client) == 1
            })
        }),
        "one slot between runs: the launcher's"
    );
    let expected = wait_event_named("RetentionLauncherMain");
    let waiting = count(
        &mut client,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_retention launcher' AND wait_event = '{expected}'"),
    );
    assert_eq!(waiting, 1, "the launcher waits as {expected}");
    drop(other);
    reset_system(&mut client);
    client.batch_execute("DROP DATABASE it_slots_between WITH (FORCE)").unwrap();
}

/// Only the named policies stay enabled: the worker runs every enabled policy of the database.
fn only_enable(client: &mut Client, prefix: &str) {
    client
        .batch_execute(&format!("UPDATE retention.policies SET enabled = (name LIKE '{prefix}%')"))
        .unwrap();
}

fn worker_runs(client: &mut Client, policy: &str, status: &str) -> i64 {
    count(
        client,
        &format!("SELECT count(*) FROM retention.runs WHERE policy = '{policy}' AND trigger = 'worker' AND status = '{status}'"),
    )
}

/// A fake Twilio and the worker pointed at it (ALTER SYSTEM), with a recordings table `name`
/// of `rows` rows a hundred days old, their recordings at the fake, and a policy of the same
/// name in batches of `batch_size`, the only one enabled.
fn worker_with_recordings(client: &mut Client, account: &str, name: &str, rows: u32, batch_size: i32) -> FakeTwilio {
    let fake = FakeTwilio::start(account, vec![(account.into(), "tok".into())]);
    let secret = secret_file(&format!("{name}.secret"), "tok");
    set_system(
        client,
        &[
            ("pg_retention.worker_enabled", "on"),
            ("pg_retention.run_at", "03:00"),
            ("pg_retention.twilio_account_sid", account),
            ("pg_retention.twilio_secret_file", &secret),
            ("pg_retention.twilio_base_url", &fake.base_url()),
            ("pg_retention.twilio_concurrency", "2"),
        ],
    );
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name};
             DELETE FROM retention.policies WHERE name = '{name}';
             DELETE FROM retention.runs WHERE policy = '{name}';
             CREATE TABLE {name} (id int PRIMARY KEY, created_at timestamptz, sid text, deleted_at timestamptz);
             INSERT INTO {name} SELECT g, now() - interval '100 days', 'RE' || lpad(to_hex(g), 32, '0'), NULL
               FROM generate_series(1, {rows}) g;
             SELECT retention.add_policy('{name}', '{name}', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at',
                                         sid_column => 'sid', id_column => 'id', batch_size => {batch_size});"
        ))
        .unwrap();
    fake.add_recordings((1..=rows).map(|g| format!("RE{g:032x}")));
    only_enable(client, name);
    fake
}

#[test]
fn run_now_runs_every_enabled_policy_and_a_failing_one_stops_no_other() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    table_with_policy(&mut client, "it_worker_a", 300, 7, 100, None);
    table_with_policy(&mut client, "it_worker_b", 200, 3, 100, None);
    // The worker runs policies by name: the failing one sorts first, so the others run after it.
    table_with_policy(&mut client, "it_worker_0_bad", 5, 0, 100, None);
    client.batch_execute("DROP TABLE it_worker_0_bad").unwrap();
    only_enable(&mut client, "it_worker_");
    let asked: i32 = client.query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
    assert!(asked > 0, "the pid of the worker started for it");
    assert!(wait_for(Duration::from_secs(20), || {
        worker_runs(&mut client, "it_worker_a", "succeeded") == 1 && worker_runs(&mut client, "it_worker_b", "succeeded") == 1
    }));
    assert_eq!(worker_runs(&mut client, "it_worker_0_bad", "failed"), 1, "the failing policy is recorded");
    let failed_first = count(
        &mut client,
        "SELECT count(*) FROM retention.runs bad, retention.runs a
          WHERE bad.policy = 'it_worker_0_bad' AND bad.trigger = 'worker' AND a.policy = 'it_worker_a'
            AND a.trigger = 'worker' AND bad.started_at <= a.started_at",
    );
    assert_eq!(failed_first, 1, "the failing policy ran before the others");
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_a"), 7);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_b"), 3);
    // An ERROR in a policy does not end the pass: the others ran, and the worker leaves.
    assert!(wait_for(Duration::from_secs(10), || worker_pid(&mut client).is_none()), "the worker exits after its pass");
    let (backlog, next): (Option<i64>, bool) = {
        let row = client
            .query_one("SELECT backlog_rows, next_worker_run > now() FROM retention.status WHERE policy = 'it_worker_a'", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((backlog, next), (Some(0), true));

    // Turning it off (SIGHUP) stops run-now requests with a clear error.
    set_system(&mut client, &[("pg_retention.worker_enabled", "off")]);
    let error = client.query_one("SELECT retention.run_worker_now()", &[]).unwrap_err();
    assert_eq!(error.as_db_error().unwrap().message(), "pg_retention.worker_enabled is off");
    reset_system(&mut client);
}

#[test]
fn a_preset_whose_table_is_not_in_this_database_is_skipped_without_a_warning() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on")]);
    client
        .batch_execute(
            r#"DROP TABLE IF EXISTS "AgentUsage";
               DELETE FROM retention.runs WHERE policy = 'old_agent_usage';
               UPDATE retention.policies SET enabled = (name = 'old_agent_usage');"#,
        )
        .unwrap();
    let log_start = server_log().len();
    client.batch_execute("SELECT retention.run_worker_now()").unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "old_agent_usage", "skipped") == 1));
    assert_eq!(worker_runs(&mut client, "old_agent_usage", "failed"), 0, "not a failure");
    let reason = count(&mut client, "SELECT count(*) FROM retention.runs WHERE policy = 'old_agent_usage' AND error LIKE '%does not exist in this database%'");
    assert_eq!(reason, 1);
    let log = server_log();
    let warnings: Vec<&str> = log[log_start.min(log.len())..].lines().filter(|l| l.contains("WARNING") && l.contains("old_agent_usage")).collect();
    assert!(warnings.is_empty(), "no WARNING for the skipped preset: {warnings:?}");
    // Called by hand, the same preset still fails with the clear error: only the worker skips it.
    let error = client.query_one("SELECT cleanup_old_agent_usage(90)", &[]).unwrap_err();
    assert!(error.as_db_error().unwrap().message().contains("does not exist"), "{error}");
    reset_system(&mut client);
    client.batch_execute("UPDATE retention.policies SET enabled = true").unwrap();
}

#[test]
fn a_legal_hold_keeps_its_rows_through_the_worker() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on")]);
    table_with_policy(&mut client, "it_worker_hold", 40, 3, 7, None);
    only_enable(&mut client, "it_worker_hold");
    client.batch_execute("SELECT retention.add_hold('it_worker_hold', 'keep-even', 'id % 2 = 0', 'case 5')").unwrap();
    client.batch_execute("SELECT retention.run_worker_now()").unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_hold", "succeeded") == 1));
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_hold WHERE id > 0"), 20, "the even expired rows are held");
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_hold WHERE id > 0 AND id % 2 = 1"), 0);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_hold WHERE id < 0"), 3, "live rows kept");
    let held = count(&mut client, "SELECT (details->>'held')::bigint FROM retention.runs WHERE policy = 'it_worker_hold' AND trigger = 'worker'");
    assert_eq!(held, 20);
    // The run's ledger entry names the hold in force.
    let in_entry = count(
        &mut client,
        "SELECT count(*) FROM retention.runs r WHERE r.policy = 'it_worker_hold' AND r.trigger = 'worker'
            AND EXISTS (SELECT FROM retention.ledger l WHERE (l.entry->>'run_id')::bigint = r.id AND l.entry->'details'->'holds' ? 'keep-even')",
    );
    assert_eq!(in_entry, 1);
    let broken: Option<i64> = client.query_one("SELECT retention.verify_ledger()", &[]).unwrap().get(0);
    assert_eq!(broken, None, "the worker's runs chain like any other");
    reset_system(&mut client);
    client.batch_execute("DROP TABLE it_worker_hold; SELECT retention.drop_policy('it_worker_hold');").unwrap();
}

#[test]
fn the_worker_runs_at_run_at_set_a_minute_ahead() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    table_with_policy(&mut client, "it_worker_clock", 50, 1, 100, None);
    only_enable(&mut client, "it_worker_clock");
    // The worker has a baseline by now; a new run_at a minute ahead (SIGHUP) is its next slot.
    assert!(wait_for(Duration::from_secs(10), || count(&mut client, "SELECT count(*) FROM retention.worker_state WHERE last_slot IS NOT NULL") == 1));
    let next_minute: String = client
        .query_one("SELECT to_char(timezone('UTC', now()) + interval '1 minute', 'HH24:MI')", &[])
        .unwrap()
        .get(0);
    set_system(&mut client, &[("pg_retention.run_at", &next_minute)]);
    let started = Instant::now();
    assert!(
        wait_for(Duration::from_secs(130), || worker_runs(&mut client, "it_worker_clock", "succeeded") == 1),
        "the worker should run at {next_minute} UTC"
    );
    assert!(started.elapsed() <= Duration::from_secs(125));
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_clock"), 1);
    // That slot is remembered: no second run for it.
    thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&mut client, "SELECT count(*) FROM retention.runs WHERE policy = 'it_worker_clock'"), 1);
    reset_system(&mut client);
}

#[test]
fn sigterm_mid_run_ends_the_worker_promptly_and_loses_nothing_then_it_restarts() {
    let mut client = connect();
    let fake = worker_with_recordings(&mut client, "AC00000000000000000000000000000003", "it_worker_rec", 20, 4);
    fake.set_latency(Duration::from_secs(3));
    let pid: i32 = client.query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
    assert!(wait_for(Duration::from_secs(20), || fake.requests().len() >= 4 && fake.in_flight() > 0), "a second batch in flight");

    // The same policy from psql (or pg_cron) meanwhile: skipped, never overlapping the worker's run.
    let skipped: String = client.query_one("SELECT retention.run_policy('it_worker_rec')->>'status'", &[]).unwrap().get(0);
    assert_eq!(skipped, "skipped");

    let asked = Instant::now();
    client.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
    assert!(wait_for(Duration::from_secs(10), || worker_pid(&mut client) != Some(pid)));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "the worker took {took:?} to exit during a 3 s Twilio call");

    // Nothing marked that Twilio did not confirm; the stopped run is recorded as interrupted.
    let confirmed = fake.confirmed_sids();
    let marked: Vec<String> = client
        .query("SELECT sid FROM it_worker_rec WHERE deleted_at IS NOT NULL", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(marked.iter().all(|s| confirmed.contains(s)), "marked {marked:?}, confirmed {confirmed:?}");
    assert_eq!(worker_runs(&mut client, "it_worker_rec", "interrupted"), 1);

    // A pass that ended without saying when the next is due is started again.
    let here = current_database(&mut client);
    let before = passes(&here);
    assert!(wait_for(Duration::from_secs(20), || passes(&here) > before), "restarted");
    fake.set_latency(Duration::ZERO);
    client.batch_execute("SELECT retention.run_worker_now()").unwrap();
    assert!(wait_for(Duration::from_secs(30), || count(&mut client, "SELECT count(*) FROM it_worker_rec WHERE deleted_at IS NULL") == 0));
    reset_system(&mut client);
}

#[test]
fn after_a_crash_the_worker_comes_back_and_does_not_rerun_its_night() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    table_with_policy(&mut client, "it_worker_crash", 10, 0, 100, None);
    only_enable(&mut client, "it_worker_crash");
    client.batch_execute("SELECT retention.run_worker_now()").unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_crash", "succeeded") == 1));
    // A backend killed by SIGKILL: the launcher, the one process of pg_retention between runs.
    let pid: i32 = client.query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_retention launcher'", &[]).unwrap().get(0);
    let here = current_database(&mut client);
    let before = passes(&here);
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    drop(client);
    // The postmaster starts its crash handling when it reaps the worker: connecting before that
    // could reach a backend about to be reset.
    assert!(wait_for(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{pid}")).exists()), "worker reaped");

    // A backend crash restarts the server; the worker comes back with it.
    let mut client = None;
    assert!(wait_for(Duration::from_secs(60), || {
        client = std::panic::catch_unwind(|| {
            let mut c = connect();
            c.batch_execute("SELECT 1").unwrap();
            c
        })
        .ok();
        client.is_some()
    }));
    let mut client = client.unwrap();
    // The launcher comes back and starts a pass, which finds its night done.
    assert!(wait_for(Duration::from_secs(30), || passes(&here) > before), "restarted");
    thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&mut client, "SELECT count(*) FROM retention.runs WHERE policy = 'it_worker_crash'"), 1, "no second run");
    reset_system(&mut client);
}

#[test]
fn a_standby_runs_nothing() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on")]);
    let primary_dir = std::env::var("PGHOST").unwrap();
    let primary_port = std::env::var("PGPORT").unwrap();
    // A port nothing listens on now (a fixed one could be another cluster's).
    let standby_port: u16 = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let standby_dir = format!("{primary_dir}-standby");
    let as_owner = |program: &str, args: &[&str]| as_server_owner(program, args).status;
    let bin = pg_bin();
    let _ = as_owner(&format!("{bin}/pg_ctl"), &["-D", &standby_dir, "-m", "immediate", "stop"]);
    let _ = std::fs::remove_dir_all(&standby_dir);
    assert!(as_owner(
        &format!("{bin}/pg_basebackup"),
        &["-h", &primary_dir, "-p", &primary_port, "-U", "postgres", "-D", &standby_dir, "-R", "-c", "fast"]
    )
    .success());
    let options = format!("-p {standby_port} -k {standby_dir}");
    let log_path = format!("{standby_dir}/standby.log");
    assert!(as_owner(&format!("{bin}/pg_ctl"), &["-D", &standby_dir, "-o", &options, "-l", &log_path, "-w", "start"]).success());
    // Stops the standby however this test ends.
    struct Standby<'a>(&'a dyn Fn(&str, &[&str]) -> std::process::ExitStatus, String, String);
    impl Drop for Standby<'_> {
        fn drop(&mut self) {
            (self.0)(&format!("{}/pg_ctl", self.2), &["-D", &self.1, "-m", "immediate", "-w", "stop"]);
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let _standby = Standby(&as_owner, standby_dir.clone(), bin.to_string());

    let mut standby = postgres::Config::new()
        .host(&standby_dir)
        .port(standby_port)
        .user("postgres")
        .dbname("postgres")
        .connect(postgres::NoTls)
        .unwrap();
    let in_recovery: bool = standby.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get(0);
    assert!(in_recovery);
    let enabled: String = standby.query_one("SELECT current_setting('pg_retention.worker_enabled')", &[]).unwrap().get(0);
    assert_eq!(enabled, "on", "the standby has the primary's settings");
    thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&mut standby, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_retention worker'"), 0);
    let error = standby.query_one("SELECT retention.run_worker_now()", &[]).unwrap_err();
    let message = error.as_db_error().map(|e| e.message().to_string()).unwrap_or_else(|| error.to_string());
    assert_eq!(message, "this server is a standby: the pg_retention worker runs only on the primary");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!log.contains("pg_retention worker: started"), "the worker never started on the standby:\n{log}");

    drop(standby);
    reset_system(&mut client);
}

/// The worker runs as a superuser, but a policy's statements run as its table's owner: a
/// trigger the owner wrote sees the owner, and its attempt to make the owner superuser fails.
#[test]
fn the_worker_acts_on_a_table_as_its_owner_never_as_superuser() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    table_with_policy(&mut client, "it_worker_owned", 40, 2, 10, None);
    owned_by_ordinary_role_with_witness(&mut client, "it_worker_owned", "it_table_owner");
    only_enable(&mut client, "it_worker_owned");
    client.query_one("SELECT retention.run_worker_now()", &[]).unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_owned", "succeeded") == 1));
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_owned"), 2, "the owner's expired rows are purged");
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_owned_saw WHERE who = 'it_table_owner' AND NOT superuser"), 40);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_owned_saw WHERE who <> 'it_table_owner' OR superuser"), 0);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pg_roles WHERE rolname = 'it_table_owner' AND rolsuper"), 0);
    drop_owned_table(&mut client, "it_worker_owned", "it_table_owner");
    reset_system(&mut client);
}

/// The README's operator recipe is enough to ask the worker to run now.
#[test]
fn the_readme_operator_can_ask_the_worker_to_run_now() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    table_with_policy(&mut client, "it_worker_op", 30, 1, 10, None);
    only_enable(&mut client, "it_worker_op");
    client
        .batch_execute(
            "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'it_operator') THEN
                 DROP OWNED BY it_operator; DROP ROLE it_operator; END IF; END $$;
             CREATE ROLE it_operator;
             GRANT USAGE ON SCHEMA retention TO it_operator;
             GRANT SELECT ON retention.policies, retention.runs, retention.status TO it_operator;
             GRANT EXECUTE ON FUNCTION retention.backlog(text), retention.next_worker_run(), retention.run_worker_now() TO it_operator;",
        )
        .unwrap();
    client.batch_execute("SET ROLE it_operator").unwrap();
    let asked: i32 = client.query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
    assert!(asked > 0, "the pid of the worker started for it");
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_op", "succeeded") == 1));
    client.batch_execute("RESET ROLE; DROP OWNED BY it_operator; DROP ROLE it_operator;").unwrap();
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_op"), 1);
    reset_system(&mut client);
}

/// Issue 10, item 13: the table statistics of the worker's deletes reach autovacuum (reported
/// as it goes, and at its exit after the pass).
#[test]
fn the_workers_deletes_reach_the_statistics_while_it_lives() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    table_with_policy(&mut client, "it_worker_stats", 3000, 10, 500, None);
    only_enable(&mut client, "it_worker_stats");
    client.query_one("SELECT retention.run_worker_now()", &[]).unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_stats", "succeeded") == 1));
    let reported = wait_for(Duration::from_secs(5), || {
        let mut fresh = connect();
        count(&mut fresh, "SELECT coalesce(n_tup_del, 0) FROM pg_stat_user_tables WHERE relname = 'it_worker_stats'") == 3000
    });
    assert!(reported, "the deletes are in pg_stat_user_tables");
    client.batch_execute("DROP TABLE it_worker_stats; DELETE FROM retention.policies WHERE name = 'it_worker_stats';").unwrap();
    reset_system(&mut client);
}

/// Issue 10, item 11: a run whose server crashed stays `running` until its policy runs again.
/// The status view says `interrupted` as soon as the run's backend is gone, and the worker marks
/// such rows when it starts.
#[test]
fn a_run_whose_backend_is_gone_is_interrupted_in_the_status_view_and_at_worker_start() {
    let mut client = connect();
    table_with_policy(&mut client, "it_orphan", 1, 0, 10, None);
    client
        .batch_execute(
            "INSERT INTO retention.runs (policy, trigger, mode, status, pid, started_at)
             VALUES ('it_orphan', 'worker', 'batched', 'running', 2147483000, now() - interval '1 hour')",
        )
        .unwrap();
    let shown: String = client.query_one("SELECT last_status FROM retention.status WHERE policy = 'it_orphan'", &[]).unwrap().get(0);
    assert_eq!(shown, "interrupted");
    // Turned on, the worker's first pass marks it.
    set_system(&mut client, &[("pg_retention.worker_enabled", "on")]);
    assert!(wait_for(Duration::from_secs(20), || {
        count(&mut client, "SELECT count(*) FROM retention.runs WHERE policy = 'it_orphan' AND status = 'interrupted'") == 1
    }));
    client.batch_execute("DROP TABLE it_orphan; DELETE FROM retention.policies WHERE name = 'it_orphan';").unwrap();
    reset_system(&mut client);
}

/// The pause trigger of `table_with_policy` sleeps this long after each batch from now on.
fn set_pause(client: &mut Client, table: &str, seconds: f64) {
    client
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION {table}_pause() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$"
        ))
        .unwrap();
}

fn last_worker_run(client: &mut Client, policy: &str) -> (String, i64, String) {
    let row = client
        .query_one(
            &format!("SELECT status, rows_deleted, coalesce(error, '') FROM retention.runs WHERE policy = '{policy}' AND trigger = 'worker' ORDER BY id DESC LIMIT 1"),
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Issue 10, item 7: a SIGTERM (pg_terminate_backend, a shutdown) stops a delete run between
/// batches and in the middle of a long one, at once; the run is recorded `interrupted` with
/// what it did, and nothing past what it reports is lost.
#[test]
fn sigterm_stops_a_delete_run_between_batches_and_inside_a_long_one() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    table_with_policy(&mut client, "it_worker_term", 4000, 10, 200, Some(0.3));
    only_enable(&mut client, "it_worker_term");
    for (phase, pause) in [("between batches", 0.3), ("inside a 60 s batch", 60.0)] {
        set_pause(&mut client, "it_worker_term", pause);
        let before = count(&mut client, "SELECT count(*) FROM retention.runs WHERE policy = 'it_worker_term'");
        let pid: i32 = client.query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
        assert!(wait_for(Duration::from_secs(20), || {
            count(&mut client, &format!("SELECT count(*) FROM retention.runs WHERE policy = 'it_worker_term' AND status = 'running' AND id > {before}")) == 1
                && (pause > 1.0 || count(&mut client, "SELECT coalesce(max(rows_deleted), 0) FROM retention.runs WHERE policy = 'it_worker_term' AND status = 'running'") >= 400)
        }), "{phase}: the run is under way");
        thread::sleep(Duration::from_millis(300));
        let asked = Instant::now();
        client.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
        assert!(wait_for(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{pid}")).exists()), "{phase}: the worker exits");
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(3), "{phase}: the worker took {took:?} to exit");
        let (status, rows, error) = last_worker_run(&mut client, "it_worker_term");
        assert_eq!(status, "interrupted", "{phase}: {error}");
        assert!(error.contains("asked to stop"), "{phase}: {error}");
        let left = count(&mut client, "SELECT count(*) FROM it_worker_term WHERE at < now()");
        assert_eq!(4000 - left, count(&mut client, "SELECT coalesce(sum(rows_deleted), 0)::bigint FROM retention.runs WHERE policy = 'it_worker_term'"), "{phase}: rows gone = rows recorded ({rows} in this run)");
        assert!(left > 0, "{phase}: the run stopped before its end");
    }
    set_pause(&mut client, "it_worker_term", 0.0);
    client.query_one("SELECT retention.run_worker_now()", &[]).unwrap();
    assert!(wait_for(Duration::from_secs(30), || count(&mut client, "SELECT count(*) FROM it_worker_term") == 10));
    client.batch_execute("DROP TABLE it_worker_term; DELETE FROM retention.policies WHERE name = 'it_worker_term';").unwrap();
    reset_system(&mut client);
}

/// Issue 10, item 7: `pg_ctl stop -m fast` while the worker is inside a long batch stops the
/// server within its timeout; the run was recorded `interrupted` by the worker itself.
#[test]
fn a_fast_shutdown_during_a_worker_batch_is_prompt() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    table_with_policy(&mut client, "it_worker_fast", 1000, 0, 100, Some(120.0));
    only_enable(&mut client, "it_worker_fast");
    client.query_one("SELECT retention.run_worker_now()", &[]).unwrap();
    assert!(wait_for(Duration::from_secs(20), || {
        count(&mut client, "SELECT count(*) FROM retention.runs WHERE policy = 'it_worker_fast' AND status = 'running'") == 1
    }));
    thread::sleep(Duration::from_millis(500));
    drop(client);
    let dir = std::env::var("PGHOST").unwrap();
    let port = std::env::var("PGPORT").unwrap();
    let asked = Instant::now();
    let stop = as_server_owner(&format!("{}/pg_ctl", pg_bin()), &["-D", &dir, "-m", "fast", "-t", "15", "-w", "stop"]);
    let took = asked.elapsed();
    let start = std::process::Command::new(pg_retention_it::CLUSTER_SCRIPT).args(["start", &dir, &port]).output().unwrap();
    assert!(start.status.success(), "restart: {}", String::from_utf8_lossy(&start.stderr));
    assert!(stop.status.success(), "pg_ctl stop -m fast failed: {}", String::from_utf8_lossy(&stop.stdout));
    assert!(took < Duration::from_secs(10), "the fast shutdown took {took:?}");
    let mut client = connect();
    let (status, _, error) = last_worker_run(&mut client, "it_worker_fast");
    assert_eq!(status, "interrupted");
    assert!(error.contains("asked to stop"), "recorded by the worker as it stopped: {error}");
    client.batch_execute("DROP TABLE it_worker_fast; DELETE FROM retention.policies WHERE name = 'it_worker_fast';").unwrap();
    reset_system(&mut client);
}

/// Issue 10, item 14: an application's row lock held by an idle-in-transaction session does
/// not stall the worker: its batches give up after pg_retention.worker_lock_timeout, are tried
/// again, and the run ends `failed` with the rest left for the next run. A SIGTERM during the
/// pause between tries is answered at once.
#[test]
fn the_worker_gives_up_on_a_row_lock_after_its_lock_timeout() {
    let mut client = connect();
    set_system(
        &mut client,
        &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00"), ("pg_retention.worker_lock_timeout", "300ms")],
    );
    table_with_policy(&mut client, "it_worker_locked", 50, 0, 1000, None);
    only_enable(&mut client, "it_worker_locked");
    let mut application = connect();
    application.batch_execute("BEGIN; SELECT * FROM it_worker_locked WHERE id = 7 FOR UPDATE").unwrap();
    client.query_one("SELECT retention.run_worker_now()", &[]).unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_locked", "failed") == 1), "the run gives up");
    let (_, rows, error) = last_worker_run(&mut client, "it_worker_locked");
    assert!(error.contains("lock timeout"), "{error}");
    assert_eq!(rows, 0);
    let log = server_log();
    assert!(log.contains("policy \"it_worker_locked\": a batch waited past lock_timeout for a row another session holds; trying again in 1 s (3 of 3)"));

    // Terminated while it pauses between two tries: it exits at once.
    let pid: i32 = client.query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
    assert!(wait_for(Duration::from_secs(20), || {
        server_log().matches("policy \"it_worker_locked\": a batch waited past lock_timeout").count() >= 4
    }));
    let asked = Instant::now();
    client.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
    assert!(wait_for(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{pid}")).exists()));
    assert!(asked.elapsed() < Duration::from_secs(1), "the worker took {:?} to exit", asked.elapsed());

    application.batch_execute("COMMIT").unwrap();
    client.query_one("SELECT retention.run_worker_now()", &[]).unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_locked", "succeeded") == 1));
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_locked"), 0);
    client.batch_execute("DROP TABLE it_worker_locked; DELETE FROM retention.policies WHERE name = 'it_worker_locked';").unwrap();
    reset_system(&mut client);
}

/// Issue 10, item 15: a missing database is said once, not in a FATAL every few seconds; a
/// disabled worker never connects; the worker starts when the database appears.
#[test]
fn a_missing_database_is_said_once_and_a_disabled_worker_never_connects() {
    let mut client = connect();
    client.batch_execute("DROP DATABASE IF EXISTS it_later WITH (FORCE)").unwrap();
    let log_before = server_log().len();
    set_system(&mut client, &[("pg_retention.database", "it_later"), ("pg_retention.worker_enabled", "off")]);
    thread::sleep(Duration::from_secs(6));
    assert_eq!(worker_pid(&mut client), None, "disabled: no worker");
    set_system(&mut client, &[("pg_retention.worker_enabled", "on")]);
    thread::sleep(Duration::from_secs(12));
    let log = server_log()[log_before..].to_string();
    assert_eq!(worker_pid(&mut client), None, "no database: no worker");
    assert!(!log.contains("FATAL"), "{log}");
    assert_eq!(log.matches("database \"it_later\" does not exist").count(), 1, "said once: {log}");

    client.batch_execute("CREATE DATABASE it_later").unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap(); // a reload wakes the launcher at once
    assert!(wait_for(Duration::from_secs(15), || passes("it_later") == 1), "the worker starts once the database exists");
    reset_system(&mut client);
    assert!(wait_for(Duration::from_secs(15), || worker_pid(&mut client).is_none()));
    client.batch_execute("DROP DATABASE it_later WITH (FORCE)").unwrap();
}

/// Issue 10, item 6, in the worker: a cancel (pg_cancel_backend) while the worker's Twilio
/// calls are in flight ends that run `failed` with nothing of the batch marked and releases
/// the policy; the next run finishes the work.
#[test]
fn a_cancel_during_the_workers_twilio_calls_is_recorded_and_frees_the_policy() {
    let mut client = connect();
    let fake = worker_with_recordings(&mut client, "AC00000000000000000000000000000004", "it_worker_cancel", 12, 4);
    fake.set_latency(Duration::from_secs(5));
    let pid: i32 = client.query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
    assert!(wait_for(Duration::from_secs(20), || fake.in_flight() > 0), "calls in flight");
    client.batch_execute(&format!("SELECT pg_cancel_backend({pid})")).unwrap();
    assert!(wait_for(Duration::from_secs(10), || worker_runs(&mut client, "it_worker_cancel", "failed") == 1), "the run is recorded failed");
    let (_, _, error) = last_worker_run(&mut client, "it_worker_cancel");
    assert!(error.contains("no row of this batch was marked"), "{error}");
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM pg_locks WHERE locktype = 'object' AND classid = 'retention.policies'::regclass"),
        0,
        "the policy's lock is released"
    );
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_cancel WHERE deleted_at IS NOT NULL"), 0);
    fake.set_latency(Duration::ZERO);
    client.query_one("SELECT retention.run_worker_now()", &[]).unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_cancel", "succeeded") == 1));
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_cancel WHERE deleted_at IS NULL"), 0);
    client.batch_execute("DROP TABLE it_worker_cancel; DELETE FROM retention.policies WHERE name = 'it_worker_cancel';").unwrap();
    reset_system(&mut client);
}

/// Issue 11: the worker removes a partitioned table's expired partitions as `CALL` does (detach,
/// count, then the dropper drops them) and purges the straddling one by rows.
#[test]
fn the_worker_removes_expired_partitions_and_the_dropper_drops_them() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS it_worker_part;
             DELETE FROM retention.policies WHERE name = 'it_worker_part';
             CREATE TABLE it_worker_part (id int, at timestamptz) PARTITION BY RANGE (at);
             CREATE TABLE it_worker_part_2019 PARTITION OF it_worker_part FOR VALUES FROM ('2019-01-01 00:00+00') TO ('2020-01-01 00:00+00');
             CREATE TABLE it_worker_part_later PARTITION OF it_worker_part FOR VALUES FROM ('2020-01-01 00:00+00') TO (MAXVALUE);
             INSERT INTO it_worker_part SELECT g, '2019-01-01 00:00+00'::timestamptz + g * interval '1 hour' FROM generate_series(1, 500) g;
             INSERT INTO it_worker_part SELECT g, now() + (g % 2 * 2 - 1) * interval '1 day' FROM generate_series(501, 520) g;
             SELECT retention.add_policy('it_worker_part', 'it_worker_part', 'at', 'expires_at');",
        )
        .unwrap();
    only_enable(&mut client, "it_worker_part");
    client.query_one("SELECT retention.run_worker_now()", &[]).unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_part", "succeeded") == 1));
    assert_eq!(
        count(&mut client, "SELECT rows_deleted FROM retention.runs WHERE policy = 'it_worker_part' AND trigger = 'worker'"),
        510
    );
    assert!(
        wait_for(Duration::from_secs(20), || count(&mut client, "SELECT count(*) FROM pg_class WHERE relname = 'it_worker_part_2019'") == 0),
        "the dropper dropped the detached partition"
    );
    assert_eq!(count(&mut client, "SELECT count(*) FROM retention.detached_partitions WHERE policy = 'it_worker_part'"), 0);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_worker_part"), 10, "the live rows kept");
    client.batch_execute("DROP TABLE it_worker_part; DELETE FROM retention.policies WHERE name = 'it_worker_part';").unwrap();
    reset_system(&mut client);
}

/// The worker of database `dbname`, if one runs.
fn worker_pid_in(client: &mut Client, dbname: &str) -> Option<i32> {
    client
        .query_opt("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_retention worker' AND datname = $1", &[&dbname])
        .unwrap()
        .map(|r| r.get(0))
}

/// Issue 14, items 1 and 2: `pg_retention.database` lists two databases (an app's and a voice
/// engine's); each gets its own worker, which runs that database's policies on
/// `run_worker_now()` and at `run_at`, and skips the presets whose tables that database does
/// not have, with no failure and no WARNING. A database taken off the list gets no more passes.
#[test]
fn two_databases_each_get_a_worker_and_leaving_the_list_stops_one() {
    let mut client = connect();
    let databases = ["it_db_app", "it_db_voice"];
    let mut sessions: Vec<Client> = databases
        .iter()
        .map(|db| {
            let mut session = pg_retention_it::fresh_database(db);
            session.batch_execute("CREATE EXTENSION pg_retention").unwrap();
            table_with_policy(&mut session, "it_db_rows", 40, 2, 100, None);
            session
        })
        .collect();
    let log_start = server_log().len();
    let here = current_database(&mut client);
    let passes_here = passes(&here);
    set_system(&mut client, &[("pg_retention.database", "it_db_app, it_db_voice"), ("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    assert!(wait_for(Duration::from_secs(15), || databases.iter().all(|db| passes(db) >= 1)), "a pass in each database");
    assert_eq!(passes(&here), passes_here, "none in a database not listed");

    for (db, session) in databases.iter().zip(sessions.iter_mut()) {
        let before = passes(db);
        let asked: Option<i32> = session.query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
        assert!(asked.is_some_and(|pid| pid > 0), "{db}: the worker started for it");
        assert!(wait_for(Duration::from_secs(10), || passes(db) > before), "run_worker_now() in {db} starts {db}'s worker");
        assert!(wait_for(Duration::from_secs(20), || worker_runs(session, "it_db_rows", "succeeded") == 1), "{db}: the run");
        assert_eq!(count(session, "SELECT count(*) FROM it_db_rows"), 2, "{db}: the expired rows went, the live stayed");
        // The presets' tables are not in these databases: skipped, never failed.
        assert!(wait_for(Duration::from_secs(10), || worker_runs(session, "old_agent_usage", "skipped") == 1), "{db}: preset skipped");
        assert_eq!(count(session, "SELECT count(*) FROM retention.runs WHERE status = 'failed'"), 0, "{db}: no failed run");
        let next: bool = session.query_one("SELECT bool_and(next_worker_run > now()) FROM retention.status", &[]).unwrap().get(0);
        assert!(next, "{db}: next_worker_run is the worker's next slot");
    }
    let unlisted: i64 = count(&mut client, "SELECT count(next_worker_run) FROM retention.status");
    assert_eq!(unlisted, 0, "a database not in the list has no next_worker_run");
    let error = client.query_one("SELECT retention.run_worker_now()", &[]).unwrap_err();
    assert!(error.as_db_error().unwrap().message().contains("database \"postgres\" is not in pg_retention.database"), "{error}");
    assert_eq!(
        error.as_db_error().unwrap().hint(),
        Some("Add it: ALTER SYSTEM SET pg_retention.database = 'it_db_app, it_db_voice, postgres'; SELECT pg_reload_conf();")
    );

    // At run_at: a minute ahead, both workers run their databases' new expired rows.
    for session in sessions.iter_mut() {
        session.batch_execute("INSERT INTO it_db_rows SELECT g, now() - interval '1 day' FROM generate_series(100, 129) g").unwrap();
        assert!(wait_for(Duration::from_secs(10), || count(session, "SELECT count(*) FROM retention.worker_state WHERE last_slot IS NOT NULL") == 1));
    }
    let next_minute: String = client.query_one("SELECT to_char(timezone('UTC', now()) + interval '1 minute', 'HH24:MI')", &[]).unwrap().get(0);
    set_system(&mut client, &[("pg_retention.run_at", &next_minute)]);
    for (db, session) in databases.iter().zip(sessions.iter_mut()) {
        assert!(wait_for(Duration::from_secs(130), || worker_runs(session, "it_db_rows", "succeeded") == 2), "{db}: the run at {next_minute} UTC");
        assert_eq!(count(session, "SELECT count(*) FROM it_db_rows"), 2, "{db}: the new expired rows went at run_at");
    }

    // Off the list (reload): the voice database is asked nothing more.
    set_system(&mut client, &[("pg_retention.database", "it_db_app")]);
    assert!(wait_for(Duration::from_secs(15), || worker_pid_in(&mut client, "it_db_voice").is_none()), "no voice worker");
    let voice = &mut sessions[1];
    let error = voice.query_one("SELECT retention.run_worker_now()", &[]).unwrap_err();
    assert!(error.as_db_error().unwrap().message().contains("\"it_db_voice\" is not in pg_retention.database"), "{error}");
    assert_eq!(count(voice, "SELECT count(next_worker_run) FROM retention.status"), 0);

    let log = server_log();
    let warnings: Vec<&str> = log[log_start.min(log.len())..].lines().filter(|l| l.contains("WARNING")).collect();
    assert!(warnings.is_empty(), "no WARNING from either worker: {warnings:?}");
    drop(sessions);
    reset_system(&mut client);
    for db in databases {
        client.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).unwrap();
    }
}

/// Issue 14, item 2: preloaded with the worker disabled (the default), a server starts, serves
/// a database with the extension and stops without a single WARNING from pg_retention, and
/// starts no worker.
#[test]
fn a_disabled_worker_says_nothing_at_start_up() {
    let other = OtherCluster::start("quiet");
    let mut session = other.connect("postgres");
    session.batch_execute("CREATE EXTENSION pg_retention").unwrap();
    thread::sleep(Duration::from_secs(3));
    assert_eq!(worker_pid(&mut session), None, "disabled: no worker");
    drop(session);
    other.stop();
    let log = other.log();
    assert!(log.contains("database system is shut down"), "a whole start and stop: {log}");
    // 18's pg_cron reports its own launcher's shutdown as FATAL; that line is not ours.
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARNING") || l.contains("FATAL") || l.contains("ERROR"))
        .filter(|l| !l.contains("terminating background worker \"pg_cron launcher\" due to administrator command"))
        .collect();
    assert!(warnings.is_empty(), "nothing to warn about: {warnings:?}");
}

/// Issue 22, item 6: `BEGIN; SELECT retention.run_worker_now();` left open stalls nothing: the
/// request is answered at once (the launcher starts the pass as it is asked, not at the
/// commit), and what another session asks meanwhile runs too.
#[test]
fn a_run_now_request_left_open_stalls_no_worker_run() {
    let mut client = connect();
    set_system(&mut client, &[("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    table_with_policy(&mut client, "it_worker_open", 30, 2, 100, None);
    only_enable(&mut client, "it_worker_open");
    let mut open = connect();
    open.batch_execute("BEGIN; SELECT retention.run_worker_now();").unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_open", "succeeded") >= 1), "the worker ran while the request stays open");
    client.batch_execute("INSERT INTO it_worker_open SELECT g, now() - interval '1 day' FROM generate_series(100, 109) g").unwrap();
    let mut asker = connect();
    let asked = asker.batch_execute("SET statement_timeout = '10s'; SELECT retention.run_worker_now();");
    assert!(asked.is_ok(), "a second request is not blocked by the open one: {asked:?}");
    assert!(wait_for(Duration::from_secs(20), || count(&mut client, "SELECT count(*) FROM it_worker_open") == 2), "the second request ran");
    open.batch_execute("COMMIT").unwrap();
    // Who asked is kept until a run answers it: the next pass clears every request committed
    // before it, the one left open included.
    let before: std::time::SystemTime = client.query_one("SELECT now()", &[]).unwrap().get(0);
    let runs = worker_runs(&mut client, "it_worker_open", "succeeded");
    client.query_one("SELECT retention.run_worker_now()", &[]).unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut client, "it_worker_open", "succeeded") > runs));
    let left = client.query_one("SELECT count(*) FROM retention.run_requests WHERE requested_at < $1", &[&before]).unwrap().get::<_, i64>(0);
    assert_eq!(left, 0, "every request made before the last run answered");
    client.batch_execute("DROP TABLE it_worker_open; DELETE FROM retention.policies WHERE name = 'it_worker_open';").unwrap();
    reset_system(&mut client);
}

/// Issue 22, item 5: a database owner's `ALTER DATABASE ... SET` neither stops the worker
/// (read-only transactions) nor changes what a hold keeps (how a string literal reads a
/// backslash, the time zone of a literal).
#[test]
fn database_settings_neither_stop_the_worker_nor_change_a_hold() {
    let mut client = connect();
    let mut db = pg_retention_it::fresh_database("it_db_settings");
    db.batch_execute("CREATE EXTENSION pg_retention").unwrap();
    table_with_policy(&mut db, "it_settings", 20, 1, 100, None);
    db.batch_execute(
        "ALTER TABLE it_settings ADD COLUMN note text;
         UPDATE it_settings SET note = 'a\\b' WHERE id = 1;
         UPDATE it_settings SET at = '2000-01-01 05:00+00' WHERE id = 2;
         UPDATE it_settings SET at = '2000-01-01 13:00+00' WHERE id = 3;
         SET TimeZone = 'UTC';
         SELECT retention.add_hold('it_settings', 'backslash', $$note = 'a\\b'$$, 'Case 8');
         SELECT retention.add_hold('it_settings', 'morning', $$at < '2000-01-01 12:00'$$, 'Case 9');
         ALTER DATABASE it_db_settings SET default_transaction_read_only = on;
         ALTER DATABASE it_db_settings SET standard_conforming_strings = off;
         ALTER DATABASE it_db_settings SET escape_string_warning = off;
         ALTER DATABASE it_db_settings SET TimeZone = 'Pacific/Kiritimati';",
    )
    .unwrap();
    drop(db);
    set_system(&mut client, &[("pg_retention.database", "it_db_settings"), ("pg_retention.worker_enabled", "on"), ("pg_retention.run_at", "03:00")]);
    assert!(wait_for(Duration::from_secs(15), || passes("it_db_settings") >= 1), "the worker's first pass");
    let mut db = pg_retention_it::connect_to("it_db_settings");
    db.batch_execute("SET default_transaction_read_only = off").unwrap();
    db.batch_execute("SELECT retention.run_worker_now()").unwrap();
    assert!(wait_for(Duration::from_secs(20), || worker_runs(&mut db, "it_settings", "succeeded") == 1), "the worker's run succeeds: {:?}",
        db.query("SELECT status, error FROM retention.runs WHERE policy = 'it_settings'", &[]).unwrap().iter().map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1))).collect::<Vec<_>>());
    let kept: Vec<i32> = db.query("SELECT id FROM it_settings ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(kept, vec![-1, 1, 2], "the live row and the two held rows stay");
    drop(db);
    reset_system(&mut client);
    client.batch_execute("DROP DATABASE it_db_settings WITH (FORCE)").unwrap();
}

/// Issue 22, item 16, and issue 26: with more databases due than free background worker slots
/// they wait their turn, said in one LOG line (not a WARNING every few seconds, forever), and
/// each gets its pass as slots free; `run_worker_now()` says the truth: the pid of the worker
/// it started, its place in the queue, or that no slot is free at all with the setting to raise.
#[test]
fn more_databases_than_worker_slots_wait_their_turn_and_run_now_says_the_truth() {
    let other = OtherCluster::start("slots");
    let mut admin = other.connect("postgres");
    let databases = ["it_slot_a", "it_slot_b", "it_slot_c"];
    for db in databases {
        admin.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
        let mut session = other.connect(db);
        session.batch_execute("CREATE EXTENSION pg_retention").unwrap();
        table_with_policy(&mut session, "it_slot_rows", 20, 1, 10, Some(0.5));
    }
    // Room for the server's own background workers (the launchers among them) and one more.
    let in_use: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type <> ALL ($1)", &[&server_processes::SERVER_PROCESS_TYPES])
        .unwrap()
        .get(0);
    let restart = |settings: &[String]| {
        let mut admin = other.connect("postgres");
        for setting in settings {
            admin.batch_execute(&format!("ALTER SYSTEM SET {setting}")).unwrap();
        }
        drop(admin);
        other.stop();
        let started = Command::new(pg_retention_it::CLUSTER_SCRIPT).args(["start", &other.dir, &other.port]).output().unwrap();
        assert!(started.status.success());
    };
    drop(admin);
    restart(&[format!("max_worker_processes = {}", in_use + 1), "pg_retention.worker_enabled = on".into(), format!("pg_retention.database = '{}'", databases.join(", "))]);
    let passes_in = |db: &str| other.log().matches(&format!("pg_retention worker: started for database \"{db}\"")).count();
    // At start all three are due (their first pass); one slot: they go in turn.
    assert!(wait_for(Duration::from_secs(30), || databases.iter().all(|db| passes_in(db) >= 1)), "every database got its pass");
    let said: Vec<String> = other.log().lines().filter(|l| l.contains("pg_retention launcher") && l.contains("wait their turn")).map(String::from).collect();
    assert_eq!(said.len(), 1, "said once: {said:?}");
    assert!(said[0].contains("2 database(s)") && said[0].contains("max_worker_processes"), "{said:?}");
    assert!(!other.log().lines().any(|l| l.contains("pg_retention") && l.contains("WARNING")), "no WARNING");

    // a's pass takes the slot (its run pauses 0.5 s a batch); b and c queue behind it.
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let connect_with_notices = |db: &str| {
        let sink = notices.clone();
        let mut config = postgres::Config::new();
        config.host(&other.dir).port(other.port.parse().unwrap()).user("postgres").dbname(db);
        config.notice_callback(move |n| sink.lock().unwrap().push(format!("{}: {}", n.severity(), n.message())));
        config.connect(postgres::NoTls).unwrap()
    };
    let started: Option<i32> = connect_with_notices("it_slot_a").query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
    assert!(started.is_some_and(|pid| pid > 0), "a: started");
    let queued: Option<i32> = connect_with_notices("it_slot_b").query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
    let queued_too: Option<i32> = connect_with_notices("it_slot_c").query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
    assert_eq!((queued, queued_too), (None, None), "b and c wait: {:?}", notices.lock().unwrap());
    {
        let said = notices.lock().unwrap();
        assert!(said.iter().any(|n| n.contains("\"it_slot_b\" waits for a background worker slot behind 0 other")), "{said:?}");
        assert!(said.iter().any(|n| n.contains("\"it_slot_c\" waits for a background worker slot behind 1 other")), "{said:?}");
    }
    for db in databases {
        let mut session = other.connect(db);
        assert!(wait_for(Duration::from_secs(60), || count(&mut session, "SELECT count(*) FROM it_slot_rows") == 1), "{db}: its turn came");
    }

    // No room at all (the slot taken by the server's own): no slot, and the setting to raise.
    restart(&[format!("max_worker_processes = {in_use}")]);
    notices.lock().unwrap().clear();
    let none: Option<i32> = connect_with_notices("it_slot_a").query_one("SELECT retention.run_worker_now()", &[]).unwrap().get(0);
    assert_eq!(none, None);
    let said = notices.lock().unwrap().clone();
    assert!(said.iter().any(|n| n.starts_with("WARNING") && n.contains("no background worker slot is free") && n.contains("max_worker_processes")), "{said:?}");
}
