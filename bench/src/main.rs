//! `make bench`: each scenario side by side with its plain-SQL baseline, in one run, on the
//! server PGHOST/PGPORT name. Prints a table and writes it to `--out`.
//!
//! Scenarios: purge (one DELETE against `CALL retention.run_batched`), idle cost (a run that
//! finds nothing, with and without an index), recordings against a fake Twilio with latency,
//! S3 deletions against boto3's on the same loopback server,
//! live traffic (pgbench) alone and during a purge, and `hide_expired`'s cost to queries.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fake_twilio::FakeTwilio;

mod charts;
mod citus;
mod hidden;
mod partitioned;
mod s3;
mod sizes;
mod traffic;
use postgres::{Client, Config, NoTls};

const DATABASE: &str = "pg_retention_bench";
const ACCOUNT: &str = "AC0000000000000000000000000000be0c";
const TOKEN: &str = "bench-token";

struct Scale {
    rows: i64,
    idle_rows: i64,
    recordings: i64,
    memory_recordings: i64,
    latency_ms: u64,
    traffic_seconds: u64,
    traffic_rate: u64,
    /// Purges of the partitioned scenario under live traffic, their windows pooled.
    traffic_rounds: u64,
    /// Rows of the partitioned scenario's table.
    partitioned_rows: i64,
    /// Rows of the Citus scenario's distributed table.
    citus_rows: i64,
    out: String,
    /// Where the charts go: docs/ for `make bench`, target/ for the smoke.
    charts: String,
    /// Run only the scenarios whose name starts with this.
    only: Option<String>,
}

impl Scale {
    fn from_args() -> Scale {
        let mut scale = Scale {
            rows: 2_000_000,
            idle_rows: 10_000_000,
            recordings: 10_000,
            memory_recordings: 100_000,
            latency_ms: 50,
            traffic_seconds: 40,
            traffic_rate: 200,
            traffic_rounds: 5,
            partitioned_rows: 1_000_000,
            citus_rows: 1_000_000,
            out: "bench/results.md".into(),
            charts: "docs".into(),
            only: None,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let value = || args.get(i + 1).cloned().unwrap_or_else(|| panic!("{} needs a value", args[i]));
            let number = || value().replace('_', "").parse::<i64>().unwrap_or_else(|_| panic!("{} needs a number", args[i]));
            match args[i].as_str() {
                "--rows" => scale.rows = number(),
                "--idle-rows" => scale.idle_rows = number(),
                "--recordings" => scale.recordings = number(),
                "--memory-recordings" => scale.memory_recordings = number(),
                "--latency-ms" => scale.latency_ms = number() as u64,
                "--traffic-seconds" => scale.traffic_seconds = number() as u64,
                "--traffic-rate" => scale.traffic_rate = number() as u64,
                "--traffic-rounds" => scale.traffic_rounds = number().max(1) as u64,
                "--partitioned-rows" => scale.partitioned_rows = number(),
                "--citus-rows" => scale.citus_rows = number(),
                "--out" => scale.out = value(),
                "--charts" => scale.charts = value(),
                "--only" => scale.only = Some(value()),
                "--smoke" => {
                    scale = Scale {
                        rows: 4_000,
                        idle_rows: 20_000,
                        recordings: 64,
                        memory_recordings: 128,
                        latency_ms: 5,
                        traffic_seconds: 3,
                        traffic_rate: 20,
                        traffic_rounds: 2,
                        partitioned_rows: 20_000,
                        citus_rows: 20_000,
                        out: "target/bench-smoke.md".into(),
                        charts: "target/bench-smoke-charts".into(),
                        only: None,
                    };
                    i += 1;
                    continue;
                }
                other => panic!("unknown flag {other}; see docs/benchmarks.md"),
            }
            i += 2;
        }
        scale
    }
}

fn config(database: &str) -> Config {
    let mut config = Config::new();
    config
        .host(&std::env::var("PGHOST").expect("PGHOST"))
        .port(std::env::var("PGPORT").expect("PGPORT").parse().expect("PGPORT is a port"))
        .user("postgres")
        .dbname(database)
        .application_name("pg_retention_bench");
    config
}

fn connect() -> Client {
    config(DATABASE).connect(NoTls).expect("connect to the bench database")
}

fn exec(client: &mut Client, sql: &str) {
    client.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {}", e.as_db_error().map(|d| d.message().to_string()).unwrap_or(e.to_string())));
}

