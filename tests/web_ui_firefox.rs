//! The web screens in Firefox: the daemon runs in-process with a supervisor token, the
//! language detected per call, an escalating English call streamed in over Twilio Media
//! Streams at real pace (agent 101; held open with silence after its words until the script
//! has answered its prompt, however slowly the model runs) and a Mandarin call replayed beside
//! it; then `tests/browser/firefox.mjs` drives Debian's `firefox-esr` (puppeteer-core over
//! WebDriver BiDi) through sign-in by link, the wall (both calls, Chinese rendered, Accept on
//! the prompt), the calls list and the review page (see that script for every check), and
//! must exit 0 within three minutes. Screenshots land in `target/screenshots/firefox-*.png`.
//!
//! Needs node, `npm ci --prefix tests/browser` (the Makefile's `browser-deps`) and
//! `/usr/bin/firefox-esr` (`scripts/install-deps.sh`).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use callguard::daemon::ServeOptions;
use callguard::domain::access::Role;
use common::daemon::*;
use common::*;

/// The escalating English call whose prompt is accepted.
const CALL: &str = "CAfirefox";
/// The replayed Mandarin call, as the daemon names it.
const ZH_CALL: &str = "replay-0-mandarin-call";
const FIREFOX: &str = "/usr/bin/firefox-esr";
/// The screenshots the script saves.
const SHOTS: [&str; 2] = ["firefox-wall.png", "firefox-review.png"];
/// How long the script may run before it is killed (it gives up by itself 30 s earlier).
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);

/// What the Firefox test needs, or a panic saying how to get it.
fn firefox_prerequisites(dir: &Path) {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: install Node.js 18 or newer (scripts/install-deps.sh does)"
    );
    assert!(
        dir.join("node_modules/puppeteer-core/package.json")
            .exists(),
        "puppeteer-core is missing: run `make browser-deps` (npm ci --prefix tests/browser)"
    );
    assert!(
        Path::new(FIREFOX).exists(),
        "{FIREFOX} is missing: run `make deps` (apt-get install firefox-esr)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screens_work_in_firefox() {
    let browser_dir = root().join("tests/browser");
    firefox_prerequisites(&browser_dir);
    let tokens = [("sue", Role::Supervisor, None), ("pbx", Role::Ingest, None)];
    // No language set: each call's is detected (the configuration's `auto`).
    let opts = ServeOptions {
        replay: vec![fixture("mandarin-call.wav")],
        replay_agents: vec!["102".into()],
        lang: None,
        ..options()
    };
    let d = start(config(), opts, &tokens).await;
    let work = tempfile::tempdir().unwrap();
    let done = work.path().join("live-part-done");
    let shots = root().join("target/screenshots");
    // This run's screenshots, not an earlier run's.
    for shot in SHOTS {
        let _ = std::fs::remove_file(shots.join(shot));
    }
    let caller = tokio::spawn(twilio_stream(
        d.addr,
        d.token("pbx").to_owned(),
        TwilioCall {
            call: CALL.into(),
            agent: "101".into(),
            wav: fixture("en-media-threat.wav"),
            hold: Some(done.clone()),
        },
        None,
    ));

    let (out_path, err_path) = (work.path().join("stdout"), work.path().join("stderr"));
    let pid_path = work.path().join("firefox.pid");
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(browser_dir.join("firefox.mjs"))
        .current_dir(&browser_dir)
        .env("CALLGUARD_URL", format!("http://{}", d.addr))
        .env("TOKEN_SUPERVISOR", d.token("sue"))
        .env("SUPERVISOR_NAME", "sue")
        .env("CALL_ID", CALL)
        .env("ZH_CALL_ID", ZH_CALL)
        .env("DONE_FILE", &done)
        .env("SCREENSHOTS", &shots)
        .env("FIREFOX", FIREFOX)
        .env("FIREFOX_PID_FILE", &pid_path)
        .env("PROFILE_DIR", work.path().join("firefox"))
        .env("TIME_LIMIT_S", (SCRIPT_LIMIT.as_secs() - 30).to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start node");
    // The tests' tokio has no process support: poll, with the daemon running meanwhile.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            // The script ends itself and Firefox before this; if it hung, Firefox (its own
            // process group, as puppeteer starts it) goes too.
            if let Ok(pid) = std::fs::read_to_string(&pid_path) {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", "--", &format!("-{}", pid.trim())])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = format!(
        "{}{}",
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    println!(
        "Firefox test output ({:.1} s):\n{output}",
        started.elapsed().as_secs_f64()
    );
    // Whatever happened, the call hangs up and the daemon stops cleanly.
    std::fs::write(&done, "end\n").unwrap();
    tokio::time::timeout(Duration::from_secs(30), caller)
        .await
        .expect("the call hung up")
        .unwrap();
    d.stop().await;

    let status = status.unwrap_or_else(|| {
        panic!(
            "the Firefox test ran past {} s:\n{output}",
            SCRIPT_LIMIT.as_secs()
        )
    });
    assert!(
        status.success(),
        "the Firefox test failed ({status}):\n{output}"
    );
    for shot in SHOTS {
        let len = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "screenshot {shot} is missing or empty");
    }
}
