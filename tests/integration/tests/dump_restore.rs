//! Issue 10, item 9: `pg_dump -Fc` + `pg_restore`, and `pg_dumpall | psql`, reproduce the
//! policies (altered presets, removed presets, custom policies), the run history and the ledger exactly,
//! column by column, with no error from the presets that `CREATE EXTENSION` makes again; also
//! from a database that came to this release by `ALTER EXTENSION ... UPDATE` from 0.2.0. A table
//! whose expired rows `hide_expired` hides comes back hidden, exactly, and can be shown again.

use pg_retention_it::{as_server_owner, connect, connect_to, fresh_database, OtherCluster, pg_bin};
use postgres::Client;

/// Every row of a retention table as JSON text, in id order (name order for removed presets).
fn rows(client: &mut Client, table: &str) -> Vec<String> {
    let order = match table {
        "retention.removed_presets" => "name",
        "retention.hidden_tables" => "policy_id, relid::text",
        _ => "id",
    };
    client
        .query(&format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY {order}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const TABLES: [&str; 5] = ["retention.policies", "retention.runs", "retention.removed_presets", "retention.ledger", "retention.hidden_tables"];

/// `hide_expired`'s row-level security on its table: the flags and every policy.
const HIDING: &str = "SELECT concat_ws(' ', relrowsecurity, relforcerowsecurity) FROM pg_class WHERE oid = 'hidden_events'::regclass
                      UNION ALL
                      SELECT * FROM (SELECT concat_ws(' ', policyname, permissive, roles, cmd, qual, with_check) FROM pg_policies
                                      WHERE tablename = 'hidden_events' ORDER BY policyname) p";

/// The retention tables' rows, then the hidden table's row-level security.
fn snapshot(client: &mut Client) -> Vec<Vec<String>> {
    let mut all: Vec<Vec<String>> = TABLES.iter().map(|t| rows(client, t)).collect();
    all.push(client.query(HIDING, &[]).unwrap().iter().map(|r| r.get(0)).collect());
    all
}

const SNAPSHOT_PARTS: [&str; 6] = [TABLES[0], TABLES[1], TABLES[2], TABLES[3], TABLES[4], "hidden_events' row-level security"];

/// A source database with an altered preset, a removed one, an untouched one, a custom policy
/// with a pace limit on a table of its own, and some history.
fn source(name: &str, version: Option<&str>) -> Client {
    let mut db = fresh_database(name);
    match version {
        None => db.batch_execute("CREATE EXTENSION pg_retention").unwrap(),
        Some(version) => {
            // An older release's database: its rows are written as that release would (this
            // library refuses to work on older SQL, so the trigger is bypassed), then updated.
            db.batch_execute(&format!(
                "CREATE EXTENSION pg_retention VERSION '{version}';
                 ALTER TABLE retention.policies DISABLE TRIGGER policies_validate;
                 UPDATE retention.policies SET batch_size = 777 WHERE name = 'old_agent_usage';
                 DELETE FROM retention.policies WHERE name = 'expired_traces';
                 ALTER TABLE retention.policies ENABLE TRIGGER policies_validate;
                 INSERT INTO retention.runs (policy, trigger, mode, status, rows_deleted, finished_at)
                 VALUES ('old_agent_usage', 'sql', 'transaction', 'succeeded', 12, now());
                 ALTER EXTENSION pg_retention UPDATE;"
            ))
            .unwrap();
        }
    }
    db.batch_execute(
        "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL, gone_at timestamptz, why text);
         INSERT INTO events SELECT g, now() - interval '10 days', NULL, NULL FROM generate_series(1, 50) g;
         SELECT retention.add_policy('old_events', 'events', 'at', 'older_than', interval '7 days',
                                     action => 'soft_delete', soft_delete_column => 'gone_at',
                                     reason_column => 'why', deletion_reason => 'policy', batch_size => 20,
                                     max_rows_per_second => 100000);
         SELECT retention.run_policy('old_events');
         SELECT retention.run_policy('old_events');
         CREATE TABLE hidden_events (id bigint PRIMARY KEY, at timestamptz NOT NULL);
         INSERT INTO hidden_events SELECT g, now() - g * interval '1 day' FROM generate_series(1, 20) g;
         SELECT retention.add_policy('hidden_events', 'hidden_events', 'at', 'older_than', interval '7 days', hide_expired => true);",
    )
    .unwrap();
    if version.is_none() {
        db.batch_execute(
            "SELECT retention.alter_policy('old_agent_usage', batch_size => 777, retain => interval '30 days');
             SELECT retention.drop_policy('expired_traces');",
        )
        .unwrap();
    }
    db
}

fn check_restored(source_db: &mut Client, restored_name: &str) {
    let mut restored = connect_to(restored_name);
    let (before, after) = (snapshot(source_db), snapshot(&mut restored));
    for (i, part) in SNAPSHOT_PARTS.iter().enumerate() {
        assert_eq!(before[i], after[i], "{part} after the restore");
    }
    assert_eq!(before[5].len(), 5, "the flags and four policies: {:?}", before[5]);
    let names: Vec<String> = restored.query("SELECT name FROM retention.policies ORDER BY name", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(names, vec!["hidden_events", "old_agent_usage", "old_events", "old_recordings"], "the removed preset stays removed");
    // The restored hiding is whole: turning it off puts the table back as it was before it.
    restored.batch_execute("SELECT retention.alter_policy('hidden_events', hide_expired => false)").unwrap();
    let left: Vec<String> = restored.query(HIDING, &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(left, vec!["f f"], "no row-level security left");
    // The identity sequences came along: new rows take new ids.
    restored
        .batch_execute(
            "SELECT retention.add_policy('more_events', 'events', 'at', 'older_than', interval '1 day');
             SELECT retention.run_policy('old_events');",
        )
        .unwrap();
    let max_policy: i32 = restored.query_one("SELECT max(id) FROM retention.policies", &[]).unwrap().get(0);
    assert!(before[0].len() as i32 <= max_policy);
    let runs: i64 = restored.query_one("SELECT count(*) FROM retention.runs", &[]).unwrap().get(0);
    assert_eq!(runs as usize, before[1].len() + 1);
    // The restored ledger verifies, and the new run's entry continues its chain.
    let broken: Option<i64> = restored.query_one("SELECT retention.verify_ledger()", &[]).unwrap().get(0);
    assert_eq!(broken, None);
    // (Entries still pending at the dump, of runs in a caller's transaction, were restored too.)
    let last_is_new: bool = restored
        .query_one("SELECT (SELECT (entry->>'run_id')::bigint FROM retention.ledger ORDER BY id DESC LIMIT 1) = (SELECT max(id) FROM retention.runs)", &[])
        .unwrap()
        .get(0);
    assert!(last_is_new, "the new run's entry heads the restored chain");
}

fn dump_file(name: &str) -> String {
    format!("{}/{name}.dump", std::env::var("PGHOST").unwrap())
}

fn pg_dump_and_restore(source_name: &str, restored_name: &str) {
    let (host, port) = (std::env::var("PGHOST").unwrap(), std::env::var("PGPORT").unwrap());
    let file = dump_file(source_name);
    let dump = as_server_owner(&format!("{}/pg_dump", pg_bin()), &["-h", &host, "-p", &port, "-U", "postgres", "-Fc", "-f", &file, source_name]);
    assert!(dump.status.success(), "pg_dump: {}", String::from_utf8_lossy(&dump.stderr));
    drop(fresh_database(restored_name));
    let restore = as_server_owner(
        &format!("{}/pg_restore", pg_bin()),
        &["-h", &host, "-p", &port, "-U", "postgres", "--exit-on-error", "-d", restored_name, &file],
    );
    assert!(restore.status.success(), "pg_restore: {}", String::from_utf8_lossy(&restore.stderr));
    let _ = std::fs::remove_file(&file);
}

#[test]
fn pg_dump_and_pg_restore_reproduce_policies_and_history() {
    let mut db = source("it_dump_src", None);
    pg_dump_and_restore("it_dump_src", "it_dump_dst");
    check_restored(&mut db, "it_dump_dst");
    drop(db);
    let mut admin = connect();
    for name in ["it_dump_src", "it_dump_dst"] {
        admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).unwrap();
    }
}

#[test]
fn a_database_updated_from_0_2_0_dumps_and_restores_too() {
    let mut db = source("it_dump_old", Some("0.2.0"));
    pg_dump_and_restore("it_dump_old", "it_dump_old_dst");
    check_restored(&mut db, "it_dump_old_dst");
    drop(db);
    let mut admin = connect();
    for name in ["it_dump_old", "it_dump_old_dst"] {
        admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).unwrap();
    }
}

/// `pg_dumpall | psql` into a second, empty cluster.
#[test]
fn pg_dumpall_into_a_new_cluster_reproduces_policies_and_history() {
    let mut db = source("it_dumpall", None);
    let (host, port) = (std::env::var("PGHOST").unwrap(), std::env::var("PGPORT").unwrap());
    let file = dump_file("all");
    let dump = as_server_owner(&format!("{}/pg_dumpall", pg_bin()), &["-h", &host, "-p", &port, "-U", "postgres", "-f", &file]);
    assert!(dump.status.success(), "pg_dumpall: {}", String::from_utf8_lossy(&dump.stderr));

    let other = OtherCluster::start("dumpall");
    let load = as_server_owner(&format!("{}/psql", pg_bin()), &["-h", &other.dir, "-p", &other.port, "-U", "postgres", "-X", "-q", "-d", "postgres", "-f", &file]);
    let _ = std::fs::remove_file(&file);
    let errors: Vec<String> = String::from_utf8_lossy(&load.stderr)
        .lines()
        .filter(|l| l.contains("ERROR"))
        .filter(|l| !l.contains("role \"postgres\" already exists"))
        .map(str::to_string)
        .collect();
    assert!(errors.iter().all(|e| !e.contains("retention")), "errors about retention: {errors:?}");

    let mut restored = other.connect("it_dumpall");
    let (before, after) = (snapshot(&mut db), snapshot(&mut restored));
    for (i, part) in SNAPSHOT_PARTS.iter().enumerate() {
        assert_eq!(before[i], after[i], "{part} after pg_dumpall | psql");
    }
    drop(db);
    connect().batch_execute("DROP DATABASE it_dumpall WITH (FORCE)").unwrap();
}
