//! `hide_expired`'s cost to the application: pgbench point lookups (by primary key) and range
//! scans (by the indexed time column) on one Prisma-shaped table, first as it is, then with the
//! policy's row-level security on, at the same rate; the p50s side by side. Half the rows are
//! expired (hidden), spread over the past week; the live half over the next 30 days. The table
//! is owned by an ordinary role, which pgbench connects as (superusers bypass row-level security).

use super::traffic::{pgbench_as, Traffic};
use super::{exec, line, Line, Scale};

/// The application's role, owner of the table (as Prisma's migrations leave it).
const APP: &str = "bench_app";
const POINT: &str = "\\set g random(1, :rows)\n\
    SELECT id, payload, \"expiresAt\" FROM bench_hidden WHERE id = 'ct_' || :g;\n";
const RANGE: &str = "\\set m random(0, 43000)\n\
    SELECT id, \"expiresAt\" FROM bench_hidden\n\
     WHERE \"expiresAt\" >= timezone('UTC', now()) + :m * interval '1 minute'\n\
       AND \"expiresAt\" < timezone('UTC', now()) + (:m + 10) * interval '1 minute' ORDER BY \"expiresAt\";\n";

pub fn scenario(scale: &Scale, lines: &mut Vec<Line>) {
    let mut client = super::connect();
    exec(
        &mut client,
        &format!(
            "DROP TABLE IF EXISTS bench_hidden;
             DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP}') THEN CREATE ROLE {APP} LOGIN; END IF; END $$;
             CREATE TABLE bench_hidden (id text PRIMARY KEY, payload text NOT NULL, \"expiresAt\" timestamp(3));
             INSERT INTO bench_hidden
             SELECT 'ct_' || g, repeat(md5(g::text), 6),
                    timezone('UTC', now()) + CASE WHEN g % 2 = 0 THEN -(g % 10080) - 1 ELSE g % 43200 + 1 END * interval '1 minute'
               FROM generate_series(1, {rows}) g;
             CREATE INDEX ON bench_hidden (\"expiresAt\");
             ALTER TABLE bench_hidden OWNER TO {APP};
             SELECT retention.add_policy('bench_hidden', 'bench_hidden', 'expiresAt', 'expires_at');",
            rows = scale.rows
        ),
    );
    exec(&mut client, "VACUUM ANALYZE bench_hidden");
    let point = POINT.replace(":rows", &scale.rows.to_string());
    // Rounds alternate without and with hiding, so that a drift of the machine falls on both.
    let seconds = (scale.traffic_seconds / scale.traffic_rounds).max(2);
    let (mut point_runs, mut range_runs): ([Vec<Traffic>; 2], [Vec<Traffic>; 2]) = Default::default();
    for round in 0..scale.traffic_rounds {
        for hidden in [false, true] {
            exec(&mut client, &format!("SELECT retention.alter_policy('bench_hidden', hide_expired => {hidden})"));
            let tag = format!("{round}_{hidden}");
            point_runs[hidden as usize].push(pgbench_as(APP, scale, &format!("point_{tag}"), &point, seconds, None));
            range_runs[hidden as usize].push(pgbench_as(APP, scale, &format!("range_{tag}"), RANGE, seconds, None));
        }
    }
    let hidden_rows: i64 = super::one(&mut client, "SELECT count(*) FROM bench_hidden WHERE \"expiresAt\" < timezone('UTC', now())");
    let pooled = |runs: &[Vec<Traffic>; 2]| (Traffic::pooled(&runs[0]), Traffic::pooled(&runs[1]));
    let ((point_plain, point_hidden), (range_plain, range_hidden)) = (pooled(&point_runs), pooled(&range_runs));
    for (what, plain, hidden) in [("point lookup by id", point_plain, point_hidden), ("range scan of 10 minutes by \"expiresAt\"", range_plain, range_hidden)] {
        assert_eq!(plain.failed + hidden.failed, 0, "{what}: failed transactions");
        lines.push(line(
            &format!("hide_expired, {what} at {} tx/s ({} rounds each): p50 ms", scale.traffic_rate, scale.traffic_rounds),
            format!("{:.3} (not hidden, {} tx)", plain.p50, plain.count),
            format!("{:.3} (hiding {hidden_rows} of {} rows, {} tx)", hidden.p50, scale.rows, hidden.count),
            format!("{:.2}x", hidden.p50 / plain.p50),
            "<= 1.10x",
        ));
    }
    exec(&mut client, "SELECT retention.drop_policy('bench_hidden'); DROP TABLE bench_hidden;");
}
