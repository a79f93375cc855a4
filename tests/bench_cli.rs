//! The load harness with the real binary and the real model: `callguard bench live` starts its
//! own daemon on port 0, streams two scenario calls at once through the Twilio ingest and the
//! audio-fork ingest at real-time pace, watches them on a supervisor websocket and reports.
//! Checked: the figures are there and make sense (final lines seen with a positive lag, both
//! expected prompts received, the daemon's CPU and memory read, every call summarised), and
//! bad arguments fail with one clear line. Timings themselves are not asserted: they are
//! figures for the README, and this machine is shared.

mod common;

use common::*;
use serde_json::Value;

/// The JSON line of a one-run report.
fn report(r: &Run) -> Value {
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON report in:\n{}\nstderr: {}", r.stdout, r.stderr));
    serde_json::from_str(line).expect("the report is JSON")
}

/// One bench at a time: each starts a daemon whose Whisper pool is sized for the whole machine,
/// so two at once would measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bench(ingest: &str) -> Value {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    fixture("en-manager-churn.wav");
    let model = model();
    let r = run(&[
        "bench",
        "live",
        "--calls",
        "2",
        "--duration",
        "1",
        "--stagger",
        "1",
        "--only",
        "en-manager-churn",
        "--ingest",
        ingest,
        "--model",
        model.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        r.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stdout.contains("final lag p50/p95/max"),
        "the table's header: {}",
        r.stdout
    );
    let v = report(&r);
    assert_eq!(v["calls"], 2);
    assert_eq!(v["placed"], 2, "{v}");
    assert_eq!(
        v["unfinished_calls"], 0,
        "every call ended with a summary: {v}"
    );
    // The customer threatens to leave and asks for a manager: one prompt per call, in time.
    assert_eq!(v["prompts_expected"], 2, "{v}");
    assert_eq!(v["prompts_received"], 2, "{v}");
    assert_eq!(v["false_prompts"], 0, "{v}");
    let finals = &v["final_lag_s"];
    // Five turns per call, both legs, both calls: every final line is either seen with its lag
    // or counted as shed (a slow or busy machine is past capacity even at two calls, and
    // then shedding is the policy working).
    let seen = finals["n"].as_u64().unwrap();
    let shed = v["finals_shed"].as_f64().unwrap() as u64;
    assert!(seen >= 2 && seen + shed >= 10, "{v}");
    let p50 = finals["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= finals["max"].as_f64().unwrap(), "{v}");
    assert!(v["cpu_cores"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["rss_peak_mb"].as_f64().unwrap() > 50.0, "{v}");
    assert_eq!(v["calls_refused"], 0.0, "{v}");
    v
}

#[test]
fn two_twilio_calls_are_measured_end_to_end() {
    bench("twilio");
}

#[test]
fn two_audio_fork_calls_are_measured_end_to_end() {
    bench("audiofork");
}

#[test]
fn bad_arguments_fail_with_one_line() {
    let r = run(&["bench", "live", "--calls", "0"]);
    assert_eq!(r.code, Some(1), "stderr: {}", r.stderr);
    assert_eq!(r.stderr.trim(), "error: call counts must be 1..1000");
    let dir = tempfile::tempdir().unwrap();
    let r = run(&["bench", "live", "--scenarios", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "stderr: {}", r.stderr);
    assert!(
        r.stderr.starts_with("error: no scenario calls") && r.stderr.lines().count() == 1,
        "stderr: {}",
        r.stderr
    );
}
