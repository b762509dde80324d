//! S3 stores: deletions per second from s3s-fs (on loopback, checking every signature) by a
//! recordings policy with an S3 store, side by side with boto3's `delete_objects` in requests
//! of 1,000 keys against the same server in the same run; and the backend's peak heap at two
//! sizes. The rows have no Twilio SID and `missing_sid => 'mark'`, so the run's only external
//! calls are S3's: what is measured is the S3 path and the marking.

use s3_servers::{Server, ACCESS, SECRET};

use super::{exec, line, mb, one, peak_memory, timed, twilio_session, Line, Scale};

const BUCKET: &str = "bench-media";

/// `count` objects `bench/0..` in the bucket, and as many rows naming them.
fn objects(client: &mut postgres::Client, server: &Server, count: i64) {
    let keys: Vec<String> = (0..count).map(|i| format!("bench/{i}")).collect();
    server.put_files(BUCKET, &keys.iter().map(String::as_str).collect::<Vec<_>>());
    exec(
        client,
        &format!(
            "TRUNCATE bench_s3;
             INSERT INTO bench_s3 SELECT g, now() - interval '100 days', NULL, 'bench/' || g FROM generate_series(0, {count} - 1) g;"
        ),
    );
    exec(client, "VACUUM ANALYZE bench_s3");
}

pub fn scenario(scale: &Scale, lines: &mut Vec<Line>) {
    let server = Server::s3s_fs(&[BUCKET]);
    // A recordings run checks its Twilio credentials first, though these rows send nothing there.
    let fake = fake_twilio::FakeTwilio::start(super::ACCOUNT, vec![(super::ACCOUNT.into(), super::TOKEN.into())]);
    let mut client = twilio_session(&fake, 8);
    let secret = pg_retention_it::secret_file("bench-s3.aws", &format!("[default]\naws_access_key_id = {ACCESS}\naws_secret_access_key = {SECRET}"));
    exec(
        &mut client,
        &format!(
            "DELETE FROM retention.policies WHERE name = 'bench_s3';
             DELETE FROM retention.stores WHERE name = 'bench_s3';
             INSERT INTO retention.stores (name, kind, endpoint, region, bucket, secret_file)
             VALUES ('bench_s3', 's3', '{}', 'us-east-1', '{BUCKET}', '{secret}');
             DROP TABLE IF EXISTS bench_s3;
             CREATE TABLE bench_s3 (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, sid text, media_key text, deleted_at timestamptz);
             CREATE INDEX ON bench_s3 (created_at);
             SELECT retention.add_policy('bench_s3', 'bench_s3', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at', sid_column => 'sid',
                                         id_column => 'id', missing_sid => 'mark', s3_store => 'bench_s3', s3_key_columns => ARRAY['media_key']);",
            server.endpoint
        ),
    );
    let count = scale.recordings;
    // boto3 first, on the same objects put again after.
    let keys: Vec<String> = (0..count).map(|i| format!("bench/{i}")).collect();
    server.put_files(BUCKET, &keys.iter().map(String::as_str).collect::<Vec<_>>());
    let boto3_seconds = server.boto3(&["delete_all", BUCKET, "bench/", &count.to_string()]).as_f64().expect("seconds");
    assert!(server.stored(BUCKET).is_empty(), "boto3 deleted every object");
    objects(&mut client, &server, count);
    let seconds = timed(&mut client, "CALL retention.run_batched('bench_s3')");
    let marked: i64 = one(&mut client, "SELECT count(*) FROM bench_s3 WHERE deleted_at IS NOT NULL");
    assert_eq!(marked, count, "every row marked");
    assert!(server.stored(BUCKET).is_empty(), "every object deleted");
    let (baseline, rate) = (count as f64 / boto3_seconds, count as f64 / seconds);
    lines.push(line(
        &format!("S3 objects, {count} from s3s-fs on loopback: deleted per s"),
        format!("{baseline:.0} (boto3 delete_objects, 1,000 keys a request)"),
        format!("{rate:.0} (rows marked, outcomes recorded)"),
        format!("{:.2}x", rate / baseline),
        ">= 0.8x",
    ));
    let mut peaks = Vec::new();
    for size in [scale.recordings, scale.memory_recordings] {
        objects(&mut client, &server, size);
        let mut session = twilio_session(&fake, 8);
        let pid: i32 = one(&mut session, "SELECT pg_backend_pid()");
        peaks.push(peak_memory(pid, || exec(&mut session, "CALL retention.run_batched('bench_s3')")));
        assert!(server.stored(BUCKET).is_empty(), "every object deleted");
    }
    lines.push(line(
        &format!("S3 objects: peak backend heap, {} vs {}", scale.recordings, scale.memory_recordings),
        mb(peaks[0]),
        mb(peaks[1]),
        format!("{:+.1}%", (peaks[1] as f64 / peaks[0] as f64 - 1.0) * 100.0),
        "within 10%",
    ));
    exec(&mut client, "DROP TABLE bench_s3; SELECT retention.drop_policy('bench_s3'); DELETE FROM retention.stores WHERE name = 'bench_s3';");
}
