//! The daemon's store survives a crash: a real `callguard serve` process replays an escalating
//! call while a supervisor watches; the process is killed (SIGKILL) right after the transfer
//! prompt; a new daemon starts on the same data folder. Every final transcript line and the
//! prompt the screen saw are in the store, the call is marked `recovered`, and its recording
//! plays back at least up to the prompt.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use callguard::domain::access::Role;
use callguard::sinks::hub::auth::TokenStore;
use callguard::sinks::store::CallFilter;
use callguard::sinks::store::query::StoreReader;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Starts `callguard serve` on port 0 and returns it with the address it printed.
fn serve(data: &std::path::Path, extra: &[&str]) -> (Child, SocketAddr) {
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--lang",
        "en",
        "--data-dir",
    ])
    .arg(data)
    .args(extra)
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("serve starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(rest) = line.strip_prefix("callguard serving on http://") {
                let addr = rest.split_whitespace().next().unwrap().to_owned();
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve printed its address");
    (child, addr.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_call_loses_no_stored_line_prompt_or_audio() {
    let data = tempfile::tempdir().unwrap();
    let token = TokenStore::open(data.path())
        .unwrap()
        .create("sup", Role::Supervisor, None, 0)
        .unwrap();
    let call = fixture("en-media-threat.wav");
    let (mut daemon, addr) = serve(
        data.path(),
        &["--replay", call.to_str().unwrap(), "--speed", "2"],
    );
    let (mut screen, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}"))
        .await
        .unwrap();

    let mut lines = Vec::new();
    let mut alert = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while alert.is_none() {
        let next = tokio::time::timeout_at(deadline, screen.next())
            .await
            .expect("a transfer prompt in time");
        let Some(Ok(Message::Text(text))) = next else {
            panic!("screen ended: {next:?}")
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        match v["type"].as_str() {
            Some("transcript") if v["final"] == true => {
                lines.push(v["text"].as_str().unwrap().to_owned())
            }
            Some("alert") => alert = Some(v),
            _ => {}
        }
    }
    let alert = alert.unwrap();
    // Killed without warning, mid-call (the recording runs a few seconds past the prompt).
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    drop(screen);

    // A new daemon on the same folder recovers the call; the store reads while it runs.
    let (mut again, _) = serve(data.path(), &[]);
    let reader = StoreReader::open(data.path()).unwrap();
    let page = reader.list_calls(&CallFilter::default()).unwrap();
    assert_eq!(page.total, 1, "{:?}", page.items);
    let row = &page.items[0];
    let detail = reader.get_call(row.id).unwrap().expect("the call");
    let v = serde_json::to_value(&detail).unwrap();
    assert_eq!(v["call"]["outcome"], "recovered", "{}", v["call"]);
    let stored: Vec<&str> = v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    for line in &lines {
        assert!(
            stored.contains(&line.as_str()),
            "{line:?} lost; stored {stored:?}"
        );
    }
    let alerts: Vec<&str> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert"]["alert_id"].as_str().unwrap())
        .collect();
    assert!(
        alerts.contains(&alert["alert_id"].as_str().unwrap()),
        "{alerts:?}"
    );

    // The recording plays (repaired at start-up if the kill left its header stale) and holds
    // the call at least up to the prompt.
    let recording =
        data.path()
            .join("recordings")
            .join(callguard::sinks::store::recording::file_name_for(
                "replay-0-en-media-threat",
            ));
    let audio =
        callguard::pipeline::audio::wav::read_wav(&recording).expect("a playable recording");
    assert_eq!(audio.channels.len(), 2);
    let seconds = audio.channels[0].len() as f64 / audio.sample_rate as f64;
    let prompt_at = alert["at_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!(
        seconds + 1.5 >= prompt_at,
        "recording {seconds:.1} s, prompt at {prompt_at:.1} s"
    );

    // SIGTERM drains and exits cleanly.
    let pid = again.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = again.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
