//! The daemon end to end: the real server on port 0 replays an escalating call as a live call,
//! and a real websocket client with a supervisor token receives the snapshot, the call's
//! transcripts and its transfer prompt; a bad token is refused before the upgrade; shutdown
//! drains and closes the socket.

mod common;

use std::time::Duration;

use callguard::daemon::ServeOptions;
use callguard::domain::access::Role;
use common::daemon::*;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_sees_a_replayed_call_and_its_transfer_prompt_live() {
    let opts = ServeOptions {
        replay: vec![fixture("en-media-threat.wav")],
        // Twice real time keeps the test short; Whisper keeps up on two cores.
        replay_speed: 2.0,
        ..options()
    };
    let d = start(config(), opts, &[("sup", Role::Supervisor, None)]).await;
    let (addr, token, shutdown) = (d.addr, d.token("sup").to_owned(), d.shutdown.clone());

    // A wrong token is refused before the upgrade.
    let bad = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token=cg_nope")).await;
    match bad {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 401)
        }
        other => panic!("bad token accepted: {other:?}"),
    }
    let health = http_get(addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}"))
        .await
        .expect("supervisor connects");
    let mut messages: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut alert_at = None;
    while alert_at.is_none() {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no alert in time; got {messages:?}"));
        let Some(Ok(Message::Text(text))) = next else {
            panic!("socket ended: {next:?}; got {messages:?}")
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["type"] == "alert" {
            alert_at = Some(tokio::time::Instant::now());
        }
        messages.push(v);
    }
    assert_eq!(messages[0]["type"], "snapshot");
    assert_eq!(messages[0]["version"], 2);
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"call_started") || messages[0]["calls"].as_array().unwrap().len() == 1);
    assert!(kinds.contains(&"transcript"), "{kinds:?}");
    let alert = messages.last().unwrap();
    assert!(
        alert["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "threat_media"),
        "{alert}"
    );
    assert!(
        alert["call_id"]
            .as_str()
            .unwrap()
            .starts_with("replay-0-en-media-threat")
    );

    // Shutdown mid-call: the call drains and its last events (summary, call_ended) still
    // reach the screen before the server closes the socket (1001); run returns Ok.
    shutdown.cancel();
    let mut after = Vec::new();
    let mut close_code = None;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
        match msg {
            Ok(Message::Text(text)) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                after.push(v["type"].as_str().unwrap().to_owned());
            }
            Ok(Message::Close(frame)) => {
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            _ => break,
        }
    }
    assert_eq!(
        close_code,
        Some(1001),
        "the server did not close the socket: {after:?}"
    );
    let summary = after.iter().position(|k| k == "summary");
    let ended = after.iter().position(|k| k == "call_ended");
    assert!(
        summary.is_some() && ended.is_some() && summary < ended,
        "the drained call's last events before the close: {after:?}"
    );
    d.stop().await;
}

/// The server with no replay, an AudioSocket listener on `audiosocket_addr`, a supervisor
/// token (`sup`) and an ingest token (`twilio`).
async fn start_plain_with(audiosocket_addr: std::net::SocketAddr) -> Daemon {
    let opts = ServeOptions {
        audiosocket: Some(audiosocket_addr),
        ..options()
    };
    let tokens = [
        ("sup", Role::Supervisor, None),
        ("twilio", Role::Ingest, None),
    ];
    start(config(), opts, &tokens).await
}

async fn start_plain() -> Daemon {
    start_plain_with(free_port()).await
}

