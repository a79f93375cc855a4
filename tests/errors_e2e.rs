//! Bad input gets a clear one-line error and a failing exit status, never a panic or an abort
//! inside whisper.cpp: files that are not audio, empty or cut short, and model files that are
//! missing, truncated or foreign.

mod common;

use std::path::Path;

use common::*;

fn assert_clear_error(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, Some(1), "exit status; stderr: {}", r.stderr);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "stderr: {}", r.stderr);
    for n in needles {
        assert!(last.contains(n), "error lacks {n:?}: {last}");
    }
    assert!(r.stdout.is_empty(), "stdout: {}", r.stdout);
}

fn analyze(file: &Path, model: &Path) -> Run {
    run(&[
        "analyze",
        file.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--lang",
        "en",
    ])
}

#[test]
fn a_file_that_is_not_audio_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("notes.wav");
    std::fs::write(&f, "these are meeting notes, not audio\n").unwrap();
    assert_clear_error(&analyze(&f, &model()), &["notes.wav", "not a WAV"]);
}

#[test]
fn an_empty_recording_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("empty.wav");
    let status = std::process::Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "2", "-e", "mu-law"])
        .arg(&f)
        .args(["trim", "0", "0"])
        .status()
        .expect("sox (make deps installs it)");
    assert!(status.success());
    assert_clear_error(&analyze(&f, &model()), &["empty.wav", "no audio"]);
}

#[test]
fn a_recording_cut_inside_its_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cut.wav");
    let bytes = std::fs::read(fixture("refund-call.wav")).unwrap();
    std::fs::write(&f, &bytes[..30]).unwrap();
    assert_clear_error(&analyze(&f, &model()), &["cut.wav"]);
}

#[test]
fn a_recording_cut_mid_audio_is_transcribed_as_far_as_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("half.wav");
    let bytes = std::fs::read(fixture("refund-call.wav")).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    let r = run(&[
        "analyze",
        f.to_str().unwrap(),
        "--lang",
        "en",
        "--format",
        "jsonl",
        "--stats",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("truncated"), "{}", r.stderr);
    assert!(r.stdout.to_lowercase().contains("blender"), "{}", r.stdout);
}

#[test]
fn a_missing_input_file_is_named() {
    assert_clear_error(
        &analyze(Path::new("/nonexistent/call.wav"), &model()),
        &["/nonexistent/call.wav"],
    );
}

#[test]
fn a_missing_model_names_the_install_command() {
    let r = analyze(
        &fixture("refund-call.wav"),
        Path::new("models/ggml-nothing.bin"),
    );
    assert_clear_error(&r, &["ggml-nothing.bin", "callguard model install"]);
}

#[test]
fn a_truncated_model_is_caught_before_whisper_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("ggml-base.bin");
    let bytes = std::fs::read(model()).unwrap();
    std::fs::write(&m, &bytes[..bytes.len() / 3]).unwrap();
    let r = analyze(&fixture("refund-call.wav"), &m);
    assert_clear_error(&r, &["truncated", "callguard model install"]);
}

#[test]
fn a_foreign_model_file_is_caught_before_whisper_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("ggml-base.bin");
    // A WAV file where the model should be.
    std::fs::copy(fixture("refund-call.wav"), &m).unwrap();
    let r = analyze(&fixture("refund-call.wav"), &m);
    assert_clear_error(&r, &["not a", "callguard model install"]);
}

#[test]
fn a_bad_config_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[segment]\nhangover = 3\n").unwrap();
    let r = run(&[
        "analyze",
        fixture("refund-call.wav").to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_clear_error(&r, &["bad.toml", "hangover"]);
}

#[test]
fn an_unknown_language_is_a_usage_error() {
    let r = run(&["analyze", "x.wav", "--lang", "fr"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("fr"), "{}", r.stderr);
}
