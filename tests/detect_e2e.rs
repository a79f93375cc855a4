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

/// A config whose lexicon knows no words (in a temporary folder, kept while the guard lives).
fn empty_lexicon_config() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lex = dir.path().join("empty.toml");
    std::fs::write(&lex, "# nothing\n").unwrap();
    let cfg = dir.path().join("cfg.toml");
    std::fs::write(
        &cfg,
        format!("[detect]\nlexicon = {:?}\n", lex.to_str().unwrap()),
    )
    .unwrap();
    (dir, cfg)
}

fn assert_eval_clean(args: &[&str]) {
    let r = run(args);
    assert_eq!(r.code, Some(0), "eval failed:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("recall 100%"), "{}", r.stdout);
    assert!(r.stdout.contains("false alerts 0"), "{}", r.stdout);
    // Every scenario call, and every escalating one, counted from the expectation files.
    let (calls, alerts) = scenario_counts();
    assert!(
        r.stdout.contains(&format!("{calls} passed, 0 failed")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(&format!("({alerts}/{alerts} escalating calls caught)")),
        "{}",
        r.stdout
    );
}

/// Issue 14, class 5: an outcome must not depend on the sample of the line's noise. Another
/// sample of each channel's own hiss leaves a raised-voice call caught; a line buried under
/// -10 dBFS noise is no longer heard, and `--max-flips` says so.
#[test]
fn eval_reruns_calls_under_other_samples_of_line_noise() {
    let noisy = |noise: &[&str]| {
        let mut args = vec![
            "eval",
            "tests/scenarios",
            "--text",
            "--only",
            "en-raised-complaint",
            "--noise-seeds",
            "2",
            "--max-flips",
            "0",
        ];
        args.extend_from_slice(noise);
        run(&args)
    };
    let r = noisy(&["--noise-over-floor", "--noise-db", "0"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "at 0 dB over each channel's own floor: 1 of 1 call(s) kept their outcome, 0 flipped"
        ),
        "{}",
        r.stdout
    );
    let r = noisy(&["--noise-db", "-10"]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("at -10 dBFS: 0 of 1"), "{}", r.stdout);
    assert!(
        r.stdout.contains("en-raised-complaint: caught,"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("flipped with the noise sample"),
        "{}",
        r.stderr
    );
}

/// Evaluation scenarios in tests/scenarios/audio, and how many of them escalate.
fn scenario_counts() -> (usize, usize) {
    let dir = fixture("refund-call.wav").parent().unwrap().to_owned();
    let mut calls = 0;
    let mut alerts = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".expect.toml") {
            calls += 1;
            let text = std::fs::read_to_string(e.path()).unwrap();
            alerts += usize::from(text.contains("alert = true"));
        }
    }
    assert!(calls >= 10 && alerts > 0 && alerts < calls);
    (calls, alerts)
}

/// The generalisation corpus (tests/corpus, written by scripts/make-corpus.py from its
/// templates, audio by `make-fixtures.sh corpus test`): its unseen test half on the known words,
/// judged by its figures. The floor is what detection reaches there today (README,
/// Detection): a change that loses recall or adds false alerts on calls nobody tuned for
/// fails here. Through Whisper the whole corpus is `make eval`'s (too slow for this suite).
#[test]
fn eval_on_the_corpus_test_half_holds_its_figures() {
    let status = std::process::Command::new(root().join("scripts/make-fixtures.sh"))
        .args(["corpus", "test"])
        .status()
        .unwrap();
    assert!(status.success(), "make-fixtures.sh corpus failed");
    let r = run(&[
        "eval",
        "tests/corpus/audio",
        "--text",
        "--split",
        "test",
        "--min-recall",
        "68",
        "--max-false-per-50",
        "5",
    ]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("goal met"), "{}", r.stdout);
    // Only the test half, and a table row per language and family.
    let calls = std::fs::read_dir(root().join("tests/corpus/test"))
        .unwrap()
        .count();
    assert!(
        r.stdout.contains(&format!("{calls} scenario(s)")),
        "{}",
        r.stdout
    );
    for row in [
        "en   calm",
        "zh   calm",
        "en   raised_voice",
        "zh   threat_media",
    ] {
        assert!(r.stdout.contains(row), "{row}: {}", r.stdout);
    }
    // Talk-over and dead air, heard from the audio, against the turns as placed in the
    // recordings: (found, expected, extra).
    let (found, expected, extra) = timing_hits(&r.stdout, "interruptions: ");
    assert!(
        expected >= 40 && found * 10 >= expected * 9 && extra * 20 <= expected,
        "{}",
        r.stdout
    );
    let (found, expected, extra) = timing_hits(&r.stdout, "dead air: ");
    assert!(
        expected >= 20 && found == expected && extra == 0,
        "{}",
        r.stdout
    );
    // The same run with a lexicon that knows nothing misses the goal and says so.
    let (_dir, cfg) = empty_lexicon_config();
    let r = run(&[
        "eval",
        "tests/corpus/audio",
        "--text",
        "--split",
        "test",
        "--min-recall",
        "68",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(r.stderr.contains("goal not met: recall"), "{}", r.stderr);
}

/// `eval`'s closing "WHAT: F of E found (P%), X extra" figures: (found, expected, extra).
fn timing_hits(stdout: &str, what: &str) -> (usize, usize, usize) {
    // The totals come last, after the per-call notes that use the same words.
    let at = stdout
        .rfind(what)
        .unwrap_or_else(|| panic!("no {what:?} in {stdout}"));
    let figures = &stdout[at + what.len()..];
    let figures = &figures[..figures.find("extra").unwrap_or(figures.len())];
    let n: Vec<usize> = figures
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(n.len(), 4, "{figures:?}");
    (n[0], n[1], n[3])
}

/// The turn-taking and pace signals of a recorded call, offline: the customer's two
/// talk-overs, the 12 s silent hold, the agent's rushed turn and the customer's speed-up, each
/// where the recording has them; the agent's matters (dead air, pace) are QA flags; none of it
/// prompts a transfer.
#[test]
fn talk_over_dead_air_and_speed_are_found_where_the_recording_has_them() {
    let _ = model();
    let ev = events("en-talkover-hold", "en");
    let turns = turns("en-talkover-hold");
    let turn = |starts: &str| {
        turns
            .iter()
            .find(|t| t.3.starts_with(starts))
            .unwrap_or_else(|| panic!("no turn {starts:?}"))
            .clone()
    };
    let signals = of_type(&ev, "signal");
    let of_kind =
        |k: &str| -> Vec<&Value> { signals.iter().copied().filter(|s| s["kind"] == k).collect() };
    let near = |v: &Value, ms: u64| v.as_u64().unwrap().abs_diff(ms) <= 1500;

    let cuts = of_kind("interruption");
    let talk_overs = [turn("Sorry, I have"), turn("But then I will")];
    assert_eq!(cuts.len(), talk_overs.len(), "{cuts:#?}");
    for (s, t) in cuts.iter().zip(&talk_overs) {
        assert_eq!(s["leg"], "customer");
        assert_eq!(s["timing"]["over"], "agent");
        assert!(near(&s["start_ms"], t.1), "{s} vs the turn at {} ms", t.1);
        assert!(s["timing"]["overlap_ms"].as_u64().unwrap() >= 800, "{s}");
    }
    assert_eq!(cuts[1]["timing"]["per_minute"], 2, "{cuts:#?}");

    let air = of_kind("dead_air");
    let hold = turn("Understood. Let me test");
    assert_eq!(air.len(), 1, "{air:#?}");
    assert!(
        near(&air[0]["start_ms"], hold.2),
        "{} vs {} ms",
        air[0],
        hold.2
    );
    assert!(air[0]["timing"]["silence_ms"].as_u64().unwrap() >= 10_000);
    let flags = of_type(&ev, "qa_flag");
    assert!(
        flags
            .iter()
            .any(|f| f["kind"] == "dead_air" && f["hint"].as_str().unwrap().contains("silence")),
        "{flags:#?}"
    );

    // The customer's speed-up weighs on the risk; the agent's rushed turn is a QA flag.
    let fast = turn("Okay so I write");
    let rushed = turn("You can write");
    let rate = of_kind("speaking_rate");
    assert!(
        rate.iter()
            .any(|s| s["leg"] == "customer" && near(&s["start_ms"], fast.1)),
        "{rate:#?}"
    );
    assert!(
        flags.iter().any(|f| f["kind"] == "speaking_rate"
            && f["leg"] == "agent"
            && near(&f["quotes"][0]["start_ms"], rushed.1)),
        "{flags:#?}"
    );
    assert!(of_type(&ev, "alert").is_empty(), "{ev:#?}");
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
    let (_dir, cfg) = empty_lexicon_config();
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
