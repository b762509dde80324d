//! Live traffic: pgbench at a fixed rate, alone or while a purge runs, and what its latencies were.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use postgres::Client;

use super::{charts, connect, exec, line, one, timed, trace_table, Line, Scale, DATABASE};

/// What a pgbench run measured.
pub struct Traffic {
    /// Latencies in ms (of the transactions that started in the window, when one was given).
    pub p50: f64,
    pub p99: f64,
    pub count: usize,
    pub failed: i64,
    /// Those latencies, sorted: purges' windows are pooled from them.
    latencies: Vec<f64>,
    /// The p99 of each whole second of the run (all transactions), for comparing a window of
    /// about a second with windows of the same size.
    second_p99s: Vec<f64>,
    /// (seconds since the run's first whole second, that second's p99 ms), for the chart; and
    /// the window in the same seconds.
    pub timeline: Vec<(f64, f64)>,
    pub window: Option<(f64, f64)>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN)
}

/// A pgbench run of `traffic` at the scale's rate for `seconds`; with `window` (epoch seconds),
/// its latencies are those of the transactions that started inside it.
pub fn pgbench(scale: &Scale, tag: &str, traffic: &str, seconds: u64, window: Option<&dyn Fn() -> (f64, f64)>) -> Traffic {
    pgbench_as("postgres", scale, tag, traffic, seconds, window)
}

