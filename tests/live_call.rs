//! The live per-call task with the real model: a recorded escalating call is fed in as 20 ms
//! phone frames per leg, the way a phone system streams it, and the transcripts, the signals
//! and the transfer prompt must come out of the streaming path as they do offline.

mod common;

use std::sync::Arc;

use callguard::asr::worker::{AsrPool, Model, WorkerSettings};
use callguard::audio::Leg;
use callguard::audio::wav::read_wav;
use callguard::config::Config;
use callguard::detect::SignalKind;
use callguard::event::Event;
use callguard::live::{LiveContext, run_call};
use callguard::monitor::load_lexicon;
use callguard::source::{CallInfo, EndReason, SourceEvent, SourceKind};
use common::*;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalating_call_streamed_in_phone_frames_raises_its_prompt() {
    let cfg = Config {
        asr: callguard::config::AsrConfig {
            model: model(),
            ..Default::default()
        },
        ..Default::default()
    };
    let wav = fixture("en-media-threat.wav");
    let audio = read_wav(&wav).unwrap();
    assert_eq!(audio.sample_rate, 8000);
    let pool = AsrPool::start(
        Model::load(&cfg.asr.model).unwrap(),
        WorkerSettings::from_config(&cfg),
    )
    .unwrap();
    let ctx = Arc::new(LiveContext {
        lexicon: load_lexicon(&cfg).unwrap(),
        pool: Arc::new(pool),
        lang: None,
        cfg,
        calls: Default::default(),
    });
    let info = CallInfo {
        call_id: "live-1".into(),
        source: SourceKind::Replay,
        legs: vec![Leg::Customer, Leg::Agent],
        sample_rate: 8000,
        lang: Some("en".into()),
        agent: None,
        metadata: serde_json::Value::Null,
    };
    let (in_tx, in_rx) = mpsc::channel(64);
    let (out_tx, mut out_rx) = mpsc::channel(1024);
    let task = tokio::spawn(run_call(info, in_rx, ctx, out_tx));

    // 20 ms frames, the legs interleaved, as fast as the task takes them.
    let frames = audio.channels[0].len().div_ceil(160);
    for i in 0..frames {
        for (leg, ch) in [(Leg::Customer, 0), (Leg::Agent, 1)] {
            let samples = &audio.channels[ch];
            let piece = samples[i * 160..((i + 1) * 160).min(samples.len())].to_vec();
            in_tx
                .send(SourceEvent::Audio {
                    leg,
                    start_sample: (i * 160) as u64,
                    samples: piece,
                })
                .await
                .unwrap();
        }
    }
    in_tx
        .send(SourceEvent::Ended(EndReason::Hangup))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(e) = out_rx.recv().await {
        events.push(e);
    }
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.end, EndReason::Hangup);
    assert_eq!(outcome.failed_utterances, 0);
    let audio_ms = audio.channels[0].len() as u64 / 8;
    assert!(
        outcome.duration_ms.abs_diff(audio_ms) < 100,
        "{outcome:?} vs {audio_ms} ms"
    );

    let text = |leg: Leg| -> String {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Transcript(t) if t.leg == leg => Some(t.text.to_lowercase()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(text(Leg::Customer).contains("journalist"), "{events:?}");
    assert!(text(Leg::Agent).contains("engineer"), "{events:?}");
    let alert = events
        .iter()
        .find_map(|e| match e {
            Event::Alert(a) => Some(a),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no alert: {events:?}"));
    assert!(
        alert
            .reasons
            .iter()
            .any(|r| r.kind == SignalKind::ThreatMedia)
    );
    assert_eq!(alert.call_id, "live-1");
    // The voice detector heard the shout before Whisper finished the words.
    let first_raised = events
        .iter()
        .position(|e| matches!(e, Event::Signal(s) if s.signal.kind == SignalKind::RaisedVoice));
    assert!(first_raised.is_some(), "{events:?}");
    assert!(matches!(events.last(), Some(Event::Summary(_))));
}
