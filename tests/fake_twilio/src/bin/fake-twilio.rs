//! `fake-twilio ACCOUNT_SID AUTH_TOKEN [PORT_FILE [SIDS_FILE]]`: runs the fake on 127.0.0.1 at
//! a free port with the recordings listed in SIDS_FILE (one SID a line), prints the port (and
//! writes it to PORT_FILE), and serves until killed. The demo uses it.

use fake_twilio::FakeTwilio;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(account), Some(token)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: fake-twilio ACCOUNT_SID AUTH_TOKEN [PORT_FILE [SIDS_FILE]]");
        std::process::exit(2);
    };
    let fake = FakeTwilio::start(account, vec![(account.clone(), token.clone())]);
    if let Some(file) = args.get(4) {
        let sids = std::fs::read_to_string(file).expect("read the SIDs file");
        fake.add_recordings(sids.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
    }
    println!("fake-twilio: listening on {} with {} recordings", fake.base_url(), fake.recordings().len());
    if let Some(file) = args.get(3) {
        std::fs::write(file, fake.port().to_string()).expect("write the port file");
    }
    loop {
        std::thread::park();
    }
}
