//! `fake-twilio ACCOUNT_SID AUTH_TOKEN [PORT_FILE]`: runs the fake on 127.0.0.1 at a free port,
//! prints the port (and writes it to PORT_FILE), and serves until killed. The demo uses it.

use fake_twilio::FakeTwilio;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(account), Some(token)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: fake-twilio ACCOUNT_SID AUTH_TOKEN [PORT_FILE]");
        std::process::exit(2);
    };
    let fake = FakeTwilio::start(account, vec![(account.clone(), token.clone())]);
    println!("fake-twilio: listening on {}", fake.base_url());
    if let Some(file) = args.get(3) {
        std::fs::write(file, fake.port().to_string()).expect("write the port file");
    }
    loop {
        std::thread::park();
    }
}
