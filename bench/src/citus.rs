//! The Citus scenario: a three-node cluster of its own (tests/citus/cluster.sh), the traces
//! table hash-distributed by "tenantId" over 32 shards; one plain multi-shard `DELETE` on a
//! co-located copy against `CALL retention.run_batched`, in one session, one after the other.

use std::process::Command;

use postgres::{Client, Config, NoTls};

use super::{exec, line, longest_transaction, one, timed, Line, Scale};

const DIR: &str = "/tmp/pg_retention-bench-citus";
const PORT: u16 = 54340;
const SCRIPT: &str = "tests/citus/cluster.sh";

/// A Prisma-shaped trace table on Citus: ~200-byte payloads, 30% never expiring, the rest
/// created over 180 days with a 90-day expiry (about a third of all rows expired).
fn distributed_traces(client: &mut Client, name: &str, rows: i64) {
    exec(
        client,
        &format!(
            "DROP TABLE IF EXISTS {name};
             CREATE TABLE {name} (id text NOT NULL, \"tenantId\" text NOT NULL, \"createdAt\" timestamp(3) NOT NULL,
                 payload text NOT NULL, \"expiresAt\" timestamp(3), PRIMARY KEY (\"tenantId\", id));
             CREATE INDEX ON {name} (\"expiresAt\");
             SELECT create_distributed_table('{name}', 'tenantId', shard_count => 32);
             INSERT INTO {name}
             SELECT 'ct_' || g, 't' || g % 1000, created, repeat(md5(g::text), 6),
                    CASE WHEN g % 10 < 3 THEN NULL ELSE created + interval '90 days' END
               FROM (SELECT g, timezone('UTC', now()) - (g::float8 / {rows}) * interval '180 days' AS created
                       FROM generate_series(1, {rows}) g) s;"
        ),
    );
    exec(client, &format!("VACUUM ANALYZE {name}"));
}

pub fn scenario(scale: &Scale, lines: &mut Vec<Line>) {
    let available = Command::new(SCRIPT)
        .arg("available")
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        lines.push(line(
            "Citus: purge",
            "skipped: Citus is not installed (.ci/citus.sh)".into(),
            String::new(),
            String::new(),
            ">= 0.8x",
        ));
        return;
    }
    let run = |args: &[&str]| {
        let out = Command::new(SCRIPT)
            .args(args)
            .output()
            .expect("run tests/citus/cluster.sh");
        assert!(
            out.status.success(),
            "{SCRIPT} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["stop", DIR]);
    let _ = std::fs::remove_dir_all(DIR);
    run(&["start", DIR, &PORT.to_string()]);

    let mut config = Config::new();
    config
        .host(&format!("{DIR}/coordinator"))
        .port(PORT)
        .user("postgres")
        .dbname("postgres")
        .application_name("pg_retention_bench");
    let mut client = config
        .connect(NoTls)
        .expect("connect to the Citus coordinator");
    exec(&mut client, "CREATE EXTENSION pg_retention");
    let rows = scale.citus_rows;
    distributed_traces(&mut client, "\"ConversationTrace\"", rows);
    distributed_traces(&mut client, "traces_plain", rows);
    exec(&mut client, "CHECKPOINT");
    let count = |c: &mut Client, table: &str, condition: &str| -> i64 {
        one(
            c,
            &format!("SELECT count(*) FROM {table} WHERE {condition}"),
        )
    };
    let expired = count(
        &mut client,
        "traces_plain",
        "\"expiresAt\" < timezone('UTC', now())",
    );
    let nulls = count(
        &mut client,
        "\"ConversationTrace\"",
        "\"expiresAt\" IS NULL",
    );

    let plain = timed(
        &mut client,
        "DELETE FROM traces_plain WHERE \"expiresAt\" < timezone('UTC', now())",
    );
    let batched = timed(&mut client, "CALL retention.run_batched('expired_traces')");
    let (deleted, batches, longest): (i64, i32, f64) = {
        let row = client
            .query_one(
                "SELECT rows_deleted, batches, (details->>'longest_transaction_ms')::float8 FROM retention.runs
                  WHERE policy = 'expired_traces' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .expect("the run's history");
        (row.get(0), row.get(1), row.get(2))
    };
    assert!(
        deleted >= expired,
        "pg_retention deleted {deleted}, fewer than the {expired} expired"
    );
    assert_eq!(
        count(
            &mut client,
            "\"ConversationTrace\"",
            "\"expiresAt\" < timezone('UTC', now())"
        ),
        0,
        "every expired row gone"
    );
    assert_eq!(
        count(
            &mut client,
            "\"ConversationTrace\"",
            "\"expiresAt\" IS NULL"
        ),
        nulls,
        "every NULL row kept"
    );
    let (plain_rate, batched_rate) = (expired as f64 / plain, deleted as f64 / batched);
    lines.push(line(
        &format!(
            "Citus (coordinator + 2 workers, 32 shards): purge {expired} of {rows} rows: rows/s"
        ),
        format!(
            "{plain_rate:.0} (one multi-shard DELETE, {:.0} ms)",
            plain * 1000.0
        ),
        format!(
            "{batched_rate:.0} ({:.0} ms, {batches} batches)",
            batched * 1000.0
        ),
        format!("{:.2}x", batched_rate / plain_rate),
        ">= 0.8x",
    ));
    lines.push(longest_transaction("Citus: longest transaction", plain, longest));
    drop(client);
    run(&["stop", DIR]);
}
