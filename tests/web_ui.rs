//! The web screens end to end in a real browser: the daemon runs in-process with a
//! supervisor, an agent (extension 101) and a QA token; two escalating calls stream in over
//! Twilio Media Streams at real pace, one with `customParameters.agent = 101`, beside a calm
//! replayed call of another agent; then
//! `tests/browser/ui.mjs` drives Debian's Chromium (playwright-core) through the wall (one
//! prompt accepted, the other dismissed with a reason), the agent screen, the calls list and
//! the review pages (see that script for every check), and must exit 0. The calls are held
//! open with silence after their words until the script has acted on both prompts, so the
//! prompts are acted on while the calls are live, however slowly the model runs.
//!
//! Then a restart: the script prints `RESTART-NOW` and waits; this test stops the daemon
//! (its shutdown token, until `run` returns) and answers `STOPPED` on the script's stdin;
//! the script checks that its open pages show the connection lost and prints `START-NOW`;
//! this test starts a new daemon on the same address and data folder and answers
//! `RESTARTED`; the script checks that the pages reconnect by themselves and that the
//! restarted daemon still has every call, recording, decision and note.
//! Screenshots land in `target/screenshots/`.
//!
//! Needs node, `npm ci --prefix tests/browser` (the Makefile's `browser-deps`) and
//! `/usr/bin/chromium` (`scripts/install-deps.sh`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use callguard::daemon::ServeOptions;
use callguard::domain::access::Role;
use common::daemon::*;
use common::*;

/// The escalating call whose prompt is accepted (its agent is 101, the agent token's).
const CALL: &str = "CAwebui";
/// The escalating call whose prompt is dismissed with a reason (agent 103).
const DISMISS_CALL: &str = "CAdismiss";
/// The calm replayed call (agent 102), as the daemon names it.
const CALM_CALL: &str = "replay-0-en-calm-billing";
const CHROMIUM: &str = "/usr/bin/chromium";

/// What the browser test needs, or a panic saying how to get it.
fn browser_prerequisites(dir: &Path) {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: install Node.js 18 or newer (scripts/install-deps.sh does)"
    );
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is missing: run `make browser-deps` (npm ci --prefix tests/browser)"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `make deps` (apt-get install chromium)"
    );
}

/// Writes one line to the browser script's stdin.
fn tell(stdin: &mut Option<ChildStdin>, line: &str) {
    if let Some(w) = stdin.as_mut() {
        // The script may have failed and gone: its exit status says why.
        let _ = writeln!(w, "{line}").and_then(|()| w.flush());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screens_work_in_a_browser() {
    let browser_dir = root().join("tests/browser");
    browser_prerequisites(&browser_dir);
    let tokens = [
        ("sue", Role::Supervisor, None),
        ("amy", Role::Agent, Some("101")),
        ("quinn", Role::Qa, None),
        ("pbx", Role::Ingest, None),
    ];
    // A calm call beside them (replayed, with its own agent), so the wall has something to sort.
    let opts = ServeOptions {
        replay: vec![fixture("en-calm-billing.wav")],
        replay_agents: vec!["102".into()],
        ..options()
    };
    let d = start(config(), opts, &tokens).await;
    let addr = d.addr;
    let work = tempfile::tempdir().unwrap();
    let done = work.path().join("live-part-done");
    let shots = root().join("target/screenshots");

    let callers = [
        ((CALL, "101"), "en-media-threat.wav"),
        ((DISMISS_CALL, "103"), "en-legal-regulator.wav"),
    ]
    .map(|((call, agent), wav)| {
        let c = TwilioCall {
            call: call.into(),
            agent: agent.into(),
            wav: fixture(wav),
            hold: Some(done.clone()),
        };
        tokio::spawn(twilio_stream(addr, d.token("pbx").to_owned(), c, None))
    });

    let log_path = work.path().join("browser-stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(browser_dir.join("ui.mjs"))
        .current_dir(&browser_dir)
        .env("CALLGUARD_URL", format!("http://{addr}"))
        .env("TOKEN_SUPERVISOR", d.token("sue"))
        .env("TOKEN_AGENT", d.token("amy"))
        .env("TOKEN_QA", d.token("quinn"))
        .env("SUPERVISOR_NAME", "sue")
        .env("CALL_ID", CALL)
        .env("DISMISS_CALL_ID", DISMISS_CALL)
        .env("CALM_CALL_ID", CALM_CALL)
        .env("DONE_FILE", &done)
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start node");
    let mut stdin = child.stdin.take();
    // The script's stdout, line by line: its log and its restart requests. A thread reads the
    // pipe (the tests' tokio has no process support) and hands the lines over.
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut output = String::new();
    let mut daemon = Some(d);
    let mut stopped = None;
    let mut restart_log = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let mut timed_out = false;
    loop {
        let line = match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => {
                timed_out = true;
                break;
            }
        };
        output.push_str(&line);
        output.push('\n');
        match line.trim() {
            "RESTART-NOW" => {
                let Some(d) = daemon.take() else {
                    panic!("RESTART-NOW twice:\n{output}")
                };
                let t = Instant::now();
                stopped = Some(d.stop_keeping_data().await);
                restart_log.push(format!("stopped in {:.1} s", t.elapsed().as_secs_f64()));
                tell(&mut stdin, "STOPPED");
            }
            "START-NOW" => {
                let Some(s) = stopped.take() else {
                    panic!("START-NOW before RESTART-NOW:\n{output}")
                };
                let t = Instant::now();
                // The same address and data folder; no replays this time.
                let d = s.restart(config(), options()).await;
                assert_eq!(d.addr, addr, "restarted on the same address");
                restart_log.push(format!("restarted in {:.1} s", t.elapsed().as_secs_f64()));
                daemon = Some(d);
                tell(&mut stdin, "RESTARTED");
            }
            _ => {}
        }
    }
    let status = if timed_out {
        let _ = child.kill();
        let _ = child.wait();
        None
    } else {
        Some(child.wait().unwrap())
    };
    drop(stdin);
    let _ = reader.join();
    let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!(
        "browser test output ({:.1} s; {}):\n{output}{stderr}",
        started.elapsed().as_secs_f64(),
        restart_log.join(", ")
    );
    // Whatever happened, the calls hang up and the daemon stops cleanly.
    std::fs::write(&done, "end\n").unwrap();
    for caller in callers {
        tokio::time::timeout(Duration::from_secs(30), caller)
            .await
            .expect("the call hung up")
            .unwrap();
    }
    if let Some(d) = daemon {
        d.stop().await;
    }

    let status =
        status.unwrap_or_else(|| panic!("the browser test ran past 5 minutes:\n{output}{stderr}"));
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{output}{stderr}"
    );
    assert!(
        restart_log.len() == 2,
        "the script did not get to the restart:\n{output}{stderr}"
    );
    for shot in ["wall.png", "agent.png", "calls.png", "review.png"] {
        let len = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "screenshot {shot} is missing or empty");
    }
}
