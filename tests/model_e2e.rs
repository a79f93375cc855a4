//! The model commands against the real installed model: list, idempotent install,
//! installing an official ggml file with `--from` (validated before it is accepted), and
//! quantising it to q8_0, which whisper.cpp then transcribes with.

mod common;

use common::*;

/// The size of the official ggml-base.bin, which the converter reproduces byte for byte in
/// length (shared/notes/whisper-models.md).
const BASE_SIZE: u64 = 147_951_465;

#[test]
fn the_installed_base_model_has_the_official_size() {
    let len = std::fs::metadata(model()).unwrap().len();
    assert_eq!(len, BASE_SIZE);
}

#[test]
fn list_shows_the_model_and_its_hparams() {
    let _ = model();
    let r = run(&["model", "list"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("ggml-base.bin"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(line.contains("base"), "{line}");
    assert!(line.contains("multilingual"), "{line}");
    assert!(line.contains("vocab 51865"), "{line}");
}

#[test]
fn installing_again_does_nothing() {
    let _ = model();
    let before = std::fs::metadata(model()).unwrap().modified().unwrap();
    let r = run(&["model", "install", "base"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("already installed"), "{}", r.stdout);
    let after = std::fs::metadata(model()).unwrap().modified().unwrap();
    assert_eq!(before, after);
}

#[test]
fn install_from_an_official_file_validates_and_copies_it() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let r = run(&[
        "model",
        "install",
        "base",
        "--from",
        model().to_str().unwrap(),
        "--models-dir",
        models.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let copied = models.join("ggml-base.bin");
    assert_eq!(std::fs::metadata(&copied).unwrap().len(), BASE_SIZE);

    // A file that is not a ggml model is refused and nothing is installed.
    let bogus = dir.path().join("bogus.bin");
    std::fs::write(&bogus, vec![7u8; 4096]).unwrap();
    let other = dir.path().join("other");
    let r = run(&[
        "model",
        "install",
        "base",
        "--from",
        bogus.to_str().unwrap(),
        "--models-dir",
        other.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    assert!(!other.join("ggml-base.bin").exists());
}

#[test]
fn an_unknown_model_name_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(&[
        "model",
        "install",
        "huge",
        "--models-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("base") && r.stderr.contains("tiny.en"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_q8_0_copy_is_smaller_and_transcribes_the_same_words() {
    let dir = tempfile::tempdir().unwrap();
    let q8 = dir.path().join("q8.bin");
    let r = run(&[
        "model",
        "quantize",
        model().to_str().unwrap(),
        q8.to_str().unwrap(),
        "--type",
        "q8_0",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("base, q8_0, 245 tensors"), "{}", r.stdout);
    assert!(!dir.path().join("q8.bin.tmp").exists());
    // The matrices (most of the file) go from 2 bytes a value to 34 per 32.
    let len = std::fs::metadata(&q8).unwrap().len();
    assert!(
        len < BASE_SIZE * 6 / 10 && len > BASE_SIZE * 4 / 10,
        "{len} bytes"
    );

    // Words the f16 model hears on each leg of the demo call.
    let wav = fixture("demo-call.wav");
    let lines = analyze_jsonl(&wav, &["--lang", "en", "--model", q8.to_str().unwrap()]);
    let customer = leg_text(&lines, "customer");
    let agent = leg_text(&lines, "agent");
    for w in ["washing machine", "refund", "manager"] {
        assert!(customer.contains(w), "customer leg lacks {w:?}: {customer}");
    }
    for w in ["david", "sorry", "delivery"] {
        assert!(agent.contains(w), "agent leg lacks {w:?}: {agent}");
    }

    // A quantised model is not quantised again.
    let r = run(&[
        "model",
        "quantize",
        q8.to_str().unwrap(),
        dir.path().join("q5.bin").to_str().unwrap(),
        "--type",
        "q5_0",
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("already quantised"), "{}", r.stderr);
    assert!(!dir.path().join("q5.bin").exists());
}
