//! Helpers for tests that span sessions and processes: they talk to a running server with
//! pg_retention installed, named by PGHOST and PGPORT (`make test` starts one).

pub mod server_processes;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};

fn config() -> Config {
    let host = std::env::var("PGHOST").expect("PGHOST must name the test server (run `make test`)");
    let port = std::env::var("PGPORT").expect("PGPORT must be set (run `make test`)");
    let mut config = Config::new();
    config
        .host(&host)
        .port(port.parse().expect("PGPORT is a port number"))
        .user("postgres")
        .dbname(&std::env::var("PGDATABASE").unwrap_or_else(|_| "postgres".into()))
        .application_name("pg_retention_it");
    config
}

/// A new session to database `dbname` of the test server, as is (no extension created).
pub fn connect_to(dbname: &str) -> Client {
    let mut config = config();
    config.dbname(dbname);
    config.connect(NoTls).unwrap_or_else(|e| panic!("connect to database {dbname}: {e}"))
}

/// A session to database `name`, made anew (dropped first if a run left it), without the extension.
pub fn fresh_database(name: &str) -> Client {
    let mut admin = connect();
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    connect_to(name)
}

/// A new session; the extension exists once it returns.
pub fn connect() -> Client {
    let mut client = config().connect(NoTls).expect("connect to the test server");
    create_extension(&mut client);
    client
}

/// `CREATE EXTENSION IF NOT EXISTS`, which two tests starting at once on a fresh database can
/// race on (one of them gets a unique violation): then the other made it.
fn create_extension(client: &mut Client) {
    if let Err(error) = client.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_retention") {
        let exists = client.query_one("SELECT count(*) FROM pg_extension WHERE extname = 'pg_retention'", &[]).map(|row| row.get::<_, i64>(0));
        assert_eq!(exists.ok(), Some(1), "create extension: {error}");
    }
}

/// A session, waiting out a crash restart after a SIGKILL.
pub fn reconnect() -> Client {
    let mut client = None;
    assert!(
        wait_for(Duration::from_secs(60), || {
            client = std::panic::catch_unwind(connect).ok();
            client.is_some()
        }),
        "the server comes back"
    );
    client.unwrap()
}

/// A new session that keeps every NOTICE it receives.
pub fn connect_with_notices() -> (Client, Arc<Mutex<Vec<String>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut config = config();
    config.notice_callback(move |notice| sink.lock().unwrap().push(notice.message().to_string()));
    let mut client = config.connect(NoTls).expect("connect to the test server");
    create_extension(&mut client);
    notices.lock().unwrap().clear();
    (client, notices)
}

/// A table `name (id int, at timestamptz)` with `expired` rows a day old and `live` rows a day
/// ahead, a policy of the same name (older than one hour), and, when `batch_pause` is set, a
/// statement trigger that sleeps after each DELETE so a test can watch a run between batches.
pub fn table_with_policy(client: &mut Client, name: &str, expired: i32, live: i32, batch_size: i32, batch_pause: Option<f64>) {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name};
             DELETE FROM retention.policies WHERE name = '{name}';
             DELETE FROM retention.runs WHERE policy = '{name}';
             CREATE TABLE {name} (id int PRIMARY KEY, at timestamptz NOT NULL);
             CREATE INDEX ON {name} (at);
             INSERT INTO {name} SELECT g, now() - interval '1 day' FROM generate_series(1, {expired}) g;
             INSERT INTO {name} SELECT -g, now() + interval '1 day' FROM generate_series(1, {live}) g;
             SELECT retention.add_policy('{name}', '{name}', 'at', 'older_than', interval '1 hour', batch_size => {batch_size});"
        ))
        .expect("create table and policy");
    if let Some(pause) = batch_pause {
        client
            .batch_execute(&format!(
                "CREATE OR REPLACE FUNCTION {name}_pause() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN PERFORM pg_sleep({pause}); RETURN NULL; END $$;
                 CREATE TRIGGER pause AFTER DELETE ON {name} FOR EACH STATEMENT EXECUTE FUNCTION {name}_pause();"
            ))
            .expect("create pause trigger");
    }
}

pub fn count(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).expect(sql).get(0)
}

/// Polls `check` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// Writes `secret` to a file in the test server's data directory (PGHOST is that directory
/// for the throwaway clusters), private to the server's OS user as pg_retention requires,
/// and returns its path for `pg_retention.twilio_secret_file`.
pub fn secret_file(name: &str, secret: &str) -> String {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = std::env::var("PGHOST").expect("PGHOST must name the test server (run `make test`)");
    let path = format!("{dir}/{name}");
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, format!("{secret}\n")).expect("write the secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    let owner = std::fs::metadata(&dir).expect("the data directory").uid();
    std::os::unix::fs::chown(&path, Some(owner), None).expect("chown to the server's OS user");
    path
}

