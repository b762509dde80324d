//! What spans sessions: commits per batch seen from outside, runs that never overlap, and a
//! killed run that leaves nothing half-recorded.

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use pg_retention_it::{connect, connect_with_notices, count, table_with_policy, wait_event_named, wait_for};

/// Issue 23: a run keeping to its `max_rows_per_second` waits as `RetentionPace` in
/// `pg_stat_activity` on 17 and later (`Extension` on 15 and 16), not as an anonymous sleep.
#[test]
fn a_paced_run_names_its_wait() {
    let mut setup = connect();
    table_with_policy(&mut setup, "it_paced", 60, 0, 10, None);
    setup.batch_execute("SELECT retention.alter_policy('it_paced', max_rows_per_second => 5)").unwrap();
    let runner = thread::spawn(|| connect().batch_execute("CALL retention.run_batched('it_paced')"));
    let expected = wait_event_named("RetentionPace");
    let mut observer = connect();
    let seen = wait_for(Duration::from_secs(10), || {
        observer
            .query_opt("SELECT wait_event FROM pg_stat_activity WHERE query LIKE 'CALL retention.run_batched(''it_paced'')%' AND wait_event = $1", &[&expected])
            .unwrap()
            .is_some()
    });
    runner.join().unwrap().expect("the paced run");
    assert!(seen, "the pacing backend waits as {expected}");
    assert_eq!(count(&mut observer, "SELECT count(*) FROM it_paced"), 0, "every expired row went, at its pace");
}

#[test]
fn batched_run_commits_each_batch_visibly() {
    let mut setup = connect();
    table_with_policy(&mut setup, "it_batches", 5000, 100, 1000, Some(0.3));

    let runner = thread::spawn(|| {
        let mut client = connect();
        client.batch_execute("CALL retention.run_batched('it_batches')").expect("batched run");
    });
    let mut observer = connect();
    let mut seen = BTreeSet::new();
    let mut saw_running_progress = false;
    while !runner.is_finished() {
        seen.insert(count(&mut observer, "SELECT count(*) FROM it_batches"));
        let progress = observer
            .query_opt("SELECT rows_deleted FROM retention.runs WHERE policy = 'it_batches' AND status = 'running'", &[])
            .unwrap();
        if let Some(row) = progress {
            saw_running_progress |= row.get::<_, i64>(0) > 0;
        }
        thread::sleep(Duration::from_millis(40));
    }
    runner.join().unwrap();

    let intermediate: Vec<_> = seen.iter().filter(|&&n| n > 100 && n < 5100).collect();
    assert!(intermediate.len() >= 2, "a second session should see batches commit one by one, saw counts {seen:?}");
    assert!(saw_running_progress, "the history row should show progress while the run is going");
    assert_eq!(count(&mut observer, "SELECT count(*) FROM it_batches"), 100);
    let row = observer
        .query_one("SELECT status, rows_deleted, batches FROM retention.runs WHERE policy = 'it_batches'", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "succeeded");
    assert_eq!(row.get::<_, i64>(1), 5000);
    assert!(row.get::<_, i32>(2) >= 5, "batches of at most 1000 rows");
}

