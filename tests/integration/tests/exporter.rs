//! `pgrx-config/postgres_exporter.yml` (issue 14): each query runs as a monitoring role with
//! only the grants the file lists, gives exactly the columns it declares, with the right
//! figures; and the real postgres_exporter (Debian's prometheus-postgres-exporter) serves them.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pg_retention_it::{connect, count, table_with_policy, wait_for};
use postgres::Client;

const QUERIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pgrx-config/postgres_exporter.yml");
const EXPORTER: &str = "/usr/bin/prometheus-postgres-exporter";
const ROLE: &str = "it_exporter";

/// Each query of the file, with its metrics' names and usages in order.
fn queries() -> Vec<(String, String, Vec<(String, String)>)> {
    let text = std::fs::read_to_string(QUERIES).expect("read postgres_exporter.yml");
    let file: serde_yaml::Mapping = serde_yaml::from_str(&text).expect("postgres_exporter.yml is YAML");
    file.iter()
        .map(|(name, entry)| {
            let query = entry["query"].as_str().expect("each entry has a query").to_string();
            let metrics = entry["metrics"]
                .as_sequence()
                .expect("each entry has metrics")
                .iter()
                .map(|metric| {
                    let (column, spec) = metric.as_mapping().and_then(|m| m.iter().next()).expect("a metric is one column");
                    (column.as_str().unwrap().to_string(), spec["usage"].as_str().expect("a usage").to_string())
                })
                .collect();
            (name.as_str().unwrap().to_string(), query, metrics)
        })
        .collect()
}

/// The role the file's comment describes, made with exactly the grants it lists.
fn monitoring_role(client: &mut Client) {
    let text = std::fs::read_to_string(QUERIES).unwrap();
    let grants: Vec<String> = text
        .lines()
        .filter_map(|line| line.trim_start_matches('#').trim().strip_prefix("GRANT ").map(|g| format!("GRANT {}", g.replace("postgres_exporter;", &format!("{ROLE};")))))
        .collect();
    assert!(grants.len() >= 3, "the file lists the grants its role needs: {grants:?}");
    client
        .batch_execute(&format!(
            "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                 DROP OWNED BY {ROLE}; DROP ROLE {ROLE}; END IF; END $$;
             CREATE ROLE {ROLE} LOGIN;
             {}",
            grants.join("\n")
        ))
        .expect("the grants the file lists");
}

fn row_of(rows: &[postgres::Row], policy: &str) -> postgres::Row {
    rows.iter().find(|r| r.get::<_, String>("policy") == policy).cloned().unwrap_or_else(|| panic!("a row for {policy}"))
}