/// `pgbench`, connected as `user`.
pub fn pgbench_as(user: &str, scale: &Scale, tag: &str, traffic: &str, seconds: u64, window: Option<&dyn Fn() -> (f64, f64)>) -> Traffic {
    let dir = std::env::temp_dir().join(format!("pg_retention_bench_{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("traffic.sql");
    std::fs::write(&script, traffic).unwrap();
    // The server's own major's pgbench (Debian keeps each major's programs apart).
    let major: i32 = connect().query_one("SELECT current_setting('server_version_num')::int / 10000", &[]).unwrap().get(0);
    let output = Command::new(format!("/usr/lib/postgresql/{major}/bin/pgbench"))
        .current_dir(&dir)
        .args(["-n", "-U", user, "-c", "4", "-j", "2", "-l", "--log-prefix", "tx"])
        .args(["-R", &scale.traffic_rate.to_string(), "-T", &seconds.to_string(), "-f"])
        .arg(&script)
        .arg(DATABASE)
        .output()
        .expect("run pgbench");
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "pgbench failed: {report}{}", String::from_utf8_lossy(&output.stderr));
    let failed = report
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let window = window.map(|w| w());
    let mut latencies: Vec<f64> = Vec::new();
    let mut seconds: std::collections::BTreeMap<i64, Vec<f64>> = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("tx") {
            for l in std::fs::read_to_string(entry.path()).unwrap().lines() {
                // client, transaction, latency (us), ..., end time (epoch s), end time (us)
                let fields: Vec<&str> = l.split_whitespace().collect();
                let (Some(us), Some(end_s), Some(end_us)) = (
                    fields.get(2).and_then(|v| v.parse::<f64>().ok()),
                    fields.get(4).and_then(|v| v.parse::<f64>().ok()),
                    fields.get(5).and_then(|v| v.parse::<f64>().ok()),
                ) else {
                    continue;
                };
                let started = end_s + end_us / 1e6 - us / 1e6;
                seconds.entry(started as i64).or_default().push(us / 1000.0);
                if window.is_none_or(|(from, to)| started >= from && started <= to) {
                    latencies.push(us / 1000.0);
                }
            }
        }
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // Whole seconds only: the first and last are partial.
    let whole = seconds.len().saturating_sub(2);
    let timeline: Vec<(i64, f64)> = seconds
        .into_iter()
        .skip(1)
        .take(whole)
        .map(|(second, mut latencies)| {
            latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
            (second, percentile(&latencies, 0.99))
        })
        .collect();
    let first = timeline.first().map_or(0, |(second, _)| *second) as f64;
    let mut traffic = Traffic::of(latencies, failed, timeline.iter().map(|(_, p99)| *p99).collect());
    traffic.timeline = timeline.into_iter().map(|(second, p99)| (second as f64 - first, p99)).collect();
    traffic.window = window.map(|(from, to)| (from - first, to - first));
    traffic
}


impl Traffic {
    fn of(latencies: Vec<f64>, failed: i64, second_p99s: Vec<f64>) -> Traffic {
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        Traffic { p50, p99, count: latencies.len(), failed, latencies, second_p99s, timeline: Vec::new(), window: None }
    }

    /// The windows of several runs as one sample: a p99 of ~200 transactions is their third
    /// worst, which a single stall of this machine moves; several purges give it a sample of
    /// the size a p99 needs.
    pub fn pooled(runs: &[Traffic]) -> Traffic {
        let mut latencies: Vec<f64> = runs.iter().flat_map(|r| r.latencies.iter().copied()).collect();
        latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Traffic::of(latencies, runs.iter().map(|r| r.failed).sum(), Vec::new())
    }

    /// The `q` quantile of the per-second p99s, and how many seconds there were.
    pub fn second_p99(&self, q: f64) -> f64 {
        let mut seconds = self.second_p99s.clone();
        seconds.sort_by(|a, b| a.partial_cmp(b).unwrap());
        percentile(&seconds, q)
    }

    pub fn seconds(&self) -> usize {
        self.second_p99s.len()
    }
}

/// pgbench for `seconds` while `purge` (SQL) runs two seconds into it. The latencies are those
/// of the transactions that started during the purge or in the `after` seconds that follow it.
/// Returns them and the purge's duration in seconds.
pub fn during_purge(scale: &Scale, tag: &str, traffic: &str, purge: &str, after: f64, seconds: u64) -> (Traffic, f64) {
    let epoch = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let purge_window = Arc::new(Mutex::new((0.0, 0.0)));
    let recorded = purge_window.clone();
    let call = purge.to_string();
    let purge = thread::spawn(move || {
        thread::sleep(Duration::from_secs(2));
        let mut purger = connect();
        let from = epoch();
        let seconds = timed(&mut purger, &call);
        *recorded.lock().unwrap() = (from, epoch() + after);
        seconds
    });
    let window = || *purge_window.lock().unwrap();
    let during = pgbench(scale, tag, traffic, seconds, Some(&window));
    (during, purge.join().unwrap())
}

/// Live traffic on the trace table (pgbench inserting and updating) alone and during a purge, and
/// its chart: the p99 of each second of both runs, the purge shaded.
pub fn scenario(scale: &Scale, lines: &mut Vec<Line>) {
    let mut client = connect();
    trace_table(&mut client, "bench_live", scale.rows);
    exec(&mut client, "SELECT retention.add_policy('bench_live', 'bench_live', 'expiresAt', 'expires_at')");
    exec(&mut client, "CHECKPOINT");
    let deadlocks = |c: &mut Client| -> i64 { one(c, &format!("SELECT deadlocks FROM pg_stat_database WHERE datname = '{DATABASE}'")) };
    let deadlocks_before = deadlocks(&mut client);
    let traffic = "\\set g random(1, 100000)\n\
         INSERT INTO bench_live (id, payload, \"expiresAt\") VALUES (md5(random()::text), 'new trace', timezone('UTC', now()) + interval '90 days');\n\
         UPDATE bench_live SET payload = payload || '' WHERE id = 'ct_' || (:g * 2 + 1);\n";
    let alone = pgbench(scale, "alone", traffic, scale.traffic_seconds, None);

    let (during, purge_seconds) = during_purge(scale, "during", traffic, "CALL retention.run_batched('bench_live')", 0.0, scale.traffic_seconds);
    let deleted: i64 = one(&mut client, "SELECT rows_deleted FROM retention.runs WHERE policy = 'bench_live' ORDER BY id DESC LIMIT 1");
    let new_deadlocks = deadlocks(&mut client) - deadlocks_before;
    let second_median = alone.second_p99(0.5);
    lines.push(line(
        &format!("live traffic at {} tx/s: p50 / p99 ms", scale.traffic_rate),
        format!("{:.2} / {:.2} (alone, {} tx); p99 of each second alone: median {second_median:.2}", alone.p50, alone.p99, alone.count),
        format!(
            "{:.2} / {:.2} (the {} tx started during the purge of {deleted} rows, {purge_seconds:.1} s)",
            during.p50, during.p99, during.count
        ),
        format!("p99 {:.2}x (against one second alone: {:.2}x the median)", during.p99 / alone.p99, during.p99 / second_median),
        "p99 <= 1.5x",
    ));
    let _ = std::fs::create_dir_all(&scale.charts);
    let chart = format!("{}/bench-traffic.svg", scale.charts);
    let series = [("alone", &alone), ("during a purge", &during)]
        .map(|(name, run)| charts::Series { name: name.into(), points: run.timeline.clone() });
    charts::lines(
        &chart,
        &format!("Live traffic at {} tx/s: p99 latency of each second", scale.traffic_rate),
        "seconds since pgbench started",
        "p99 ms",
        &series,
        during.window.map(|(from, to)| (from, to, "the purge")),
    )
    .unwrap_or_else(|e| panic!("chart: {e}"));
    eprintln!("bench: chart written to {chart}");
    lines.push(line(
        "live traffic: failed transactions, deadlocks",
        format!("{}, 0", alone.failed),
        format!("{}, {new_deadlocks}", during.failed),
        String::new(),
        "0, 0",
    ));
    exec(&mut client, "DROP TABLE bench_live; SELECT retention.drop_policy('bench_live');");
}
