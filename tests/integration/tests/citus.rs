//! Citus: the same policies on distributed, reference and Citus local tables, on a real
//! three-node cluster (a coordinator and two workers on local ports, started by
//! `tests/citus/cluster.sh` and left running for the next test; `make test` stops it). Skipped,
//! with a message, where Citus is not installed, unless PG_RETENTION_REQUIRE_CITUS is set (CI).

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use fake_twilio::{FakeTwilio, Fault};
use pg_retention_it::{connect, count, secret_file, wait_for};
use postgres::{Client, Config, NoTls};

const DIR: &str = "/tmp/pg_retention-citus";
const PORT: u16 = 55440;
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../citus/cluster.sh");

/// Starts the cluster once for this process and points PGHOST/PGPORT at its coordinator;
/// false when Citus is not installed (and not required).
fn cluster() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        let installed = Command::new(SCRIPT).arg("available").status().is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("PG_RETENTION_REQUIRE_CITUS").is_none(),
                "PG_RETENTION_REQUIRE_CITUS is set but Citus is not installed (.ci/citus.sh builds it from ../shared/citus/)"
            );
            eprintln!("SKIPPED: Citus is not installed here; .ci/citus.sh builds it from ../shared/citus/");
            return false;
        }
        let out = Command::new(SCRIPT).args(["start", DIR, &PORT.to_string()]).output().expect("run tests/citus/cluster.sh");
        assert!(out.status.success(), "start the Citus cluster: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // Before any session of this process: the helpers connect where these point.
        std::env::set_var("PGHOST", format!("{DIR}/coordinator"));
        std::env::set_var("PGPORT", PORT.to_string());
        true
    })
}

/// A session on worker node 1 or 2.
fn worker_node(n: u16) -> Client {
    let mut config = Config::new();
    config
        .host(&format!("{DIR}/worker{n}"))
        .port(PORT + n)
        .user("postgres")
        .dbname("postgres");
    config
        .connect(NoTls)
        .expect("connect to a Citus worker node")
}

/// The two Prisma tables as the app has them on Citus, hash-distributed by "tenantId" (and
/// co-located): `rows` traces and usage rows over 180 days, 30% of traces never expiring.
/// Times are whole days plus `g` seconds back, so no row expires while a test runs.
fn prisma_tables(client: &mut Client, rows: i32) {
    client
        .batch_execute(&format!(
            r#"DROP TABLE IF EXISTS "ConversationTrace", "AgentUsage";
               CREATE TABLE "ConversationTrace" (id text NOT NULL, "tenantId" text NOT NULL, "conversationId" text NOT NULL,
                   "createdAt" timestamp(3) NOT NULL, payload bytea NOT NULL, "expiresAt" timestamp(3), PRIMARY KEY ("tenantId", id));
               CREATE INDEX ON "ConversationTrace" ("expiresAt");
               CREATE TABLE "AgentUsage" (id text NOT NULL, "tenantId" text NOT NULL, "agentId" text NOT NULL,
                   "timestamp" timestamp(3) NOT NULL, "inputTokens" int NOT NULL, "outputTokens" int NOT NULL, PRIMARY KEY ("tenantId", id));
               CREATE INDEX ON "AgentUsage" ("timestamp");
               SELECT create_distributed_table('"ConversationTrace"', 'tenantId');
               SELECT create_distributed_table('"AgentUsage"', 'tenantId', colocate_with => '"ConversationTrace"');
               INSERT INTO "ConversationTrace"
               SELECT 'ct_' || g, 't' || g % 97, 'c' || g, created, '\x00',
                      CASE WHEN g % 10 < 3 THEN NULL ELSE created + interval '90 days' END
                 FROM (SELECT g, timezone('UTC', now()) - (g % 180) * interval '1 day' - g * interval '1 second' AS created
                         FROM generate_series(1, {rows}) g) s;
               INSERT INTO "AgentUsage"
               SELECT 'au_' || g, 't' || g % 97, 'a' || g % 7,
                      timezone('UTC', now()) - (g % 180) * interval '1 day' - g * interval '1 second', 1, 1
                 FROM generate_series(1, {rows}) g;
               UPDATE retention.policies SET batch_size = DEFAULT, enabled = true WHERE name IN ('expired_traces', 'old_agent_usage');"#
        ))
        .expect("create the distributed tables");
}