#[test]
fn two_runs_of_one_policy_never_overlap() {
    let mut setup = connect();
    table_with_policy(&mut setup, "it_overlap", 3000, 10, 1000, Some(0.4));

    // A batched run holds the policy across its transactions.
    let runner = thread::spawn(|| {
        let mut client = connect();
        client.batch_execute("CALL retention.run_batched('it_overlap')").expect("batched run");
    });
    let mut watcher = connect();
    assert!(wait_for(Duration::from_secs(10), || {
        count(&mut watcher, "SELECT count(*) FROM retention.runs WHERE policy = 'it_overlap' AND status = 'running'") == 1
    }));
    let (mut second, notices) = connect_with_notices();
    let skipped = second.query_one("SELECT retention.run_policy('it_overlap')->>'status'", &[]).unwrap();
    assert_eq!(skipped.get::<_, String>(0), "skipped");
    second.batch_execute("CALL retention.run_batched('it_overlap')").unwrap();
    runner.join().unwrap();
    {
        let notices = notices.lock().unwrap();
        assert_eq!(notices.len(), 2, "{notices:?}");
        assert!(notices.iter().all(|n| n.contains("retention policy \"it_overlap\" is already running by backend pid")), "{notices:?}");
    }
    assert_eq!(count(&mut watcher, "SELECT count(*) FROM it_overlap"), 10);
    let statuses: Vec<(String, i64)> = watcher
        .query("SELECT status, rows_deleted FROM retention.runs WHERE policy = 'it_overlap' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(statuses, vec![("succeeded".into(), 3000), ("skipped".into(), 0), ("skipped".into(), 0)]);

    // A run in an open transaction holds the policy until that transaction ends.
    watcher.batch_execute("INSERT INTO it_overlap SELECT g, now() - interval '2 hours' FROM generate_series(1, 50) g").unwrap();
    let mut first = connect();
    let mut tx = first.transaction().unwrap();
    let deleted: i64 = tx.query_one("SELECT (retention.run_policy('it_overlap')->>'rows_deleted')::bigint", &[]).unwrap().get(0);
    assert_eq!(deleted, 50);
    let during = second.query_one("SELECT retention.run_policy('it_overlap')->>'status'", &[]).unwrap();
    assert_eq!(during.get::<_, String>(0), "skipped");
    tx.commit().unwrap();
    let after = second.query_one("SELECT retention.run_policy('it_overlap')->>'status'", &[]).unwrap();
    assert_eq!(after.get::<_, String>(0), "succeeded");
}

#[test]
fn a_killed_batched_run_loses_nothing_and_the_next_run_finishes() {
    let mut setup = connect();
    table_with_policy(&mut setup, "it_killed", 4000, 25, 1000, Some(0.5));

    let runner = thread::spawn(|| {
        let mut client = connect();
        client.batch_execute("CALL retention.run_batched('it_killed')")
    });
    let mut observer = connect();
    assert!(wait_for(Duration::from_secs(10), || {
        count(&mut observer, "SELECT coalesce(max(rows_deleted), 0) FROM retention.runs WHERE policy = 'it_killed'") >= 1000
    }));
    let killed: bool = observer
        .query_one(
            "SELECT pg_terminate_backend(pid) FROM retention.runs WHERE policy = 'it_killed' AND status = 'running'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(killed);
    assert!(runner.join().unwrap().is_err(), "the killed session's CALL should fail");

    // What the history says was deleted is exactly what is gone: batches commit with their count.
    let recorded = count(&mut observer, "SELECT rows_deleted FROM retention.runs WHERE policy = 'it_killed'");
    let remaining = count(&mut observer, "SELECT count(*) FROM it_killed WHERE at < now()");
    assert_eq!(recorded + remaining, 4000);
    assert!(remaining > 0, "the kill should land before the last batch");

    observer.batch_execute("CALL retention.run_batched('it_killed')").unwrap();
    assert_eq!(count(&mut observer, "SELECT count(*) FROM it_killed"), 25);
    let rows: Vec<(String, Option<String>)> = observer
        .query("SELECT status, error FROM retention.runs WHERE policy = 'it_killed' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows[0].0, "interrupted");
    assert_eq!(rows[0].1.as_deref(), Some("the session running it ended before the run finished"));
    assert_eq!(rows[1].0, "succeeded");
}

#[test]
fn failed_runs_are_recorded_and_release_the_policy() {
    let mut client = connect();
    table_with_policy(&mut client, "it_failed", 10, 0, 1000, None);
    client
        .batch_execute(
            "CREATE FUNCTION it_failed_hold() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'legal hold on %', OLD.id; END $$;
             CREATE TRIGGER hold BEFORE DELETE ON it_failed FOR EACH ROW EXECUTE FUNCTION it_failed_hold();",
        )
        .unwrap();
    let error = client.batch_execute("CALL retention.run_batched('it_failed')").unwrap_err();
    assert!(error.as_db_error().unwrap().message().starts_with("legal hold on"), "{error}");
    let row = client.query_one("SELECT status, error FROM retention.runs WHERE policy = 'it_failed'", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert!(row.get::<_, String>(1).starts_with("legal hold on"));

    // A run in the caller's transaction rolls back with it, yet its failure stays recorded.
    let mut tx = client.transaction().unwrap();
    let error = tx.query_one("SELECT retention.run_policy('it_failed')", &[]).unwrap_err();
    assert!(error.as_db_error().unwrap().message().starts_with("legal hold on"), "{error}");
    tx.rollback().unwrap();
    let row = client
        .query_one("SELECT status, mode, error, pid = pg_backend_pid() FROM retention.runs WHERE policy = 'it_failed' ORDER BY id DESC LIMIT 1", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert_eq!(row.get::<_, String>(1), "transaction");
    assert!(row.get::<_, String>(2).starts_with("legal hold on"));
    assert!(row.get::<_, bool>(3), "the row names the session that ran it, not the recorder");
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_failed"), 10);

    // The same session (and any other) can run the policy again: the lock was released.
    client.batch_execute("DROP TRIGGER hold ON it_failed").unwrap();
    let (mut other, _) = connect_with_notices();
    let status = other.query_one("SELECT retention.run_policy('it_failed')->>'status'", &[]).unwrap();
    assert_eq!(status.get::<_, String>(0), "succeeded");
    assert_eq!(count(&mut other, "SELECT count(*) FROM it_failed"), 0);
}

/// Issue 10, item 8: disabling a policy is the incident kill switch; a run in progress stops
/// at its next batch, on the batched and the SELECT path, and says so with its counts.
#[test]
fn disabling_a_policy_stops_its_run_in_progress() {
    for (path, call) in [("batched", "CALL retention.run_batched('it_kill')"), ("transaction", "SELECT retention.run_policy('it_kill')")] {
        let mut setup = connect();
        table_with_policy(&mut setup, "it_kill", 6000, 10, 500, Some(0.25));
        let runner = thread::spawn(move || connect().batch_execute(call));
        let mut observer = connect();
        // The batched run's progress is visible; the SELECT run's is not: give it two batches.
        if path == "batched" {
            assert!(wait_for(Duration::from_secs(20), || {
                count(&mut observer, "SELECT coalesce(max(rows_deleted), 0) FROM retention.runs WHERE policy = 'it_kill' AND status = 'running'") >= 1000
            }));
        } else {
            thread::sleep(Duration::from_millis(600));
        }
        observer.batch_execute("SELECT retention.alter_policy('it_kill', enabled => false)").unwrap();
        runner.join().unwrap().expect("a stopped run is no error");
        let row = observer
            .query_one("SELECT status, rows_deleted, error FROM retention.runs WHERE policy = 'it_kill' ORDER BY id DESC LIMIT 1", &[])
            .unwrap();
        let (status, rows, error): (String, i64, Option<String>) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(status, "stopped", "{path}");
        assert!(rows > 0 && rows < 6000, "{path}: {rows} rows");
        assert!(error.as_deref().unwrap_or_default().contains("was disabled during the run"), "{path}: {error:?}");
        let left = count(&mut observer, "SELECT count(*) FROM it_kill");
        assert_eq!(left, 6010 - rows, "{path}: the history counts what was deleted");
    }
}

/// Issue 10, item 10: a VACUUM FULL between two batches of a block-range run rewrites the
/// table into a new file, its rows at lower block numbers than the run had reached. The run
/// notices and starts over on the new file, rather than skip those rows and call it success.
#[test]
fn a_table_rewrite_during_a_block_range_run_leaves_no_expired_row() {
    let mut setup = connect();
    table_with_policy(&mut setup, "it_rewrite", 40000, 2000, 2000, Some(0.15));
    setup.batch_execute("ANALYZE it_rewrite").unwrap();

    let runner = thread::spawn(|| {
        let mut client = connect();
        client.batch_execute("CALL retention.run_batched('it_rewrite')").expect("batched run");
    });
    let mut observer = connect();
    assert!(wait_for(Duration::from_secs(30), || {
        count(&mut observer, "SELECT coalesce(max(rows_deleted), 0) FROM retention.runs WHERE policy = 'it_rewrite' AND status = 'running'") >= 8000
    }));
    observer.batch_execute("VACUUM FULL it_rewrite").unwrap();
    runner.join().unwrap();

    assert_eq!(count(&mut observer, "SELECT count(*) FROM it_rewrite WHERE at < now()"), 0, "expired rows left behind");
    assert_eq!(count(&mut observer, "SELECT count(*) FROM it_rewrite"), 2000);
    let row = observer.query_one("SELECT status, rows_deleted FROM retention.runs WHERE policy = 'it_rewrite'", &[]).unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, i64>(1)), ("succeeded".into(), 40000));
}

/// Issue 10, item 6: a `running` row whose session lives on but no longer runs it (its
/// transaction ended under it) is no live run. The status view goes by the policy's lock, which
/// a live batched run holds from its first commit to its last.
#[test]
fn the_status_view_shows_a_run_as_running_only_while_its_backend_holds_the_policy() {
    let mut setup = connect();
    table_with_policy(&mut setup, "it_live", 3000, 0, 500, Some(0.3));
    let runner = thread::spawn(|| {
        let mut client = connect();
        client.batch_execute("CALL retention.run_batched('it_live')").expect("batched run");
    });
    let mut observer = connect();
    let shown = |observer: &mut postgres::Client| -> String {
        observer.query_one("SELECT last_status FROM retention.status WHERE policy = 'it_live'", &[]).unwrap().get(0)
    };
    assert!(wait_for(Duration::from_secs(10), || {
        count(&mut observer, "SELECT count(*) FROM retention.runs WHERE policy = 'it_live' AND status = 'running'") == 1
    }));
    assert_eq!(shown(&mut observer), "running");
    runner.join().unwrap();
    assert_eq!(shown(&mut observer), "succeeded");

    // A live session (this one) that holds no lock on the policy.
    observer
        .batch_execute(
            "INSERT INTO retention.runs (policy, trigger, mode, status, pid) VALUES ('it_live', 'sql', 'batched', 'running', pg_backend_pid())",
        )
        .unwrap();
    assert_eq!(shown(&mut observer), "interrupted");
    observer.batch_execute("CALL retention.run_batched('it_live')").unwrap();
    let statuses: Vec<String> =
        observer.query("SELECT status FROM retention.runs WHERE policy = 'it_live' ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(statuses, vec!["succeeded", "interrupted", "succeeded"]);
}

/// A batch cancelled after its rows were counted (here, while its progress is written) is
/// rolled back, and so are its counts: the history never says more rows went than did. A
/// superuser's trigger on the history makes that write slow, once.
#[test]
fn a_batch_cancelled_while_its_progress_is_written_is_not_counted() {
    let mut setup = connect();
    table_with_policy(&mut setup, "it_progress_cancel", 600, 5, 200, None);
    setup
        .batch_execute(
            "DROP SEQUENCE IF EXISTS it_sleep_once; CREATE SEQUENCE it_sleep_once;
             CREATE OR REPLACE FUNCTION public.it_slow_progress() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 -- nextval is not rolled back: the second batch's progress write sleeps, only it
                 IF NEW.policy = 'it_progress_cancel' AND NEW.status = 'running' AND NEW.batches >= 2
                    AND nextval('public.it_sleep_once') = 1 THEN
                     PERFORM pg_sleep(30);
                 END IF;
                 RETURN NEW;
             END $$;
             DROP TRIGGER IF EXISTS it_slow_progress ON retention.runs;
             CREATE TRIGGER it_slow_progress BEFORE UPDATE ON retention.runs FOR EACH ROW EXECUTE FUNCTION public.it_slow_progress();",
        )
        .unwrap();
    let runner = thread::spawn(|| {
        let mut client = connect();
        client
            .batch_execute("CALL retention.run_batched('it_progress_cancel')")
            .map_err(|e| e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()))
    });
    let mut observer = connect();
    let sleeping = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE 'CALL retention.run_batched(''it_progress_cancel'')%'";
    assert!(wait_for(Duration::from_secs(20), || !observer.query(sleeping, &[]).unwrap().is_empty()), "the second progress write sleeps");
    let pid: i32 = observer.query_one(sleeping, &[]).unwrap().get(0);
    observer.batch_execute(&format!("SELECT pg_cancel_backend({pid})")).unwrap();
    let outcome = runner.join().unwrap();
    assert!(outcome.unwrap_err().contains("canceling statement"), "the CALL was cancelled");
    observer.batch_execute("DROP TRIGGER it_slow_progress ON retention.runs; DROP FUNCTION public.it_slow_progress(); DROP SEQUENCE it_sleep_once;").unwrap();
    let gone = 600 - count(&mut observer, "SELECT count(*) FROM it_progress_cancel WHERE at < now()");
    let recorded = count(&mut observer, "SELECT rows_deleted FROM retention.runs WHERE policy = 'it_progress_cancel' ORDER BY id DESC LIMIT 1");
    let runs: Vec<String> = observer
        .query("SELECT format('%s %s rows in %s batches: %s', status, rows_deleted, batches, error) FROM retention.runs WHERE policy = 'it_progress_cancel'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(gone < 600, "the cancelled batch rolled back: {gone} gone; {runs:?}");
    assert_eq!(recorded, gone, "the history counts what went: {runs:?}");
    observer.batch_execute("DROP TABLE it_progress_cancel; DELETE FROM retention.policies WHERE name = 'it_progress_cancel';").unwrap();
}

/// Issue 22, item 7: a `SELECT retention.run_policy(...)` left open in its transaction (its
/// history pruning took row locks there) does not stall another policy's run.
#[test]
fn a_run_left_open_in_its_transaction_stalls_no_other_policy() {
    let mut setup = connect();
    table_with_policy(&mut setup, "it_open_a", 20, 1, 100, None);
    table_with_policy(&mut setup, "it_open_b", 20, 1, 100, None);
    // History old enough to prune, as a database has after its first 90 days.
    setup
        .batch_execute(
            "INSERT INTO retention.runs (policy, trigger, mode, status, started_at, finished_at)
             SELECT 'it_open_old', 'sql', 'transaction', 'succeeded', now() - interval '400 days', now() - interval '400 days'
               FROM generate_series(1, 5)",
        )
        .unwrap();
    let mut open = connect();
    open.batch_execute("BEGIN; SELECT retention.run_policy('it_open_a');").unwrap();
    let mut other = connect();
    other.batch_execute("SET statement_timeout = '10s'").unwrap();
    let started = std::time::Instant::now();
    let ran = other.batch_execute("SELECT retention.run_policy('it_open_b')");
    assert!(ran.is_ok(), "the other policy's run goes on: {ran:?}");
    let ran = other.batch_execute("CALL retention.run_batched('it_open_b')");
    assert!(ran.is_ok(), "and its batched run: {ran:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "without waiting: {:?}", started.elapsed());
    open.batch_execute("COMMIT").unwrap();
    // Whichever transaction pruned them, the old rows are gone once the open one commits.
    assert_eq!(count(&mut setup, "SELECT count(*) FROM retention.runs WHERE policy = 'it_open_old'"), 0);
    assert_eq!(count(&mut setup, "SELECT count(*) FROM it_open_a") + count(&mut setup, "SELECT count(*) FROM it_open_b"), 2);
    setup.batch_execute("DROP TABLE it_open_a, it_open_b; DELETE FROM retention.policies WHERE name IN ('it_open_a', 'it_open_b');").unwrap();
}

/// Issue 22, item 15: an auditor's `verify_ledger()` left open in its transaction does not stop
/// the sealing of other runs' entries.
#[test]
fn an_open_verify_ledger_stops_no_sealing() {
    let mut setup = connect();
    table_with_policy(&mut setup, "it_audit", 10, 1, 100, None);
    // An entry waiting to be sealed, as a SELECT run leaves it.
    setup.batch_execute("SELECT retention.run_policy('it_audit')").unwrap();
    let (mut auditor, notices) = connect_with_notices();
    auditor.batch_execute("BEGIN; SELECT retention.verify_ledger();").unwrap();
    setup.batch_execute("INSERT INTO it_audit SELECT g, now() - interval '1 day' FROM generate_series(100, 109) g").unwrap();
    let mut runner = connect();
    runner.batch_execute("SET statement_timeout = '10s'").unwrap();
    runner.batch_execute("CALL retention.run_batched('it_audit')").unwrap();
    let sealed = "SELECT count(*) FROM retention.runs WHERE policy = 'it_audit' AND details ? 'ledger_id'";
    assert_eq!(count(&mut setup, sealed), 2, "the batched run sealed both entries while the auditor's transaction is open");
    assert!(notices.lock().unwrap().iter().any(|n| n.contains("transaction block")), "the auditor is told it did not seal: {:?}", notices.lock().unwrap());
    auditor.batch_execute("COMMIT").unwrap();
    assert!(setup.query_one("SELECT retention.verify_ledger()", &[]).unwrap().get::<_, Option<i64>>(0).is_none(), "intact");
    setup.batch_execute("DROP TABLE it_audit; DELETE FROM retention.policies WHERE name = 'it_audit';").unwrap();
}