#[test]
fn each_query_runs_as_the_monitoring_role_and_gives_its_declared_columns() {
    let mut client = connect();
    table_with_policy(&mut client, "it_exporter_rows", 30, 4, 100, None);
    client.batch_execute("SELECT retention.run_policy('it_exporter_rows')").unwrap();
    client.batch_execute("INSERT INTO it_exporter_rows SELECT g, now() - interval '3 hours' FROM generate_series(100, 106) g").unwrap();
    monitoring_role(&mut client);
    let policies = count(&mut client, "SELECT count(*) FROM retention.policies");
    client.batch_execute(&format!("SET ROLE {ROLE}")).unwrap();
    for (name, query, metrics) in queries() {
        let rows = client.query(&query, &[]).unwrap_or_else(|e| panic!("{name} as {ROLE}: {e}"));
        assert_eq!(rows.len() as i64, policies, "{name}: a row per policy");
        let columns: Vec<(String, String)> = rows[0].columns().iter().map(|c| (c.name().to_string(), c.type_().name().to_string())).collect();
        assert_eq!(columns.iter().map(|c| &c.0).collect::<Vec<_>>(), metrics.iter().map(|m| &m.0).collect::<Vec<_>>(), "{name}: the declared columns");
        for ((column, kind), (_, usage)) in columns.iter().zip(&metrics) {
            let numeric = ["int4", "int8", "float8", "numeric"].contains(&kind.as_str());
            assert_eq!(numeric, usage != "LABEL", "{name}.{column} ({kind}) as a {usage}");
        }
        let row = row_of(&rows, "it_exporter_rows");
        assert_eq!(row.get::<_, String>("last_status"), "succeeded");
        assert_eq!(row.get::<_, i64>("last_rows"), 30);
        assert_eq!(row.get::<_, i32>("last_succeeded"), 1);
        assert_eq!(row.get::<_, i32>("last_failed"), 0);
        assert_eq!(row.get::<_, i32>("backlog_error"), 0, "{name}: the backlog is counted for the monitoring role");
        assert_eq!(row.get::<_, i64>("backlog_rows"), 7);
        let oldest: f64 = row.get("oldest_backlog_age_seconds");
        assert!((7100.0..7300.0).contains(&oldest), "the 3-hour-old rows are 2 hours past the 1-hour cutoff: {oldest}");
        assert!(row.get::<_, f64>("last_run_timestamp_seconds") > 1.7e9);
        assert!(row.get::<_, f64>("last_duration_seconds") >= 0.0);
    }
    client.batch_execute("RESET ROLE").unwrap();
    client.batch_execute(&format!("DROP OWNED BY {ROLE}; DROP ROLE {ROLE}; DROP TABLE it_exporter_rows; DELETE FROM retention.policies WHERE name = 'it_exporter_rows';")).unwrap();
}

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /metrics` of an exporter on 127.0.0.1:`port`, the body.
fn scrape(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

#[test]
fn the_real_postgres_exporter_serves_the_policies_metrics() {
    assert!(std::path::Path::new(EXPORTER).exists(), "{EXPORTER} is installed by .ci/setup.sh (apt prometheus-postgres-exporter)");
    let mut client = connect();
    table_with_policy(&mut client, "it_exporter_scrape", 12, 1, 100, None);
    client.batch_execute("SELECT retention.run_policy('it_exporter_scrape')").unwrap();
    monitoring_role(&mut client);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (host, pgport) = (std::env::var("PGHOST").unwrap(), std::env::var("PGPORT").unwrap());
    let _exporter = Exporter(
        Command::new(EXPORTER)
            .args([&format!("--web.listen-address=127.0.0.1:{port}"), &format!("--extend.query-path={QUERIES}")])
            .env("DATA_SOURCE_NAME", format!("host={host} port={pgport} user={ROLE} dbname=postgres sslmode=disable"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres_exporter"),
    );
    let mut body = String::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            body = scrape(port).unwrap_or_default();
            body.contains("pg_retention_policy_last_rows{")
        }),
        "the exporter serves pg_retention's metrics: {}",
        body.lines().filter(|l| l.contains("pg_retention") || l.contains("error")).collect::<Vec<_>>().join("\n")
    );
    let line = |metric: &str| {
        body.lines()
            .find(|l| l.starts_with(&format!("{metric}{{")) && l.contains("policy=\"it_exporter_scrape\""))
            .unwrap_or_else(|| panic!("no {metric} for it_exporter_scrape in:\n{body}"))
            .to_string()
    };
    assert!(line("pg_retention_policy_last_rows").ends_with(" 12"), "{}", line("pg_retention_policy_last_rows"));
    assert!(line("pg_retention_policy_last_rows").contains("last_status=\"succeeded\""));
    assert!(line("pg_retention_policy_backlog_rows").ends_with(" 0"));
    assert!(line("pg_retention_policy_backlog_error").ends_with(" 0"), "{}", line("pg_retention_policy_backlog_error"));
    assert!(line("pg_retention_policy_last_failed").ends_with(" 0"));
    drop(_exporter);
    client.batch_execute(&format!("DROP OWNED BY {ROLE}; DROP ROLE {ROLE}; DROP TABLE it_exporter_scrape; DELETE FROM retention.policies WHERE name = 'it_exporter_scrape';")).unwrap();
}
