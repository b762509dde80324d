//! Issue 10, acceptance: seeded fault injection. A recordings policy and a delete policy run
//! batched while, at a random moment, the harness cancels, terminates or SIGKILLs the backend,
//! disables the policy, or makes the fake Twilio hang or answer 429 with odd `Retry-After`
//! values. After each fault and one more clean run: no row marked without a Twilio 204/404,
//! every expired row gone, no history row left `running`, no policy lock held; at the end, no
//! panic in the server log. The seed is printed; replay one with
//! `FAULT_SEED=<seed> make integration TEST=faults`; `FAULTS=<n>` sets how many (default 60).

use std::thread;
use std::time::{Duration, Instant};

use fake_twilio::{FakeTwilio, Fault};
use pg_retention_it::{connect, count, reconnect, secret_file, server_log, wait_for};
use postgres::Client;

const ACCOUNT: &str = "AC000000000000000000000000000000f1";
const TOKEN: &str = "fault-token";

/// splitmix64: a small, seedable generator, so that a seed replays the same faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Cancel,
    Terminate,
    Kill,
    Disable,
    TwilioHang,
    Twilio429,
}

const KINDS: [Kind; 6] = [Kind::Cancel, Kind::Terminate, Kind::Kill, Kind::Disable, Kind::TwilioHang, Kind::Twilio429];
const ODD_RETRY_AFTER: [&str; 7] = ["1e20", "-5", "abc", "0.5", "99999999999999999999", "", "NaN"];

fn settings(fake: &FakeTwilio) -> String {
    format!(
        "SET pg_retention.twilio_account_sid = '{ACCOUNT}'; SET pg_retention.twilio_secret_file = '{}';
         SET pg_retention.twilio_base_url = '{}'; SET pg_retention.twilio_timeout_ms = 600;
         SET pg_retention.twilio_max_backoff_ms = 300; SET pg_retention.twilio_concurrency = 4;",
        secret_file("fault-token.secret", TOKEN),
        fake.base_url()
    )
}

fn sid(n: u32) -> String {
    format!("RE{n:032x}")
}

/// Adds `n` expired rows to each table (and their recordings at the fake), from `next`.
fn refill(client: &mut Client, fake: &FakeTwilio, next: &mut u32, n: u32) {
    let (from, to) = (*next, *next + n - 1);
    client
        .batch_execute(&format!(
            "INSERT INTO it_fault_rec SELECT g, now() - interval '100 days', 'RE' || lpad(to_hex(g), 32, '0'), NULL
               FROM generate_series({from}, {to}) g;
             INSERT INTO it_fault_del SELECT g, now() - interval '2 days' FROM generate_series({from}, {to}) g;"
        ))
        .unwrap();
    fake.add_recordings((from..=to).map(sid));
    *next = to + 1;
}

