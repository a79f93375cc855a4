//! The web screens end to end in a real browser: the daemon runs in-process with a
//! supervisor, an agent (extension 101) and a QA token; an escalating call streams in over
//! Twilio Media Streams at real pace with `customParameters.agent = 101`, beside a calm
//! replayed call of another agent; then
//! `tests/browser/ui.mjs` drives Debian's Chromium (playwright-core) through the wall, the
//! agent screen, the calls list and the review page (see that script for every check), and
//! must exit 0. The call is held open with silence after its words until the script has
//! accepted the prompt, so the prompt is acted on while the call is live, however slowly the
//! model runs. Screenshots land in `target/screenshots/`.
//!
//! Needs node, `npm ci --prefix tests/browser` (the Makefile's `browser-deps`) and
//! `/usr/bin/chromium` (`scripts/install-deps.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use callguard::app::ServeOptions;
use callguard::audio::g711::{f32_to_i16, i16_to_ulaw};
use callguard::hub::auth::Role;
use common::daemon::*;
use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const CALL: &str = "CAwebui";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Streams `wav` as Twilio does (one 20 ms mu-law frame per track at real pace), then
/// silence until `hold` exists (or two minutes pass), then hangs up.
async fn twilio_call(addr: std::net::SocketAddr, ingest: String, wav: PathBuf, hold: PathBuf) {
    let audio = callguard::audio::wav::read_wav(&wav).unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ingest/twilio"))
        .await
        .unwrap();
    let start = json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZwebui",
        "start": {
            "accountSid": "AC1", "streamSid": "MZwebui", "callSid": CALL,
            "tracks": ["inbound", "outbound"],
            "customParameters": {"token": ingest, "agent": "101"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }
    });
    ws.send(Message::text(start.to_string())).await.unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let frames = audio.channels[0].len() / 160;
    let silence = vec![i16_to_ulaw(0); 160];
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let held_from = Instant::now();
    let mut i = 0;
    loop {
        pace.tick().await;
        if i >= frames && (hold.exists() || held_from.elapsed() > Duration::from_secs(120)) {
            break;
        }
        for (track, ch) in [("inbound", 0), ("outbound", 1)] {
            let payload: Vec<u8> = if i < frames {
                audio.channels[ch][i * 160..(i + 1) * 160]
                    .iter()
                    .map(|&x| i16_to_ulaw(f32_to_i16(x)))
                    .collect()
            } else {
                silence.clone()
            };
            let msg = json!({
                "event": "media", "sequenceNumber": (i * 2 + 2).to_string(), "streamSid": "MZwebui",
                "media": {"track": track, "chunk": (i + 1).to_string(),
                          "timestamp": (i * 20).to_string(), "payload": b64.encode(&payload)}
            });
            ws.send(Message::text(msg.to_string())).await.unwrap();
        }
        i += 1;
    }
    ws.send(Message::text(
        json!({"event": "stop", "sequenceNumber": "999999", "streamSid": "MZwebui",
               "stop": {"accountSid": "AC1", "callSid": CALL}})
        .to_string(),
    ))
    .await
    .unwrap();
    let _ = ws.close(None).await;
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screens_work_in_a_browser() {
    let browser_dir = root().join("tests/browser");
    browser_prerequisites(&browser_dir);
    let wav = fixture("en-media-threat.wav");
    let tokens = [
        ("sue", Role::Supervisor, None),
        ("amy", Role::Agent, Some("101")),
        ("quinn", Role::Qa, None),
        ("pbx", Role::Ingest, None),
    ];
    // A calm call beside it (replayed, with its own agent), so the wall has something to sort.
    let opts = ServeOptions {
        replay: vec![fixture("en-calm-billing.wav")],
        replay_agents: vec!["102".into()],
        ..options()
    };
    let d = start(config(), opts, &tokens).await;
    let work = tempfile::tempdir().unwrap();
    let done = work.path().join("live-part-done");
    let shots = root().join("target/screenshots");

    let caller = tokio::spawn(twilio_call(
        d.addr,
        d.token("pbx").to_owned(),
        wav,
        done.clone(),
    ));

    let log_path = work.path().join("browser.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(browser_dir.join("ui.mjs"))
        .current_dir(&browser_dir)
        .env("CALLGUARD_URL", format!("http://{}", d.addr))
        .env("TOKEN_SUPERVISOR", d.token("sue"))
        .env("TOKEN_AGENT", d.token("amy"))
        .env("TOKEN_QA", d.token("quinn"))
        .env("SUPERVISOR_NAME", "sue")
        .env("CALL_ID", CALL)
        .env("DONE_FILE", &done)
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start node");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!(
        "browser test output ({:.1} s):\n{output}",
        started.elapsed().as_secs_f64()
    );
    // Whatever happened, the call hangs up and the daemon stops cleanly.
    std::fs::write(&done, "end\n").unwrap();
    tokio::time::timeout(Duration::from_secs(30), caller)
        .await
        .expect("the call hung up")
        .unwrap();
    d.stop().await;

    let status = status.unwrap_or_else(|| panic!("the browser test ran past 4 minutes:\n{output}"));
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{output}"
    );
    for shot in ["wall.png", "agent.png", "calls.png", "review.png"] {
        let len = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "screenshot {shot} is missing or empty");
    }
}
