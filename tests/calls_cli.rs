//! `callguard analyze --store` and `callguard calls list|show|export` through the real binary,
//! each test with a data directory of its own. One test runs Whisper (a synthetic call, about
//! 10 s); the others build their store through the library.

mod common;

use common::*;

use callguard::domain::call::{CallInfo, EndReason, SourceKind};
use callguard::domain::leg::Leg;
use callguard::pipeline::audio::wav::read_wav;
use callguard::sinks::store::Store;

fn dir_arg(d: &tempfile::TempDir) -> String {
    d.path().to_str().unwrap().to_owned()
}

/// A start line of an SRT or WebVTT cue: `HH:MM:SS<sep>mmm --> HH:MM:SS<sep>mmm`.
fn is_cue_time(line: &str, sep: char) -> bool {
    let stamp = |s: &str| {
        let b = s.as_bytes();
        s.len() == 12
            && b[2] == b':'
            && b[5] == b':'
            && b[8] == sep as u8
            && s.chars()
                .enumerate()
                .all(|(i, c)| [2, 5, 8].contains(&i) || c.is_ascii_digit())
    };
    match line.split_once(" --> ") {
        Some((a, b)) => stamp(a) && stamp(b),
        None => false,
    }
}

#[test]
fn an_analysed_recording_is_stored_listed_searched_shown_and_exported() {
    let _ = model();
    let wav = fixture("en-media-threat.wav");
    let data = tempfile::tempdir().unwrap();
    let d = dir_arg(&data);

    let r = run(&[
        "analyze",
        wav.to_str().unwrap(),
        "--lang",
        "en",
        "--format",
        "jsonl",
        "--store",
        "--data-dir",
        &d,
    ]);
    assert_eq!(r.code, Some(0), "analyze --store failed: {}", r.stderr);
    assert!(r.stderr.contains("stored as call 1"), "{}", r.stderr);
    // The words Whisper heard: the search below uses one it got right.
    let customer: String = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "transcript" && v["leg"] == "customer")
        .map(|v| v["text"].as_str().unwrap().to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(customer.contains("fridge"), "{customer}");

    // list: the table and the rows.
    let r = run(&["calls", "list", "--data-dir", &d]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("no row for call 1: {}", r.stdout));
    for want in [
        "en-media-threat",
        "file",
        "escalate",
        "hangup",
        "threat_media",
    ] {
        assert!(row.contains(want), "{want} missing: {row}");
    }
    let r = run(&["calls", "list", "--data-dir", &d, "--format", "jsonl"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let rows: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{}", r.stdout);
    let c = &rows[0];
    assert_eq!(c["id"], 1);
    assert_eq!(c["source"], "file");
    assert_eq!(c["outcome"], "hangup");
    assert_eq!(c["max_level"], "escalate");
    assert_eq!(c["has_audio"], true);
    assert!(c["alerts"].as_u64().unwrap() >= 1);
    assert!(
        c["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "threat_media"),
        "{c}"
    );

    // Full text: a word that was said finds the call with its line; one that was not, nothing.
    let r = run(&["calls", "list", "--data-dir", &d, "--q", "fridge"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.lines().any(|l| l.starts_with("1 ")),
        "{}",
        r.stdout
    );
    let snippet = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with('>'))
        .unwrap_or_else(|| panic!("no snippet: {}", r.stdout));
    assert!(snippet.to_lowercase().contains("fridge"), "{snippet}");
    let r = run(&["calls", "list", "--data-dir", &d, "--q", "zebra"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r.stderr.contains("no stored calls match"), "{}", r.stderr);

    // Filters.
    let count = |extra: &[&str]| {
        let mut args = vec!["calls", "list", "--data-dir", &d, "--format", "jsonl"];
        args.extend_from_slice(extra);
        let r = run(&args);
        assert_eq!(r.code, Some(0), "{extra:?}: {}", r.stderr);
        r.stdout.lines().count()
    };
    assert_eq!(
        count(&["--level", "escalate", "--reason", "threat_media"]),
        1
    );
    assert_eq!(count(&["--reason", "churn"]), 0);
    assert_eq!(count(&["--outcome", "recovered"]), 0);
    assert_eq!(
        count(&["--from", "2020-01-01", "--to", "2999-12-31T23:59"]),
        1
    );
    assert_eq!(count(&["--to", "2020-01-01"]), 0);
    assert_eq!(count(&["--agent", "101"]), 0);
    assert_eq!(count(&["--offset", "1"]), 0);

    // show, by the store's id and by the call id.
    let r = run(&["calls", "show", "1", "--data-dir", &d]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let shown = r.stdout;
    assert!(shown.starts_with("call 1: en-media-threat\n"), "{shown}");
    assert!(shown.contains("outcome    hangup"), "{shown}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with('[') && l.contains("] customer ") && l.contains("ridge")),
        "{shown}"
    );
    assert!(shown.contains("] agent "), "{shown}");
    assert!(
        shown.contains("!! TRANSFER PROMPT en-media-threat-a1"),
        "{shown}"
    );
    assert!(shown.contains("-- threat_media (customer)"), "{shown}");
    assert!(
        shown.contains("open: nobody accepted or dismissed it"),
        "{shown}"
    );
    let r = run(&["calls", "show", "en-media-threat", "--data-dir", &d]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, shown);
    let r = run(&["calls", "show", "1", "--data-dir", &d, "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let detail: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let segments = detail["segments"].as_array().unwrap().len();
    assert!(segments >= 4, "{detail}");
    assert_eq!(detail["alerts"][0]["state"], "open");

    // Exports.
    let export = |format: &str| {
        let r = run(&["calls", "export", "1", "--format", format, "--data-dir", &d]);
        assert_eq!(r.code, Some(0), "{format}: {}", r.stderr);
        r.stdout
    };
    let vtt = export("vtt");
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    assert!(
        vtt.contains("<v Customer>") && vtt.contains("<v Agent>"),
        "{vtt}"
    );
    assert_eq!(
        vtt.lines().filter(|l| is_cue_time(l, '.')).count(),
        segments
    );
    let srt = export("srt");
    let cues: Vec<&str> = srt.trim_end().split("\n\n").collect();
    assert_eq!(cues.len(), segments, "{srt}");
    for (i, cue) in cues.iter().enumerate() {
        let lines: Vec<&str> = cue.lines().collect();
        assert_eq!(lines[0], (i + 1).to_string(), "{cue}");
        assert!(is_cue_time(lines[1], ','), "{cue}");
        assert!(
            lines[2].starts_with("Customer: ") || lines[2].starts_with("Agent: "),
            "{cue}"
        );
    }
    let json: serde_json::Value = serde_json::from_str(&export("json")).unwrap();
    assert_eq!(json["call"]["id"], 1);
    assert_eq!(json["segments"].as_array().unwrap().len(), segments);
    let out = data.path().join("call-1.vtt");
    let r = run(&[
        "calls",
        "export",
        "1",
        "--format",
        "vtt",
        "-o",
        out.to_str().unwrap(),
        "--data-dir",
        &d,
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), vtt);

    // The recording: the analysed audio, stereo at its own rate, sample for sample (16-bit).
    let rec = data.path().join("recordings/en-media-threat.wav");
    let stored = read_wav(&rec).unwrap();
    let original = read_wav(&wav).unwrap();
    assert_eq!(stored.sample_rate, original.sample_rate);
    assert_eq!(stored.channels.len(), 2);
    for (s, o) in stored.channels.iter().zip(&original.channels) {
        assert_eq!(s.len(), o.len());
        let worst = s
            .iter()
            .zip(o)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "samples differ by up to {worst}");
    }
    assert_eq!(
        detail["call"]["duration_ms"].as_u64().unwrap(),
        original.channels[0].len() as u64 * 1000 / u64::from(original.sample_rate)
    );
}

fn stored_call(store: &mut Store, call_id: &str, started: u64) -> i64 {
    let info = CallInfo {
        call_id: call_id.into(),
        source: SourceKind::Twilio,
        legs: vec![Leg::Customer, Leg::Agent],
        sample_rate: 8000,
        lang: None,
        agent: Some("101".into()),
        metadata: serde_json::Value::Null,
    };
    let id = store.call_started(&info, started).unwrap();
    store
        .call_ended(call_id, &EndReason::Hangup, started + 60_000)
        .unwrap();
    id
}

#[test]
fn missing_stores_bad_ids_and_bad_dates_are_one_line_errors() {
    let data = tempfile::tempdir().unwrap();
    let d = dir_arg(&data);
    let error = |args: &[&str], code: i32, want: &str| {
        let r = run(args);
        assert_eq!(r.code, Some(code), "{args:?}: {}", r.stderr);
        assert!(r.stderr.starts_with("error: "), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        if code == 1 {
            assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        }
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    };
    // No store yet.
    error(&["calls", "list", "--data-dir", &d], 1, "no call store in");
    error(
        &["calls", "show", "1", "--data-dir", &d],
        1,
        "no call store in",
    );
    error(
        &["calls", "export", "1", "--format", "vtt", "--data-dir", &d],
        1,
        "no call store in",
    );
    assert!(!data.path().join("callguard.db").exists());

    // An empty store says so.
    drop(Store::open(data.path()).unwrap());
    let r = run(&["calls", "list", "--data-dir", &d]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.contains("no calls stored in"), "{}", r.stderr);

    // Two calls with one phone-system id; the daemon's lock held, as while it runs.
    let mut store = Store::open(data.path()).unwrap();
    let first = stored_call(&mut store, "dup", 1_714_521_600_000);
    let second = stored_call(&mut store, "dup", 1_714_525_200_000);
    let r = run(&["calls", "list", "--data-dir", &d, "--format", "jsonl"]);
    assert_eq!(
        r.code,
        Some(0),
        "reading while the store is held: {}",
        r.stderr
    );
    assert_eq!(r.stdout.lines().count(), 2);
    let r = run(&[
        "calls",
        "list",
        "--data-dir",
        &d,
        "--from",
        "2024-05-01T00:30",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("2024-05-01 01:00:00"), "{}", r.stdout);
    assert!(!r.stdout.contains("2024-05-01 00:00:00"), "{}", r.stdout);
    error(
        &["calls", "show", "dup", "--data-dir", &d],
        1,
        &format!(
            "call id \"dup\" matches 2 stored calls: {second} (started 2024-05-01 01:00:00 UTC), \
             {first} (started 2024-05-01 00:00:00 UTC)"
        ),
    );
    let r = run(&["calls", "show", &second.to_string(), "--data-dir", &d]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("(no transcript)"), "{}", r.stdout);
    error(
        &["calls", "show", "99", "--data-dir", &d],
        1,
        "no stored call \"99\"",
    );
    error(
        &[
            "calls",
            "export",
            "nope",
            "--format",
            "srt",
            "--data-dir",
            &d,
        ],
        1,
        "no stored call \"nope\"",
    );
    for (flag, date) in [
        ("--from", "2024-02-30"),
        ("--to", "yesterday"),
        ("--from", "2024-05-01T24:00"),
    ] {
        error(
            &["calls", "list", "--data-dir", &d, flag, date],
            1,
            &format!("{flag} \"{date}\""),
        );
    }
    error(
        &["calls", "list", "--data-dir", &d, "--level", "calm"],
        2,
        "invalid value 'calm'",
    );
    error(
        &["calls", "list", "--data-dir", &d, "--reason", "rudeness"],
        2,
        "invalid value 'rudeness'",
    );

    // analyze --store while the store is held: refused before any transcription.
    let wav = fixture("en-media-threat.wav");
    let started = std::time::Instant::now();
    error(
        &[
            "analyze",
            wav.to_str().unwrap(),
            "--store",
            "--data-dir",
            &d,
        ],
        1,
        "is in use by another callguard process",
    );
    let r = run(&[
        "analyze",
        wav.to_str().unwrap(),
        "--store",
        "--data-dir",
        &d,
    ]);
    assert!(r.stderr.contains("stop the daemon"), "{}", r.stderr);
    assert!(
        started.elapsed().as_secs() < 5,
        "the lock should be found before the model loads"
    );
    drop(store);
}
