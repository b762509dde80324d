//! Twilio subaccounts (issue 24): a subaccount's recording is a 404 under the main account's
//! path, so that 404 must never mark its row; with `account_column` each recording is deleted
//! under its own account.

use std::collections::BTreeSet;

use fake_twilio::FakeTwilio;
use pg_retention_it::{marked_ids, run_policy, connect, count, secret_file};
use postgres::Client;
use serde_json::Value;

const MAIN: &str = "AC00000000000000000000000000000024";
const SUB: &str = "AC000000000000000000000000000000b1";
const STRANGER: &str = "AC000000000000000000000000000000ee";
const TOKEN: &str = "it-subaccounts-token-5d1e";

fn sid(n: u32) -> String {
    format!("RE{n:032x}")
}

/// A fake Twilio whose main account has the subaccount SUB, and a session pointed at it.
fn twilio() -> (FakeTwilio, Client) {
    let fake = FakeTwilio::start(MAIN, vec![(MAIN.into(), TOKEN.into())]);
    fake.add_subaccount(SUB, []);
    let mut client = connect();
    client
        .batch_execute(&format!(
            "SET pg_retention.twilio_account_sid = '{MAIN}';
             SET pg_retention.twilio_secret_file = '{}';
             SET pg_retention.twilio_base_url = '{}';
             SET pg_retention.twilio_timeout_ms = 2000;",
            secret_file("it-subaccounts.secret", TOKEN),
            fake.base_url()
        ))
        .unwrap();
    (fake, client)
}

/// Table and recordings policy `name`; rows (id, account) a hundred days old, SID `sid(id)`.
fn table(client: &mut Client, name: &str, rows: &[(u32, Option<&str>)], account_column: bool) {
    let account = if account_column { ", account_column => 'twilio_account_sid'" } else { "" };
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name};
             DELETE FROM retention.policies WHERE name = '{name}';
             CREATE TABLE {name} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, twilio_account_sid text,
                                  twilio_recording_sid text, deleted_at timestamptz, deletion_reason text);
             SELECT retention.add_policy('{name}', '{name}', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at',
                                         reason_column => 'deletion_reason', sid_column => 'twilio_recording_sid',
                                         id_column => 'id'{account});"
        ))
        .unwrap();
    for (id, account) in rows {
        client
            .execute(&format!("INSERT INTO {name} VALUES ($1, now() - interval '100 days', $2, $3)"), &[&i64::from(*id), account, &sid(*id)])
            .unwrap();
    }
}

fn deletes(fake: &FakeTwilio) -> BTreeSet<String> {
    fake.requests().iter().filter(|r| r.method == "DELETE").map(|r| r.path.clone()).collect()
}

fn path(account: &str, id: u32) -> String {
    format!("/2010-04-01/Accounts/{account}/Recordings/{}.json", sid(id))
}

/// The bug the issue names: before 0.8.0 the subaccount's five recordings were answered 404
/// under the main account's path, counted `already_gone` and marked, their audio still stored.
#[test]
fn a_subaccount_recording_is_never_marked_gone_from_the_main_account_s_404() {
    let (fake, mut client) = twilio();
    table(&mut client, "it_sub_nocolumn", &[1, 2, 3, 4, 5, 6, 7, 8].map(|id| (id, None)), false);
    fake.add_subaccount(SUB, (1..=5).map(sid));
    fake.add_recordings((6..=8).map(sid));

    let result = run_policy(&mut client, "it_sub_nocolumn");
    assert_eq!(marked_ids(&mut client, "it_sub_nocolumn"), BTreeSet::from([6, 7, 8]), "only what Twilio deleted is marked: {result}");
    assert_eq!(fake.recordings_of(SUB), (1..=5).map(sid).collect(), "the subaccount's audio is still stored");
    assert_eq!((result["deleted"].as_i64(), result["already_gone"].as_i64()), (Some(3), Some(0)), "{result}");
    assert_eq!((result["failed"].as_i64(), result["account_unverified"].as_i64()), (Some(5), Some(5)), "{result}");
    let reasons = count(
        &mut client,
        "SELECT count(*) FROM retention.recording_outcomes WHERE policy = 'it_sub_nocolumn' AND outcome = 'failed'
            AND http_status = 404 AND reason LIKE 'account_unverified: %1 subaccount(s)%account_column'",
    );
    assert_eq!(reasons, 5, "each failure says why and what to do");
    assert_eq!(count(&mut client, &format!("SELECT count(*) FROM retention.recording_outcomes WHERE policy = 'it_sub_nocolumn' AND account = '{MAIN}'")), 8);
    assert_eq!(fake.account_listings(), 1, "listed once in the run");
}

