//! The live per-call task with the real model: a recorded escalating call is fed in as 20 ms
//! phone frames per leg, the way a phone system streams it, and the transcripts, the signals
//! and the transfer prompt must come out of the streaming path as they do offline.

mod common;

use std::sync::Arc;

use callguard::config::Config;
use callguard::domain::call::{CallInfo, EndReason, SourceEvent, SourceKind};
use callguard::domain::event::Event;
use callguard::domain::leg::{AudioChunk, Leg};
use callguard::domain::signal::SignalKind;
use callguard::pipeline::asr::worker::{AsrPool, Model, WorkerSettings};
use callguard::pipeline::audio::wav::read_wav;
use callguard::pipeline::call::{CallContext, run_call};
use common::*;
use tokio::sync::mpsc;

/// Streams the fixture through `run_call` in 20 ms frames per leg, the legs interleaved, as
/// fast as the task takes them. With `gap = Some((at, len))`, the audio from source sample
/// `at` on arrives `len` samples later in the call, as after audio lost on the way (a sound
/// card that dropped frames, a phone system's outage): its `start_sample`s jump by `len`.
async fn stream_call(
    call_id: &str,
    audio: &callguard::pipeline::audio::wav::DecodedAudio,
    gap: Option<(usize, u64)>,
) -> (callguard::pipeline::call::CallOutcome, Vec<Event>) {
    // Streamed as fast as the task takes it, the call is many times real time: the overload
    // policy would rightly skip words (its own tests are in the worker's scheduler); here
    // every utterance must be transcribed.
    let cfg = Config {
        asr: callguard::pipeline::asr::AsrConfig {
            model: model(),
            shed_finals_after_ms: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    let pool = AsrPool::start(
        Model::load(&cfg.asr.model).unwrap(),
        WorkerSettings::from_config(&cfg.asr),
    )
    .unwrap();
    let ctx = Arc::new(CallContext {
        lexicon: cfg.detect.load_lexicon().unwrap(),
        pool: Arc::new(pool),
        lang: None,
        cfg: cfg.pipeline(),
        calls: Default::default(),
    });
    let info = CallInfo {
        call_id: call_id.into(),
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

    let frames = audio.channels[0].len().div_ceil(160);
    for i in 0..frames {
        for (leg, ch) in [(Leg::Customer, 0), (Leg::Agent, 1)] {
            let samples = &audio.channels[ch];
            let piece = samples[i * 160..((i + 1) * 160).min(samples.len())].to_vec();
            let at = i * 160;
            let shift = match gap {
                Some((from, len)) if at >= from => len,
                _ => 0,
            };
            in_tx
                .send(SourceEvent::Audio(AudioChunk {
                    leg,
                    start_sample: at as u64 + shift,
                    samples: piece,
                }))
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
    (task.await.unwrap().unwrap(), events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalating_call_streamed_in_phone_frames_raises_its_prompt() {
    let wav = fixture("en-media-threat.wav");
    let audio = read_wav(&wav).unwrap();
    assert_eq!(audio.sample_rate, 8000);
    let (outcome, events) = stream_call("live-1", &audio, None).await;
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
    let alert = first_alert(&events);
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
    let shouted_words = events
        .iter()
        .position(|e| {
            matches!(e, Event::Transcript(t)
                if t.is_final && t.text.to_lowercase().contains("journalist"))
        })
        .unwrap_or_else(|| panic!("the shouted words were not transcribed: {events:?}"));
    assert!(
        first_raised < Some(shouted_words),
        "the raised voice came after Whisper's words: {events:?}"
    );
    assert!(matches!(events.last(), Some(Event::Summary(_))));
}

/// The call's first transfer prompt; there must be one.
fn first_alert(events: &[Event]) -> &callguard::domain::alert::Alert {
    events
        .iter()
        .find_map(|e| match e {
            Event::Alert(a) => Some(a),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no alert: {events:?}"))
}

/// The fixture's turns: (leg, start ms, end ms), from the timing file the fixture script wrote.
fn turns(name: &str) -> Vec<(Leg, u64, u64)> {
    std::fs::read_to_string(fixture(name))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let leg = if f[0] == "customer" {
                Leg::Customer
            } else {
                Leg::Agent
            };
            (leg, f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

/// Audio lost on the way moves the call's time on, as the recording does (it fills the gap
/// with silence): every word after the gap keeps the time it has in the recording, and the
/// prompt comes at the recording's time of the threat, not earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_after_a_gap_in_the_audio_keep_the_recordings_times() {
    let audio = read_wav(&fixture("en-media-threat.wav")).unwrap();
    let turns = turns("en-media-threat.turns.tsv");
    // The gap: 4 s lost in the pause after the agent's greeting (before the second turn).
    let (pause_start, next_turn) = (turns[0].2, turns[1].1);
    let at = ((pause_start + next_turn) / 2 * 8) as usize;
    let gap_ms = 4000;
    let (outcome, events) = stream_call("live-gap", &audio, Some((at, gap_ms * 8))).await;
    let audio_ms = audio.channels[0].len() as u64 / 8;
    assert!(
        outcome.duration_ms.abs_diff(audio_ms + gap_ms) < 100,
        "{outcome:?} vs {audio_ms} ms of audio and a {gap_ms} ms gap"
    );
    // In the recording, each turn after the gap starts gap_ms later than in the file.
    let finals: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Transcript(t) if t.is_final => Some(t),
            _ => None,
        })
        .collect();
    let mut after_gap = 0;
    for &(leg, start, end) in &turns[1..] {
        let (start, end) = (start + gap_ms, end + gap_ms);
        let heard: Vec<_> = finals
            .iter()
            .filter(|t| t.leg == leg && t.start_ms < end && t.end_ms > start)
            .collect();
        assert!(
            !heard.is_empty(),
            "no transcript of the {leg} turn at {start}-{end} ms in the recording's time: {finals:#?}"
        );
        for t in heard {
            assert!(
                t.start_ms + 1000 >= start && t.end_ms <= end + 1000,
                "{t:?} is not where the recording has the turn ({start}-{end} ms)"
            );
            after_gap += 1;
        }
    }
    assert!(after_gap >= 4, "{finals:#?}");
    // The threat is the fourth turn: the prompt comes after it in the recording's time.
    let alert = first_alert(&events);
    assert!(
        alert.at_ms >= turns[3].1 + gap_ms,
        "prompt at {} ms, before the threat at {} ms in the recording",
        alert.at_ms,
        turns[3].1 + gap_ms
    );
}

/// The turn-taking signals come out of the streaming path as they do offline: the customer's
/// two talk-overs and the 12 s silent hold, found while the call is streamed in phone frames
/// (the dead air while the line is still silent), with the hold a QA flag and no prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talk_over_and_dead_air_are_found_live() {
    let audio = read_wav(&fixture("en-talkover-hold.wav")).unwrap();
    let turns = turns("en-talkover-hold.turns.tsv");
    let (_, events) = stream_call("live-turns", &audio, None).await;
    let signals: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Signal(s) => Some(&s.signal),
            _ => None,
        })
        .collect();
    // The talk-overs are the turns that start before the other leg's turn has ended.
    let talk_overs: Vec<u64> = turns
        .windows(2)
        .filter(|w| w[0].0 != w[1].0 && w[1].1 < w[0].2)
        .map(|w| w[1].1)
        .collect();
    let cuts: Vec<_> = signals
        .iter()
        .filter(|s| s.kind == SignalKind::Interruption)
        .collect();
    assert_eq!(cuts.len(), 2, "{cuts:#?}");
    for (s, at) in cuts.iter().zip(&talk_overs) {
        assert_eq!(s.leg, Leg::Customer);
        assert!(s.start_ms.abs_diff(*at) <= 1500, "{s:?} vs {at} ms");
        // Known within a couple of seconds of the talk-over, not at the end of the call.
        assert!(s.at_ms <= at + 3000, "{s:?}");
    }
    // The hold: the longest silence between turns.
    let (hold_from, hold_to) = turns
        .windows(2)
        .map(|w| (w[0].2, w[1].1))
        .max_by_key(|&(a, b)| b.saturating_sub(a))
        .unwrap();
    let air: Vec<_> = signals
        .iter()
        .filter(|s| s.kind == SignalKind::DeadAir)
        .collect();
    assert_eq!(air.len(), 1, "{air:#?}");
    assert!(
        air[0].start_ms.abs_diff(hold_from) <= 1500,
        "{air:?} vs {hold_from} ms"
    );
    assert!(air[0].at_ms < hold_to, "reported after the hold: {air:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::QaFlag(f) if f.kind == SignalKind::DeadAir)),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Alert(_))),
        "{events:?}"
    );
}
