//! Shared helpers for the end-to-end tests: where the binary, the model and the generated
//! fixtures are, and a way to run the real `callguard` binary and read what it printed.
//! Fixtures are made by the committed `scripts/make-fixtures.sh` (espeak-ng + sox); the model
//! by `callguard model install base`. `make test` does both first; run alone, a test makes the
//! fixtures itself and fails with the command to run when the model is missing.
#![allow(dead_code)]

pub mod daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_callguard"));
    c.current_dir(root());
    c
}

/// The generated fixture `name` (e.g. `refund-call.wav`), built on first use.
pub fn fixture(name: &str) -> PathBuf {
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(|| {
        let status = Command::new(root().join("scripts/make-fixtures.sh"))
            .status()
            .expect("run scripts/make-fixtures.sh");
        assert!(
            status.success(),
            "scripts/make-fixtures.sh failed (make deps installs espeak-ng and sox)"
        );
    });
    let p = root().join("tests/scenarios/audio").join(name);
    assert!(p.exists(), "fixture {} was not generated", p.display());
    p
}

/// The default model; the end-to-end tests need the real one.
pub fn model() -> PathBuf {
    let p = root().join("models/ggml-base.bin");
    assert!(
        p.exists(),
        "{} is missing: run `make model` (or `callguard model install base`)",
        p.display()
    );
    p
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = bin().args(args).output().expect("run callguard");
    let r = Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert!(
        !r.stderr.contains("panicked"),
        "callguard panicked: {}",
        r.stderr
    );
    r
}

/// One transcript event as printed by `analyze --format jsonl`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Line {
    #[serde(rename = "type")]
    pub kind: String,
    pub call_id: String,
    pub leg: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub lang: String,
}

/// Runs `analyze --format jsonl` and returns its transcript events.
pub fn analyze_jsonl(file: &Path, extra: &[&str]) -> Vec<Line> {
    let mut args = vec!["analyze", file.to_str().unwrap(), "--format", "jsonl"];
    args.extend_from_slice(extra);
    let r = run(&args);
    assert_eq!(r.code, Some(0), "analyze failed: {}", r.stderr);
    r.stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("bad line {l:?}: {e}"))
        })
        .filter(|v| v["type"] == "transcript")
        .map(|v| serde_json::from_value(v).expect("a transcript event"))
        .collect()
}

/// All text of one leg, lower-cased, in order.
pub fn leg_text(lines: &[Line], leg: &str) -> String {
    lines
        .iter()
        .filter(|l| l.leg == leg)
        .map(|l| l.text.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A turn placed in a fixture by the generator: (leg, start ms, end ms, text).
pub fn turns(name: &str) -> Vec<(String, u64, u64, String)> {
    let text = std::fs::read_to_string(fixture(&format!("{name}.turns.tsv"))).unwrap();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].to_owned(),
            )
        })
        .collect()
}