#[test]
fn seeded_faults_never_lose_or_forge_anything() {
    let seed: u64 = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    let faults: u32 = std::env::var("FAULTS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    println!("fault seed: {seed} (replay: FAULT_SEED={seed} make integration TEST=faults)");
    eprintln!("fault seed: {seed} (replay: FAULT_SEED={seed} make integration TEST=faults)");
    let mut rng = Rng(seed);
    let fake = FakeTwilio::start(ACCOUNT, vec![(ACCOUNT.into(), TOKEN.into())]);
    let log_start = server_log().len();
    let mut client = connect();
    client
        .batch_execute(
            "DROP TABLE IF EXISTS it_fault_rec, it_fault_del;
             DELETE FROM retention.policies WHERE name IN ('it_fault_rec', 'it_fault_del');
             DELETE FROM retention.runs WHERE policy IN ('it_fault_rec', 'it_fault_del');
             CREATE TABLE it_fault_rec (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, sid text, deleted_at timestamptz);
             CREATE TABLE it_fault_del (id bigint PRIMARY KEY, at timestamptz NOT NULL);
             INSERT INTO it_fault_del SELECT -g, now() + interval '1 day' FROM generate_series(1, 100) g;
             SELECT retention.add_policy('it_fault_rec', 'it_fault_rec', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at',
                                         sid_column => 'sid', id_column => 'id', batch_size => 8);
             SELECT retention.add_policy('it_fault_del', 'it_fault_del', 'at', 'older_than', interval '1 day', batch_size => 5);
             CREATE FUNCTION it_fault_del_pause() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep(0.03); RETURN NULL; END $$;
             CREATE TRIGGER pause AFTER DELETE ON it_fault_del FOR EACH STATEMENT EXECUTE FUNCTION it_fault_del_pause();",
        )
        .unwrap();
    let mut next_key = 1;
    let mut tally = std::collections::BTreeMap::<String, u32>::new();
    let started = Instant::now();
    for round in 0..faults {
        refill(&mut client, &fake, &mut next_key, 40);
        let recordings = rng.below(2) == 0;
        let policy = if recordings { "it_fault_rec" } else { "it_fault_del" };
        let kind = loop {
            let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
            if recordings || !matches!(kind, Kind::TwilioHang | Kind::Twilio429) {
                break kind;
            }
        };
        let delay = Duration::from_millis(rng.below(250));
        *tally.entry(format!("{kind:?}")).or_default() += 1;
        fake.set_latency(Duration::from_millis(if recordings { 40 } else { 0 }));
        match kind {
            Kind::TwilioHang => fake.push_faults((0..1 + rng.below(6)).map(|_| Fault::Hang(Duration::from_millis(900)))),
            Kind::Twilio429 => {
                let odd = ODD_RETRY_AFTER[rng.below(ODD_RETRY_AFTER.len() as u64) as usize];
                fake.push_faults((0..1 + rng.below(6)).map(|_| Fault::TooManyRequests(Some(odd.to_string()))));
            }
            _ => {}
        }
        let application = format!("it_fault_{round}");
        let setup = format!("{} SET application_name = '{application}';", settings(&fake));
        let name = policy.to_string();
        let runner = thread::spawn(move || {
            // A fault may end this session at any point: its errors are expected. The session
            // is handed back, still open, so that what it left behind can be checked.
            let mut session = connect();
            if session.batch_execute(&setup).is_ok() {
                let _ = session.batch_execute(&format!("CALL retention.run_batched('{name}')"));
            }
            session
        });
        thread::sleep(delay);
        let pid: Option<i32> = client
            .query_opt("SELECT pid FROM pg_stat_activity WHERE application_name = $1", &[&application])
            .unwrap()
            .map(|r| r.get(0));
        let mid_run = count(&mut client, &format!("SELECT count(*) FROM retention.runs WHERE policy = '{policy}' AND status = 'running'")) > 0;
        if mid_run {
            *tally.entry("(mid-run)".into()).or_default() += 1;
        }
        let mut killed = false;
        match (kind, pid) {
            (Kind::Cancel, Some(pid)) => client.batch_execute(&format!("SELECT pg_cancel_backend({pid})")).unwrap(),
            (Kind::Terminate, Some(pid)) => client.batch_execute(&format!("SELECT pg_terminate_backend({pid})")).unwrap(),
            (Kind::Kill, Some(pid)) => {
                killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success();
            }
            (Kind::Disable, _) => client.batch_execute(&format!("UPDATE retention.policies SET enabled = false WHERE name = '{policy}'")).unwrap(),
            _ => {} // Twilio faults act by themselves; a run already over meets none.
        }
        // A killed server may have failed the runner anywhere (no session comes back then).
        let runner_session = runner.join().ok();
        let context = format!("seed {seed}, round {round}: {kind:?} on {policy} after {delay:?}");
        if let (Some(pid), Some(mut session)) = (pid, runner_session) {
            if !killed && session.simple_query("SELECT 1").is_ok() {
                // The run's session lives on, its CALL over: it must have closed its run and
                // let go of the policy, whatever stopped the run.
                let left = count(&mut client, &format!("SELECT count(*) FROM retention.runs WHERE status = 'running' AND pid = {pid}"));
                assert_eq!(left, 0, "{context}: a live session left its run `running`");
                let held = count(&mut client, &format!("SELECT count(*) FROM pg_locks WHERE pid = {pid} AND locktype = 'object' AND classid = 'retention.policies'::regclass"));
                assert_eq!(held, 0, "{context}: a live session still holds the policy's lock");
            }
        }
        if killed {
            drop(client);
            if let Some(pid) = pid {
                assert!(wait_for(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{pid}")).exists()));
            }
            thread::sleep(Duration::from_millis(300));
            client = reconnect();
        }
        fake.clear_faults();
        fake.set_latency(Duration::ZERO);
        client.batch_execute("UPDATE retention.policies SET enabled = true WHERE name IN ('it_fault_rec', 'it_fault_del')").unwrap();

        // One more clean run of each, then the invariants.
        client.batch_execute(&settings(&fake)).unwrap();
        for clean in ["it_fault_rec", "it_fault_del"] {
            client.batch_execute(&format!("CALL retention.run_batched('{clean}')")).unwrap_or_else(|e| panic!("{context}: clean run of {clean}: {e}"));
        }
        let confirmed = fake.confirmed_sids();
        let marked: Vec<String> =
            client.query("SELECT sid FROM it_fault_rec WHERE deleted_at IS NOT NULL", &[]).unwrap().iter().map(|r| r.get(0)).collect();
        let forged: Vec<&String> = marked.iter().filter(|s| !confirmed.contains(*s)).collect();
        assert!(forged.is_empty(), "{context}: marked without a 204/404: {forged:?}");
        assert_eq!(count(&mut client, "SELECT count(*) FROM it_fault_rec WHERE deleted_at IS NULL"), 0, "{context}: recordings left");
        assert_eq!(count(&mut client, "SELECT count(*) FROM it_fault_del WHERE at < now() - interval '1 day'"), 0, "{context}: expired rows left");
        assert_eq!(count(&mut client, "SELECT count(*) FROM it_fault_del"), 100, "{context}: live rows touched");
        assert_eq!(
            count(&mut client, "SELECT count(*) FROM retention.runs WHERE policy IN ('it_fault_rec', 'it_fault_del') AND status = 'running'"),
            0,
            "{context}: a run left running"
        );
        assert_eq!(
            count(&mut client, "SELECT count(*) FROM pg_locks WHERE locktype = 'object' AND classid = 'retention.policies'::regclass"),
            0,
            "{context}: a policy lock held"
        );
        // Every finished run has its ledger entry, and the chain verifies, whatever ended it.
        let ledger: Option<i64> = client.query_one("SELECT retention.verify_ledger()", &[]).unwrap().get(0);
        assert_eq!(ledger, None, "{context}: ledger entry {ledger:?} does not verify");
        assert_eq!(
            count(
                &mut client,
                "SELECT count(*) FROM retention.runs r WHERE r.policy IN ('it_fault_rec', 'it_fault_del') AND r.status NOT IN ('running', 'skipped')
                    AND NOT EXISTS (SELECT FROM retention.ledger l WHERE (l.entry->>'run_id')::bigint = r.id)"
            ),
            0,
            "{context}: a finished run without its ledger entry"
        );
    }
    let log = server_log();
    let log = &log[log_start.min(log.len())..];
    let panics: Vec<&str> = log.lines().filter(|l| l.contains("panicked") || l.contains("PANIC")).collect();
    assert!(panics.is_empty(), "seed {seed}: panics in the server log: {panics:?}");
    println!("{faults} faults in {:?}: {tally:?}", started.elapsed());
    client
        .batch_execute(
            "DROP TABLE it_fault_rec, it_fault_del; DROP FUNCTION it_fault_del_pause();
             DELETE FROM retention.policies WHERE name IN ('it_fault_rec', 'it_fault_del');",
        )
        .unwrap();
}