fn one<T: for<'a> postgres::types::FromSql<'a>>(client: &mut Client, sql: &str) -> T {
    client.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

fn timed(client: &mut Client, sql: &str) -> f64 {
    let started = Instant::now();
    exec(client, sql);
    started.elapsed().as_secs_f64()
}

fn wal_lsn(client: &mut Client) -> String {
    one(client, "SELECT pg_current_wal_lsn()::text")
}

fn wal_since(client: &mut Client, lsn: &str) -> i64 {
    one(client, &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{lsn}')::bigint"))
}

/// One line of the results table.
struct Line {
    scenario: String,
    baseline: String,
    pg_retention: String,
    ratio: String,
    target: String,
}

fn line(scenario: &str, baseline: String, pg_retention: String, ratio: String, target: &str) -> Line {
    Line { scenario: scenario.into(), baseline, pg_retention, ratio, target: target.into() }
}

/// A run's longest transaction against the one plain `DELETE` (`plain_seconds` long).
fn longest_transaction(scenario: &str, plain_seconds: f64, longest_ms: f64) -> Line {
    line(scenario, format!("{:.0} ms (the whole DELETE)", plain_seconds * 1000.0), format!("{longest_ms:.0} ms"), String::new(), "< 1000 ms")
}

fn mb(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A Prisma-shaped trace table: text key, a ~200-byte payload, `"expiresAt" timestamp(3)`
/// indexed; half the rows expired (interleaved with the live ones), half a month ahead.
fn trace_table(client: &mut Client, name: &str, rows: i64) {
    exec(
        client,
        &format!(
            "DROP TABLE IF EXISTS {name};
             CREATE TABLE {name} (id text PRIMARY KEY, payload text NOT NULL, \"expiresAt\" timestamp(3));
             INSERT INTO {name}
             SELECT 'ct_' || g, repeat(md5(g::text), 6) || 'padding',
                    CASE WHEN g % 2 = 0 THEN timezone('UTC', now()) - interval '1 hour' - (g % 10000) * interval '1 minute'
                         ELSE timezone('UTC', now()) + interval '30 days' END
               FROM generate_series(1, {rows}) g;
             CREATE INDEX ON {name} (\"expiresAt\");"
        ),
    );
    exec(client, &format!("VACUUM ANALYZE {name}"));
}

fn purge(scale: &Scale, lines: &mut Vec<Line>) {
    let mut client = connect();
    trace_table(&mut client, "bench_plain", scale.rows);
    trace_table(&mut client, "bench_policy", scale.rows);
    exec(&mut client, "SELECT retention.add_policy('bench_policy', 'bench_policy', 'expiresAt', 'expires_at')");
    exec(&mut client, "CHECKPOINT");
    let expired = scale.rows / 2;

    let lsn = wal_lsn(&mut client);
    let plain = timed(&mut client, "DELETE FROM bench_plain WHERE \"expiresAt\" < timezone('UTC', now())");
    let plain_wal = wal_since(&mut client, &lsn);
    exec(&mut client, "CHECKPOINT");

    let lsn = wal_lsn(&mut client);
    let batched = timed(&mut client, "CALL retention.run_batched('bench_policy')");
    let batched_wal = wal_since(&mut client, &lsn);
    let deleted: i64 = one(&mut client, "SELECT rows_deleted FROM retention.runs WHERE policy = 'bench_policy' ORDER BY id DESC LIMIT 1");
    assert_eq!(deleted, expired, "pg_retention deleted what the plain DELETE deletes");
    let longest: f64 = one(
        &mut client,
        "SELECT (details->>'longest_transaction_ms')::float8 FROM retention.runs WHERE policy = 'bench_policy' ORDER BY id DESC LIMIT 1",
    );

    let (plain_rate, batched_rate) = (expired as f64 / plain, expired as f64 / batched);
    lines.push(line(
        &format!("purge {expired} of {} rows: rows/s", scale.rows),
        format!("{plain_rate:.0}"),
        format!("{batched_rate:.0}"),
        format!("{:.2}x", batched_rate / plain_rate),
        ">= 0.9x",
    ));
    lines.push(longest_transaction("purge: longest transaction", plain, longest));
    lines.push(line("purge: WAL written", mb(plain_wal), mb(batched_wal), format!("{:.2}x", batched_wal as f64 / plain_wal as f64), ""));
    exec(&mut client, "DROP TABLE bench_plain, bench_policy; SELECT retention.drop_policy('bench_policy');");
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn idle(scale: &Scale, lines: &mut Vec<Line>) {
    let mut client = connect();
    exec(
        &mut client,
        &format!(
            "DROP TABLE IF EXISTS bench_idle;
             CREATE TABLE bench_idle (id bigint, at timestamptz NOT NULL);
             INSERT INTO bench_idle SELECT g, now() - (g % 80) * interval '1 day' FROM generate_series(1, {}) g;
             CREATE INDEX bench_idle_at ON bench_idle (at);
             SELECT retention.add_policy('bench_idle', 'bench_idle', 'at', 'older_than', interval '90 days');",
            scale.idle_rows
        ),
    );
    exec(&mut client, "VACUUM ANALYZE bench_idle");
    let runs = |client: &mut Client, sql: &str| median((0..5).map(|_| timed(client, sql) * 1000.0).collect());
    runs(&mut client, "SELECT retention.run_policy('bench_idle')"); // warm
    let plain = runs(&mut client, "DELETE FROM bench_idle WHERE at < now() - interval '90 days'");
    let policy = runs(&mut client, "SELECT retention.run_policy('bench_idle')");
    lines.push(line(
        &format!("idle run, {} rows, none expired, indexed: ms", scale.idle_rows),
        format!("{plain:.1}"),
        format!("{policy:.1}"),
        String::new(),
        "< 50 ms",
    ));

    exec(&mut client, "DROP INDEX bench_idle_at");
    let warnings = Arc::new(AtomicU64::new(0));
    let seen = warnings.clone();
    let mut config = config(DATABASE);
    config.notice_callback(move |notice| {
        if notice.message().contains("has no index") {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut unindexed = config.connect(NoTls).unwrap();
    let plain = timed(&mut unindexed, "DELETE FROM bench_idle WHERE at < now() - interval '90 days'") * 1000.0;
    let policy = timed(&mut unindexed, "SELECT retention.run_policy('bench_idle')") * 1000.0;
    lines.push(line(
        "idle run, no index: ms (the run warns)",
        format!("{plain:.0}"),
        format!("{policy:.0} (warned: {})", if warnings.load(Ordering::Relaxed) > 0 { "yes" } else { "NO" }),
        String::new(),
        "works, warns",
    ));
    exec(&mut client, "DROP TABLE bench_idle; SELECT retention.drop_policy('bench_idle');");
}

fn recordings_table(client: &mut Client, fake: &FakeTwilio, count: i64) {
    exec(
        client,
        &format!(
            "TRUNCATE bench_rec;
             INSERT INTO bench_rec SELECT g, now() - interval '100 days', 'RE' || lpad(to_hex(g), 32, '0')
               FROM generate_series(1, {count}) g;"
        ),
    );
    exec(client, "VACUUM ANALYZE bench_rec");
    fake.add_recordings((1..=count).map(|g| format!("RE{g:032x}")));
}

fn twilio_session(fake: &FakeTwilio, concurrency: u32) -> Client {
    let mut client = connect();
    exec(
        &mut client,
        &format!(
            "SET pg_retention.twilio_account_sid = '{ACCOUNT}'; SET pg_retention.twilio_secret_file = '{}';
             SET pg_retention.twilio_base_url = '{}'; SET pg_retention.twilio_concurrency = {concurrency};",
            pg_retention_it::secret_file("bench-twilio.secret", TOKEN),
            fake.base_url()
        ),
    );
    client
}


/// Peak anonymous (heap) memory of a backend while `work` runs, from /proc.
fn peak_memory(pid: i32, work: impl FnOnce()) -> i64 {
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let (watch_done, watch_peak) = (done.clone(), peak.clone());
    let watcher = thread::spawn(move || {
        while !watch_done.load(Ordering::Relaxed) {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                if let Some(kb) = status.lines().find_map(|l| l.strip_prefix("RssAnon:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()) {
                    watch_peak.fetch_max(kb * 1024, Ordering::Relaxed);
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    work();
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    peak.load(Ordering::Relaxed) as i64
}

fn recordings(scale: &Scale, lines: &mut Vec<Line>) {
    let fake = FakeTwilio::start(ACCOUNT, vec![(ACCOUNT.into(), TOKEN.into())]);
    fake.set_latency(Duration::from_millis(scale.latency_ms));
    let mut client = connect();
    exec(
        &mut client,
        "DROP TABLE IF EXISTS bench_rec;
         CREATE TABLE bench_rec (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, sid text,
                                 deleted_at timestamptz, deletion_reason text);
         CREATE INDEX ON bench_rec (created_at);
         SELECT retention.add_policy('bench_rec', 'bench_rec', 'created_at', 'older_than', interval '90 days',
                                     action => 'twilio_recording', soft_delete_column => 'deleted_at',
                                     reason_column => 'deletion_reason', sid_column => 'sid', id_column => 'id',
                                     batch_size => 1000);",
    );
    let latency = scale.latency_ms as f64 / 1000.0;
    for (concurrency, count) in [(1u32, (scale.recordings / 10).max(1)), (8, scale.recordings), (32, scale.recordings)] {
        recordings_table(&mut client, &fake, count);
        let mut session = twilio_session(&fake, concurrency);
        let seconds = timed(&mut session, "CALL retention.run_batched('bench_rec')");
        let marked: i64 = one(&mut client, "SELECT count(*) FROM bench_rec WHERE deleted_at IS NOT NULL");
        assert_eq!(marked, count, "every recording deleted and marked");
        let (rate, ideal) = (count as f64 / seconds, concurrency as f64 / latency);
        lines.push(line(
            &format!("recordings, {count} at concurrency {concurrency}, {} ms each: per s", scale.latency_ms),
            format!("{ideal:.0} (ideal)"),
            format!("{rate:.0}"),
            format!("{:.2}x", rate / ideal),
            if concurrency == 1 { "" } else { ">= 0.8x" },
        ));
    }
    let mut peaks = Vec::new();
    for count in [scale.recordings, scale.memory_recordings] {
        recordings_table(&mut client, &fake, count);
        let mut session = twilio_session(&fake, 32);
        let pid: i32 = one(&mut session, "SELECT pg_backend_pid()");
        peaks.push(peak_memory(pid, || exec(&mut session, "CALL retention.run_batched('bench_rec')")));
    }
    lines.push(line(
        &format!("recordings: peak backend heap, {} vs {}", scale.recordings, scale.memory_recordings),
        mb(peaks[0]),
        mb(peaks[1]),
        format!("{:+.1}%", (peaks[1] as f64 / peaks[0] as f64 - 1.0) * 100.0),
        "within 10%",
    ));
    exec(&mut client, "DROP TABLE bench_rec; SELECT retention.drop_policy('bench_rec');");
}

fn main() {
    let scale = Scale::from_args();
    let mut admin = config("postgres").connect(NoTls).expect("connect to the server");
    exec(&mut admin, &format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"));
    exec(&mut admin, &format!("CREATE DATABASE {DATABASE}"));
    exec(&mut connect(), "CREATE EXTENSION pg_retention");

    let started = Instant::now();
    let mut lines = Vec::new();
    for (name, scenario) in [
        ("purge", purge as fn(&Scale, &mut Vec<Line>)),
        ("sizes", sizes::scenario),
        ("idle", idle),
        ("recordings", recordings),
        ("s3", s3::scenario),
        ("live traffic", traffic::scenario),
        ("hidden", hidden::scenario),
        ("partitioned", partitioned::scenario),
        ("citus", citus::scenario),
    ] {
        if scale.only.as_deref().is_some_and(|only| !name.starts_with(only)) {
            continue;
        }
        let t = Instant::now();
        eprintln!("bench: {name}...");
        let before = lines.len();
        scenario(&scale, &mut lines);
        for l in &lines[before..] {
            eprintln!("bench:   {}: {} | {} | {}", l.scenario, l.baseline, l.pg_retention, l.ratio);
        }
        eprintln!("bench: {name} took {:.0} s", t.elapsed().as_secs_f64());
    }

    let version: String = one(&mut admin, "SELECT version()");
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<f64>().unwrap_or(0.0) / 1048576.0))
        .unwrap_or(0.0);
    let mut table = String::new();
    let _ = writeln!(table, "| scenario | plain SQL baseline | pg_retention | ratio | target |");
    let _ = writeln!(table, "|---|---|---|---|---|");
    for l in &lines {
        let _ = writeln!(table, "| {} | {} | {} | {} | {} |", l.scenario, l.baseline, l.pg_retention, l.ratio, l.target);
    }
    let report = format!(
        "# pg_retention benchmark\n\n{cores} cores, {memory:.0} GiB; {version}; release build; \
         settings from pgrx-config/postgresql.conf.\nCommand: `bench/run.sh{}` ({:.0} s in all).\n\n{table}",
        std::env::args().skip(1).map(|a| format!(" {a}")).collect::<String>().replace("  ", " "),
        started.elapsed().as_secs_f64()
    );
    println!("{report}");
    if let Some(dir) = std::path::Path::new(&scale.out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&scale.out, &report).expect("write the results file");
    eprintln!("bench: results written to {}", scale.out);
}
