//! The partitioned scenario: a table range-partitioned by `"expiresAt"` in 10-day partitions,
//! about half of it expired, a DEFAULT partition holding the NULL-expiry rows. One plain
//! `DELETE` on a copy against `CALL retention.run_batched`; then live traffic (pgbench inserting
//! into the partitioned table) alone and during a purge.

use postgres::Client;

use super::traffic::{during_purge, pgbench, Traffic};
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

/// pgbench inserting into a partitioned table, alone and during purges of it. A purge lasts tens
/// of milliseconds, so its window is the purge and the second after it (an insert that queued
/// behind a partition's lock finishes in it): about 200 transactions, whose p99 is their third
/// worst. The scenario purges a fresh copy of the table `traffic_rounds` times with pg_retention
/// and as many times by hand (the plain-SQL way: the ten wholly expired partitions detached in
/// one transaction, then dropped, and a DELETE in the one that straddles now), each under its
/// own pgbench run, alternately, and pools each way's windows: p99s of ~1,000 transactions.
fn live_traffic(scale: &Scale, lines: &mut Vec<Line>) {
    let mut client = connect();
    let traffic = "INSERT INTO bench_part_live (id, payload, \"expiresAt\") VALUES (md5(random()::text), 'new trace', timezone('UTC', now()) + interval '90 days');\n";
    let fresh_table = |client: &mut Client| {
        // The last purge's dropper may still hold the names of the partitions it detached.
        let started = std::time::Instant::now();
        while one::<i64>(client, "SELECT count(*) FROM retention.detached_partitions") > 0 {
            assert!(started.elapsed().as_secs() < 60, "the dropper did not drop the detached partitions within 60 s");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        exec(client, "SELECT retention.drop_policy(name) FROM retention.policies WHERE name = 'bench_part_live'");
        partitioned_table(client, "bench_part_live", scale.partitioned_rows);
        exec(client, "SELECT retention.add_policy('bench_part_live', 'bench_part_live', 'expiresAt', 'expires_at')");
        exec(client, "CHECKPOINT");
    };
    fresh_table(&mut client);
    let alone = pgbench(scale, "part_alone", traffic, scale.traffic_seconds, None);

    let expired: Vec<String> = (0..10).map(|i| format!("bench_part_live_{i}")).collect();
    let by_hand = format!(
        "BEGIN; {} COMMIT; DROP TABLE {}; DELETE FROM ONLY bench_part_live_10 WHERE \"expiresAt\" < timezone('UTC', now());",
        expired.iter().map(|p| format!("ALTER TABLE bench_part_live DETACH PARTITION {p};")).collect::<String>(),
        expired.join(", ")
    );
    let (mut ours, mut plain, mut purges, mut deleted, mut longest) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0.0_f64);
    for round in 0..scale.traffic_rounds {
        for (way, purge) in [("plain", by_hand.as_str()), ("ours", "CALL retention.run_batched('bench_part_live')")] {
            // The first purge, by hand, takes the table the run alone inserted into.
            if round > 0 || way == "ours" {
                fresh_table(&mut client);
            }
            // Two seconds before the purge, the purge, the second after it, and slack.
            let (during, purge_seconds) = during_purge(scale, &format!("part_during_{way}_{round}"), traffic, purge, 1.0, 4);
            if way == "plain" {
                plain.push(during);
                continue;
            }
            let row = client
                .query_one(
                    "SELECT rows_deleted, (details->>'longest_transaction_ms')::float8 FROM retention.runs
                      WHERE policy = 'bench_part_live' ORDER BY id DESC LIMIT 1",
                    &[],
                )
                .expect("the run's history");
            deleted.push(row.get::<_, i64>(0));
            longest = longest.max(row.get(1));
            purges.push(purge_seconds * 1000.0);
            ours.push(during);
        }
    }
    let (during, by_hand) = (Traffic::pooled(&ours), Traffic::pooled(&plain));
    let list = |values: Vec<String>| values.join(", ");
    let each_p99 = |runs: &[Traffic]| {
        let within = runs.iter().filter(|r| r.p99 <= 1.5 * alone.p99).count();
        format!("each purge's own p99: {} ms, {within} of {} within 1.5x", list(runs.iter().map(|r| format!("{:.2}", r.p99)).collect()), runs.len())
    };
    // Each second of the run alone holds about as many transactions as one purge's window: the
    // spread of their p99s is what one window's p99 would show without a purge.
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
            "{:.2} / {:.2} (the {} tx started during {} purges or the second after each; purges of {} rows, {} ms; longest purge transaction {longest:.0} ms; {})",
            during.p50,
            during.p99,
            during.count,
            ours.len(),
            list(deleted.iter().map(|d| d.to_string()).collect()),
            list(purges.iter().map(|ms| format!("{ms:.0}")).collect()),
            each_p99(&ours)
        ),
        format!("p99 {:.2}x (against one second alone: {:.2}x the median)", during.p99 / alone.p99, during.p99 / second_median),
        "p99 <= 1.5x",
    ));
    lines.push(line(
        "partitioned, live inserts: p50 / p99 ms during a purge by hand (DETACH of the ten in one transaction, DROP, DELETE) and during pg_retention's",
        format!("{:.2} / {:.2} ({} tx, {} purges; p99 {:.2}x alone; {})", by_hand.p50, by_hand.p99, by_hand.count, plain.len(), by_hand.p99 / alone.p99, each_p99(&plain)),
        format!("{:.2} / {:.2}", during.p50, during.p99),
        format!("p99 {:.2}x", during.p99 / by_hand.p99),
        "",
    ));
    lines.push(line(
        "partitioned, live inserts: failed transactions",
        format!("{} alone, {} by hand", alone.failed, by_hand.failed),
        format!("{}", during.failed),
        String::new(),
        "0",
    ));
    exec(&mut client, "DROP TABLE bench_part_live; SELECT retention.drop_policy('bench_part_live');");
}
