//! End to end with the real Whisper model: synthetic calls (espeak-ng + sox) go through the
//! real binary, and the right words must come out on the right leg at the right times.

mod common;

use common::*;

/// Words each leg of tests/scenarios/refund-call.txt says (and the other leg does not).
const CUSTOMER_WORDS: &[&str] = &["blender", "arrive", "refund", "email"];
const AGENT_WORDS: &[&str] = &["help you", "sorry", "process"];

fn assert_words(text: &str, words: &[&str], leg: &str) {
    for w in words {
        assert!(text.contains(w), "{leg} leg lacks {w:?}: {text}");
    }
}

#[test]
fn stereo_mulaw_call_puts_each_partys_words_on_their_leg() {
    let _ = model();
    let wav = fixture("refund-call.wav");
    let lines = analyze_jsonl(&wav, &["--lang", "en"]);
    assert!(
        lines
            .iter()
            .all(|l| l.kind == "transcript" && l.call_id == "refund-call")
    );
    assert!(lines.iter().all(|l| l.lang == "en"));
    let customer = leg_text(&lines, "customer");
    let agent = leg_text(&lines, "agent");
    assert_words(&customer, CUSTOMER_WORDS, "customer");
    assert_words(&agent, AGENT_WORDS, "agent");
    assert!(
        !agent.contains("blender"),
        "customer words leaked to agent: {agent}"
    );
    assert!(
        !customer.contains("sorry"),
        "agent words leaked to customer: {customer}"
    );

    // Every segment lies within (a little around) a turn of its own leg, and the events come
    // out in call-time order.
    let turns = turns("refund-call");
    for l in &lines {
        assert!(l.start_ms <= l.end_ms, "{l:?}");
        let inside = turns
            .iter()
            .any(|(leg, s, e, _)| leg == &l.leg && l.start_ms + 600 >= *s && l.end_ms <= e + 900);
        assert!(inside, "segment outside its leg's turns: {l:?}");
    }
    assert!(lines.windows(2).all(|w| w[0].start_ms <= w[1].start_ms));
}

#[test]
fn auto_language_detects_english_once_per_leg() {
    let wav = fixture("refund-call.wav");
    let lines = analyze_jsonl(&wav, &["--lang", "auto"]);
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l.lang, "en", "{l:?}");
    }
    assert_words(
        &leg_text(&lines, "customer"),
        &["blender", "refund"],
        "customer",
    );
}

#[test]
fn mono_recording_is_one_mixed_leg() {
    let wav = fixture("refund-call-mono16k.wav");
    let lines = analyze_jsonl(&wav, &["--lang", "en"]);
    assert!(lines.iter().all(|l| l.leg == "mixed"), "{lines:?}");
    let text = leg_text(&lines, "mixed");
    // Both parties' words, on the one leg.
    assert_words(
        &text,
        &["blender", "refund", "process", "help you"],
        "mixed",
    );
}

#[test]
fn float_44k_stereo_is_resampled_and_keeps_legs_and_times() {
    let wav = fixture("refund-call-44k-float.wav");
    let lines = analyze_jsonl(&wav, &["--lang", "en"]);
    assert_words(
        &leg_text(&lines, "customer"),
        &["blender", "refund"],
        "customer",
    );
    assert_words(&leg_text(&lines, "agent"), &["sorry", "process"], "agent");
    // The first customer words start where the generator put them (6.4 s), within a second.
    let turns = turns("refund-call");
    let first_customer_turn = turns.iter().find(|t| t.0 == "customer").unwrap().1;
    let first = lines.iter().find(|l| l.leg == "customer").unwrap();
    assert!(
        first.start_ms.abs_diff(first_customer_turn) < 1000,
        "{first:?} vs turn at {first_customer_turn}"
    );
}

#[test]
fn stereo_leg_mapping_follows_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("swapped.toml");
    std::fs::write(&cfg, "[audio]\nstereo_legs = [\"agent\", \"customer\"]\n").unwrap();
    let wav = fixture("refund-call.wav");
    let lines = analyze_jsonl(&wav, &["--lang", "en", "--config", cfg.to_str().unwrap()]);
    assert_words(
        &leg_text(&lines, "agent"),
        &["blender"],
        "agent (left channel)",
    );
    assert_words(
        &leg_text(&lines, "customer"),
        &["sorry"],
        "customer (right channel)",
    );
}

#[test]
fn text_format_is_readable_and_stats_go_to_stderr() {
    let wav = fixture("refund-call.wav");
    let r = run(&["analyze", wav.to_str().unwrap(), "--lang", "en", "--stats"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let first = r.stdout.lines().next().expect("a transcript line");
    // "[00:00.1 - 00:05.6] agent    Thank you for calling ..."
    assert!(first.starts_with("[00:0"), "{first}");
    assert!(first.contains("] agent "), "{first}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("] customer ") && l.to_lowercase().contains("blender"))
    );
    assert!(r.stderr.contains("real-time factor"), "{}", r.stderr);
    assert!(r.stderr.contains("audio 30."), "{}", r.stderr);
}

#[test]
fn mandarin_is_detected_and_comes_out_in_simplified_chinese_on_the_right_leg() {
    let wav = fixture("mandarin-call.wav");
    // Auto: each leg's language is detected (among en and zh) and kept.
    let lines = analyze_jsonl(&wav, &["--lang", "auto"]);
    assert!(!lines.is_empty());
    let customer: String = lines
        .iter()
        .filter(|l| l.leg == "customer")
        .map(|l| l.text.as_str())
        .collect();
    // The customer says 我要投诉你们 and 我要找你们的经理; synthetic Mandarin is rough, but
    // these common words survive.
    assert!(customer.contains("你们"), "customer leg: {customer}");
    assert!(customer.contains("我要"), "customer leg: {customer}");
    for l in &lines {
        assert_eq!(l.lang, "zh", "{l:?}");
        assert_eq!(
            fast2s::convert(&l.text),
            l.text,
            "traditional characters in {l:?}"
        );
    }
}