fn twilio_start(call_sid: &str, token: &str) -> String {
    serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": {
            "accountSid": "AC1", "streamSid": "MZ1", "callSid": call_sid,
            "tracks": ["inbound", "outbound"],
            "customParameters": {"token": token},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_stream_becomes_a_live_call_that_supervisors_watch() {
    use base64::Engine;
    use callguard::pipeline::audio::g711::{f32_to_i16, i16_to_ulaw};
    use futures_util::SinkExt;

    let d = start_plain().await;
    let (addr, sup, ingest) = (
        d.addr,
        d.token("sup").to_owned(),
        d.token("twilio").to_owned(),
    );
    let (mut watcher, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={sup}"))
        .await
        .unwrap();

    // A stream whose start carries no valid token is closed before its audio is used.
    let (mut rogue, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ingest/twilio"))
        .await
        .unwrap();
    rogue
        .send(Message::text(twilio_start("CArogue", "cg_wrong")))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), rogue.next()).await;
    match closed {
        Ok(Some(Ok(Message::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), 1008),
        other => panic!("rogue stream not refused: {other:?}"),
    }

    // The real call: both tracks of a recorded escalating call, as Twilio sends them.
    let audio = callguard::pipeline::audio::wav::read_wav(&fixture("en-media-threat.wav")).unwrap();
    let (mut twilio, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ingest/twilio"))
        .await
        .unwrap();
    twilio
        .send(Message::text(
            r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
        ))
        .await
        .unwrap();
    twilio
        .send(Message::text(twilio_start("CA42", &ingest)))
        .await
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let frames = audio.channels[0].len() / 160;
    for i in 0..frames {
        for (track, ch) in [("inbound", 0), ("outbound", 1)] {
            let payload: Vec<u8> = audio.channels[ch][i * 160..(i + 1) * 160]
                .iter()
                .map(|&x| i16_to_ulaw(f32_to_i16(x)))
                .collect();
            let msg = serde_json::json!({
                "event": "media", "sequenceNumber": (i * 2 + 2).to_string(), "streamSid": "MZ1",
                "media": {"track": track, "chunk": (i + 1).to_string(),
                          "timestamp": (i * 20).to_string(), "payload": b64.encode(&payload)}
            });
            twilio.send(Message::text(msg.to_string())).await.unwrap();
        }
    }
    twilio
        .send(Message::text(
            r#"{"event":"stop","sequenceNumber":"99999","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA42"}}"#,
        ))
        .await
        .unwrap();

    // The supervisor sees the call start, its words and its transfer prompt, then its end.
    let (started, kinds, alert) = watch_call(&mut watcher).await;
    // Exactly one call started: a refused stream never does.
    assert_eq!(started.len(), 1, "{started:?}");
    let v = &started[0];
    assert_eq!(v["call"]["source"], "twilio");
    assert_eq!(v["call_id"], "CA42", "the rogue call must never start");
    assert!(kinds.contains(&"transcript".to_owned()), "{kinds:?}");
    let alert = alert.unwrap_or_else(|| panic!("no alert: {kinds:?}"));
    assert_eq!(alert["call_id"], "CA42");
    assert!(
        alert["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "threat_media"),
        "{alert}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_fork_stream_becomes_a_live_call_that_supervisors_watch() {
    use callguard::pipeline::audio::g711::f32_to_i16;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let d = start_plain().await;
    let (addr, sup, ingest) = (
        d.addr,
        d.token("sup").to_owned(),
        d.token("twilio").to_owned(),
    );
    let (mut watcher, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={sup}"))
        .await
        .unwrap();

    // No token: refused before the upgrade.
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ingest/audiofork")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 401)
        }
        other => panic!("audio fork without a token accepted: {other:?}"),
    }

    let mut request = format!("ws://{addr}/ingest/audiofork?token={ingest}")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "audio.drachtio.org".parse().unwrap(),
    );
    let (mut fork, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "audio.drachtio.org"
    );
    fork.send(Message::text(
        r#"{"callSid":"fs-1","sampleRate":8000,"mixType":"stereo","agent":"1042"}"#,
    ))
    .await
    .unwrap();
    // Stereo L16, caller left: a byte stream cut into odd-sized pieces, as a socket may.
    let audio = callguard::pipeline::audio::wav::read_wav(&fixture("en-media-threat.wav")).unwrap();
    let mut bytes = Vec::with_capacity(audio.channels[0].len() * 4);
    for i in 0..audio.channels[0].len() {
        for ch in 0..2 {
            bytes.extend_from_slice(&f32_to_i16(audio.channels[ch][i]).to_le_bytes());
        }
    }
    for piece in bytes.chunks(1283) {
        fork.send(Message::binary(piece.to_vec())).await.unwrap();
    }
    fork.close(None).await.unwrap();

    let (started, kinds, alert) = watch_call(&mut watcher).await;
    // Exactly one call started: a refused stream never does.
    assert_eq!(started.len(), 1, "{started:?}");
    let v = &started[0];
    assert_eq!(v["call_id"], "fs-1");
    assert_eq!(v["call"]["source"], "audiofork");
    assert_eq!(v["call"]["agent"], "1042");
    assert!(kinds.contains(&"transcript".to_owned()), "{kinds:?}");
    let alert = alert.unwrap_or_else(|| panic!("no alert: {kinds:?}"));
    assert!(
        alert["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "threat_media"),
        "{alert}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audiosocket_connection_becomes_a_live_call_and_garbage_closes_only_itself() {
    use callguard::ingest::audiosocket::{KIND_HANGUP, KIND_SLIN, encode_frame, uuid_frame};
    use callguard::pipeline::audio::g711::f32_to_i16;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let asock = free_port();
    let d = start_plain_with(asock).await;
    let (addr, sup) = (d.addr, d.token("sup").to_owned());
    let (mut watcher, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={sup}"))
        .await
        .unwrap();

    // Garbage: that connection is closed, nothing starts.
    let mut junk = tokio::net::TcpStream::connect(asock).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut sink = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), junk.read(&mut sink))
        .await
        .expect("garbage connection closed")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // A real call: the customer leg of a recorded escalating call, 20 ms slin frames.
    let audio = callguard::pipeline::audio::wav::read_wav(&fixture("en-media-threat.wav")).unwrap();
    let mut conn = tokio::net::TcpStream::connect(asock).await.unwrap();
    let id = [0x5a_u8; 16];
    conn.write_all(&uuid_frame(&id)).await.unwrap();
    for frame in audio.channels[0].chunks(160) {
        let pcm: Vec<u8> = frame
            .iter()
            .flat_map(|&x| f32_to_i16(x).to_le_bytes())
            .collect();
        conn.write_all(&encode_frame(KIND_SLIN, &pcm))
            .await
            .unwrap();
    }
    conn.write_all(&encode_frame(KIND_HANGUP, &[]))
        .await
        .unwrap();

    let (started, kinds, alert) = watch_call(&mut watcher).await;
    // Exactly one call started: a refused stream never does.
    assert_eq!(started.len(), 1, "{started:?}");
    let v = &started[0];
    assert_eq!(v["call"]["source"], "audiosocket");
    assert_eq!(v["call_id"], "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a");
    let alert = alert.unwrap_or_else(|| panic!("no alert: {kinds:?}"));
    assert!(
        alert["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "threat_media"),
        "{alert}"
    );
    d.stop().await;
}

/// Sends one channel of a recording as an AudioSocket connection with the given UUID, at four
/// times real pace (a 20 ms frame every 5 ms), so that two legs overlap as in a real call.
async fn audiosocket_leg(at: std::net::SocketAddr, id: [u8; 16], samples: Vec<f32>) {
    use callguard::ingest::audiosocket::{KIND_HANGUP, KIND_SLIN, encode_frame, uuid_frame};
    use callguard::pipeline::audio::g711::f32_to_i16;
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(at).await.unwrap();
    conn.write_all(&uuid_frame(&id)).await.unwrap();
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    for frame in samples.chunks(160) {
        pace.tick().await;
        let pcm: Vec<u8> = frame
            .iter()
            .flat_map(|&x| f32_to_i16(x).to_le_bytes())
            .collect();
        conn.write_all(&encode_frame(KIND_SLIN, &pcm))
            .await
            .unwrap();
    }
    conn.write_all(&encode_frame(KIND_HANGUP, &[]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_audiosocket_legs_with_one_uuid_are_one_call() {
    let (customer_at, agent_at) = (free_port(), free_port());
    let opts = ServeOptions {
        audiosocket: Some(customer_at),
        audiosocket_agent: Some(agent_at),
        ..options()
    };
    let d = start(config(), opts, &[("sup", Role::Supervisor, None)]).await;
    let (addr, sup) = (d.addr, d.token("sup").to_owned());
    let (mut watcher, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={sup}"))
        .await
        .unwrap();

    let audio = callguard::pipeline::audio::wav::read_wav(&fixture("en-media-threat.wav")).unwrap();
    let id = [0x7b_u8; 16];
    let customer = tokio::spawn(audiosocket_leg(customer_at, id, audio.channels[0].clone()));
    // The agent's channel opens a moment later, as a second dialplan AudioSocket would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let agent = tokio::spawn(audiosocket_leg(agent_at, id, audio.channels[1].clone()));
    customer.await.unwrap();
    agent.await.unwrap();

    let mut started = Vec::new();
    let mut legs = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let next = tokio::time::timeout_at(deadline, watcher.next())
            .await
            .expect("call ended in time");
        let Some(Ok(Message::Text(text))) = next else {
            panic!("watcher socket ended: {next:?}")
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        match v["type"].as_str().unwrap() {
            "call_started" => started.push(v.clone()),
            "transcript" if v["final"] == true => {
                assert_eq!(v["call_id"], "7b7b7b7b-7b7b-7b7b-7b7b-7b7b7b7b7b7b");
                legs.insert(v["leg"].as_str().unwrap().to_owned());
            }
            "call_ended" => break,
            _ => {}
        }
    }
    assert_eq!(started.len(), 1, "one call for both legs: {started:?}");
    assert_eq!(
        started[0]["call"]["legs"],
        serde_json::json!(["customer", "agent"])
    );
    assert_eq!(
        legs,
        std::collections::BTreeSet::from(["agent".to_owned(), "customer".to_owned()])
    );
    d.stop().await;
}

/// Twilio's signature scheme for a websocket upgrade: HMAC-SHA1 of the URL, base64.
fn twilio_signature(auth_token: &str, url: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_twilio_signature_admits_a_stream_and_a_forged_one_is_refused() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let opts = ServeOptions {
        twilio_auth_token: Some("twilio-secret".into()),
        public_url: Some("wss://callguard.example.com".into()),
        ..options()
    };
    let d = start(config(), opts, &[("sup", Role::Supervisor, None)]).await;
    let (addr, sup) = (d.addr, d.token("sup").to_owned());
    let (mut watcher, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={sup}"))
        .await
        .unwrap();

    let upgrade = |signature: String| {
        let mut req = format!("ws://{addr}/ingest/twilio?leg=both")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("x-twilio-signature", signature.parse().unwrap());
        req
    };
    // Signed for another URL, or with another account's token: refused before the upgrade.
    for forged in [
        twilio_signature(
            "twilio-secret",
            "wss://evil.example.com/ingest/twilio?leg=both",
        ),
        twilio_signature(
            "other-account",
            "wss://callguard.example.com/ingest/twilio?leg=both",
        ),
    ] {
        match tokio_tungstenite::connect_async(upgrade(forged)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403)
            }
            other => panic!("forged signature accepted: {other:?}"),
        }
    }

    // Signed for the public URL Twilio used (the proxy in front changes the Host header):
    // admitted without any ingest token.
    let good = twilio_signature(
        "twilio-secret",
        "wss://callguard.example.com/ingest/twilio?leg=both",
    );
    let (mut twilio, _) = tokio_tungstenite::connect_async(upgrade(good))
        .await
        .unwrap();
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZsig",
        "start": {"accountSid": "AC1", "streamSid": "MZsig", "callSid": "CAsigned",
                  "tracks": ["inbound", "outbound"], "customParameters": {},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    });
    twilio.send(Message::text(start.to_string())).await.unwrap();
    twilio
        .send(Message::text(
            r#"{"event":"stop","sequenceNumber":"2","streamSid":"MZsig","stop":{"accountSid":"AC1","callSid":"CAsigned"}}"#,
        ))
        .await
        .unwrap();
    let (started, _, _) = watch_call(&mut watcher).await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["call_id"], "CAsigned");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_max_calls_or_with_a_live_call_id_are_refused_alone() {
    use futures_util::SinkExt;

    let mut cfg = config();
    cfg.hub.max_calls = 1;
    let tokens = [("sup", Role::Supervisor, None), ("pbx", Role::Ingest, None)];
    let d = start(cfg, options(), &tokens).await;
    let (addr, sup, ingest) = (d.addr, d.token("sup").to_owned(), d.token("pbx").to_owned());
    let (mut watcher, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={sup}"))
        .await
        .unwrap();
    let _snapshot = watcher.next().await;

    let url = format!("ws://{addr}/ingest/twilio");
    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    first
        .send(Message::text(twilio_start("CAfirst", &ingest)))
        .await
        .unwrap();
    let started = tokio::time::timeout(Duration::from_secs(10), watcher.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        started.to_text().unwrap().contains("CAfirst"),
        "{started:?}"
    );

    // The same call id again, and a second call over the limit: each closed with 1013 and
    // the reason, while the first call goes on.
    for (sid, reason) in [
        ("CAfirst", "already being monitored"),
        ("CAsecond", "capacity"),
    ] {
        let (mut other, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        other
            .send(Message::text(twilio_start(sid, &ingest)))
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(10), other.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(u16::from(frame.code), 1013);
                assert!(frame.reason.contains(reason), "{}", frame.reason);
            }
            other => panic!("{sid} not refused: {other:?}"),
        }
    }
    first
        .send(Message::text(
            r#"{"event":"stop","sequenceNumber":"2","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CAfirst"}}"#,
        ))
        .await
        .unwrap();
    let (_, kinds, _) = watch_call(&mut watcher).await;
    assert_eq!(kinds.last().map(String::as_str), Some("call_ended"));
    let metrics = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains("callguard_calls_refused_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("callguard_calls_total 1"), "{metrics}");
    d.stop().await;
}
