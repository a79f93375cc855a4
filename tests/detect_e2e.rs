//! Detection end to end with the real model: synthetic calls from the scenario corpus
//! (tests/scenarios, espeak-ng + sox, stereo 8 kHz mu-law) go through `analyze` and `eval`, and
//! the transfer prompts must come when the customer crosses the line and never on calm calls.

mod common;

use common::*;
use serde_json::Value;

/// All events of `analyze --format jsonl`, as JSON values.
fn events(name: &str, lang: &str) -> Vec<Value> {
    let wav = fixture(&format!("{name}.wav"));
    let r = run(&[
        "analyze",
        wav.to_str().unwrap(),
        "--format",
        "jsonl",
        "--lang",
        lang,
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The start and end of the scenario's justifying turn (marked `!`), from its expectation.
fn justifying_turn(name: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(fixture(&format!("{name}.expect.toml"))).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    (
        v["after_ms"].as_integer().unwrap() as u64,
        v["said_by_ms"].as_integer().unwrap() as u64,
    )
}

#[test]
fn a_media_threat_raises_a_transfer_prompt_with_evidence_and_a_script() {
    let _ = model();
    let ev = events("en-media-threat", "en");
    let alerts = of_type(&ev, "alert");
    let (start, end) = justifying_turn("en-media-threat");
    let alert = alerts
        .iter()
        .find(|a| {
            a["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["kind"] == "threat_media")
        })
        .unwrap_or_else(|| panic!("no threat_media alert: {alerts:?}"));
    // Fired after the words began, within a few seconds of call time after they ended.
    let at = alert["at_ms"].as_u64().unwrap();
    assert!(
        at >= start && at <= end + 4000,
        "alert at {at}, turn {start}-{end}"
    );
    assert_eq!(alert["call_id"], "en-media-threat");
    assert_eq!(alert["level"], "escalate");
    assert!(alert["score"].as_f64().unwrap() >= 60.0);
    // Evidence: the customer's words, quoted with times and leg.
    let quotes = alert["evidence"]["quotes"].as_array().unwrap();
    assert!(
        quotes.iter().any(|q| q["leg"] == "customer"
            && q["text"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("journalist")),
        "{quotes:?}"
    );
    assert!(
        quotes
            .iter()
            .all(|q| q["start_ms"].is_u64() && q["end_ms"].is_u64())
    );
    // A suggested script in the call's language, and the customer type.
    assert_eq!(alert["suggestion"]["lang"], "en");
    assert!(!alert["suggestion"]["steps"].as_array().unwrap().is_empty());
    assert!(alert["customer_type"].is_string());

    // Every event has at_ms, they come in call-time order, and the summary closes the call.
    assert!(ev.iter().all(|e| e["at_ms"].is_u64()), "{ev:?}");
    let times: Vec<u64> = ev.iter().map(|e| e["at_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let summary = ev.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["max_level"], "escalate");
    assert!(!of_type(&ev, "signal").is_empty());
    assert!(!of_type(&ev, "risk").is_empty());
}

#[test]
fn a_calm_call_raises_no_prompt() {
    let ev = events("en-calm-billing", "en");
    assert!(of_type(&ev, "alert").is_empty(), "{ev:?}");
    let summary = ev.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["max_level"], "calm");
    assert!(!of_type(&ev, "transcript").is_empty());
}

#[test]
fn the_agents_forbidden_phrases_are_a_qa_flag_not_a_prompt() {
    let ev = events("en-agent-conduct", "en");
    assert!(of_type(&ev, "alert").is_empty(), "{ev:?}");
    let flags = of_type(&ev, "qa_flag");
    assert!(!flags.is_empty(), "{ev:?}");
    assert!(
        flags
            .iter()
            .all(|f| f["leg"] == "agent" && f["kind"] == "agent_conduct")
    );
    assert!(flags[0]["hint"].as_str().unwrap().len() > 20);
}

#[test]
fn text_output_shows_prompts_inline() {
    let wav = fixture("en-social-churn.wav");
    let r = run(&["analyze", wav.to_str().unwrap(), "--lang", "en"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let out = &r.stdout;
    let prompt = out
        .find("!! TRANSFER PROMPT")
        .expect("a prompt in the text");
    // The prompt comes after the customer's threat line, with its reasons and a script.
    assert!(out[..prompt].to_lowercase().contains("twitter"), "{out}");
    assert!(out[prompt..].contains("threat_social"), "{out}");
    assert!(out[prompt..].contains("say: "), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .starts_with("== en-social-churn"),
        "{out}"
    );
}

fn assert_eval_clean(args: &[&str]) {
    let r = run(args);
    assert_eq!(r.code, Some(0), "eval failed:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("recall 100%"), "{}", r.stdout);
    assert!(r.stdout.contains("false alerts 0"), "{}", r.stdout);
    // 12 English and 8 Chinese scenario calls, half of them escalating.
    assert!(r.stdout.contains("20 passed, 0 failed"), "{}", r.stdout);
    assert!(
        r.stdout.contains("(10/10 escalating calls caught)"),
        "{}",
        r.stdout
    );
}

#[test]
fn eval_on_the_known_words_catches_every_escalation_and_no_calm_call() {
    let _ = fixture("refund-call.wav");
    assert_eval_clean(&["eval", "tests/scenarios", "--text"]);
}

#[test]
fn eval_through_whisper_catches_every_escalation_and_no_calm_call() {
    let _ = model();
    let _ = fixture("refund-call.wav");
    assert_eval_clean(&["eval", "tests/scenarios"]);
}

#[test]
fn eval_reports_a_miss_and_fails() {
    // The same corpus with a lexicon that knows no words: the word-only escalations are missed,
    // and eval says so and exits 1.
    let dir = tempfile::tempdir().unwrap();
    let lex = dir.path().join("empty.toml");
    std::fs::write(&lex, "# nothing\n").unwrap();
    let cfg = dir.path().join("cfg.toml");
    std::fs::write(
        &cfg,
        format!("[detect]\nlexicon = {:?}\n", lex.to_str().unwrap()),
    )
    .unwrap();
    let _ = fixture("refund-call.wav");
    let r = run(&[
        "eval",
        "tests/scenarios",
        "--text",
        "--only",
        "en-legal",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stdout.contains("MISSED"), "{}", r.stdout);
    assert!(r.stdout.contains("recall 0%"), "{}", r.stdout);
}
