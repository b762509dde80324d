//! Purge time against table size, drawn as charts: one plain `DELETE` against
//! `CALL retention.run_batched` on the Prisma-shaped trace table; and on a table partitioned by
//! day (about 197 days, half of them past) also pg_partman's `run_maintenance()` with its
//! retention set to drop every day that has ended, which leaves the expired rows of today's
//! partition behind.

use postgres::Client;

use super::charts::{self, Series};
use super::{connect, exec, line, one, timed, trace_table, Line, Scale};

/// The table sizes measured: an eighth, a quarter, a half and all of `rows`.
fn sizes(rows: i64) -> Vec<i64> {
    [8, 4, 2, 1].iter().map(|d| (rows / d).max(100)).collect()
}

fn millions(rows: i64) -> f64 {
    rows as f64 / 1e6
}

pub fn scenario(scale: &Scale, lines: &mut Vec<Line>) {
    let mut client = connect();
    let (mut plain, mut retention) = (Vec::new(), Vec::new());
    for rows in sizes(scale.rows) {
        trace_table(&mut client, "bench_size_plain", rows);
        trace_table(&mut client, "bench_size", rows);
        exec(&mut client, "SELECT retention.add_policy('bench_size', 'bench_size', 'expiresAt', 'expires_at'); CHECKPOINT;");
        plain.push((millions(rows), timed(&mut client, "DELETE FROM bench_size_plain WHERE \"expiresAt\" < timezone('UTC', now())")));
        retention.push((millions(rows), timed(&mut client, "CALL retention.run_batched('bench_size')")));
        exec(&mut client, "DROP TABLE bench_size_plain, bench_size; SELECT retention.drop_policy('bench_size');");
    }
    lines.push(seconds_line("purge time by table size (half expired): s", &plain, &[("pg_retention", &retention)]));
    draw(
        scale,
        "bench-purge-by-size.svg",
        "Purge time against table size (half the rows expired)",
        vec![Series { name: "plain DELETE".into(), points: plain }, Series { name: "pg_retention (CALL run_batched)".into(), points: retention }],
    );
    partitioned(scale, lines, &mut client);
}

/// "rows: plain s / others' s" for each size, in one line of the table.
fn seconds_line(what: &str, baseline: &[(f64, f64)], others: &[(&str, &[(f64, f64)])]) -> Line {
    let at = |points: &[(f64, f64)]| points.iter().map(|(m, s)| format!("{:.0}k: {s:.2}", m * 1000.0)).collect::<Vec<_>>().join(", ");
    let names: Vec<String> = others.iter().map(|(name, points)| format!("{name} {}", at(points))).collect();
    line(what, format!("DELETE {}", at(baseline)), names.join("; "), String::new(), "charts in docs/benchmarks.md")
}

fn draw(scale: &Scale, file: &str, title: &str, series: Vec<Series>) {
    let _ = std::fs::create_dir_all(&scale.charts);
    let path = format!("{}/{file}", scale.charts);
    charts::lines(&path, title, "rows (millions)", "seconds", &series, None).unwrap_or_else(|e| panic!("chart: {e}"));
    eprintln!("bench: chart written to {path}");
}

/// A table partitioned by day under pg_partman: from 98 days ago to 98 days ahead, `rows` rows
/// spread evenly over that time.
fn partman_table(client: &mut Client, name: &str, rows: i64, partman_4: bool) {
    let (kind, interval) = if partman_4 { ("p_type := 'native', ", "daily") } else { ("", "1 day") };
    exec(
        client,
        &format!(
            "DROP TABLE IF EXISTS {name} CASCADE;
             DELETE FROM partman.part_config WHERE parent_table = 'public.{name}';
             DROP TABLE IF EXISTS partman.template_public_{name};
             CREATE TABLE {name} (id bigint NOT NULL, payload text NOT NULL, \"expiresAt\" timestamptz NOT NULL) PARTITION BY RANGE (\"expiresAt\");
             CREATE INDEX ON {name} (\"expiresAt\");
             SELECT partman.create_parent(p_parent_table := 'public.{name}', p_control := 'expiresAt', {kind}
                                          p_interval := '{interval}', p_premake := 98,
                                          p_start_partition := (now() - interval '98 days')::text);
             INSERT INTO {name}
             SELECT g, repeat(md5(g::text), 6), now() - interval '98 days' + (g::float8 / {rows}) * interval '196 days'
               FROM generate_series(1, {rows}) g;"
        ),
    );
    exec(client, &format!("VACUUM ANALYZE {name}"));
}

fn partitioned(scale: &Scale, lines: &mut Vec<Line>, client: &mut Client) {
    let available: i64 = one(client, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_partman'");
    if available == 0 {
        lines.push(line("partitioned by day, purge time by size", "pg_partman is not installed".into(), String::new(), String::new(), ""));
        return;
    }
    exec(client, "CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman");
    let partman_4: bool = one(client, "SELECT extversion LIKE '4.%' FROM pg_extension WHERE extname = 'pg_partman'");
    let (mut plain, mut partman, mut retention) = (Vec::new(), Vec::new(), Vec::new());
    let mut left_by_partman = Vec::new();
    let mut partitions = 0;
    let expired = |c: &mut Client, table: &str| -> i64 { one(c, &format!("SELECT count(*) FROM {table} WHERE \"expiresAt\" < now()")) };
    for rows in sizes(scale.partitioned_rows) {
        for table in ["bench_day_plain", "bench_day_partman", "bench_day"] {
            partman_table(client, table, rows, partman_4);
        }
        partitions = one::<i64>(client, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'bench_day'::regclass");
        exec(
            client,
            "UPDATE partman.part_config SET retention = '1 second', retention_keep_table = false WHERE parent_table = 'public.bench_day_partman';
             SELECT retention.add_policy('bench_day', 'bench_day', 'expiresAt', 'expires_at'); CHECKPOINT;",
        );
        plain.push((millions(rows), timed(client, "DELETE FROM bench_day_plain WHERE \"expiresAt\" < now()")));
        partman.push((millions(rows), timed(client, "SELECT partman.run_maintenance('public.bench_day_partman')")));
        retention.push((millions(rows), timed(client, "CALL retention.run_batched('bench_day')")));
        left_by_partman.push(expired(client, "bench_day_partman"));
        assert_eq!(expired(client, "bench_day"), 0, "pg_retention leaves no expired row");
        exec(client, "SELECT retention.drop_policy('bench_day')");
        for table in ["bench_day_plain", "bench_day_partman", "bench_day"] {
            exec(
                client,
                &format!("DROP TABLE {table} CASCADE; DELETE FROM partman.part_config WHERE parent_table = 'public.{table}'; DROP TABLE IF EXISTS partman.template_public_{table};"),
            );
        }
    }
    let left = left_by_partman.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    lines.push(seconds_line(
        &format!("partitioned by day ({partitions} partitions), purge time by size: s (expired rows pg_partman leaves: {left}; pg_retention: 0)"),
        &plain,
        &[("pg_partman", &partman), ("pg_retention", &retention)],
    ));
    draw(
        scale,
        "bench-partitioned-by-size.svg",
        &format!("Purge time, table partitioned by day ({partitions} partitions)"),
        vec![
            Series { name: "plain DELETE".into(), points: plain },
            Series { name: "pg_partman run_maintenance()".into(), points: partman },
            Series { name: "pg_retention (CALL run_batched)".into(), points: retention },
        ],
    );
}
