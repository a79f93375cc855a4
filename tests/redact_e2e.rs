//! Redaction end to end, through the real model: a customer reads a card number out loud in a
//! replayed live call with `[redact] silence_audio` on. What Whisper hears never reaches a
//! screen, the store or the API as digits; the stored line carries the tag instead; and the
//! recording is silent where the number was said, while the rest of the call plays.

mod common;

use std::time::Duration;

use callguard::daemon::ServeOptions;
use callguard::domain::access::Role;
use callguard::pipeline::audio::wav::{decode_wav, read_wav};
use common::daemon::*;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Six or more digits in a row, ignoring spaces and dashes: what must never leave the pipeline.
fn has_digit_run(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 6 {
                return true;
            }
        } else if !matches!(c, ' ' | '-') {
            run = 0;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_number_read_aloud_is_redacted_everywhere_and_silenced_in_the_recording() {
    let mut cfg = config();
    cfg.redact.silence_audio = true;
    let opts = ServeOptions {
        replay: vec![fixture("card-number-call.wav")],
        replay_speed: 2.0,
        ..options()
    };
    let d = start(cfg, opts, &[("sup", Role::Supervisor, None)]).await;
    let mut screen = d.screen("sup").await;

    // Everything a screen sees, partials included, until the call ends.
    let mut customer_lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let msg = tokio::time::timeout_at(deadline, screen.next())
            .await
            .expect("the call ends in time")
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["type"] == "transcript" {
            let text = v["text"].as_str().unwrap();
            assert!(!has_digit_run(text), "a screen saw digits: {text:?}");
            if v["leg"] == "customer" && v["final"] == true {
                customer_lines.push(text.to_owned());
            }
        }
        if v["type"] == "call_ended" {
            break;
        }
    }
    let tagged = customer_lines
        .iter()
        .find(|l| l.contains("[card]") || l.contains("[digits]"))
        .unwrap_or_else(|| panic!("no redacted customer line: {customer_lines:?}"));
    assert!(tagged.to_lowercase().contains("card number"), "{tagged}");

    // The store and the API: the same redacted text, no digits anywhere in the export.
    let auth = format!("Bearer {}", d.token("sup"));
    let page = wait_ended(&d, &auth).await;
    let id = page["items"][0]["id"].as_i64().unwrap();
    let call = http(
        d.addr,
        "GET",
        &format!("/api/calls/{id}"),
        &[("Authorization", &auth)],
        None,
    )
    .await
    .json();
    let stored = call["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["text"].as_str().unwrap().contains("card number"))
        .expect("the card line is stored")
        .clone();
    assert_eq!(stored["text"].as_str(), Some(tagged.as_str()));
    let vtt = http(
        d.addr,
        "GET",
        &format!("/api/calls/{id}/transcript.vtt"),
        &[("Authorization", &auth)],
        None,
    )
    .await
    .text();
    assert!(!has_digit_run(&vtt), "{vtt}");

    // The recording: a stretch of true silence on the customer's channel inside the line
    // where the number was said, where the original has speech and line hiss; the agent's
    // channel and the rest of the customer's are not silenced.
    let wav_bytes = http(
        d.addr,
        "GET",
        &format!("/api/calls/{id}/audio.wav"),
        &[("Authorization", &auth)],
        None,
    )
    .await
    .body;
    let rec = decode_wav(&wav_bytes).unwrap();
    let original = read_wav(&fixture("card-number-call.wav")).unwrap();
    let rate = rec.sample_rate as u64;
    let at = |ms: u64| (ms * rate / 1000) as usize;
    let (start, end) = (
        stored["start_ms"].as_u64().unwrap(),
        stored["end_ms"].as_u64().unwrap(),
    );
    let customer = &rec.channels[0];
    let longest_zero_run = |s: &[f32]| {
        let (mut best, mut run) = (0, 0);
        for x in s {
            run = if *x == 0.0 { run + 1 } else { 0 };
            best = best.max(run);
        }
        best
    };
    let silenced = longest_zero_run(&customer[at(start)..at(end).min(customer.len())]);
    assert!(
        silenced as u64 >= rate,
        "at least a second silenced in the card line, got {silenced} samples"
    );
    assert!(longest_zero_run(&original.channels[0][at(start)..at(end)]) < (rate / 10) as usize);
    assert!(longest_zero_run(&customer[..at(start)]) < (rate / 10) as usize);
    assert!(longest_zero_run(&rec.channels[1]) < (rate / 10) as usize);

    d.stop().await;
}

async fn wait_ended(d: &Daemon, auth: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let page = http(
            d.addr,
            "GET",
            "/api/calls",
            &[("Authorization", auth)],
            None,
        )
        .await
        .json();
        if page["items"][0]["ended_unix_ms"].is_u64() {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "call not stored as ended"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
