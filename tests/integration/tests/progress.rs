//! Issue 26: `retention.progress`, watched from another session as a DBA would, while runs go
//! through each path: a `SELECT` in a transaction left open, a `CALL` terminated halfway, a
//! recordings run against a slow (fake) Twilio. And a run whose backend is gone is marked
//! `interrupted` by the next run of any policy.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use fake_twilio::FakeTwilio;
use pg_retention_it::{connect, count, reconnect, secret_file, table_with_policy, wait_for};
use postgres::Client;

const ACCOUNT: &str = "AC0000000000000000000000000000a26a";
const TOKEN: &str = "progress-token";

/// The progress row of `policy`, as the view shows it: (pid, run_id, table, phase, rows_done,
/// rows_estimated, batches, requests_in_flight, time_left known).
type Row = (i32, Option<i64>, Option<String>, Option<String>, i64, Option<i64>, i64, i32, bool);

fn progress_of(client: &mut Client, policy: &str) -> Option<Row> {
    client
        .query_opt(
            "SELECT pid, run_id, \"table\"::text, phase, rows_done, rows_estimated, batches, requests_in_flight,
                    time_left IS NOT NULL
               FROM retention.progress WHERE policy = $1",
            &[&policy],
        )
        .expect("read retention.progress")
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8)))
}

/// The backend of `policy`'s run, once the view shows a batch of 100 done.
fn pid_once_a_batch_is_done(watcher: &mut Client, policy: &str) -> i32 {
    let mut pid = 0;
    assert!(
        wait_for(Duration::from_secs(20), || {
            pid = progress_of(watcher, policy).filter(|row| row.4 >= 100).map_or(0, |row| row.0);
            pid != 0
        }),
        "the run of {policy} never showed in retention.progress with a batch done"
    );
    pid
}

#[test]
fn a_select_run_in_an_open_transaction_shows_until_it_returns() {
    let mut watcher = connect();
    // 5 batches of 100 rows, each followed by 0.4 s in a trigger.
    table_with_policy(&mut watcher, "it_progress_select", 500, 20, 100, Some(0.4));
    let (returned, wait_returned) = mpsc::channel();
    let (commit, wait_commit) = mpsc::channel::<()>();
    let runner = thread::spawn(move || {
        let mut client = connect();
        let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        let mut transaction = client.transaction().unwrap();
        transaction.query_one("SELECT retention.run_policy('it_progress_select')", &[]).unwrap();
        returned.send(pid).unwrap();
        wait_commit.recv().unwrap();
        transaction.commit().unwrap();
    });
    let mut seen = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            seen = progress_of(&mut watcher, "it_progress_select").filter(|row| row.4 >= 100);
            seen.is_some()
        }),
        "the run never showed in retention.progress with a batch done"
    );
    let (pid, run_id, table, phase, done, estimated, batches, in_flight, time_left) = seen.unwrap();
    assert_eq!(table.as_deref(), Some("it_progress_select"));
    assert!(matches!(phase.as_deref(), Some("deleting") | Some("sealing")), "phase {phase:?}");
    assert_eq!(estimated, Some(500), "the count preview makes");
    // Every row has the same time: the first batch finds them all tied and takes none, then
    // they go 100 at a time.
    assert!(done % 100 == 0 && batches == done / 100 + 1, "{done} rows in {batches} batches");
    assert_eq!(in_flight, 0);
    assert!(time_left, "a pace is known once a batch is done");
    // The run's history row is not committed (the caller's transaction is open), but it has its id.
    assert!(run_id.is_some());
    let pid_returned = wait_returned.recv_timeout(Duration::from_secs(30)).expect("the run returns");
    assert_eq!(pid, pid_returned);
    // Returned, its transaction still open: no longer in progress.
    assert_eq!(progress_of(&mut watcher, "it_progress_select"), None);
    commit.send(()).unwrap();
    runner.join().unwrap();
    assert_eq!(count(&mut watcher, "SELECT count(*) FROM retention.runs WHERE policy = 'it_progress_select' AND status = 'succeeded' AND rows_deleted = 500"), 1);
}