const EXPIRED_TRACES: &str =
    r#"SELECT count(*) FROM "ConversationTrace" WHERE "expiresAt" < timezone('UTC', now())"#;
const NULL_TRACES: &str = r#"SELECT count(*) FROM "ConversationTrace" WHERE "expiresAt" IS NULL"#;
const ALL_TRACES: &str = r#"SELECT count(*) FROM "ConversationTrace""#;

fn last_run(client: &mut Client, policy: &str) -> (String, i64, i32) {
    let row = client
        .query_one("SELECT status, rows_deleted, batches FROM retention.runs WHERE policy = $1 ORDER BY id DESC LIMIT 1", &[&policy])
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[test]
fn distributed_tables_lose_exactly_the_rows_plain_sql_counts_on_every_path() {
    if !cluster() {
        return;
    }
    let mut client = connect();
    prisma_tables(&mut client, 20_000);
    let (expired, nulls, all) = (
        count(&mut client, EXPIRED_TRACES),
        count(&mut client, NULL_TRACES),
        count(&mut client, ALL_TRACES),
    );
    assert!(
        expired > 4000 && nulls > 4000,
        "{expired} expired, {nulls} never expire"
    );

    // SELECT, in the caller's transaction.
    let deleted: i64 = client
        .query_one("SELECT cleanup_expired_traces()", &[])
        .unwrap()
        .get(0);
    assert_eq!(deleted, expired);
    assert_eq!(
        (
            count(&mut client, EXPIRED_TRACES),
            count(&mut client, NULL_TRACES)
        ),
        (0, nulls)
    );
    assert_eq!(
        count(&mut client, ALL_TRACES),
        all - expired,
        "live and NULL rows kept"
    );
    assert_eq!(
        last_run(&mut client, "expired_traces"),
        ("succeeded".into(), expired, 1)
    );

    let old_usage = count(
        &mut client,
        r#"SELECT count(*) FROM "AgentUsage" WHERE "timestamp" < timezone('UTC', now()) - interval '90 days'"#,
    );
    let deleted: i64 = client
        .query_one("SELECT cleanup_old_agent_usage(90)", &[])
        .unwrap()
        .get(0);
    assert_eq!(deleted, old_usage);
    assert_eq!(
        count(&mut client, r#"SELECT count(*) FROM "AgentUsage""#),
        20_000 - old_usage
    );

    // CALL, batch by batch: 40 rows a shard (32 shards) is about 1,280 rows a batch.
    prisma_tables(&mut client, 20_000);
    client
        .batch_execute(
            "UPDATE retention.policies SET batch_size = 40 WHERE name = 'expired_traces'",
        )
        .unwrap();
    client
        .batch_execute("CALL retention.run_batched('expired_traces')")
        .unwrap();
    let (status, rows, batches) = last_run(&mut client, "expired_traces");
    assert_eq!((status.as_str(), rows), ("succeeded", expired));
    assert!(
        batches >= 3,
        "{batches} batches of about 1,280 rows for {expired}"
    );
    assert_eq!(
        (
            count(&mut client, EXPIRED_TRACES),
            count(&mut client, NULL_TRACES),
            count(&mut client, ALL_TRACES)
        ),
        (0, nulls, all - expired)
    );

    // Nothing left: a run finds nothing, in one batch.
    client
        .batch_execute("CALL retention.run_batched('expired_traces')")
        .unwrap();
    assert_eq!(
        last_run(&mut client, "expired_traces"),
        ("succeeded".into(), 0, 1)
    );
}

#[test]
fn reference_and_citus_local_tables_and_soft_delete_and_date_columns_work() {
    if !cluster() {
        return;
    }
    let mut client = connect();
    client
        .batch_execute(
            "DROP TABLE IF EXISTS it_citus_ref, it_citus_local, it_citus_soft;
             DELETE FROM retention.policies WHERE name LIKE 'it_citus_%';
             CREATE TABLE it_citus_ref (id int PRIMARY KEY, at timestamptz NOT NULL);
             CREATE INDEX ON it_citus_ref (at);
             SELECT create_reference_table('it_citus_ref');
             INSERT INTO it_citus_ref SELECT g, now() - g * interval '1 hour' FROM generate_series(1, 500) g;
             CREATE TABLE it_citus_local (id int PRIMARY KEY, day date NOT NULL);
             SELECT citus_add_local_table_to_metadata('it_citus_local');
             INSERT INTO it_citus_local SELECT g, current_date - g % 60 FROM generate_series(1, 3000) g;
             CREATE TABLE it_citus_soft (id int, tenant int, at timestamptz NOT NULL, deleted_at timestamptz, reason text);
             CREATE INDEX ON it_citus_soft (at);
             SELECT create_distributed_table('it_citus_soft', 'tenant');
             INSERT INTO it_citus_soft SELECT g, g % 13, now() - g * interval '1 minute' FROM generate_series(1, 3000) g;
             SELECT retention.add_policy('it_citus_ref', 'it_citus_ref', 'at', 'older_than', interval '100 hours', batch_size => 30);
             SELECT retention.add_policy('it_citus_local', 'it_citus_local', 'day', 'older_than', interval '30 days', batch_size => 100);
             SELECT retention.add_policy('it_citus_soft', 'it_citus_soft', 'at', 'older_than', interval '1000 minutes', batch_size => 20,
                                         action => 'soft_delete', soft_delete_column => 'deleted_at', reason_column => 'reason');",
        )
        .unwrap();
    let local_expected = count(&mut client, "SELECT count(*) FROM it_citus_local WHERE day < (timezone('UTC', now()) - interval '30 days')::date");
    // Counted before the run: a row exactly 100 hours old then is older still at the run.
    let ref_expected = count(
        &mut client,
        "SELECT count(*) FROM it_citus_ref WHERE at < now() - interval '100 hours'",
    );

    client
        .batch_execute("CALL retention.run_batched('it_citus_ref')")
        .unwrap();
    let (status, rows, batches) = last_run(&mut client, "it_citus_ref");
    assert_eq!(
        (status.as_str(), rows),
        ("succeeded", ref_expected),
        "the reference table's rows older than 100 hours"
    );
    assert!(
        batches > 3,
        "{batches} batches of about 30 rows (one shard)"
    );
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM it_citus_ref"),
        500 - ref_expected
    );
    // Every node's copy of the reference table agrees.
    for node in [1, 2] {
        assert_eq!(
            count(&mut worker_node(node), "SELECT count(*) FROM it_citus_ref"),
            500 - ref_expected,
            "worker {node}'s view"
        );
    }

    let deleted: i64 = client
        .query_one(
            "SELECT (retention.run_policy('it_citus_local')->>'rows_deleted')::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(deleted, local_expected);
    client
        .batch_execute("CALL retention.run_batched('it_citus_local')")
        .unwrap();
    assert_eq!(last_run(&mut client, "it_citus_local").1, 0);
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM it_citus_local"),
        3000 - local_expected
    );

    let soft_expected = count(
        &mut client,
        "SELECT count(*) FROM it_citus_soft WHERE at < now() - interval '1000 minutes'",
    );
    client
        .batch_execute("CALL retention.run_batched('it_citus_soft')")
        .unwrap();
    let (status, rows, _) = last_run(&mut client, "it_citus_soft");
    assert_eq!((status.as_str(), rows), ("succeeded", soft_expected));
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_citus_soft WHERE deleted_at IS NOT NULL AND reason IS NOT NULL"), soft_expected);
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM it_citus_soft WHERE deleted_at IS NULL"
        ),
        3000 - soft_expected,
        "nothing newer marked"
    );
}

