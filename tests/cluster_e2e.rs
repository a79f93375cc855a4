//! A cluster of real processes over a real NATS server: `nats-server` with JetStream on a free
//! port and a temporary folder, `callguard serve --role asr` processes with the real model,
//! and one `--role edge` process that loads no model. Three Twilio calls stream to the edge at
//! real-time pace while a supervisor watches it, and in the middle of the calls one asr
//! process is killed with SIGKILL, or NATS itself is killed and started again. Checked: every
//! call reaches the supervisor with final transcripts and its transfer prompt, and no
//! utterance was lost (the edge's `/metrics` counts none refused or timed out, and every
//! final it sent came back).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::daemon::{TwilioCall, free_port, twilio_stream};
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nats_server(dir: &Path) -> (Proc, String) {
    let port = free_port().port();
    (nats_on(dir, port), format!("nats://127.0.0.1:{port}"))
}

/// nats-server with JetStream storing in `dir`, on `port`, once it accepts connections.
fn nats_on(dir: &Path, port: u16) -> Proc {
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server is installed (make deps)");
    let server = Proc(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nats-server did not start on {port}");
}

fn serve(config: &Path, args: &[&str]) -> Child {
    bin()
        .arg("serve")
        .arg("--config")
        .arg(config)
        .args(["--lang", "en", "--model"])
        .arg(model())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("callguard serve starts")
}

/// Waits for the edge's "serving on http://ADDR" line and keeps draining its stderr.
fn serving_addr(child: &mut Child) -> SocketAddr {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("callguard serving on http://") {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            std::thread::spawn(move || lines.for_each(drop));
            return addr;
        }
    }
    panic!("the edge exited before serving");
}