#[test]
fn a_terminated_run_leaves_no_progress_and_the_next_run_of_any_policy_marks_it_interrupted() {
    let mut watcher = connect();
    table_with_policy(&mut watcher, "it_progress_killed", 1000, 0, 100, Some(0.5));
    table_with_policy(&mut watcher, "it_progress_next", 10, 0, 100, None);
    let runner = thread::spawn(|| {
        let mut client = connect();
        // Terminated halfway: the connection's error is the expected end.
        let _ = client.batch_execute("CALL retention.run_batched('it_progress_killed')");
    });
    let pid = pid_once_a_batch_is_done(&mut watcher, "it_progress_killed");
    watcher.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap();
    runner.join().unwrap();
    assert!(wait_for(Duration::from_secs(10), || count(&mut watcher, &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")) == 0));
    assert_eq!(progress_of(&mut watcher, "it_progress_killed"), None, "nothing left behind by a terminated run");
    let status = |client: &mut Client| -> String {
        client
            .query_one("SELECT status FROM retention.runs WHERE policy = 'it_progress_killed' ORDER BY id DESC LIMIT 1", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(status(&mut watcher), "running", "its backend died before it could say");
    // A run of another policy marks it: the history does not wait for this policy's next run.
    watcher.query_one("SELECT retention.run_policy('it_progress_next')", &[]).unwrap();
    assert_eq!(status(&mut watcher), "interrupted");
}

#[test]
fn a_recordings_run_shows_its_twilio_calls_in_flight() {
    let fake = FakeTwilio::start(ACCOUNT, vec![(ACCOUNT.into(), TOKEN.into())]);
    fake.set_latency(Duration::from_millis(300));
    let sids: Vec<String> = (1..=48).map(|n| format!("RE{n:032x}")).collect();
    fake.add_recordings(sids.iter().cloned());
    let settings = format!(
        "SET pg_retention.twilio_account_sid = '{ACCOUNT}'; SET pg_retention.twilio_secret_file = '{}';
         SET pg_retention.twilio_base_url = '{}'; SET pg_retention.twilio_concurrency = 4;",
        secret_file("progress-token.secret", TOKEN),
        fake.base_url()
    );
    let mut watcher = connect();
    watcher
        .batch_execute(
            "DROP TABLE IF EXISTS it_progress_rec;
             DELETE FROM retention.policies WHERE name = 'it_progress_rec';
             CREATE TABLE it_progress_rec (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, sid text, deleted_at timestamptz);
             INSERT INTO it_progress_rec SELECT g, now() - interval '100 days', 'RE' || lpad(to_hex(g), 32, '0'), NULL
               FROM generate_series(1, 48) g;
             SELECT retention.add_policy('it_progress_rec', 'it_progress_rec', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at',
                                         sid_column => 'sid', id_column => 'id', batch_size => 16);",
        )
        .unwrap();
    let runner = thread::spawn(move || {
        let mut client = connect();
        client.batch_execute(&settings).unwrap();
        client.batch_execute("CALL retention.run_batched('it_progress_rec')").unwrap();
    });
    let mut seen = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            seen = progress_of(&mut watcher, "it_progress_rec").filter(|row| row.3.as_deref() == Some("calling twilio") && row.7 > 0);
            seen.is_some()
        }),
        "the run never showed Twilio calls in flight"
    );
    let (_, _, _, _, _, estimated, _, in_flight, _) = seen.unwrap();
    assert!(in_flight <= 4, "{in_flight} in flight with twilio_concurrency 4");
    assert_eq!(estimated, Some(48));
    runner.join().unwrap();
    assert_eq!(progress_of(&mut watcher, "it_progress_rec"), None);
    assert_eq!(count(&mut watcher, "SELECT count(*) FROM it_progress_rec WHERE deleted_at IS NOT NULL"), 48);
}

/// A run's backend killed (SIGKILL: the server restarts as after a crash) leaves no row behind:
/// shared memory is made anew; and the run shows `interrupted` from the next run on.
#[test]
fn a_crashed_run_leaves_no_progress_behind() {
    let mut watcher = connect();
    table_with_policy(&mut watcher, "it_progress_crash", 600, 0, 100, Some(0.5));
    let runner = thread::spawn(|| {
        let mut client = connect();
        let _ = client.batch_execute("CALL retention.run_batched('it_progress_crash')");
    });
    let pid = pid_once_a_batch_is_done(&mut watcher, "it_progress_crash");
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    runner.join().unwrap();
    drop(watcher);
    assert!(wait_for(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{pid}")).exists()), "reaped");
    let mut watcher = reconnect();
    assert_eq!(progress_of(&mut watcher, "it_progress_crash"), None, "nothing left behind by a crashed run");
    assert_eq!(count(&mut watcher, "SELECT count(*) FROM retention.progress"), 0);
    table_with_policy(&mut watcher, "it_progress_after", 5, 0, 100, None);
    watcher.query_one("SELECT retention.run_policy('it_progress_after')", &[]).unwrap();
    let status: String = watcher
        .query_one("SELECT status FROM retention.runs WHERE policy = 'it_progress_crash' ORDER BY id DESC LIMIT 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(status, "interrupted");
}