#[test]
fn a_distributed_recordings_policy_marks_exactly_what_twilio_confirmed_each_sent_once() {
    if !cluster() {
        return;
    }
    const ACCOUNT: &str = "AC00000000000000000000000000000001";
    const TOKEN: &str = "it-citus-token-5d2e";
    let fake = FakeTwilio::start(ACCOUNT, vec![(ACCOUNT.into(), TOKEN.into())]);
    let sid = |n: i64| format!("RE{n:032x}");
    fake.add_recordings((1..=300).map(sid));
    // Two recordings Twilio fails on (500, not retried): never marked.
    fake.push_faults([Fault::Status(500), Fault::Status(500)]);
    let mut client = connect();
    client
        .batch_execute(&format!(
            "SET pg_retention.twilio_account_sid = '{ACCOUNT}';
             SET pg_retention.twilio_secret_file = '{}';
             SET pg_retention.twilio_base_url = '{}';
             DROP TABLE IF EXISTS voice_recordings;
             CREATE TABLE voice_recordings (id bigint PRIMARY KEY, created_at timestamptz NOT NULL,
                 twilio_recording_sid text, deleted_at timestamptz, deletion_reason text);
             CREATE INDEX ON voice_recordings (created_at);
             SELECT create_distributed_table('voice_recordings', 'id');
             INSERT INTO voice_recordings (id, created_at, twilio_recording_sid)
             SELECT g, now() - CASE WHEN g <= 200 THEN interval '100 days' ELSE interval '1 day' END, 'RE' || lpad(to_hex(g), 32, '0')
               FROM generate_series(1, 300) g;
             UPDATE retention.policies SET batch_size = 25, enabled = true WHERE name = 'old_recordings';",
            secret_file("it-citus.secret", TOKEN),
            fake.base_url()
        ))
        .unwrap();

    let result: String = client
        .query_one("SELECT cleanup_old_recordings(90)::text", &[])
        .unwrap()
        .get(0);
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(
        (result["deleted"].as_i64(), result["failed"].as_i64()),
        (Some(198), Some(2)),
        "{result}"
    );

    let marked: BTreeSet<String> = client
        .query(
            "SELECT twilio_recording_sid FROM voice_recordings WHERE deleted_at IS NOT NULL",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        marked,
        fake.confirmed_sids(),
        "marked exactly what Twilio confirmed"
    );
    assert_eq!(marked.len(), 198);
    assert!(
        marked.iter().all(|s| s.as_str() <= sid(200).as_str()),
        "no recent recording marked"
    );
    let sent: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    let distinct: BTreeSet<&String> = sent.iter().collect();
    assert_eq!(
        (sent.len(), distinct.len()),
        (200, 200),
        "each old recording sent once"
    );
}