fn token(dir: &Path, role: &str, name: &str) -> String {
    let out = bin()
        .args([
            "token",
            "create",
            "--role",
            role,
            "--name",
            name,
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().last().unwrap().trim().to_owned()
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{body}"))
}

/// One clusters at a time: each runs Whisper processes sized for the whole machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The calls streamed, each with a transfer prompt in it.
const CALLS: [&str; 3] = ["en-media-threat", "en-manager-churn", "en-legal-regulator"];

/// An edge process, its tokens and a supervisor watching it.
struct Edge {
    _proc: Proc,
    addr: SocketAddr,
    ingest: String,
    screen: common::daemon::Ws,
}

async fn edge(tmp: &Path, config: &Path, url: &str) -> Edge {
    let data = tmp.join("edge");
    let ingest = token(&data, "ingest", "pbx");
    let supervisor = token(&data, "supervisor", "sup");
    let mut child = serve(
        config,
        &[
            "--role",
            "edge",
            "--nats",
            url,
            "--node",
            "edge-1",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let addr = serving_addr(&mut child);
    let (screen, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={supervisor}"))
            .await
            .unwrap();
    Edge {
        _proc: Proc(child),
        addr,
        ingest,
        screen,
    }
}

/// Writes the test config: `workers` single-threaded Whisper workers per asr process
/// (whisper.cpp's threads spin while they wait, so more threads than cores slow everything
/// down), and a short ack_wait so that redelivery after a node dies is quick.
fn config(tmp: &Path, workers: usize) -> std::path::PathBuf {
    let config = tmp.join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "[asr]\nworkers = {workers}\nthreads_per_worker = 1\n[cluster]\nack_wait_ms = 3000\n"
        ),
    )
    .unwrap();
    config
}

fn asr(config: &Path, url: &str, node: &str) -> Proc {
    let mut child = serve(config, &["--role", "asr", "--nats", url, "--node", node]);
    // Drained, so that its log can never fill the pipe and stall it.
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || BufReader::new(stderr).lines().for_each(drop));
    Proc(child)
}

/// Streams the calls at real pace; `during` runs a few seconds in, while they are under way.
/// Then reads the screen until every call has ended and checks that each had final
/// transcripts and its prompt, and that the edge lost no utterance.
async fn calls_survive(e: &mut Edge, during: impl std::future::Future<Output = ()>) {
    let mut streams = Vec::new();
    for (i, name) in CALLS.iter().enumerate() {
        let call = TwilioCall {
            call: format!("CA{i}"),
            agent: "1042".into(),
            wav: fixture(&format!("{name}.wav")),
            hold: None,
        };
        streams.push(tokio::spawn(twilio_stream(
            e.addr,
            e.ingest.clone(),
            call,
            None,
        )));
    }
    during.await;

    let mut finals: BTreeMap<String, usize> = BTreeMap::new();
    let mut alerts: BTreeSet<String> = BTreeSet::new();
    let mut ended: BTreeSet<String> = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    while ended.len() < CALLS.len() {
        let next = tokio::time::timeout_at(deadline, e.screen.next())
            .await
            .unwrap_or_else(|_| panic!("calls did not end: {finals:?} {alerts:?} {ended:?}"));
        let Some(Ok(Message::Text(text))) = next else {
            panic!("screen closed: {next:?}")
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        let call = v["call_id"].as_str().unwrap_or_default().to_owned();
        match v["type"].as_str().unwrap() {
            "transcript" if v["final"] == true => *finals.entry(call).or_default() += 1,
            "alert" => {
                alerts.insert(call);
            }
            "call_ended" => {
                ended.insert(call);
            }
            _ => {}
        }
    }
    for s in streams {
        s.await.unwrap();
    }
    for i in 0..CALLS.len() {
        let id = format!("CA{i}");
        assert!(
            finals.get(&id).copied().unwrap_or(0) >= 2,
            "{id}: {finals:?}"
        );
        assert!(
            alerts.contains(&id),
            "{id} got no transfer prompt: {alerts:?}"
        );
    }
    // Nothing lost: every final the edge sent was answered, none refused or timed out.
    let body = common::daemon::http_get(e.addr, "/metrics").await;
    assert_eq!(
        metric(&body, "callguard_asr_utterances_dropped_total"),
        0.0,
        "{body}"
    );
    assert_eq!(
        metric(&body, "callguard_asr_queued_utterances"),
        0.0,
        "{body}"
    );
    assert!(
        metric(&body, "callguard_asr_utterances_total") >= 6.0,
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_and_two_asr_nodes_lose_nothing_when_one_asr_node_is_killed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let (_nats, url) = nats_server(&tmp.path().join("js"));
    let config = config(tmp.path(), 1);
    let mut asr1 = asr(&config, &url, "asr-1");
    let _asr2 = asr(&config, &url, "asr-2");
    let mut e = edge(tmp.path(), &config, &url).await;
    calls_survive(&mut e, async {
        // Mid-call, with utterances queued and in flight: one asr node dies without a word.
        tokio::time::sleep(Duration::from_secs(8)).await;
        asr1.0.kill().unwrap();
        asr1.0.wait().unwrap();
    })
    .await;
}

// Ignored until fixed: about one run in three, one call's prompt-bearing utterance goes
// unanswered for the whole `final_timeout_ms` after the restart (the cause is not found yet;
// see docs/cluster.md, "Known gaps"). Run it with `cargo test --release --test cluster_e2e --
// --ignored`.
#[ignore = "one run in three loses an utterance across a NATS restart: docs/cluster.md, Known gaps"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reconnect_by_themselves_when_nats_restarts_under_running_calls() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("js");
    let port = free_port().port();
    let mut nats = nats_on(&store, port);
    let url = format!("nats://127.0.0.1:{port}");
    let config = config(tmp.path(), 2);
    let _asr = asr(&config, &url, "asr-1");
    let mut e = edge(tmp.path(), &config, &url).await;
    calls_survive(&mut e, async {
        // Down for two seconds mid-call, then back on the same port and store: utterances
        // finished meanwhile are published once it is back.
        tokio::time::sleep(Duration::from_secs(6)).await;
        nats.0.kill().unwrap();
        nats.0.wait().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        nats = nats_on(&store, port);
    })
    .await;
    drop(nats);
}
