//! Driving duet's web page in a real headless Chromium (`tests/browser/drive.cjs`, through
//! puppeteer-core, which `make deps` installs), for tests/browser.rs and tests/e2e.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{need, Duet, Proc};

/// Where `make deps` installs puppeteer-core.
pub fn puppeteer() -> PathBuf {
    std::env::var_os("DUET_PUPPETEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/puppeteer"))
}

/// One Chromium at a time: each is several busy processes, and on two cores beside the
/// server and the other tests, browsers in parallel starved `duet voice`'s writer into
/// dropping frames (its policy when it falls behind) in one run of five.
pub fn one_browser_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed holding it poisons nothing the next one needs.
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A server for a browser test. The greeting waits up to 2 s for a first line: a browser
/// sends its request at once after connecting, but on this 2-core machine, with Chromium
/// and the other tests running, "at once" can pass the default 100 ms, and a greeted
/// connection is not HTTP any more.
pub fn server(args: &[&str]) -> Duet {
    Duet::start(&[&["--greet-wait", "2000"], args].concat())
}

/// Starts a scenario of the driver against `duet`, over plain HTTP.
pub fn drive(duet: &Duet, scenario: &str, args: &[&str]) -> Proc {
    drive_at(&format!("http://127.0.0.1:{}", duet.port), scenario, args)
}

/// Starts a scenario of the driver against the server at `url`.
pub fn drive_at(url: &str, scenario: &str, args: &[&str]) -> Proc {
    need("chromium");
    need("node");
    let dir = puppeteer();
    assert!(
        dir.join("node_modules/puppeteer-core").exists(),
        "puppeteer-core is not installed in {}: run `make test`, which installs it",
        dir.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/drive.cjs");
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .arg(scenario)
        .arg(url)
        .args(args)
        .env("DUET_PUPPETEER", dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    Proc::spawn(&mut cmd)
}

/// The driver's `result` line (JSON); it must report no script errors, CSP violations or
/// dialogs.
pub async fn result(driver: &mut Proc) -> String {
    let line = driver.expect_containing("result ").await;
    let json = line.trim_start_matches("result ").to_string();
    assert!(
        json.contains("\"problems\":[]"),
        "the page had problems: {json}"
    );
    json
}