#[test]
fn expired_partitions_of_a_distributed_partitioned_table_are_dropped_whole() {
    if !cluster() {
        return;
    }
    let mut client = connect();
    client
        .batch_execute(
            "DROP TABLE IF EXISTS it_citus_part;
             DELETE FROM retention.policies WHERE name = 'it_citus_part';
             CREATE TABLE it_citus_part (id bigint, tenant int, at timestamptz) PARTITION BY RANGE (at);
             CREATE TABLE it_citus_part_old1 PARTITION OF it_citus_part FOR VALUES FROM ('2000-01-01') TO ('2000-02-01');
             CREATE TABLE it_citus_part_old2 PARTITION OF it_citus_part FOR VALUES FROM ('2000-02-01') TO ('2000-03-01');
             CREATE TABLE it_citus_part_now PARTITION OF it_citus_part FOR VALUES FROM ('2000-03-01') TO ('3000-01-01');
             CREATE TABLE it_citus_part_default PARTITION OF it_citus_part DEFAULT;
             CREATE INDEX ON it_citus_part (at);
             SELECT create_distributed_table('it_citus_part', 'tenant');
             INSERT INTO it_citus_part SELECT g, g % 11, timestamptz '2000-01-01' + g * interval '1 hour' FROM generate_series(1, 1400) g;
             INSERT INTO it_citus_part SELECT g, g % 11, now() - g * interval '1 minute' FROM generate_series(1, 600) g;
             INSERT INTO it_citus_part SELECT g, g % 11, NULL FROM generate_series(1, 50) g;
             SELECT retention.add_policy('it_citus_part', 'it_citus_part', 'at', 'older_than', interval '300 minutes', batch_size => 10);",
        )
        .unwrap();
    let expired = count(
        &mut client,
        "SELECT count(*) FROM it_citus_part WHERE at < now() - interval '300 minutes'",
    );
    let whole = count(
        &mut client,
        "SELECT count(*) FROM it_citus_part WHERE at < '2000-03-01'",
    );
    client
        .batch_execute("CALL retention.run_batched('it_citus_part')")
        .unwrap();
    let (status, rows, _) = last_run(&mut client, "it_citus_part");
    assert_eq!((status.as_str(), rows), ("succeeded", expired));
    let partitions: String = client
        .query_one("SELECT (details->'partitions')::text FROM retention.runs WHERE policy = 'it_citus_part' ORDER BY id DESC LIMIT 1", &[])
        .unwrap()
        .get(0);
    let partitions: serde_json::Value = serde_json::from_str(&partitions).unwrap();
    let dropped: i64 = partitions
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["action"] == "dropped")
        .map(|p| p["rows"].as_i64().unwrap())
        .sum();
    assert_eq!(
        dropped, whole,
        "the two old partitions' rows, counted exactly: {partitions}"
    );
    assert!(
        partitions
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["action"] != "dropped" || p["counted"] == "exact"),
        "{partitions}"
    );
    assert!(
        wait_for(Duration::from_secs(20), || count(
            &mut client,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'it_citus_part_old%'"
        ) == 0),
        "the dropper drops the detached partitions"
    );
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM it_citus_part"),
        2050 - expired,
        "live rows and NULLs kept"
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(*) FROM it_citus_part WHERE at IS NULL"
        ),
        50
    );
}

