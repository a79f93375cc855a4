//! Raised-voice detection on real speech rather than synthetic tones: espeak-ng voices one
//! customer, first calm and then shouting, sox puts the call on a phone line (300-3400 Hz,
//! hiss, 8 kHz G.711 mu-law) or keeps it wideband, and the detector must flag the shouting and
//! nothing in the calm part, nor anything in a calm call however quiet or hot the line.
//!
//! Needs espeak-ng and sox; without them these tests fail (they do not skip) and say that
//! `make deps` installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use callguard::domain::leg::{AudioChunk, Leg, PIPELINE_RATE};
use callguard::domain::signal::Signal;
use callguard::pipeline::audio::resample::resample_to;
use callguard::pipeline::audio::wav::{SampleFormat, read_wav};
use callguard::pipeline::detect::energy::{EnergyConfig, RaisedVoiceDetector};

const CALM: &str = "I called last week about the refund for my order. The agent told me it \
    would be processed within five business days. I still have not received anything, and I \
    would like to know what is happening with it. Could you please check the status for me.";

const CALM_MORE: &str = "My account number should be on file. I placed the order on the third \
    of the month, and it was marked as delivered, but the package never arrived at my door. \
    I checked with my neighbours and with the building office, and nobody has seen it.";

const SHOUT: &str = "This is completely unacceptable! I have called three times already and \
    nobody helps me! I want my money back right now! Stop putting me on hold!";

/// The same voice, calm and shouting: louder, higher and faster.
const CALM_VOICE: [&str; 8] = ["-v", "en-us", "-a", "60", "-p", "40", "-s", "150"];
const SHOUT_VOICE: [&str; 8] = ["-v", "en-us", "-a", "180", "-p", "75", "-s", "185"];

fn run_tool(name: &str, args: &[&str]) {
    let out = Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {name} ({e}): `make deps` installs espeak-ng and sox")
    });
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// sox, quiet about the clipping the shouted voice causes on purpose.
fn sox(args: &[&str]) {
    let mut all = vec!["-V1"];
    all.extend_from_slice(args);
    run_tool("sox", &all);
}

