//! Plain tests of a recording's transcriptions (issue 24): listed under the recording, each
//! deleted, and only then the recording; anything short of every one gone keeps the recording.

use super::tests::{client, main, matches_sid_pattern, of_row, scripted, account_page, MAIN, RECORDING, SUB};
use super::transcriptions::{self, first_page, parse_page, transcription_path};
use super::*;

const TR1: &str = "TR0123456789abcdef0123456789abcde1";
const TR2: &str = "TR0123456789abcdef0123456789abcde2";

fn with_transcriptions(url: String) -> Client {
    let mut client = client(url, MAIN, "t");
    client.config.transcriptions = true;
    client
}

fn page(account: &str, recording: &str, sids: &[&str], next: Option<&str>) -> String {
    let entries: Vec<serde_json::Value> =
        sids.iter().map(|sid| serde_json::json!({ "sid": sid, "account_sid": account, "recording_sid": recording, "status": "completed" })).collect();
    serde_json::json!({ "transcriptions": entries, "next_page_uri": next, "page": 0, "page_size": 1000 }).to_string()
}

#[test]
fn each_transcription_is_deleted_before_the_recording() {
    let (url, seen) = scripted(|method, _| match method {
        "GET" => ("200 OK", page(MAIN, RECORDING, &[TR1, TR2], None)),
        _ => ("204 No Content", String::new()),
    });
    let reply = with_transcriptions(url).delete_recording(&main(RECORDING));
    assert_eq!(reply.answer, Answer::Deleted);
    assert_eq!(reply.transcriptions.iter().map(|d| (d.sid.as_str(), &d.answer)).collect::<Vec<_>>(), [(TR1, &Answer::Deleted), (TR2, &Answer::Deleted)]);
    let expected = [
        format!("GET /2010-04-01/Accounts/{MAIN}/Recordings/{RECORDING}/Transcriptions.json?PageSize=1000"),
        format!("DELETE /2010-04-01/Accounts/{MAIN}/Transcriptions/{TR1}.json"),
        format!("DELETE /2010-04-01/Accounts/{MAIN}/Transcriptions/{TR2}.json"),
        format!("DELETE /2010-04-01/Accounts/{MAIN}/Recordings/{RECORDING}.json"),
    ];
    assert_eq!(*seen.lock().unwrap(), expected);
}

#[test]
fn a_transcription_not_confirmed_gone_keeps_the_recording() {
    let (url, seen) = scripted(|method, path| match (method, path.contains(TR1)) {
        ("GET", _) => ("200 OK", page(MAIN, RECORDING, &[TR1, TR2], None)),
        ("DELETE", true) => ("503 Service Unavailable", "{}".into()),
        _ => ("204 No Content", String::new()),
    });
    let reply = with_transcriptions(url).delete_recording(&main(RECORDING));
    assert!(matches!(&reply.answer, Answer::TranscriptionsLeft(None, why) if why.contains("1 of its 2")), "{:?}", reply.answer);
    assert!(!reply.answer.confirms_deletion());
    assert_eq!(reply.answer.failure_kind(), Some("transcriptions_left"));
    assert_eq!(reply.transcriptions[0].answer, Answer::ServerError(503));
    assert_eq!(reply.transcriptions[1].answer, Answer::Deleted, "the others are still deleted");
    assert!(!seen.lock().unwrap().iter().any(|r| r.contains("/Recordings/") && r.starts_with("DELETE")), "the recording is never sent");
}

#[test]
fn a_404_to_the_listing_proves_nothing_about_transcriptions() {
    // The right account (the main one, with no subaccounts), and still: the recording is unknown
    // there, so whatever transcriptions it had cannot be listed. The row is left unmarked.
    let (url, seen) = scripted(|method, path| match (method, path.contains("Accounts.json")) {
        ("GET", true) => ("200 OK", account_page(&[MAIN], None)),
        _ => ("404 Not Found", "{\"code\":20404}".into()),
    });
    let reply = with_transcriptions(url).delete_recording(&main(RECORDING));
    assert!(matches!(&reply.answer, Answer::TranscriptionsLeft(Some(404), why) if why.contains("40 days")), "{:?}", reply.answer);
    assert!(seen.lock().unwrap().iter().all(|r| r.starts_with("GET")), "nothing deleted: {:?}", seen.lock().unwrap());
    // Under the main account of one with subaccounts, the 404 is the wrong account's.
    let (url, _) = scripted(|method, path| match (method, path.contains("Accounts.json")) {
        ("GET", true) => ("200 OK", account_page(&[MAIN, SUB], None)),
        _ => ("404 Not Found", "{\"code\":20404}".into()),
    });
    let answer = with_transcriptions(url).delete_recording(&main(RECORDING)).answer;
    assert!(matches!(&answer, Answer::AccountUnverified(Some(404), _)), "{answer:?}");
}