/// ALTER SYSTEM on one node, reloaded.
fn set_worker(client: &mut Client, enabled: bool) {
    client
        .batch_execute(&format!(
            "ALTER SYSTEM SET pg_retention.worker_enabled = {enabled}"
        ))
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
}

/// The node's reload is in: the worker is on (it is started for a pass when asked).
fn worker_on(client: &mut Client) -> bool {
    let enabled: String = client.query_one("SELECT current_setting('pg_retention.worker_enabled')", &[]).unwrap().get(0);
    enabled == "on"
}

#[test]
fn the_worker_runs_distributed_policies_on_the_coordinator_only() {
    if !cluster() {
        return;
    }
    let mut client = connect();
    prisma_tables(&mut client, 6_000);
    client
        .batch_execute(
            "UPDATE retention.policies SET enabled = name IN ('expired_traces', 'old_agent_usage')",
        )
        .unwrap();
    let (expired, all) = (
        count(&mut client, EXPIRED_TRACES),
        count(&mut client, ALL_TRACES),
    );
    let mut workers = [worker_node(1), worker_node(2)];
    for node in workers.iter_mut().chain([&mut client]) {
        node.batch_execute("DELETE FROM retention.runs; UPDATE retention.policies SET enabled = name IN ('expired_traces', 'old_agent_usage');").unwrap();
        set_worker(node, true);
    }
    for node in workers.iter_mut().chain([&mut client]) {
        assert!(
            wait_for(Duration::from_secs(10), || worker_on(node)),
            "each node's worker is on"
        );
    }

    // The worker nodes' workers first: they see the distributed tables, and run nothing on them.
    for node in workers.iter_mut() {
        node.batch_execute("SELECT retention.run_worker_now()")
            .unwrap();
        assert!(wait_for(Duration::from_secs(20), || count(
            node,
            "SELECT count(*) FROM retention.runs WHERE status <> 'running'"
        ) >= 2));
        assert_eq!(count(node, "SELECT count(*) FROM retention.runs WHERE status = 'skipped' AND error LIKE '%Citus worker node%'"), 2);
        assert_eq!(
            count(
                node,
                "SELECT count(*) FROM retention.runs WHERE rows_deleted > 0"
            ),
            0
        );
    }
    assert_eq!(
        count(&mut client, EXPIRED_TRACES),
        expired,
        "nothing deleted from a worker node"
    );
    // A run started by hand on a worker node is skipped the same way.
    let status: String = workers[0]
        .query_one(
            "SELECT retention.run_policy('expired_traces')->>'status'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(status, "skipped");

    client
        .batch_execute("SELECT retention.run_worker_now()")
        .unwrap();
    assert!(wait_for(Duration::from_secs(30), || {
        count(
            &mut client,
            "SELECT count(*) FROM retention.runs WHERE trigger = 'worker' AND status = 'succeeded'",
        ) == 2
    }));
    assert_eq!(
        last_run(&mut client, "expired_traces").1,
        expired,
        "the coordinator's worker ran it once, with every row"
    );
    assert_eq!(count(&mut client, ALL_TRACES), all - expired);

    for node in workers.iter_mut().chain([&mut client]) {
        node.batch_execute("ALTER SYSTEM RESET pg_retention.worker_enabled")
            .unwrap();
        node.batch_execute("SELECT pg_reload_conf()").unwrap();
    }
}

#[test]
fn a_pg_cron_job_on_the_coordinator_purges_a_distributed_table() {
    if !cluster() {
        return;
    }
    let mut client = connect();
    prisma_tables(&mut client, 6_000);
    let (expired, all) = (
        count(&mut client, EXPIRED_TRACES),
        count(&mut client, ALL_TRACES),
    );
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_cron;
             DELETE FROM retention.runs WHERE policy = 'expired_traces';
             SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname = 'it_citus_cron';
             SELECT cron.schedule('it_citus_cron', '* * * * *', $$CALL retention.run_batched('expired_traces')$$);",
        )
        .unwrap();
    let ran = wait_for(Duration::from_secs(90), || {
        count(&mut client, "SELECT count(*) FROM retention.runs WHERE policy = 'expired_traces' AND trigger = 'pg_cron' AND status <> 'running'") > 0
    });
    client
        .batch_execute("SELECT cron.unschedule('it_citus_cron')")
        .unwrap();
    assert!(ran, "pg_cron ran the job within 90 s");
    let row = client
        .query_one("SELECT status, rows_deleted FROM retention.runs WHERE policy = 'expired_traces' AND trigger = 'pg_cron' ORDER BY id LIMIT 1", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i64>(1)),
        ("succeeded".into(), expired)
    );
    assert_eq!(count(&mut client, ALL_TRACES), all - expired);
}