fn speak(dir: &Path, name: &str, voice: &[&str], text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut args = voice.to_vec();
    args.extend(["-w", path_str(&path), text]);
    run_tool("espeak-ng", &args);
    path
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn seconds(path: &Path) -> f64 {
    read_wav(path).expect("readable WAV").duration_secs()
}

/// Puts `input` on a phone line: hiss, the 300-3400 Hz band, 8 kHz mu-law, plus `effects`
/// (e.g. a gain change) before the encoding.
fn phone_line(dir: &Path, input: &Path, name: &str, effects: &[&str]) -> PathBuf {
    let noise = dir.join(format!("{name}-noise.wav"));
    let len = format!("{}", seconds(input));
    let rate = format!("{}", read_wav(input).expect("readable").sample_rate);
    sox(&[
        "-n",
        "-r",
        &rate,
        "-c",
        "1",
        "-b",
        "16",
        path_str(&noise),
        "synth",
        &len,
        "whitenoise",
        "vol",
        "0.002",
    ]);
    let mixed = dir.join(format!("{name}-mixed.wav"));
    sox(&[
        "-m",
        path_str(input),
        path_str(&noise),
        path_str(&mixed),
        "sinc",
        "300-3400",
    ]);
    let out = dir.join(name);
    let mut args = vec![
        path_str(&mixed),
        "-r",
        "8000",
        "-e",
        "mu-law",
        path_str(&out),
    ];
    args.extend_from_slice(effects);
    sox(&args);
    out
}

/// Decodes a recording, resamples it to 16 kHz and runs the detector over it in 20 ms
/// chunks, as the live pipeline would. Returns the signals and the final detector.
fn detect(path: &Path) -> (Vec<Signal>, RaisedVoiceDetector) {
    let audio = read_wav(path).expect("readable WAV");
    let samples =
        resample_to(&audio.channels[0], audio.sample_rate, PIPELINE_RATE).expect("resamplable");
    let mut det = RaisedVoiceDetector::new(Leg::Customer, &EnergyConfig::default());
    let mut signals = Vec::new();
    let chunk = PIPELINE_RATE as usize / 50;
    for (i, piece) in samples.chunks(chunk).enumerate() {
        signals.extend(det.update(&AudioChunk {
            leg: Leg::Customer,
            start_sample: (i * chunk) as u64,
            samples: piece.to_vec(),
        }));
    }
    signals.extend(det.finish());
    (signals, det)
}

/// At least one signal, all of them starting after the calm part, the first one known
/// within a few seconds of the shouting starting.
fn assert_flags_only_the_shouting(what: &str, signals: &[Signal], calm_ms: u64) {
    eprintln!("{what}: {signals:?}");
    assert!(!signals.is_empty(), "{what}: the shouting was not flagged");
    for s in signals {
        assert!(
            s.start_ms >= calm_ms,
            "{what}: a signal at {} ms is in the calm part (0..{calm_ms} ms): {s:?}",
            s.start_ms
        );
        let e = s.raised.as_ref().expect("evidence");
        assert!(
            e.duration_ms >= 600 && e.db_over_baseline > 0.0,
            "{what}: {e:?}"
        );
        assert!(
            e.cues.iter().any(|c| c == "pitch" || c == "tilt"),
            "{what}: no voice cue: {e:?}"
        );
    }
    assert!(
        signals[0].at_ms < calm_ms + 3000,
        "{what}: flagged late, at {} ms",
        signals[0].at_ms
    );
}

/// Calm sentences, then shouted ones, at espeak-ng's own rate (22.05 kHz); and where the
/// calm part ends.
fn calm_then_shouting(dir: &Path) -> (PathBuf, u64) {
    let calm = speak(dir, "calm.wav", &CALM_VOICE, CALM);
    let shout = speak(dir, "shout.wav", &SHOUT_VOICE, SHOUT);
    let call = dir.join("call.wav");
    sox(&[path_str(&calm), path_str(&shout), path_str(&call)]);
    (call, (seconds(&calm) * 1000.0) as u64)
}

#[test]
fn shouting_on_a_mu_law_phone_line_is_flagged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (call, calm_ms) = calm_then_shouting(dir.path());
    let line = phone_line(dir.path(), &call, "line.wav", &[]);
    let decoded = read_wav(&line).expect("readable");
    assert_eq!(
        (decoded.sample_rate, decoded.format),
        (8000, SampleFormat::MuLaw)
    );
    let (signals, det) = detect(&line);
    assert_flags_only_the_shouting("8 kHz mu-law", &signals, calm_ms);
    assert!(det.baseline().is_some());
}

#[test]
fn shouting_in_wideband_audio_is_flagged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (call, calm_ms) = calm_then_shouting(dir.path());
    for rate in ["16000", "44100"] {
        let out = dir.path().join(format!("call-{rate}.wav"));
        sox(&[path_str(&call), "-r", rate, "-b", "16", path_str(&out)]);
        let (signals, _) = detect(&out);
        assert_flags_only_the_shouting(&format!("{rate} Hz PCM"), &signals, calm_ms);
    }
}

#[test]
fn calm_calls_give_nothing_on_quiet_or_hot_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = speak(dir.path(), "calm-a.wav", &CALM_VOICE, CALM);
    let b = speak(dir.path(), "calm-b.wav", &CALM_VOICE, CALM_MORE);
    let call = dir.path().join("calm.wav");
    sox(&[path_str(&a), path_str(&b), path_str(&call)]);
    let lines: [(&str, &[&str]); 2] = [
        ("hot.wav", &["gain", "-n", "-3"]),
        ("quiet.wav", &["vol", "0.05"]),
    ];
    for (name, effects) in lines {
        let line = phone_line(dir.path(), &call, name, effects);
        let (signals, det) = detect(&line);
        assert!(signals.is_empty(), "{name}: {signals:?}");
        let base = det
            .baseline()
            .expect("the calm speech was heard and learned");
        eprintln!("{name}: baseline {base:?}");
    }
}
