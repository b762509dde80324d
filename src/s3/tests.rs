//! The S3 client against real S3 servers on loopback that this project did not write: `s3s-fs`
//! (which checks every SigV4 signature) and `moto` in server mode (versioned buckets, object
//! lock), from `tests/s3_servers`; fixtures made and read with boto3.

use std::sync::Arc;
use std::time::Duration;

use s3_servers::{Server, ACCESS, SECRET};

use super::*;

fn config(server: &Server, bucket: &str, secret: &str, versions: Versions) -> Config {
    Config {
        endpoint: server.endpoint.clone(),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        addressing: Addressing::Path,
        credentials: Credentials { access_key_id: ACCESS.into(), secret_access_key: secret.into(), session_token: None },
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(20),
        concurrency: 2,
        retry: RetryPolicy { attempts: 3, default_backoff: Duration::from_millis(20), max_backoff: Duration::from_millis(200) },
        versions,
    }
}

fn delete(config: Config, keys: &[&str]) -> Vec<KeyReply> {
    let client = Arc::new(Client::new(config));
    client.delete_keys(keys.iter().map(|k| k.to_string()).collect(), &|| false).unwrap()
}

/// Keys of every awkward shape SigV4 and XML meet: spaces, `+`, `?`, `#`, `%`, `&`, `<`,
/// quotes, non-ASCII, a leading slash's absence, deep paths.
const AWKWARD: [&str; 12] = [
    "calls/a b.wav", "calls/a+b.wav", "calls/what?.wav", "calls/#1.wav", "calls/100%25.wav", "calls/100%.wav",
    "calls/R&D <1>.wav", "calls/it's \"x\".wav", "calls/ünïcödé/日本.wav", "calls/~tilde=.wav", "AC1/RE1", "a",
];

#[test]
fn keys_of_every_awkward_shape_are_deleted_and_only_those() {
    let server = Server::s3s_fs(&["media"]);
    server.put_files("media", &AWKWARD);
    server.put_files("media", &["calls/a", "calls/a b.wav.keep", "calls/a%20b.wav"]);
    let replies = delete(config(&server, "media", SECRET, Versions::All), &AWKWARD);
    for reply in &replies {
        assert_eq!(reply.answer, KeyAnswer::Deleted(vec![]), "{reply:?}");
    }
    assert_eq!(replies.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), AWKWARD, "answers in input order");
    assert_eq!(server.stored("media"), ["calls/a", "calls/a b.wav.keep", "calls/a%20b.wav"], "only the named keys went");
}

#[test]
fn a_wrong_secret_is_refused_and_deletes_nothing() {
    let server = Server::s3s_fs(&["media"]);
    server.put_files("media", &["calls/1.wav", "calls/2.wav"]);
    let replies = delete(config(&server, "media", "not-the-secret", Versions::All), &["calls/1.wav", "calls/2.wav"]);
    for reply in &replies {
        assert!(matches!(&reply.answer, KeyAnswer::Refused(403, why) if why.contains("SignatureDoesNotMatch")), "{reply:?}");
        assert!(!reply.answer.confirms_deletion());
    }
    assert_eq!(server.stored("media").len(), 2);
}