/// A distributed recordings table whose rows name S3 objects (issue 24): each batch's objects
/// are deleted from the store before its Twilio calls, and the shards' rows are marked only
/// while their keys are still the ones deleted, by a statement Citus pushes down.
#[test]
fn a_distributed_recordings_policy_deletes_each_row_s_s3_objects_first() {
    if !cluster() {
        return;
    }
    const ACCOUNT: &str = "AC00000000000000000000000000000002";
    const TOKEN: &str = "it-citus-s3-token-81c0";
    let fake = FakeTwilio::start(ACCOUNT, vec![(ACCOUNT.into(), TOKEN.into())]);
    fake.add_recordings((1..=40).map(|g| format!("RE{g:032x}")));
    let server = s3_servers::Server::s3s_fs(&["it-citus-media"]);
    let keys: Vec<String> = (1..=40).map(|g| format!("calls/{g} a+b.wav")).collect();
    server.put_files("it-citus-media", &keys.iter().map(String::as_str).collect::<Vec<_>>());
    let aws = secret_file("it-citus.aws", &format!("[default]\naws_access_key_id = {}\naws_secret_access_key = {}", s3_servers::ACCESS, s3_servers::SECRET));
    let mut client = connect();
    client
        .batch_execute(&format!(
            "SET pg_retention.twilio_account_sid = '{ACCOUNT}';
             SET pg_retention.twilio_secret_file = '{}';
             SET pg_retention.twilio_base_url = '{}';
             DELETE FROM retention.policies WHERE name = 'citus_media';
             DELETE FROM retention.stores WHERE name = 'it_citus_media';
             INSERT INTO retention.stores (name, kind, endpoint, region, bucket, secret_file)
             VALUES ('it_citus_media', 's3', '{}', 'us-east-1', 'it-citus-media', '{aws}');
             DROP TABLE IF EXISTS citus_media;
             CREATE TABLE citus_media (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, sid text, media_key text, deleted_at timestamptz);
             CREATE INDEX ON citus_media (created_at);
             SELECT create_distributed_table('citus_media', 'id');
             INSERT INTO citus_media SELECT g, now() - interval '100 days', 'RE' || lpad(to_hex(g), 32, '0'), 'calls/' || g || ' a+b.wav', NULL
               FROM generate_series(1, 40) g;
             SELECT retention.add_policy('citus_media', 'citus_media', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at', sid_column => 'sid',
                                         id_column => 'id', batch_size => 15, s3_store => 'it_citus_media', s3_key_columns => ARRAY['media_key']);",
            secret_file("it-citus-s3.secret", TOKEN),
            fake.base_url(),
            server.endpoint
        ))
        .unwrap();
    client.batch_execute("CALL retention.run_batched('citus_media')").unwrap();
    assert_eq!(count(&mut client, "SELECT count(*) FROM citus_media WHERE deleted_at IS NOT NULL"), 40);
    assert!(server.stored("it-citus-media").is_empty(), "every object deleted");
    assert!(fake.recordings().is_empty());
    assert_eq!(count(&mut client, "SELECT count(*) FROM retention.recording_outcomes WHERE policy = 'citus_media' AND object = 's3_object' AND outcome = 'deleted'"), 40);
    client.batch_execute("SELECT retention.drop_policy('citus_media'); DROP TABLE citus_media; DELETE FROM retention.stores WHERE name = 'it_citus_media';").unwrap();
}

