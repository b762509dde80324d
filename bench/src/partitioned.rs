//! The partitioned scenario: a table range-partitioned by `"expiresAt"` in 10-day partitions,
//! about half of it expired, a DEFAULT partition holding the NULL-expiry rows. One plain
//! `DELETE` on a copy against `CALL retention.run_batched`; then live traffic (pgbench inserting
//! into the partitioned table) alone and during a purge.

use postgres::Client;

use super::traffic::{during_purge, pgbench};
use super::{connect, exec, line, one, timed, Line, Scale};

/// Twenty 10-day partitions from 100 days ago to 100 days ahead, and a DEFAULT one. One row in
/// 20 has no expiry (DEFAULT); the others spread over the first 19 partitions, so that ten are
/// wholly expired, one straddles now, and eight are live.
fn partitioned_table(client: &mut Client, name: &str, rows: i64) {
    exec(
        client,
        &format!(
            "DROP TABLE IF EXISTS {name};
             CREATE TABLE {name} (id text NOT NULL, payload text NOT NULL, \"expiresAt\" timestamp(3)) PARTITION BY RANGE (\"expiresAt\");
             DO $$
             DECLARE first timestamp := date_trunc('day', timezone('UTC', now())) - interval '100 days';
             BEGIN
                 FOR i IN 0..19 LOOP
                     EXECUTE format('CREATE TABLE %I PARTITION OF {name} FOR VALUES FROM (%L) TO (%L)',
                                    '{name}_' || i, first + i * interval '10 days', first + (i + 1) * interval '10 days');
                 END LOOP;
             END $$;
             CREATE TABLE {name}_default PARTITION OF {name} DEFAULT;
             CREATE INDEX ON {name} (\"expiresAt\");
             INSERT INTO {name}
             SELECT 'ct_' || g, repeat(md5(g::text), 6) || 'padding',
                    CASE WHEN g % 20 = 0 THEN NULL
                         ELSE date_trunc('day', timezone('UTC', now())) - interval '100 days'
                              + (g % 19) * interval '10 days' + (g % 864000) * interval '1 second' END
               FROM generate_series(1, {rows}) g;"
        ),
    );
    exec(client, &format!("VACUUM ANALYZE {name}"));
}

pub fn scenario(scale: &Scale, lines: &mut Vec<Line>) {
    let mut client = connect();
    let rows = scale.partitioned_rows;
    partitioned_table(&mut client, "bench_part_plain", rows);
    partitioned_table(&mut client, "bench_part", rows);
    exec(&mut client, "SELECT retention.add_policy('bench_part', 'bench_part', 'expiresAt', 'expires_at')");
    exec(&mut client, "CHECKPOINT");
    let count = |c: &mut Client, table: &str, condition: &str| -> i64 { one(c, &format!("SELECT count(*) FROM {table} WHERE {condition}")) };
    let expired = count(&mut client, "bench_part", "\"expiresAt\" < timezone('UTC', now())");
    let (nulls, live) = (count(&mut client, "bench_part", "\"expiresAt\" IS NULL"), count(&mut client, "bench_part", "\"expiresAt\" >= timezone('UTC', now())"));

    let plain = timed(&mut client, "DELETE FROM bench_part_plain WHERE \"expiresAt\" < timezone('UTC', now())");
    let batched = timed(&mut client, "CALL retention.run_batched('bench_part')");
    let (deleted, removed, fell_back): (i64, i64, i64) = {
        let row = client
            .query_one(
                "SELECT rows_deleted,
                        (SELECT count(*) FROM jsonb_array_elements(details->'partitions') e WHERE e->>'action' = 'dropped'),
                        (SELECT count(*) FROM jsonb_array_elements(details->'partitions') e WHERE e->>'action' <> 'dropped')
                   FROM retention.runs WHERE policy = 'bench_part' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .expect("the run's history");
        (row.get(0), row.get(1), row.get(2))
    };
    // Rows expired between the count and the run (none: the next partition starts days ahead
    // of now only in its time, but rows near now do expire) are checked by what is left.
    assert!(deleted >= expired, "pg_retention deleted {deleted}, fewer than the {expired} expired");
    assert_eq!(count(&mut client, "bench_part", "\"expiresAt\" < timezone('UTC', now())"), 0, "every expired row gone");
    assert_eq!(count(&mut client, "bench_part", "\"expiresAt\" IS NULL"), nulls, "every NULL row kept");
    let kept_live = count(&mut client, "bench_part", "\"expiresAt\" IS NOT NULL");
    assert!(kept_live + (deleted - expired) >= live, "every live row kept");
    let (plain_rate, batched_rate) = (expired as f64 / plain, deleted as f64 / batched);
    lines.push(line(
        &format!("partitioned: purge {expired} of {rows} rows (10-day partitions): rows/s"),
        format!("{plain_rate:.0} ({:.0} ms)", plain * 1000.0),
        format!("{batched_rate:.0} ({:.0} ms; {removed} partitions dropped, {fell_back} fell back to rows)", batched * 1000.0),
        format!("{:.1}x", batched_rate / plain_rate),
        ">= 10x",
    ));
    exec(&mut client, "DROP TABLE bench_part_plain, bench_part; SELECT retention.drop_policy('bench_part');");
    live_traffic(scale, lines);
}

/// pgbench inserting into a partitioned table, alone and during a purge of it. The purge
/// lasts tens of milliseconds, so the window is the purge and the second after it: an insert
/// that queued behind a partition's lock would finish in it.
fn live_traffic(scale: &Scale, lines: &mut Vec<Line>) {
    let mut client = connect();
    partitioned_table(&mut client, "bench_part_live", scale.partitioned_rows);
    exec(&mut client, "SELECT retention.add_policy('bench_part_live', 'bench_part_live', 'expiresAt', 'expires_at')");
    exec(&mut client, "CHECKPOINT");
    let traffic = "INSERT INTO bench_part_live (id, payload, \"expiresAt\") VALUES (md5(random()::text), 'new trace', timezone('UTC', now()) + interval '90 days');\n";
    let alone = pgbench(scale, "part_alone", traffic, None);

    let (during, purge_seconds) = during_purge(scale, "part_during", traffic, "bench_part_live", 1.0);
    let (deleted, longest): (i64, f64) = {
        let row = client
            .query_one(
                "SELECT rows_deleted, (details->>'longest_transaction_ms')::float8 FROM retention.runs
                  WHERE policy = 'bench_part_live' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .expect("the run's history");
        (row.get(0), row.get(1))
    };
    // The window holds about as many transactions as one second of the run alone: its p99 is
    // the third worst of ~200, which background noise alone moves. Each second of the run alone
    // gives the same statistic without a purge.
    let (second_median, second_p90) = (alone.second_p99(0.5), alone.second_p99(0.9));
    lines.push(line(
        &format!("partitioned, live inserts at {} tx/s: p50 / p99 ms", scale.traffic_rate),
        format!(
            "{:.2} / {:.2} (alone, {} tx); p99 of each second alone: median {second_median:.2}, 90th percentile {second_p90:.2} ({} seconds)",
            alone.p50,
            alone.p99,
            alone.count,
            alone.seconds()
        ),
        format!(
            "{:.2} / {:.2} (the {} tx started during the purge of {deleted} rows, {:.0} ms, or the second after; longest purge transaction {longest:.0} ms)",
            during.p50,
            during.p99,
            during.count,
            purge_seconds * 1000.0
        ),
        format!("p99 {:.2}x (against one second alone: {:.2}x the median)", during.p99 / alone.p99, during.p99 / second_median),
        "p99 <= 1.5x",
    ));
    lines.push(line("partitioned, live inserts: failed transactions", format!("{}", alone.failed), format!("{}", during.failed), String::new(), "0"));
    exec(&mut client, "DROP TABLE bench_part_live; SELECT retention.drop_policy('bench_part_live');");
}
