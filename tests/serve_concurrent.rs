//! The daemon with several calls at once, as the "Done means" describes it: two
//! replayed recordings and one Twilio Media Streams call paced in real time run side by side;
//! a supervisor sees all three live (partial and final transcripts), receives the Twilio
//! call's transfer prompt a few seconds after the words and accepts it; the agent on that call
//! sees the acceptance on their screen and nothing of the other calls. Meanwhile malformed
//! streams on each websocket ingest protocol are closed without touching the calls, a screen
//! that never reads does not hold anyone up, a CRM's webhook receives the prompt and the
//! decision, and `/metrics` counts it all.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callguard::config::Config;
use callguard::daemon::ServeOptions;
use callguard::domain::access::Role;
use callguard::sinks::webhook::WebhookConfig;
use common::daemon::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const TWILIO_CALL: &str = "CAlive";

/// Expects the server to close a stream with `code`.
async fn expect_close<S>(ws: &mut S, code: u16)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let got = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    match got {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), code),
        other => panic!("expected close {code}, got {other:?}"),
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("callguard_{name} ")))
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replays_and_a_twilio_call_run_at_once_and_a_transfer_is_accepted() {
    // The CRM: a real HTTP server receiving the webhook's POSTs.
    let posts: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let crm = {
        let posts = Arc::clone(&posts);
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let posts = Arc::clone(&posts);
                async move {
                    let kind = headers
                        .get("x-callguard-event")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    posts
                        .lock()
                        .unwrap()
                        .push((kind, serde_json::from_str(&body).unwrap()));
                    "ok"
                }
            }),
        )
    };
    let crm_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let crm_addr = crm_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(crm_listener, crm).await });
    let cfg = Config {
        webhook: WebhookConfig {
            url: format!("http://{crm_addr}/hook"),
            ..Default::default()
        },
        ..config()
    };
    let opts = ServeOptions {
        replay: vec![
            fixture("en-calm-billing.wav"),
            fixture("en-social-churn.wav"),
        ],
        ..options()
    };
    let tokens = [
        ("sue", Role::Supervisor, None),
        ("lazy", Role::Supervisor, None),
        ("amy", Role::Agent, Some("101")),
        ("pbx", Role::Ingest, None),
    ];
    let d = start(cfg, opts, &tokens).await;
    let (addr, ingest) = (d.addr, d.token("pbx").to_owned());

    let mut watcher = d.screen("sue").await;
    let mut agent_ws = d.screen("amy").await;
    // A screen that connects and then never reads a byte.
    let _stuck = d.screen("lazy").await;

    let (t0_tx, t0_rx) = tokio::sync::oneshot::channel();
    let call = TwilioCall {
        call: TWILIO_CALL.into(),
        agent: "101".into(),
        wav: fixture("en-media-threat.wav"),
        hold: None,
    };
    let caller = tokio::spawn(twilio_stream(addr, ingest.clone(), call, Some(t0_tx)));

    // Malformed streams on each websocket ingest protocol close only themselves (1007).
    let (mut bad_twilio, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ingest/twilio?token={ingest}"))
            .await
            .unwrap();
    bad_twilio
        .send(Message::text("{\"event\":\"media\",\"media\":42"))
        .await
        .unwrap();
    expect_close(&mut bad_twilio, 1007).await;
    let (mut bad_fork, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ingest/audiofork?token={ingest}"))
            .await
            .unwrap();
    bad_fork
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    expect_close(&mut bad_fork, 1007).await;

    // The supervisor watches until all three calls have ended, accepting the Twilio call's
    // prompt as soon as it arrives.
    let t0 = t0_rx.await.expect("twilio audio started");
    let mut started: BTreeMap<String, Value> = BTreeMap::new();
    let mut ended: BTreeSet<String> = BTreeSet::new();
    let mut finals: BTreeMap<String, usize> = BTreeMap::new();
    let mut partials: BTreeMap<String, usize> = BTreeMap::new();
    let mut alert: Option<(Value, Instant)> = None;
    let mut ack: Option<Value> = None;
    let mut concurrent = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    let snapshot = watcher.next().await.unwrap().unwrap();
    let snapshot: Value = serde_json::from_str(snapshot.to_text().unwrap()).unwrap();
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["version"], 2);
    // Replays start with the daemon: a call that began before this screen registered is in
    // the snapshot rather than a `call_started`.
    for c in snapshot["calls"].as_array().unwrap() {
        let id = c["call"]["call_id"].as_str().unwrap().to_owned();
        started.insert(id, serde_json::json!({"call": c["call"]}));
    }
    concurrent = concurrent.max(started.len());
    while ended.len() < 3 {
        let next = tokio::time::timeout_at(deadline, watcher.next())
            .await
            .unwrap_or_else(|_| panic!("calls did not end: started {started:?}, ended {ended:?}"));
        let Some(Ok(Message::Text(text))) = next else {
            panic!("supervisor socket ended: {next:?}")
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        let call = v["call_id"].as_str().unwrap_or_default().to_owned();
        match v["type"].as_str().unwrap() {
            "call_started" => {
                started.insert(call, v.clone());
                concurrent = concurrent.max(started.len() - ended.len());
            }
            "call_ended" => {
                ended.insert(call);
            }
            "transcript" if v["final"] == true => *finals.entry(call).or_default() += 1,
            "transcript" => *partials.entry(call).or_default() += 1,
            "alert" if call == TWILIO_CALL && alert.is_none() => {
                alert = Some((v.clone(), Instant::now()));
                let cmd = json!({"type": "accept_transfer", "id": "take-1",
                                 "alert_id": v["alert_id"]});
                watcher.send(Message::text(cmd.to_string())).await.unwrap();
            }
            "ack" => ack = Some(v.clone()),
            _ => {}
        }
    }
    caller.await.unwrap();

    // Three calls, all live at the same time, each transcribed.
    assert_eq!(started.len(), 3, "{started:?}");
    assert_eq!(concurrent, 3, "the three calls overlapped");
    let sources: BTreeSet<&str> = started
        .values()
        .map(|v| v["call"]["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, BTreeSet::from(["replay", "twilio"]));
    for id in started.keys() {
        assert!(
            finals.get(id).copied().unwrap_or(0) >= 3,
            "{id}: {finals:?}"
        );
    }
    // Partials run on spare Whisper capacity only, so a loaded machine makes fewer; three
    // calls on two cores still leave room for some between utterances.
    assert!(
        partials.values().sum::<usize>() >= 1,
        "partial transcripts while people speak: {partials:?}"
    );

    // The prompt came a few seconds after the words that caused it, and was accepted.
    let (alert, received) = alert.expect("the Twilio call's transfer prompt");
    assert!(
        alert["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "threat_media"),
        "{alert}"
    );
    let words_end_ms = alert["evidence"]["quotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["end_ms"].as_u64().unwrap())
        .max()
        .unwrap();
    let spoken = t0 + Duration::from_millis(words_end_ms);
    let latency = received.saturating_duration_since(spoken);
    eprintln!(
        "transfer prompt {:.1} s after the words ended",
        latency.as_secs_f64()
    );
    assert!(latency < Duration::from_secs(20), "prompt took {latency:?}");
    assert_eq!(
        ack.expect("accept acknowledged"),
        json!({"type": "ack", "id": "take-1", "command": "accept_transfer"})
    );

    // The agent's screen: only their own call, and the supervisor taking it over.
    let mut agent_saw = Vec::new();
    let mut accepted = None;
    while let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_secs(2), agent_ws.next()).await
    {
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["type"] == "alert_updated" {
            accepted = Some(v.clone());
        }
        if let Some(c) = v["call_id"].as_str() {
            agent_saw.push(c.to_owned());
        }
    }
    assert!(
        agent_saw.iter().all(|c| c == TWILIO_CALL),
        "agent saw other calls: {agent_saw:?}"
    );
    let accepted = accepted.expect("the agent sees the acceptance");
    assert_eq!(accepted["state"], "accepted");
    assert_eq!(accepted["call_id"], TWILIO_CALL);
    assert_eq!(accepted["decision"]["by"], "sue");
    assert_eq!(accepted["decision"]["role"], "supervisor");

    let metrics = http_get(addr, "/metrics").await;
    for line in metrics.lines().filter(|l| l.starts_with("callguard_asr")) {
        eprintln!("{line}");
    }
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert_eq!(metric(&metrics, "calls_total"), 3.0);
    assert_eq!(metric(&metrics, "active_calls"), 0.0);
    assert_eq!(metric(&metrics, "alerts_accepted_total"), 1.0);
    assert!(metric(&metrics, "alerts_total") >= 1.0);
    assert!(metric(&metrics, "ingest_errors_total") >= 2.0);
    assert!(metric(&metrics, "asr_utterances_total") >= 9.0);
    assert!(metric(&metrics, "asr_real_time_factor") > 0.0);
    assert_eq!(metric(&metrics, "ws_clients"), 3.0);

    // The CRM heard about the prompt and about the supervisor taking the call.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && !posts
            .lock()
            .unwrap()
            .iter()
            .any(|(k, _)| k == "transfer_accepted")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let posts = posts.lock().unwrap().clone();
    let kinds: Vec<&str> = posts.iter().map(|(k, _)| k.as_str()).collect();
    let prompt = posts
        .iter()
        .find(|(k, v)| k == "alert" && v["alert"]["call_id"] == TWILIO_CALL)
        .unwrap_or_else(|| panic!("no alert webhook: {kinds:?}"));
    assert_eq!(prompt.1["call"]["agent"], "101");
    let taken = posts
        .iter()
        .find(|(k, _)| k == "transfer_accepted")
        .unwrap_or_else(|| panic!("no transfer_accepted webhook: {kinds:?}"));
    assert_eq!(taken.1["status"]["decision"]["by"], "sue");
    let metrics = http_get(addr, "/metrics").await;
    assert_eq!(
        metric(&metrics, "webhook_delivered_total"),
        posts.len() as f64
    );
    assert_eq!(metric(&metrics, "webhook_failed_total"), 0.0);

    d.stop().await;
}