/// `hide_expired` on a distributed table: the policies reach every shard, a role that is not the
/// table's owner sees only live rows through the coordinator (multi-shard and router queries, and
/// its UPDATE and DELETE reach no hidden row), the run (as the owner) still deletes them all, and
/// off leaves no policy anywhere. Citus 13.2.2 copies policies to the shards without AS
/// RESTRICTIVE, so the form made before this test existed hid nothing there.
#[test]
fn hide_expired_reaches_every_shard_and_hides_from_every_role_but_the_owner() {
    if !cluster() {
        return;
    }
    let mut client = connect();
    prisma_tables(&mut client, 1000);
    client
        .batch_execute(
            r#"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'it_citus_app') THEN CREATE ROLE it_citus_app LOGIN; END IF; END $$;
               GRANT SELECT, INSERT, UPDATE, DELETE ON "ConversationTrace" TO it_citus_app;
               SELECT retention.alter_policy('expired_traces', hide_expired => true);"#,
        )
        .unwrap();
    let live_sql = r#"SELECT count(*) FROM "ConversationTrace" WHERE "expiresAt" IS NULL OR "expiresAt" >= timezone('UTC', now())"#;
    let (all, live) = (count(&mut client, r#"SELECT count(*) FROM "ConversationTrace""#), count(&mut client, live_sql));
    assert!(all > live && live > 0, "some rows expired, some live: {all} and {live}");
    let tenant_live = count(
        &mut client,
        r#"SELECT count(*) FROM "ConversationTrace" WHERE "tenantId" = 't5' AND ("expiresAt" IS NULL OR "expiresAt" >= timezone('UTC', now()))"#,
    );

    client.batch_execute("SET ROLE it_citus_app").unwrap();
    assert_eq!(count(&mut client, r#"SELECT count(*) FROM "ConversationTrace""#), live, "the application's role, every shard");
    assert_eq!(count(&mut client, r#"SELECT count(*) FROM "ConversationTrace" WHERE "tenantId" = 't5'"#), tenant_live, "one shard");
    let touched = client
        .execute(r#"UPDATE "ConversationTrace" SET payload = '\x01' WHERE "expiresAt" < timezone('UTC', now())"#, &[])
        .unwrap()
        + client.execute(r#"DELETE FROM "ConversationTrace" WHERE "expiresAt" < timezone('UTC', now())"#, &[]).unwrap();
    assert_eq!(touched, 0, "no hidden row updated or deleted by the application");
    client.batch_execute("RESET ROLE").unwrap();
    assert_eq!(count(&mut client, r#"SELECT count(*) FROM "ConversationTrace""#), all, "the owner (here a superuser) sees all");

    let shards = |worker: &mut Client| -> (i64, i64, i64) {
        let row = worker
            .query_one(
                r#"SELECT count(*) FILTER (WHERE c.relrowsecurity AND NOT c.relforcerowsecurity),
                          (SELECT count(*) FROM pg_policy p JOIN pg_class s ON s.oid = p.polrelid WHERE s.relname LIKE 'ConversationTrace\_%' AND p.polpermissive),
                          (SELECT count(*) FROM pg_policy p JOIN pg_class s ON s.oid = p.polrelid WHERE s.relname LIKE 'ConversationTrace\_%' AND NOT p.polpermissive)
                     FROM pg_class c WHERE c.relname LIKE 'ConversationTrace\_%' AND c.relkind = 'r'"#,
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let (mut worker1, mut worker2) = (worker_node(1), worker_node(2));
    for worker in [&mut worker1, &mut worker2] {
        // Citus hides shards from catalog queries of ordinary sessions.
        worker.batch_execute("SET citus.override_table_visibility = false").unwrap();
    }
    let (on1, on2) = (shards(&mut worker1), shards(&mut worker2));
    assert!(on1.0 > 0 && on2.0 > 0, "RLS enabled, not forced, on the shards of both workers: {on1:?} {on2:?}");
    assert_eq!((on1.1, on1.2, on2.1, on2.2), (on1.0 * 4, 0, on2.0 * 4, 0), "four permissive policies on each shard");

    let run = pg_retention_it::run_policy(&mut client, "expired_traces");
    assert_eq!(run["rows_deleted"].as_i64(), Some(all - live), "the run deletes every hidden row: {run}");

    client.batch_execute("SELECT retention.alter_policy('expired_traces', hide_expired => false)").unwrap();
    assert_eq!(shards(&mut worker1), (0, 0, 0), "off: no RLS, no policy left on a shard");
    client.batch_execute(r#"DROP TABLE "ConversationTrace", "AgentUsage"; DROP ROLE it_citus_app"#).unwrap();
}