#[test]
fn a_subaccount_s_transcriptions_are_listed_and_deleted_under_its_path() {
    let (url, seen) = scripted(|method, path| match method {
        "GET" if path.contains("Accounts.json") => ("200 OK", account_page(&[MAIN, SUB], None)),
        "GET" => ("200 OK", page(SUB, RECORDING, &[TR1], None)),
        _ => ("204 No Content", String::new()),
    });
    assert_eq!(with_transcriptions(url).delete_recording(&of_row(RECORDING, Some(SUB))).answer, Answer::Deleted);
    let paths: Vec<String> = seen.lock().unwrap().iter().filter(|r| !r.contains("Accounts.json")).cloned().collect();
    assert!(paths.iter().all(|r| r.contains(&format!("/Accounts/{SUB}/"))), "{paths:?}");
}

#[test]
fn refused_or_rate_limited_listings_stop_the_row_as_a_delete_would() {
    let (url, _) = scripted(|_, _| ("401 Unauthorized", "{}".into()));
    assert_eq!(with_transcriptions(url).delete_recording(&main(RECORDING)).answer, Answer::Refused(401));
    let (url, _) = scripted(|_, _| ("429 Too Many Requests", "{}".into()));
    assert_eq!(with_transcriptions(url).delete_recording(&main(RECORDING)).answer, Answer::RateLimited);
}

#[test]
fn every_page_of_the_transcription_list_is_read() {
    let next = format!("/2010-04-01/Accounts/{MAIN}/Recordings/{RECORDING}/Transcriptions.json?PageSize=1000&Page=1&PageToken=PAx");
    let (url, seen) = scripted(move |method, path| match (method, path.contains("Page=1")) {
        ("GET", false) => ("200 OK", page(MAIN, RECORDING, &[TR1], Some(&next))),
        ("GET", true) => ("200 OK", page(MAIN, RECORDING, &[TR2], None)),
        _ => ("204 No Content", String::new()),
    });
    let reply = with_transcriptions(url).delete_recording(&main(RECORDING));
    assert_eq!(reply.transcriptions.len(), 2);
    assert_eq!(seen.lock().unwrap().len(), 5);
}

#[test]
fn transcription_pages_that_prove_nothing_are_refused() {
    assert!(parse_page("not json", MAIN, RECORDING).is_err());
    assert!(parse_page("{}", MAIN, RECORDING).is_err());
    assert!(parse_page(&page(MAIN, RECORDING, &["TR123"], None), MAIN, RECORDING).is_err(), "a malformed SID");
    let other = "RE99999999999999999999999999999999";
    assert!(parse_page(&page(MAIN, other, &[TR1], None), MAIN, RECORDING).is_err(), "another recording's transcription");
    let elsewhere = format!("https://elsewhere.example/2010-04-01/Accounts/{MAIN}/Recordings/{RECORDING}/Transcriptions.json?Page=1");
    assert!(parse_page(&page(MAIN, RECORDING, &[TR1], Some(&elsewhere)), MAIN, RECORDING).is_err(), "another host");
    let other_listing = format!("/2010-04-01/Accounts/{MAIN}/Recordings/{other}/Transcriptions.json?Page=1");
    assert!(parse_page(&page(MAIN, RECORDING, &[TR1], Some(&other_listing)), MAIN, RECORDING).is_err(), "another recording's listing");
    assert_eq!(parse_page(&page(MAIN, RECORDING, &[TR1, TR2], None), MAIN, RECORDING), Ok((vec![TR1.to_string(), TR2.to_string()], None)));
}

#[test]
fn requests_match_twilio_transcription_spec() {
    let spec: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/twilio_transcriptions.json")).unwrap();
    assert_eq!(spec["list"]["operation"]["operationId"], "ListRecordingTranscription");
    assert_eq!(spec["delete"]["operation"]["operationId"], "DeleteTranscription");
    let fill = |template: &str, values: &[(&str, &str)]| values.iter().fold(template.to_string(), |t, (name, value)| t.replace(&format!("{{{name}}}"), value));
    let (path, query) = first_page(MAIN, RECORDING).split_once('?').map(|(p, q)| (p.to_string(), q.to_string())).unwrap();
    assert_eq!(path, fill(spec["list"]["path"].as_str().unwrap(), &[("AccountSid", MAIN), ("RecordingSid", RECORDING)]));
    let params = spec["list"]["operation"]["parameters"].as_array().unwrap();
    let (name, value) = query.split_once('=').unwrap();
    let param = params.iter().find(|p| p["name"] == name).expect("PageSize is a parameter of the listing");
    let value: i64 = value.parse().unwrap();
    assert!(value >= param["schema"]["minimum"].as_i64().unwrap() && value <= param["schema"]["maximum"].as_i64().unwrap());
    assert_eq!(spec["delete"]["method"], "delete");
    assert_eq!(transcription_path(MAIN, TR1), fill(spec["delete"]["path"].as_str().unwrap(), &[("AccountSid", MAIN), ("Sid", TR1)]));
    let sid_pattern = spec["transcription_schema"]["sid"]["pattern"].as_str().unwrap();
    assert!(matches_sid_pattern(sid_pattern, TR1) && transcriptions::is_transcription_sid(TR1));
    assert!(!transcriptions::is_transcription_sid("RE0123456789abcdef0123456789abcde1"));
    assert_eq!(spec["delete"]["operation"]["responses"].as_object().unwrap().keys().collect::<Vec<_>>(), ["204"]);
}