#[test]
fn with_account_column_each_recording_is_deleted_under_its_own_account() {
    let (fake, mut client) = twilio();
    let rows = [(1, Some(SUB)), (2, Some(SUB)), (3, Some(MAIN)), (4, Some(STRANGER)), (5, None), (6, Some("AC-not-a-sid")), (7, Some(SUB))];
    table(&mut client, "it_sub_column", &rows, true);
    // 7 was deleted by a run that died before marking it: gone, under its own account.
    fake.add_subaccount(SUB, [1, 2].map(sid));
    fake.add_recordings([sid(3), sid(4), sid(5), sid(6)]);

    let preview: String = client.query_one("SELECT retention.preview('it_sub_column')::text", &[]).unwrap().get(0);
    let preview: Value = serde_json::from_str(&preview).unwrap();
    assert_eq!((preview["would_send"].as_i64(), preview["no_account"].as_i64()), (Some(5), Some(2)), "{preview}");
    let result = run_policy(&mut client, "it_sub_column");
    assert_eq!(marked_ids(&mut client, "it_sub_column"), BTreeSet::from([1, 2, 3, 7]), "{result}");
    assert_eq!(deletes(&fake), BTreeSet::from([path(SUB, 1), path(SUB, 2), path(MAIN, 3), path(SUB, 7)]), "no request for 4, 5, 6");
    assert_eq!(fake.recordings(), BTreeSet::from([sid(4), sid(5), sid(6)]));
    assert_eq!((result["deleted"].as_i64(), result["already_gone"].as_i64(), result["account_unverified"].as_i64()), (Some(4), Some(1), Some(3)), "{result}");
    let unsent: Vec<(String, Option<i32>, String)> = client
        .query("SELECT key, http_status, reason FROM retention.recording_outcomes WHERE policy = 'it_sub_column' AND outcome = 'failed' ORDER BY key", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(unsent.len(), 3, "{unsent:?}");
    let under: Vec<(String, Option<String>)> = client
        .query("SELECT key, account FROM retention.recording_outcomes WHERE policy = 'it_sub_column' ORDER BY key", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [(1, Some(SUB)), (2, Some(SUB)), (3, Some(MAIN)), (4, None), (5, None), (6, None), (7, Some(SUB))]
        .map(|(key, account)| (key.to_string(), account.map(str::to_string)));
    assert_eq!(under, expected, "each outcome names the account its DELETE went under, none for a row never sent");
    assert!(unsent[0].2.contains(&format!("account {STRANGER} is neither")) && unsent[0].1.is_none(), "{unsent:?}");
    assert!(unsent[1].2.contains("NULL") && unsent[2].2.contains("not AC + 32 hex digits"), "{unsent:?}");

    // Row 4 corrected to its real account: deleted there at the next run.
    client.batch_execute(&format!("UPDATE it_sub_column SET twilio_account_sid = '{SUB}' WHERE id = 4")).unwrap();
    fake.add_subaccount(SUB, [sid(4)]);
    let again = run_policy(&mut client, "it_sub_column");
    assert!(marked_ids(&mut client, "it_sub_column").contains(&4), "{again}");
    assert!(fake.recordings_of(SUB).is_empty());
}

#[test]
fn credentials_that_may_not_list_accounts_mark_nothing_on_a_404() {
    let (fake, mut client) = twilio();
    fake.refuse_account_listing(true);
    table(&mut client, "it_sub_unlisted", &[(1, None), (2, None)], false);
    fake.add_recordings([sid(1)]); // 2 is stored nowhere the main account's path reaches

    let result = run_policy(&mut client, "it_sub_unlisted");
    assert_eq!(marked_ids(&mut client, "it_sub_unlisted"), BTreeSet::from([1]), "{result}");
    let reason: String = client
        .query_one("SELECT reason FROM retention.recording_outcomes WHERE policy = 'it_sub_unlisted' AND key = '2'", &[])
        .unwrap()
        .get(0);
    assert!(reason.contains("HTTP 401") && reason.contains("account_column"), "{reason}");

    // With account_column, the row's own account's 404 is proof, listing or not.
    client.batch_execute(&format!("SELECT retention.alter_policy('it_sub_unlisted', account_column => 'twilio_account_sid');
                                   UPDATE it_sub_unlisted SET twilio_account_sid = '{MAIN}'")).unwrap();
    let result = run_policy(&mut client, "it_sub_unlisted");
    assert_eq!(marked_ids(&mut client, "it_sub_unlisted"), BTreeSet::from([1, 2]), "{result}");
}
