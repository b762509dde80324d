//! Real pg_cron (Debian's 1.4, minute granularity) runs both paths and the history says so.

use std::time::Duration;

use pg_retention_it::{connect, count, drop_owned_table, owned_by_ordinary_role_with_witness, table_with_policy, wait_for};

#[test]
fn pg_cron_jobs_run_and_are_recorded() {
    let mut client = connect();
    client.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron").unwrap();
    table_with_policy(&mut client, "it_cron_batched", 2500, 5, 1000, None);
    table_with_policy(&mut client, "it_cron_tx", 700, 5, 1000, None);
    // The batched job's table belongs to an ordinary role whose trigger records who deletes:
    // pg_cron runs the job as a superuser, the run acts as the table's owner.
    owned_by_ordinary_role_with_witness(&mut client, "it_cron_batched", "it_cron_owner");
    // A partitioned table too: its expired partition is detached, counted, and dropped by the
    // dropper, started from pg_cron's job worker.
    client
        .batch_execute(
            "DROP TABLE IF EXISTS it_cron_part;
             DELETE FROM retention.policies WHERE name = 'it_cron_part';
             CREATE TABLE it_cron_part (id int, at timestamptz) PARTITION BY RANGE (at);
             CREATE TABLE it_cron_part_2019 PARTITION OF it_cron_part FOR VALUES FROM ('2019-01-01 00:00+00') TO ('2020-01-01 00:00+00');
             CREATE TABLE it_cron_part_later PARTITION OF it_cron_part FOR VALUES FROM ('2020-01-01 00:00+00') TO (MAXVALUE);
             INSERT INTO it_cron_part SELECT g, '2019-06-01 00:00+00' FROM generate_series(1, 300) g;
             INSERT INTO it_cron_part SELECT g, now() + interval '1 day' FROM generate_series(301, 305) g;
             SELECT retention.add_policy('it_cron_part', 'it_cron_part', 'at', 'expires_at');",
        )
        .unwrap();
    client
        .batch_execute(
            "SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'it_cron_%';
             SELECT cron.schedule('it_cron_batched', '* * * * *', $$CALL retention.run_batched('it_cron_batched')$$);
             SELECT cron.schedule('it_cron_tx', '* * * * *', $$SELECT retention.run_policy('it_cron_tx')$$);
             SELECT cron.schedule('it_cron_part', '* * * * *', $$CALL retention.run_batched('it_cron_part')$$);",
        )
        .unwrap();

    let all_ran = wait_for(Duration::from_secs(150), || {
        count(
            &mut client,
            "SELECT count(DISTINCT policy) FROM retention.runs
              WHERE policy IN ('it_cron_batched', 'it_cron_tx', 'it_cron_part') AND trigger = 'pg_cron' AND status = 'succeeded'",
        ) == 3
    });
    client.batch_execute("SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'it_cron_%'").unwrap();
    assert!(all_ran, "the three pg_cron jobs should run within two minutes and be recorded with trigger pg_cron");
    // pg_cron's runs (a SELECT one among them) have their ledger entries, and the chain verifies.
    let broken: Option<i64> = client.query_one("SELECT retention.verify_ledger()", &[]).unwrap().get(0);
    assert_eq!(broken, None);
    let unrecorded = count(
        &mut client,
        "SELECT count(*) FROM retention.runs r WHERE r.policy LIKE 'it_cron_%' AND r.trigger = 'pg_cron' AND r.status NOT IN ('running', 'skipped')
            AND NOT EXISTS (SELECT FROM retention.ledger l WHERE (l.entry->>'run_id')::bigint = r.id)",
    );
    assert_eq!(unrecorded, 0, "every finished pg_cron run has its ledger entry");

    let rows: Vec<(String, String, i64)> = client
        .query(
            "SELECT policy, mode, rows_deleted FROM retention.runs
              WHERE policy IN ('it_cron_batched', 'it_cron_tx') AND rows_deleted > 0 ORDER BY policy",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![("it_cron_batched".into(), "batched".into(), 2500), ("it_cron_tx".into(), "transaction".into(), 700)]
    );
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_cron_batched"), 5);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_cron_tx"), 5);
    let cron_ok = count(
        &mut client,
        "SELECT count(*) FROM cron.job_run_details
          WHERE command LIKE '%it_cron_%' AND status = 'succeeded'",
    );
    assert!(cron_ok >= 2, "cron.job_run_details should show the jobs succeeded");
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_cron_batched_saw WHERE who = 'it_cron_owner' AND NOT superuser"), 2500);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_cron_batched_saw WHERE who <> 'it_cron_owner' OR superuser"), 0);
    assert_eq!(count(&mut client, "SELECT count(*) FROM pg_roles WHERE rolname = 'it_cron_owner' AND rolsuper"), 0);
    drop_owned_table(&mut client, "it_cron_batched", "it_cron_owner");
    assert_eq!(
        count(&mut client, "SELECT rows_deleted FROM retention.runs WHERE policy = 'it_cron_part' AND status = 'succeeded' ORDER BY id LIMIT 1"),
        300
    );
    assert!(
        wait_for(Duration::from_secs(20), || count(&mut client, "SELECT count(*) FROM pg_class WHERE relname = 'it_cron_part_2019'") == 0),
        "the dropper dropped the partition pg_cron's run detached"
    );
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_cron_part"), 5);
    client.batch_execute("DROP TABLE it_cron_part; SELECT retention.drop_policy('it_cron_part');").unwrap();
}
