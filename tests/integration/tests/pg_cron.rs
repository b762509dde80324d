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
    client
        .batch_execute(
            "SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'it_cron_%';
             SELECT cron.schedule('it_cron_batched', '* * * * *', $$CALL retention.run_batched('it_cron_batched')$$);
             SELECT cron.schedule('it_cron_tx', '* * * * *', $$SELECT retention.run_policy('it_cron_tx')$$);",
        )
        .unwrap();

    let both_ran = wait_for(Duration::from_secs(150), || {
        count(
            &mut client,
            "SELECT count(DISTINCT policy) FROM retention.runs
              WHERE policy IN ('it_cron_batched', 'it_cron_tx') AND trigger = 'pg_cron' AND status = 'succeeded'",
        ) == 2
    });
    client.batch_execute("SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'it_cron_%'").unwrap();
    assert!(both_ran, "both pg_cron jobs should run within two minutes and be recorded with trigger pg_cron");

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
}
