//! `callguard analyze`: a recording through the offline pipeline (`pipeline::offline`), its
//! events printed as text for people or as JSON lines; `--stats` adds the figures; `--store`
//! keeps the analysed call in the store, through the same egress step as a live call
//! (`sinks::egress`).

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};

use super::calls::open_store;
use super::format::format_text;
use super::{AnalyzeArgs, Format};
use crate::domain::clock::unix_ms;
use crate::domain::event::Event;
use crate::pipeline::asr::worker::{AsrPool, Model, WorkerSettings};
use crate::pipeline::audio::wav::read_wav;
use crate::pipeline::offline::{AnalyzeContext, Words, analyze_audio};
use crate::sinks::egress::{RecordedCall, store_recorded_call};

/// `callguard analyze`: decodes, transcribes and judges a recording, prints its events, and
/// with `--store` keeps it as a call of its own.
pub(super) fn run(args: AnalyzeArgs) -> Result<()> {
    let cfg = args.pipeline.config()?;
    let call_id = args.call_id.unwrap_or_else(|| {
        args.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "call".into())
    });
    // Decode first: a bad recording is refused before any time goes into loading the model.
    let started = Instant::now();
    let audio = read_wav(&args.file)?;
    // The store next: a daemon holding it is reported before the model is loaded.
    let store = if args.store {
        Some((open_store(&args.data_dir)?, audio.clone()))
    } else {
        None
    };
    let model = Model::load(&cfg.asr.model)?;
    let pool = AsrPool::start(model, WorkerSettings::from_config(&cfg.asr))?;
    let lexicon = cfg.detect.load_lexicon()?;
    let ctx = AnalyzeContext {
        call_id: &call_id,
        cfg: &cfg.pipeline(),
        lang: args.pipeline.lang,
        lexicon,
        words: Words::Whisper(&pool),
    };
    let analysis = analyze_audio(audio, ctx, started)?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for event in &analysis.events {
        let line = match args.format {
            Format::Text => format_text(event),
            Format::Jsonl => Some(event.to_json_line()),
        };
        if let Some(line) = line {
            writeln!(out, "{line}").context("writing output")?;
        }
    }
    out.flush().context("writing output")?;
    if args.format == Format::Text
        && !analysis
            .events
            .iter()
            .any(|e| matches!(e, Event::Transcript(_)))
    {
        eprintln!("(no speech found)");
    }
    if args.stats {
        let a = &analysis;
        let langs: Vec<String> = a
            .languages
            .iter()
            .map(|(leg, l)| format!("{leg}={l}"))
            .collect();
        eprintln!(
            "audio {:.1} s ({}, {} Hz, {} ch{}), {} utterances, {} segments ({} dropped), \
             languages {}, wall {:.2} s, real-time factor {:.3}",
            a.audio.duration_ms as f64 / 1000.0,
            a.audio.format,
            a.audio.sample_rate,
            a.audio.channels,
            if a.audio.truncated { ", truncated" } else { "" },
            a.utterances,
            a.events.len(),
            a.dropped_segments,
            langs.join(" "),
            a.wall.as_secs_f64(),
            a.real_time_factor(),
        );
    }
    if let Some((store, audio)) = store {
        let db = store.path().to_owned();
        let stored = store_recorded_call(
            store,
            RecordedCall {
                call_id: &analysis.call_id,
                file: &args.file,
                audio,
                stereo_legs: cfg.audio.stereo_legs,
                events: analysis.events,
                duration_ms: analysis.audio.duration_ms,
                redact: &cfg.redact,
                data_dir: &args.data_dir,
                now_unix_ms: unix_ms(),
            },
        )?;
        eprintln!(
            "stored as call {}{} in {}",
            stored.id,
            stored
                .recording
                .as_ref()
                .map(|r| format!(" (recording {})", r.path.display()))
                .unwrap_or_default(),
            db.display()
        );
    }
    Ok(())
}