/// Hands table `name` to a new ordinary role `owner`, with a trigger the owner wrote that
/// records, in `{name}_saw (who, superuser)`, the role each DELETE runs as, and tries to make
/// the owner superuser whenever that role is one (the escalation).
pub fn owned_by_ordinary_role_with_witness(client: &mut Client, name: &str, owner: &str) {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name}_saw;
             DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') THEN
                 DROP OWNED BY {owner}; DROP ROLE {owner}; END IF; END $$;
             CREATE ROLE {owner};
             CREATE TABLE {name}_saw (who text, superuser boolean);
             ALTER TABLE {name}_saw OWNER TO {owner};
             ALTER TABLE {name} OWNER TO {owner};
             CREATE FUNCTION public.{name}_witness() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN
               INSERT INTO public.{name}_saw SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;
               IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
                 EXECUTE 'ALTER ROLE {owner} SUPERUSER';
               END IF;
               RETURN OLD; END $f$;
             ALTER FUNCTION public.{name}_witness() OWNER TO {owner};
             CREATE TRIGGER witness BEFORE DELETE ON {name} FOR EACH ROW EXECUTE FUNCTION public.{name}_witness();"
        ))
        .expect("hand the table to an ordinary role");
}

/// Drops what `owned_by_ordinary_role_with_witness` made, with the table.
pub fn drop_owned_table(client: &mut Client, name: &str, owner: &str) {
    client
        .batch_execute(&format!(
            "DROP TABLE {name}, {name}_saw; DROP FUNCTION public.{name}_witness();
             DELETE FROM retention.policies WHERE name = '{name}'; DROP ROLE {owner};"
        ))
        .expect("drop the table and its owner");
}

/// Runs a server program (pg_ctl, pg_dump ...) as the cluster's OS user: `postgres` when the
/// tests run as root, the current user otherwise.
pub fn as_server_owner(program: &str, args: &[&str]) -> std::process::Output {
    let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    let mut command = if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        std::process::Command::new(program)
    };
    command.args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// The directory of the test server's own major's programs (Debian installs each major's
/// under /usr/lib/postgresql/N/bin), so that a dump or a standby is made by a matching version.
pub fn pg_bin() -> String {
    format!("/usr/lib/postgresql/{}/bin", server_major())
}

/// The test server's PostgreSQL major (15, 17, 18 ...), for what differs between majors.
pub fn server_major() -> i32 {
    connect().query_one("SELECT current_setting('server_version_num')::int / 10000", &[]).unwrap().get(0)
}

/// What `pg_stat_activity.wait_event` says of pg_retention's own wait `own`: its name from
/// PostgreSQL 17, which lets an extension name its waits, the shared `Extension` before.
pub fn wait_event_named(own: &'static str) -> &'static str {
    if server_major() >= 17 {
        own
    } else {
        "Extension"
    }
}

/// The server's log so far (the throwaway cluster logs to `server.log` in its directory).
pub fn server_log() -> String {
    let dir = std::env::var("PGHOST").expect("PGHOST must name the test server (run `make test`)");
    std::fs::read_to_string(format!("{dir}/server.log")).unwrap_or_default()
}

/// Another throwaway cluster beside the test server (`pgrx-config/cluster.sh`, same settings,
/// a free port), stopped and removed when dropped.
pub struct OtherCluster {
    pub dir: String,
    pub port: String,
}

/// `pgrx-config/cluster.sh`: starts and stops the throwaway clusters.
pub const CLUSTER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pgrx-config/cluster.sh");

impl OtherCluster {
    /// A fresh cluster in the test server's directory + `-suffix`.
    pub fn start(suffix: &str) -> OtherCluster {
        let host = std::env::var("PGHOST").expect("PGHOST must name the test server (run `make test`)");
        let dir = format!("{host}-{suffix}");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let _ = std::process::Command::new(CLUSTER_SCRIPT).args(["stop", &dir]).status();
        let _ = std::fs::remove_dir_all(&dir);
        let started = std::process::Command::new(CLUSTER_SCRIPT).args(["start", &dir, &port]).output().unwrap();
        assert!(started.status.success(), "cluster in {dir}: {}", String::from_utf8_lossy(&started.stderr));
        OtherCluster { dir, port }
    }

    /// A session to `dbname` of this cluster.
    pub fn connect(&self, dbname: &str) -> Client {
        let mut config = Config::new();
        config.host(&self.dir).port(self.port.parse().unwrap()).user("postgres").dbname(dbname);
        config.connect(NoTls).unwrap_or_else(|e| panic!("connect to {dbname} in {}: {e}", self.dir))
    }

    /// Its server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(format!("{}/server.log", self.dir)).unwrap_or_default()
    }

    /// Stops it (a fast shutdown); the directory stays until the value is dropped.
    pub fn stop(&self) {
        let _ = std::process::Command::new(CLUSTER_SCRIPT).args(["stop", &self.dir]).status();
    }
}

impl Drop for OtherCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `retention.run_policy(name)`'s result.
pub fn run_policy(client: &mut Client, name: &str) -> serde_json::Value {
    let text: String = client.query_one(&format!("SELECT retention.run_policy('{name}')::text"), &[]).unwrap().get(0);
    serde_json::from_str(&text).unwrap()
}

/// The ids of table `name`'s rows marked deleted (`deleted_at` set).
pub fn marked_ids(client: &mut Client, name: &str) -> std::collections::BTreeSet<i64> {
    client.query(&format!("SELECT id FROM {name} WHERE deleted_at IS NOT NULL"), &[]).unwrap().iter().map(|r| r.get(0)).collect()
}