#[test]
fn more_than_a_thousand_keys_take_several_requests() {
    let server = Server::s3s_fs(&["media"]);
    let keys: Vec<String> = (0..2500).map(|i| format!("bulk/{i}.wav")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    server.put_files("media", &refs);
    let replies = delete(config(&server, "media", SECRET, Versions::All), &refs);
    assert!(replies.iter().all(|r| r.answer.confirms_deletion()));
    assert!(server.stored("media").is_empty());
}

#[test]
fn on_a_versioned_bucket_every_version_of_the_key_goes() {
    let server = Server::moto();
    server.boto3(&["bucket", "versioned", "versioned"]);
    for key in ["calls/1.wav", "calls/1.wav.other", "calls/../1.wav", "calls/2 +.wav"] {
        server.boto3(&["put", "versioned", key, "3"]);
    }
    server.boto3(&["marker", "versioned", "calls/1.wav"]);
    let replies = delete(config(&server, "versioned", SECRET, Versions::All), &["calls/1.wav", "calls/../1.wav", "calls/2 +.wav", "calls/never"]);
    assert!(matches!(&replies[0].answer, KeyAnswer::Deleted(versions) if versions.len() == 4), "three versions and the marker: {:?}", replies[0]);
    assert!(matches!(&replies[1].answer, KeyAnswer::Deleted(versions) if versions.len() == 3), "{:?}", replies[1]);
    assert!(matches!(&replies[2].answer, KeyAnswer::Deleted(versions) if versions.len() == 3), "{:?}", replies[2]);
    assert_eq!(replies[3].answer, KeyAnswer::Absent);
    let left: Vec<String> = server.boto3(&["versions", "versioned"]).as_array().unwrap().iter().map(|v| v[0].as_str().unwrap().to_string()).collect();
    assert_eq!(left, ["calls/1.wav.other"; 3], "no version of a deleted key is left; the key sharing its prefix is untouched");
}

#[test]
fn markers_only_leaves_the_versions_as_asked() {
    let server = Server::moto();
    server.boto3(&["bucket", "markers", "versioned"]);
    server.boto3(&["put", "markers", "calls/1.wav", "2"]);
    let replies = delete(config(&server, "markers", SECRET, Versions::Markers), &["calls/1.wav"]);
    assert_eq!(replies[0].answer, KeyAnswer::Deleted(vec![]));
    let versions = server.boto3(&["versions", "markers"]);
    assert_eq!(versions.as_array().unwrap().iter().filter(|v| v[2] == true).count(), 1, "a delete marker: {versions}");
    assert_eq!(versions.as_array().unwrap().iter().filter(|v| v[2] == false).count(), 2, "both versions kept: {versions}");
}

#[test]
fn a_key_s_own_error_fails_that_key_only() {
    let server = Server::moto();
    server.boto3(&["bucket", "locked", "locked"]);
    let held = server.boto3(&["put", "locked", "calls/held.wav"]);
    server.boto3(&["hold", "locked", "calls/held.wav", held[0].as_str().unwrap()]);
    server.boto3(&["put", "locked", "calls/free.wav"]);
    let replies = delete(config(&server, "locked", SECRET, Versions::All), &["calls/held.wav", "calls/free.wav"]);
    assert!(matches!(&replies[0].answer, KeyAnswer::KeyError { code, .. } if code == "AccessDenied"), "{:?}", replies[0]);
    assert!(replies[1].answer.confirms_deletion(), "{:?}", replies[1]);
    let left: Vec<String> = server.boto3(&["versions", "locked"]).as_array().unwrap().iter().map(|v| v[0].as_str().unwrap().to_string()).collect();
    assert_eq!(left, ["calls/held.wav"]);
}

#[test]
fn xml_and_query_encoding() {
    let body = xml::delete_body(&[xml::ObjectId { key: "a&b <c> \"d\" 'e'\r\n".into(), version: Some("v1".into()) }]);
    assert!(body.contains("<Key>a&amp;b &lt;c&gt; &quot;d&quot; &apos;e&apos;&#13;&#10;</Key><VersionId>v1</VersionId>"), "{body}");
    assert!(!xml::xml_can_carry("bell\u{7}") && xml::xml_can_carry("tab\tok ü"));
    assert_eq!(encode("calls/a b+c?d#e%f~g_h.i-j/ü"), "calls%2Fa%20b%2Bc%3Fd%23e%25f~g_h.i-j%2F%C3%BC");
    let result = r#"<?xml version="1.0"?><DeleteResult><Deleted><Key>a&amp;b</Key><VersionId>v1</VersionId></Deleted><Error><Key>c&#13;</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>"#;
    assert_eq!(
        xml::delete_result(result).unwrap(),
        [
            xml::KeyResult::Deleted { key: "a&b".into(), version: Some("v1".into()) },
            xml::KeyResult::Error { key: "c\r".into(), version: None, code: "AccessDenied".into(), message: "no".into() }
        ]
    );
    assert!(xml::delete_result("<Error><Code>SlowDown</Code></Error>").is_err());
}

/// A server that answers each connection's request with the next of `answers` (status line,
/// body), counting the requests.
fn scripted(answers: Vec<(&'static str, String)>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for (mut stream, (status, body)) in listener.incoming().flatten().zip(answers) {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            reader.read_exact(&mut vec![0; length]).unwrap();
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nx-amz-request-id: RQ{}\r\nConnection: close\r\n\r\n{body}", body.len(), seen.load(std::sync::atomic::Ordering::SeqCst));
        }
    });
    (url, count)
}

#[test]
fn slow_down_is_waited_out_like_twilio_s_429() {
    let slow = ("503 Slow Down", "<Error><Code>SlowDown</Code></Error>".to_string());
    let ok = ("200 OK", "<DeleteResult><Deleted><Key>k</Key></Deleted></DeleteResult>".to_string());
    let (url, requests) = scripted(vec![slow.clone(), slow.clone(), ok]);
    let server = Server::at(url);
    let replies = delete(config(&server, "media", SECRET, Versions::Markers), &["k"]);
    assert_eq!((replies[0].answer.clone(), replies[0].request_id.as_deref()), (KeyAnswer::Deleted(vec![]), Some("RQ3")));
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    let (url, _) = scripted(vec![slow.clone(), slow.clone(), slow]);
    let server = Server::at(url);
    let replies = delete(config(&server, "media", SECRET, Versions::Markers), &["k"]);
    assert!(matches!(&replies[0].answer, KeyAnswer::Failed(Some(503), why) if why.starts_with("slow_down")), "{replies:?}");
}

#[test]
fn path_and_virtual_hosted_addresses() {
    let server = Server::at("https://s3.eu-west-1.amazonaws.com/".into());
    let mut path = config(&server, "acme-media", SECRET, Versions::All);
    assert_eq!(Client::new(path.clone()).url("delete="), "https://s3.eu-west-1.amazonaws.com/acme-media?delete=");
    path.addressing = Addressing::Virtual;
    assert_eq!(Client::new(path).url("versioning"), "https://acme-media.s3.eu-west-1.amazonaws.com/?versioning");
}

#[test]
fn a_key_named_twice_is_sent_once_and_answered_twice() {
    let server = Server::s3s_fs(&["media"]);
    server.put_files("media", &["calls/1.wav"]);
    let replies = delete(config(&server, "media", SECRET, Versions::All), &["calls/1.wav", "calls/2.wav", "calls/1.wav"]);
    assert_eq!(replies.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["calls/1.wav", "calls/2.wav", "calls/1.wav"]);
    assert!(replies.iter().all(|r| r.answer.confirms_deletion()));
}
